"""Deployments as the API, the CLI and the cloud agent see them: apply, roll back, describe, restore at start."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from edgefc.errors import Conflict, EdgefcError
from edgefc.gateway.deploy import Deployer, Prepared
from edgefc.gateway.store import StateStore
from edgefc.invoker.invoker import Invoker

log = logging.getLogger("edgefc.gateway")


class Deployments:
    """Serialises deployments (one at a time) and records each in the state store."""

    def __init__(self, deployer: Deployer, store: StateStore, invoker: Invoker) -> None:
        self.deployer = deployer
        self.store = store
        self.invoker = invoker

    async def deploy(self, manifest_text: str, uploads: dict[str, bytes]) -> dict[str, Any]:
        """Validate and apply a deployment. Raises ValidationError or DeployFailed; then nothing changed.

        Raises Conflict when the manifest's ``version`` name was applied before with different content. A deployment
        whose content and version are the applied ones changes nothing and is not recorded as a new version (so
        repeating a deploy never pushes the real previous version out of rollback's reach).
        """
        async with self.deployer.lock:
            prepared = await asyncio.to_thread(self.deployer.prepare, manifest_text, uploads)
            content = prepared.content
            current = await asyncio.to_thread(self.store.current)
            if current is not None and current["content"] == content and current["version"] == prepared.version:
                names = sorted(prepared.plans)
                log.info("deployment %s: nothing changed, not a new version", prepared.version)
                return {"version": prepared.version, "started": [], "unchanged": names, "removed": []}
            if prepared.manifest.version is not None:
                same_name = await asyncio.to_thread(self.store.with_version, prepared.version)
                if same_name is not None and same_name["content"] not in (None, content):
                    raise Conflict(
                        f"version: {prepared.version!r} was already deployed with different content (deployment "
                        f"{same_name['seq']}); give the changed deployment a new version name",
                        details={"field": "version", "version": prepared.version},
                    )
            return await self._apply(prepared)

    async def rollback(self) -> dict[str, Any]:
        """Apply the deployment that was applied before the current one. Raises Conflict when there is none."""
        async with self.deployer.lock:
            previous = await asyncio.to_thread(self.store.previous)
            if previous is None:
                raise Conflict("there is no previous deployment to roll back to")
            prepared = await asyncio.to_thread(self.deployer.prepare, previous["manifest"], {}, stored=previous["bundles"])
            return await self._apply(prepared)

    async def _apply(self, prepared: Prepared) -> dict[str, Any]:
        seq = await asyncio.to_thread(
            self.store.add_deployment, prepared.version, prepared.manifest_text, prepared.bundles, prepared.content
        )
        try:
            result = await self.deployer.apply(prepared)
        except EdgefcError as exc:
            await asyncio.to_thread(self.store.mark_deployment, seq, "rolled_back", exc.message)
            raise
        await asyncio.to_thread(self.store.mark_deployment, seq, "applied")
        return result

    async def info(self) -> dict[str, Any]:
        """The applied deployment: version, manifest, apply status, previous version, bundles."""
        current = await asyncio.to_thread(self.store.current)
        previous = await asyncio.to_thread(self.store.previous)
        latest = await asyncio.to_thread(self.store.latest)
        return {
            "version": current["version"] if current else None,
            "manifest": current["manifest"] if current else None,
            "applied_at": current["applied_at"] if current else None,
            "status": latest["status"] if latest else "none",
            "message": latest["message"] if latest else None,
            "previous_version": previous["version"] if previous else None,
            "bundles": current["bundles"] if current else {},
        }

    async def restore(self) -> None:
        """Apply the last applied deployment again (no network needed) and resume unfinished async invocations.

        A deployment that cannot be restored is logged, not raised: the gateway still starts, empty. One left
        ``applying`` by a gateway that stopped mid-apply is marked failed: the one before it is what runs."""
        interrupted = await asyncio.to_thread(self.store.mark_interrupted)
        if interrupted:
            log.warning("%d deployment(s) were interrupted by a stop while applying; marked failed", interrupted)
        current = await asyncio.to_thread(self.store.current)
        if current is None:
            return
        # Taken before the apply: what the apply itself creates (a timer's catch-up firing) must not run twice.
        unfinished = await asyncio.to_thread(self.store.unfinished_invocations)
        try:
            prepared = await asyncio.to_thread(self.deployer.prepare, current["manifest"], {}, stored=current["bundles"])
            await self.deployer.apply(prepared, restoring=True)
            log.info("restored deployment %s from the data dir", prepared.version)
        except EdgefcError as exc:
            log.error("could not restore deployment %s: %s", current["version"], exc.message)
        await self.invoker.resume(unfinished)
