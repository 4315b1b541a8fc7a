"""Resource monitoring: samples every instance and the host every ``interval_s``, keeps a 24 h history.

The supervisor supplies ``sample()``: per function, a list of :class:`InstanceFigures` (read from each
instance's cgroup, else its process tree, with :func:`cgroup_figures` / :func:`process_tree_figures`). The
collector calls it in a thread, so it must only read figures and copy what it iterates. CPU % is the CPU time
an instance used between two samples over the wall time between them (100 % = one core). The history is
persisted to ``<data_dir>/stats-history.json`` at every ``save_interval_s`` and on close.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from edgefc.observe.figures import InstanceFigures, cgroup_figures, process_tree_figures
from edgefc.observe.history import History
from edgefc.observe.metrics import Metrics

__all__ = ["InstanceFigures", "StatsCollector", "cgroup_figures", "process_tree_figures"]

HISTORY_FILE = "stats-history.json"

_log = logging.getLogger(__name__)

Sampler = Callable[[], dict[str, list[InstanceFigures]]]


@dataclass(frozen=True)
class _Raw:
    """One sampling round as read in the thread, before deltas are taken on the loop."""

    wall: float
    mono: float
    functions: dict[str, list[InstanceFigures]]
    host: dict[str, Any]


class StatsCollector:
    """Periodic sampler of per-function and host figures with a bounded history."""

    def __init__(
        self,
        sample: Sampler,
        data_dir: Path,
        interval_s: float = 10.0,
        *,
        history_s: float = 86400.0,
        save_interval_s: float = 600.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.sample = sample
        self.data_dir = Path(data_dir)
        self.interval_s = interval_s
        self.history_s = history_s
        self.save_interval_s = save_interval_s
        self.metrics = metrics
        self.history = History(int(history_s / interval_s) + 1, interval_s)
        self.samples = 0
        self._prev: dict[str, tuple[float, float]] = {}  # instance id -> (monotonic time, cpu seconds)
        self._host: dict[str, Any] = {}
        self._functions: dict[str, dict[str, Any]] = {}
        self._task: asyncio.Task[None] | None = None
        self._last_save = time.monotonic()

    @property
    def history_path(self) -> Path:
        return self.data_dir / HISTORY_FILE

    async def start(self) -> None:
        """Load the saved history, take a first sample, and sample every ``interval_s`` from then on."""
        await asyncio.to_thread(self._load)
        await self.sample_now()
        self._task = asyncio.create_task(self._run(), name="stats-sampler")

    def _load(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        psutil.cpu_percent(None)  # the first call only sets psutil's baseline for host CPU %
        loaded = self.history.load(self.history_path, since=time.time() - self.history_s)
        if loaded:
            _log.info("loaded %d points of resource history", loaded)

    async def close(self) -> None:
        """Stop sampling and save the history."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await asyncio.to_thread(self._save)

    def _save(self) -> None:
        try:
            self.history.save(self.history_path)
        except OSError as exc:
            _log.warning("cannot save resource history to %s: %s", self.history_path, exc)

    async def _run(self) -> None:
        next_at = time.monotonic() + self.interval_s
        while True:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += self.interval_s
            try:
                await self.sample_now()
            except Exception:
                _log.exception("resource sampling failed")
            if time.monotonic() - self._last_save >= self.save_interval_s:
                self._last_save = time.monotonic()
                await asyncio.to_thread(self._save)

    async def sample_now(self) -> None:
        """Take one sample now (the periodic task does this every ``interval_s``)."""
        raw = await asyncio.to_thread(self._read)
        self._apply(raw)

    def _read(self) -> _Raw:
        functions = self.sample()
        memory = psutil.virtual_memory()
        try:
            disk_free = psutil.disk_usage(str(self.data_dir)).free
        except OSError:
            disk_free = 0
        host = {
            "cpu_percent": psutil.cpu_percent(None),
            "cpu_count": psutil.cpu_count() or 1,
            "memory_bytes": memory.total - memory.available,
            "memory_total_bytes": memory.total,
            "disk_free_bytes": disk_free,
            "load": [round(x, 2) for x in os.getloadavg()],
        }
        return _Raw(time.time(), time.monotonic(), functions, host)

    def _apply(self, raw: _Raw) -> None:
        prev, self._prev = self._prev, {}
        functions: dict[str, dict[str, Any]] = {}
        alive: set[tuple[str, str]] = set()
        for function, instances in raw.functions.items():
            rows: list[dict[str, Any]] = []
            for fig in instances:
                before = prev.get(fig.instance_id)
                self._prev[fig.instance_id] = (raw.mono, fig.cpu_seconds)
                cpu_percent = 0.0
                if before is not None and raw.mono > before[0]:
                    cpu_percent = max(0.0, (fig.cpu_seconds - before[1]) / (raw.mono - before[0]) * 100.0)
                rows.append(
                    {
                        "id": fig.instance_id,
                        "pid": fig.pid,
                        "cpu_percent": round(cpu_percent, 2),
                        "memory_bytes": fig.memory_bytes,
                        "memory_limit_bytes": fig.memory_limit_bytes,
                    }
                )
                alive.add((function, fig.instance_id))
                if self.metrics is not None:
                    self.metrics.add_cpu(function, fig.cpu_seconds, instance=fig.instance_id)
            functions[function] = {
                "cpu_percent": round(sum(r["cpu_percent"] for r in rows), 2),
                "memory_bytes": sum(r["memory_bytes"] for r in rows),
                # The per-instance limit (the manifest's memory); each instance is held to it on its own.
                "memory_limit_bytes": max((r["memory_limit_bytes"] for r in rows), default=0),
                "instances": rows,
            }
            if self.metrics is not None:
                self.metrics.set_memory(function, functions[function]["memory_bytes"])
        if self.metrics is not None:
            self.metrics.forget_instances(alive)
        self._functions = functions
        self._host = raw.host
        self.samples += 1
        self.history.add(
            raw.wall,
            {"cpu_percent": raw.host["cpu_percent"], "memory_bytes": raw.host["memory_bytes"]},
            {
                f: {"cpu_percent": v["cpu_percent"], "memory_bytes": v["memory_bytes"]}
                for f, v in functions.items()
            },
        )

    def instance(self, instance_id: str) -> dict[str, Any] | None:
        """The latest figures of one instance (``cpu_percent``, ``memory_bytes``, ...), None if unknown."""
        for figures in self._functions.values():
            for row in figures["instances"]:
                if row["id"] == instance_id:
                    return dict(row)
        return None

    def snapshot(self, history_s: float | None = 3600.0) -> dict[str, Any]:
        """The CONTRACT §4 ``/v1/stats`` body without ``mqtt``: host, functions, and ``history_s`` of history.

        ``history_s`` None or 0 leaves the history's points out (a live view polling every second needs none).
        """
        history = (
            self.history.export(since=time.time() - history_s)
            if history_s
            else {"interval_s": self.interval_s, "time": [], "host": {}, "functions": {}}
        )
        return {
            "host": dict(self._host),
            "functions": {
                f: {**v, "instances": [dict(r) for r in v["instances"]]} for f, v in self._functions.items()
            },
            "history": history,
        }
