"""Today's gateway with the cloud agent attached: ``python -m tests.cloud.agent_gateway gateway run …``.

The gateway's composition root is being rebuilt (issue 9); until the agent is entered there, this launcher
adapts today's :class:`edgefc.gateway.core.Gateway` to :class:`edgefc.cloud.agent.GatewayPort` and starts the
agent beside it, with the gateway's own ``cloud.*`` configuration.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

import httpx

from edgefc.api.app import create_app
from edgefc.cloud.agent import CloudAgent
from edgefc.errors import NotFound
from edgefc.gateway import server
from edgefc.gateway.core import Gateway


class GatewayAdapter:
    """Today's Gateway as the agent's GatewayPort; log queries go through the gateway's own API in-process."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.api = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(gateway)), base_url="http://gateway",
                                     headers={"Authorization": f"Bearer {gateway.token}"})  # fmt: skip

    async def deploy(self, manifest_text: str, uploads: dict[str, bytes]) -> dict[str, Any]:
        return await self.gateway.deploy(manifest_text, uploads)

    async def deployment_info(self) -> dict[str, Any]:
        return await self.gateway.deployment_info()

    async def stored_bundle(self, sha256: str) -> bytes | None:
        assert self.gateway.deployer is not None
        try:
            return await asyncio.to_thread(self.gateway.deployer.bundles.blob, sha256)
        except NotFound:
            return None

    def functions_status(self) -> list[dict[str, Any]]:
        return self.gateway.functions_status()

    def host_stats(self) -> dict[str, Any]:
        assert self.gateway.stats is not None
        return self.gateway.stats.snapshot(history_s=0)["host"]  # type: ignore[no-any-return]

    def devices(self) -> list[dict[str, Any]]:
        return self.gateway.devices.list_all() if self.gateway.devices is not None else []  # type: ignore[no-any-return]

    def stats_history(self, since_s: float) -> dict[str, Any]:
        assert self.gateway.stats is not None
        return self.gateway.stats.snapshot(history_s=since_s)["history"]  # type: ignore[no-any-return]

    async def query_logs(self, function: str, params: dict[str, str]) -> tuple[int, Any]:
        response = await self.api.get(f"/v1/functions/{function}/logs", params=params)
        return response.status_code, response.json()


class AgentGateway(Gateway):
    """The gateway plus its cloud agent, started after the gateway and stopped before it."""

    _agent_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await super().start()
        if self.config.cloud.url:
            agent = CloudAgent(GatewayAdapter(self), self.config.cloud)
            self._agent_task = asyncio.create_task(agent.run(), name="cloud-agent")

    async def close(self) -> None:
        if self._agent_task is not None:
            self._agent_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._agent_task
        await super().close()


server.Gateway = AgentGateway  # type: ignore[misc]

if __name__ == "__main__":
    import sys

    from edgefc.cli.main import main

    # The gateway harness always asks for 127.0.0.1:0; a gateway in a test's network namespace must listen on the
    # namespace's end of the veth instead, so the test (outside) can reach its API.
    listen = os.environ.get("EDGEFC_TEST_LISTEN")
    if listen and "--listen" in sys.argv:
        sys.argv[sys.argv.index("--listen") + 1] = listen
    main()
