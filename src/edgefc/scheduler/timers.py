"""Timers: fire each scheduled function at its times, with one catch-up firing after downtime at most.

Each timer is one task sleeping until its next firing. The last firing per function is kept in a small JSON
file, so after the gateway was down the first start sees what was missed: it fires *once* (and says so in the
log) instead of replaying every missed slot as a burst, then continues on schedule.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgefc.scheduler.cron import Schedule

log = logging.getLogger("edgefc.timers")

FireFunction = Callable[[str, bytes], Awaitable[None]]


def timer_event(name: str, trigger_time: datetime, payload: Any) -> bytes:
    """The CONTRACT §1 timer event JSON for one firing."""
    stamp = trigger_time.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    event = {"triggerTime": stamp, "triggerName": name, "payload": payload}
    return json.dumps(event, separators=(",", ":")).encode("utf-8")


class TimerService:
    """The gateway's timers; ``set_timers`` on every deploy, ``next_fire`` for function status."""

    def __init__(self, fire: FireFunction, state_path: Path, *, lateness_window: int = 1000) -> None:
        self.fire = fire
        self.state_path = Path(state_path)
        self.lateness_ms: collections.deque[float] = collections.deque(maxlen=lateness_window)
        self._specs: dict[str, tuple[Schedule, Any]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._next: dict[str, datetime] = {}
        self._last: dict[str, datetime] = {}
        self._firing: set[asyncio.Task[None]] = set()
        self._running = False
        self._save_lock = threading.Lock()  # two timers firing together must not interleave writes

    async def start(self) -> None:
        """Load the last firing times and start every timer set so far."""
        self._last = await asyncio.to_thread(self._load)
        self._running = True
        for name in self._specs:
            self._start_timer(name)

    async def close(self) -> None:
        """Stop every timer; firings already handed to ``fire`` are awaited."""
        self._running = False
        tasks = list(self._tasks.values()) + list(self._firing)
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def set_timers(self, timers: Mapping[str, tuple[Schedule, Any]]) -> None:
        """Replace the set of timers: ``{function_name: (schedule, schedule_payload)}``; unchanged ones keep going."""
        for name in list(self._specs):
            if name not in timers or timers[name] != self._specs[name]:
                self._specs.pop(name)
                self._next.pop(name, None)
                task = self._tasks.pop(name, None)
                if task is not None:
                    task.cancel()
        for name, spec in timers.items():
            if name not in self._specs:
                self._specs[name] = spec
                if self._running:
                    self._start_timer(name)

    def next_fire(self, name: str) -> datetime | None:
        """When ``name``'s timer fires next (aware UTC), or None without a timer."""
        if name in self._next:
            return self._next[name]
        spec = self._specs.get(name)
        return spec[0].next_after(datetime.now(UTC)) if spec else None

    def lateness(self) -> dict[str, float]:
        """p50/p99/max of how late firings started, in ms, over the last firings."""
        values = sorted(self.lateness_ms)
        if not values:
            return {"p50": 0.0, "p99": 0.0, "max": 0.0, "count": 0}
        pick = lambda q: values[min(len(values) - 1, int(q * len(values)))]  # noqa: E731
        return {"p50": pick(0.5), "p99": pick(0.99), "max": values[-1], "count": len(values)}

    def _start_timer(self, name: str) -> None:
        self._tasks[name] = asyncio.create_task(self._run(name), name=f"timer:{name}")

    async def _run(self, name: str) -> None:
        schedule, payload = self._specs[name]
        now = datetime.now(UTC)
        last = self._last.get(name)
        if last is not None and schedule.next_after(last) < now:
            missed = schedule.next_after(last)
            log.info(
                "timer %s missed firings since %s while the gateway was down; firing once to catch up",
                name,
                missed.isoformat(),
            )
            await self._fire(name, now, payload, late_ms=None)
        while True:
            due = schedule.next_after(datetime.now(UTC))
            self._next[name] = due
            await _sleep_until(due)
            late_ms = (datetime.now(UTC) - due).total_seconds() * 1000
            await self._fire(name, due, payload, late_ms=late_ms)

    async def _fire(self, name: str, trigger_time: datetime, payload: Any, *, late_ms: float | None) -> None:
        if late_ms is not None:
            self.lateness_ms.append(late_ms)
        self._last[name] = trigger_time
        # The firing runs on its own, so a slow function does not delay its next slot or other timers.
        task = asyncio.create_task(
            self._call(name, timer_event(name, trigger_time, payload)), name=f"fire:{name}"
        )
        self._firing.add(task)
        task.add_done_callback(self._firing.discard)
        await asyncio.to_thread(self._save, dict(self._last))

    async def _call(self, name: str, event: bytes) -> None:
        try:
            await self.fire(name, event)
        except Exception:
            log.exception("timer firing of %s failed", name)

    def _load(self) -> dict[str, datetime]:
        try:
            raw = json.loads(self.state_path.read_text())
            return {name: datetime.fromisoformat(stamp) for name, stamp in raw.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("ignoring unreadable timer state %s: %s", self.state_path, exc)
            return {}

    def _save(self, last: dict[str, datetime]) -> None:
        with self._save_lock:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.state_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({name: stamp.isoformat() for name, stamp in last.items()}))
            os.replace(tmp, self.state_path)  # atomic: a crash leaves the old file or the new one


async def _sleep_until(due: datetime) -> None:
    """Sleep until the wall clock reaches ``due`` (re-checking, since the clock can step meanwhile)."""
    while True:
        remaining = (due - datetime.now(UTC)).total_seconds()
        if remaining <= 0:
            return
        await asyncio.sleep(min(remaining, 60.0))
