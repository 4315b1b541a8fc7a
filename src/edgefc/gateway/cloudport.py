"""The gateway as its cloud agent sees it (:class:`edgefc.cloud.agent.GatewayPort`): the same paths the API uses."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import httpx

from edgefc.errors import NotFound

if TYPE_CHECKING:
    from edgefc.gateway.core import Gateway


class CloudPort:
    """Deploys, status and figures through :meth:`Gateway.control`; a log query through the gateway's own HTTP
    API, in process, so the cloud's ``/logs`` takes exactly the parameters and answers of CONTRACT §4."""

    def __init__(self, gateway: Gateway) -> None:
        from edgefc.api.app import create_app  # the API imports the gateway: resolved when the agent starts

        self._gateway = gateway
        self._control = gateway.control()
        self._api = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(gateway)), base_url="http://gateway",
                                      headers={"Authorization": f"Bearer {gateway.token}"})  # fmt: skip

    async def aclose(self) -> None:
        await self._api.aclose()

    async def deploy(self, manifest_text: str, uploads: dict[str, bytes]) -> dict[str, Any]:
        return await self._control.deploy(manifest_text, uploads)

    async def deployment_info(self) -> dict[str, Any]:
        return await self._control.deployment_info()

    async def stored_bundle(self, sha256: str) -> bytes | None:
        try:
            return await asyncio.to_thread(self._gateway.deployer.bundles.blob, sha256)
        except NotFound:
            return None

    def functions_status(self) -> list[dict[str, Any]]:
        return self._control.functions_status()

    def host_stats(self) -> dict[str, Any]:
        return self._control.host_stats()

    def stats_history(self, seconds: float) -> dict[str, Any]:
        history: dict[str, Any] = self._gateway.stats.snapshot(history_s=seconds)["history"]
        return history

    def devices(self) -> list[dict[str, Any]]:
        return self._gateway.devices.list_all()

    async def query_logs(self, function: str, params: dict[str, str]) -> tuple[int, Any]:
        response = await self._api.get(f"/v1/functions/{function}/logs", params=params)
        return response.status_code, response.json()
