"""Deployments: validate everything first, store bundles by hash, apply as a diff, roll back on a failed start.

A deployment either applies whole or not at all: a function whose new version cannot import its module or
whose initializer raises rolls the whole deployment back, and the functions that were running keep running.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import tempfile
import zipfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefc.config.load import check_function_code, parse_manifest
from edgefc.config.manifest import FunctionSpec, Manifest, Mode
from edgefc.errors import DeployFailed, FunctionError, ValidationError
from edgefc.invoker.table import FunctionTable
from edgefc.package import BundleStore, check_zip, zip_directory
from edgefc.supervisor.manager import FunctionManager
from edgefc.supervisor.plan import FunctionPlan
from edgefc.tasks import TaskGroup

log = logging.getLogger("edgefc.deploy")

MANIFEST_NAMES = ("deployment.yaml", "deployment.yml", "manifest.yaml", "manifest.yml")


@dataclass(frozen=True)
class Limits:
    max_bundle_bytes: int
    max_bundle_files: int
    parallel_starts: int = 8  # functions started (probe and first instance) at once by one deploy


@dataclass(frozen=True)
class Prepared:
    """A validated deployment whose bundles are stored: ready to apply."""

    version: str
    manifest_text: str
    manifest: Manifest
    bundles: dict[str, str]  # function → sha256
    plans: dict[str, FunctionPlan]

    @property
    def content(self) -> str:
        """What the deployment runs, as a digest: the validated manifest (its version name, comments and layout
        aside) and every bundle's sha256. Two deployments with the same content change nothing."""
        data = {"manifest": self.manifest.model_dump(mode="json", exclude={"version"}), "bundles": self.bundles}
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def split_folder_zip(data: bytes, limits: Limits) -> tuple[str, dict[str, bytes]]:
    """An ``application/zip`` upload of the manifest's folder → (manifest text, bundle per function).

    Raises ValidationError for a bad zip, a missing manifest, or a function whose ``code`` is not inside.
    """
    check_zip(data, max_bytes=limits.max_bundle_bytes * 4, max_files=limits.max_bundle_files * 4, label="upload")
    with tempfile.TemporaryDirectory(prefix="edgefc-upload-") as tmp:
        root = Path(tmp)
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            archive.extractall(root)  # names were checked by check_zip: no absolute paths, no '..', no links
        manifest_path = next((root / n for n in MANIFEST_NAMES if (root / n).is_file()), None)
        if manifest_path is None:
            raise ValidationError([f"upload: no manifest at the top of the zip (expected one of {', '.join(MANIFEST_NAMES)})"])
        text = manifest_path.read_text("utf-8", errors="replace")
        manifest = parse_manifest(text, source=manifest_path.name)
        bundles: dict[str, bytes] = {}
        problems: list[str] = []
        for i, fn in enumerate(manifest.functions):
            where = f"functions[{i}].code"
            code = (root / (fn.code or fn.name)).resolve()
            if not code.is_relative_to(root.resolve()):
                problems.append(f"{where}: {fn.code!r} points outside the uploaded folder")
            elif code.is_dir():
                bundles[fn.name] = zip_directory(code, max_bytes=limits.max_bundle_bytes, max_files=limits.max_bundle_files, label=where)
            elif code.is_file() and code.suffix == ".zip":
                bundles[fn.name] = code.read_bytes()
            else:
                problems.append(f"{where}: {fn.code!r} is neither a directory nor a .zip in the uploaded folder")
        if problems:
            raise ValidationError(problems)
        return text, bundles


def bundles_from_disk(manifest_path: Path, limits: Limits) -> tuple[str, dict[str, bytes]]:
    """Read a manifest file and zip each function's ``code`` (relative to the manifest): what the CLI uploads."""
    try:
        text = manifest_path.read_text("utf-8")
    except OSError as exc:
        raise ValidationError([f"{manifest_path}: cannot read: {exc.strerror}"]) from exc
    manifest = parse_manifest(text, source=str(manifest_path))
    bundles: dict[str, bytes] = {}
    problems: list[str] = []
    for i, fn in enumerate(manifest.functions):
        where = f"functions[{i}].code"
        code = manifest_path.parent / (fn.code or fn.name)
        try:
            if code.is_dir():
                bundles[fn.name] = zip_directory(code, max_bytes=limits.max_bundle_bytes, max_files=limits.max_bundle_files, label=where)
            elif code.is_file():
                bundles[fn.name] = code.read_bytes()
            else:
                problems.append(f"{where}: {str(code)!r} does not exist")
        except ValidationError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ValidationError(problems)
    return text, bundles


def fingerprint(spec: FunctionSpec, sha: str, isolation: str, devices: list[Any]) -> str:
    """Equal for a function that need not restart across two deployments (a driver's devices count too)."""
    body = json.dumps({"spec": spec.model_dump(mode="json", exclude={"code"}), "sha": sha, "isolation": isolation,
                       "devices": devices}, sort_keys=True)  # fmt: skip
    return hashlib.sha256(body.encode()).hexdigest()


ManagerFactory = Callable[[FunctionPlan], FunctionManager]
IsolationResolver = Callable[[FunctionSpec, str], tuple[str | None, str | None]]  # (isolation, problem)


class Deployer:
    """Prepares and applies deployments; owns the table of running function managers."""

    def __init__(self, bundles: BundleStore, limits: Limits, *, table: FunctionTable, make_manager: ManagerFactory,
                 resolve_isolation: IsolationResolver, tasks: TaskGroup) -> None:  # fmt: skip
        self.bundles = bundles
        self.limits = limits
        self.table = table
        self.make_manager = make_manager
        self.resolve_isolation = resolve_isolation
        # Problems of a manifest that only other parts of this gateway can see (host facts, messaging setup).
        self.extra_checks: list[Callable[[Manifest], list[str]]] = []
        self.manifest: Manifest | None = None
        self.version: str | None = None
        self.lock = asyncio.Lock()
        # Bounds the workers a deploy or a restore starts at once (each probe is a process).
        self._starts = asyncio.Semaphore(limits.parallel_starts)
        self._tasks = tasks.child("deployer")  # old versions draining
        self.on_applied: list[Callable[[Prepared], Awaitable[None] | None]] = []
        # Called just before a deployment's functions start (drivers read their devices while starting); each
        # returns how to undo it if the deployment rolls back.
        self.before_apply: list[Callable[[Prepared], Callable[[], None]]] = []

    @property
    def managers(self) -> dict[str, FunctionManager]:
        """A snapshot of the running function managers."""
        return self.table.snapshot()

    def prepare(self, manifest_text: str, uploads: dict[str, bytes], *, stored: dict[str, str] | None = None) -> Prepared:
        """Validate the manifest and every bundle, store the bundles; blocking (run it in a thread).

        ``stored`` maps functions to bundles already in the store (a restart or a rollback). Raises ValidationError
        listing every problem; nothing is changed then, apart from content-addressed blobs that nothing references.
        """
        manifest = parse_manifest(manifest_text)
        problems: list[str] = []
        names = {f.name for f in manifest.functions}
        for extra in sorted(set(uploads) - names):
            problems.append(f"upload: a bundle part is named {extra!r}, but the manifest has no function of that name")
        shas: dict[str, str] = {}
        for i, fn in enumerate(manifest.functions):
            label = f"functions[{i}] ({fn.name})"
            if stored and fn.name in stored and self.bundles.has(stored[fn.name]):
                shas[fn.name] = stored[fn.name]
                continue
            data = uploads.get(fn.name)
            if data is None:
                problems.append(f"functions[{i}].code: no code bundle uploaded for function {fn.name!r}")
                continue
            try:
                shas[fn.name] = self.bundles.put(
                    data, label=label, max_bytes=self.limits.max_bundle_bytes, max_files=self.limits.max_bundle_files
                )
            except ValidationError as exc:
                problems.extend(exc.problems)
        plans: dict[str, FunctionPlan] = {}
        version = manifest.version or hashlib.sha256(
            (manifest_text + json.dumps(shas, sort_keys=True)).encode()
        ).hexdigest()[:12]
        for i, fn in enumerate(manifest.functions):
            isolation, problem = self.resolve_isolation(fn, f"functions[{i}]")
            if problem:
                problems.append(problem)
            if fn.name not in shas:
                continue
            code_dir = self.bundles.path(shas[fn.name])
            problems.extend(check_function_code(fn, code_dir, path=f"functions[{i}]"))
            if isolation is not None:
                devices = [d.model_dump(mode="json") for d in manifest.devices if d.driver == fn.name]
                plans[fn.name] = self._plan(fn, shas[fn.name], code_dir, version, isolation, devices)
        for check in self.extra_checks:
            problems.extend(check(manifest))
        if problems:
            raise ValidationError(problems)
        return Prepared(version, manifest_text, manifest, shas, plans)

    def _plan(self, fn: FunctionSpec, sha: str, code_dir: Path, version: str, isolation: str,
              devices: list[Any]) -> FunctionPlan:  # fmt: skip
        current = self.table.get(fn.name)
        fp = fingerprint(fn, sha, isolation, devices)
        if current is not None and current.plan.fingerprint == fp:
            version = current.plan.version  # unchanged: it keeps the version it was deployed with
        return FunctionPlan(
            name=fn.name, handler=fn.handler, initializer=fn.initializer, mode=fn.mode,
            memory_mb=fn.memory_mb, timeout_s=float(fn.timeout_s),
            idle_timeout_s=float(fn.effective_idle_timeout_s or 0.0), max_concurrency=fn.max_concurrency,
            max_instances=fn.max_instances, max_queue=fn.max_queue, env=dict(fn.env), config=fn.config,
            code_dir=code_dir, code_sha=sha, version=version, container=fn.container_spec(),
            fingerprint=fp, isolation=isolation, restart_backoff_max_s=fn.restart_backoff_max_s, runtime=fn.runtime,
        )  # fmt: skip

    async def apply(self, prepared: Prepared, *, restoring: bool = False) -> dict[str, Any]:
        """Apply a prepared deployment as a diff. Raises DeployFailed (and changes nothing) if a function fails to start.

        ``restoring`` (the gateway starting from its data dir): a function that cannot start now (its device or
        network is not up yet) does not take the others down; its keep-alive retries it.
        """
        undo = [hook(prepared) for hook in self.before_apply]
        if restoring:
            return await self._restore(prepared)
        old = self.managers
        kept: dict[str, FunctionManager] = {}
        fresh: dict[str, FunctionManager] = {}
        for name, plan in prepared.plans.items():
            current = old.get(name)
            if current is not None and current.plan.fingerprint == plan.fingerprint:
                kept[name] = current
            else:
                fresh[name] = self.make_manager(plan)
        # A container that maps host ports must let go of them before its new version can bind them. The new
        # manager takes the function's place in the table first, so events arriving during the switch wait in
        # its queue (until its instance is ready) instead of being refused by the old one.
        stopped_first = {n: old[n] for n in fresh if n in old and old[n].plan.container.ports}
        for name in stopped_first:
            self.table.put(name, fresh[name])
        for manager in stopped_first.values():
            await manager.close(drain=True)
        results = await asyncio.gather(*(self._start(m) for m in fresh.values()), return_exceptions=True)
        failures = [(m.name, r) for m, r in zip(fresh.values(), results, strict=True) if isinstance(r, BaseException)]
        if failures:
            await asyncio.gather(*(m.close(drain=False) for m in fresh.values()))
            for step in reversed(undo):
                step()
            self.table.replace(old)
            for name, manager in stopped_first.items():
                revived = self.make_manager(manager.plan)
                try:
                    await self._start(revived)
                except Exception:  # noqa: BLE001 — it ran before; the keep-alive takes it from here
                    log.exception("could not bring back the previous version of %s", name)
                    revived.retry_later()
                old = {**old, name: revived}
                self.table.put(name, revived)
            details = []
            for name, exc in failures:
                if isinstance(exc, FunctionError):
                    details.append({"function": name, "type": exc.type, "message": exc.message, "stack": exc.stack})
                else:
                    details.append({"function": name, "type": type(exc).__name__, "message": str(exc)})
            names = ", ".join(n for n, _ in failures)
            first = details[0]["message"]
            raise DeployFailed(
                f"deployment {prepared.version} rolled back: {names} failed to start ({first})", details=details
            )
        self.table.replace({**kept, **fresh})
        self.manifest = prepared.manifest
        self.version = prepared.version
        for name, manager in old.items():
            if kept.get(name) is not manager and name not in stopped_first:
                self._tasks.spawn(manager.close(drain=True), f"drain-{name}")
        await self._applied(prepared)
        log.info(
            "deployment %s applied: %d started, %d unchanged, %d removed",
            prepared.version, len(fresh), len(kept), len(set(old) - set(prepared.plans)),
        )  # fmt: skip
        return {"version": prepared.version, "started": sorted(fresh), "unchanged": sorted(kept),
                "removed": sorted(set(old) - set(prepared.plans))}  # fmt: skip

    async def _restore(self, prepared: Prepared) -> dict[str, Any]:
        managers = {name: self.make_manager(plan) for name, plan in prepared.plans.items()}
        results = await asyncio.gather(*(self._bounded(m.start()) for m in managers.values()), return_exceptions=True)
        for manager, result in zip(managers.values(), results, strict=True):
            if isinstance(result, BaseException):
                log.error("%s could not start at boot (%s); its keep-alive retries it", manager.name, result)
                manager.retry_later()
        self.table.replace(managers)
        self.manifest = prepared.manifest
        self.version = prepared.version
        await self._applied(prepared)
        return {"version": prepared.version, "started": sorted(managers), "unchanged": [], "removed": []}

    async def _applied(self, prepared: Prepared) -> None:
        """Tell the on_applied hooks (routes, timers, devices, stats) about the deployment now running."""
        for hook in self.on_applied:
            outcome = hook(prepared)
            if outcome is not None:
                await outcome

    async def _start(self, manager: FunctionManager) -> None:
        async with self._starts:
            if manager.plan.mode is Mode.ON_DEMAND:
                await manager.probe()
            await manager.start()

    async def _bounded(self, start: Awaitable[None]) -> None:
        async with self._starts:
            await start

    async def close(self) -> None:
        """Stop every function (no draining) and wait for the old versions still draining."""
        managers = self.table.snapshot()
        self.table.replace({})
        await asyncio.gather(*(m.close(drain=False) for m in managers.values()), return_exceptions=True)
        await self._tasks.wait()
        await self._tasks.aclose()

    def manager(self, name: str) -> FunctionManager | None:
        return self.table.get(name)
