"""Where functions run: the sandboxes this gateway opened, each function's isolation, and the host facts it needs."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from edgefc.config.manifest import FunctionSpec, Isolation, Manifest
from edgefc.sandbox.base import ContainerSpec, Sandbox
from edgefc.sandbox.confine import available as confinement
from edgefc.sandbox.process import ProcessSandbox
from edgefc.supervisor.plan import FunctionPlan
from edgefc.tasks import TaskGroup

log = logging.getLogger("edgefc.gateway")


def container_available() -> tuple[bool, str]:
    """Whether runc containers can run here, with the reason when not."""
    try:
        from edgefc.sandbox.runc import RuncSandbox
    except ImportError as exc:
        return False, f"container sandbox not installed: {exc}"
    return RuncSandbox.available()


def _port_key(text: str) -> tuple[int, str] | None:
    from edgefc.sandbox.hostcheck import host_ports

    found = host_ports(ContainerSpec(ports=(text,)))
    return found[0] if found else None


class Placement:
    """The gateway's sandboxes (``process`` always, ``container`` where runc can run) and the rules for using them."""

    def __init__(self, setting: str, run_dir: Path, data_dir: Path, gateway_id: str, *, tasks: TaskGroup) -> None:
        self.setting = setting  # the gateway's isolation: auto | container | process
        self.run_dir = run_dir
        self.data_dir = data_dir
        self.gateway_id = gateway_id
        self.sandboxes: dict[str, Sandbox] = {}
        self.notes: list[str] = []
        self.tasks = tasks

    async def open(self) -> None:
        """Open the sandboxes; the container one reconciles what an earlier run left, whatever this run's setting."""
        process = ProcessSandbox(self.run_dir, gateway_id=self.gateway_id, tasks=self.tasks.child("process"))
        await process.open()
        self.sandboxes["process"] = process
        confined, unconfined_why = confinement()
        if not confined:  # said plainly, at every start (docs/security.md: what process isolation protects)
            log.warning("process workers are NOT confined (%s): their code can read the data dir, the admin token "
                        "and other functions' environments", unconfined_why)  # fmt: skip
        ok, why = container_available()
        if ok:
            from edgefc.sandbox.runc import RuncSandbox

            container = RuncSandbox(self.run_dir / "runc", gateway_id=self.gateway_id, data_dir=self.data_dir)
            await container.open()
            if self.setting == "process":
                await container.close()
            else:
                self.sandboxes["container"] = container
        elif self.setting != "process":
            note = f"containers unavailable ({why}); functions run in the process sandbox"
            if not confined:
                note += f", unconfined ({unconfined_why})"
            self.notes.append(note)
            log.warning("isolation %s: %s", self.setting, note)

    async def close(self) -> None:
        for sandbox in self.sandboxes.values():
            try:
                await sandbox.close()
            except Exception:  # noqa: BLE001 — close the others whatever one of them does
                log.exception("closing the %s sandbox failed", sandbox.name)

    def resolve(self, fn: FunctionSpec, path: str) -> tuple[str | None, str | None]:
        """(the isolation ``fn`` gets here, or None with the problem saying why it cannot run)."""
        wanted = fn.isolation
        if wanted is Isolation.DEFAULT:
            if self.setting == "auto":
                return ("container" if "container" in self.sandboxes else "process"), None
            wanted = Isolation(self.setting)
        if wanted is Isolation.CONTAINER and "container" not in self.sandboxes:
            why = self.notes[0] if self.notes else "the gateway runs with isolation: process"
            return None, f"{path}.isolation: container isolation is not available on this gateway: {why}"
        return wanted.value, None

    def host_problems(self, manifest: Manifest, running: Iterable[FunctionPlan]) -> list[str]:
        """Facts of this host that a manifest must fit: ports free and unique, devices and volumes present.

        ``running`` are the plans of the functions running now: the host ports they hold count as free.
        """
        from edgefc.sandbox.hostcheck import check_container_spec, host_ports

        problems: list[str] = []
        ours = {p for plan in running if plan.isolation == "container" for p in host_ports(plan.container)}
        seen: dict[tuple[int, str], str] = {}
        for i, fn in enumerate(manifest.functions):
            isolation, _ = self.resolve(fn, f"functions[{i}]")
            if isolation != "container":
                if fn.container is not None and isolation == "process":
                    problems.append(
                        f"functions[{i}].container: needs container isolation, but this function would run in the "
                        f"process sandbox ({'; '.join(self.notes) or 'gateway isolation is process'})"
                    )
                continue
            spec = fn.container_spec()
            checkable = replace(spec, ports=tuple(p for p in spec.ports if _port_key(p) not in ours))
            problems += check_container_spec(checkable, path=f"functions[{i}].container", data_dir=self.data_dir)
            for port in host_ports(spec):
                if port in seen:
                    problems.append(
                        f"functions[{i}].container.ports: host port {port[0]}/{port[1]} is also mapped by "
                        f"function {seen[port]!r}"
                    )
                seen.setdefault(port, fn.name)
        return problems
