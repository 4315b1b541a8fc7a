"""The task group that owns every long-running task of the gateway (anyio's task group, as asyncio can have it).

Two kinds of task live here:

- ``spawn``: work that ends by itself (an async invocation, an SDK call, draining an old version). An error is
  logged with the task's name — never lost in a private ``set[Task]``.
- ``service``: a loop that should run as long as the gateway (a sampler, a reader). If it ends or raises, it is
  logged and restarted after a capped backoff, or — for a service that cannot be restarted — the group fails:
  ``failed`` is set with the error, and the gateway that owns the root group stops loudly.

Groups nest: ``child(name)`` is a group whose tasks its owner can cancel on its own (a function manager closing)
while failures still reach the root. Closing a group cancels its tasks and waits for all of them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from edgefc.backoff import Backoff

log = logging.getLogger("edgefc.tasks")

T = TypeVar("T")


class TaskGroup:
    """Owns named tasks; see the module docstring. Not thread-safe: use it from the event loop."""

    def __init__(self, name: str, *, parent: TaskGroup | None = None) -> None:
        self.name = name
        self._parent = parent
        self._tasks: set[asyncio.Task[Any]] = set()
        self._children: set[TaskGroup] = set()
        self._closed = False
        self.error: BaseException | None = None  # the failure that brought the group down (root only)
        self.failed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._tasks) + sum(len(c) for c in self._children)

    @property
    def closed(self) -> bool:
        return self._closed

    def child(self, name: str) -> TaskGroup:
        """A nested group (closed with this one at the latest). Raises RuntimeError once this group is closed."""
        if self._closed:
            raise RuntimeError(f"task group {self.name} is closed")
        group = TaskGroup(f"{self.name}/{name}", parent=self)
        self._children.add(group)
        return group

    def spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        """Run ``coro`` as a named task; an exception is logged. Raises RuntimeError once the group is closed."""
        if self._closed:
            coro.close()
            raise RuntimeError(f"task group {self.name} is closed; cannot start {name}")
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def service(self, factory: Callable[[], Awaitable[None]], name: str, *, restart: bool = True,
                backoff: Backoff | None = None) -> asyncio.Task[None]:  # fmt: skip
        """Run ``factory()`` for as long as the group lives. When it ends or raises: with ``restart``, log and start
        it again after a capped backoff; without, fail the group (the gateway stops, saying why)."""
        return self.spawn(self._keep(factory, name, restart, backoff or Backoff(first=0.1, cap=30.0)), name)

    async def _keep(self, factory: Callable[[], Awaitable[None]], name: str, restart: bool, backoff: Backoff) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await factory()
                problem: BaseException = RuntimeError(f"service {name} returned")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 — what a service dies of is logged and acted on, never dropped
                problem = exc
            if not restart:
                log.critical("service %s of %s died: %r; stopping the gateway", name, self.name, problem)
                self.fail(problem)
                return
            if loop.time() - started > 60:
                backoff.reset()  # it ran a good while: this is a new failure, not a crash loop
            wait = backoff.next()
            log.error("service %s of %s died (%r); restarting it in %.2f s", name, self.name, problem, wait,
                      exc_info=problem)  # fmt: skip
            await asyncio.sleep(wait)

    def fail(self, error: BaseException) -> None:
        """Mark the whole tree failed (the root's owner stops)."""
        root = self
        while root._parent is not None:
            root = root._parent
        if root.error is None:
            root.error = error
        root.failed.set()

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if self._closed and not self._tasks:
            self._leave_if_done()
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("task %s of %s failed: %r", task.get_name(), self.name, exc, exc_info=exc)

    def cancel(self) -> None:
        """Close the group and cancel its tasks (and its children's) now, without waiting (``aclose`` waits).

        The group leaves its parent once its last task has ended; until then the parent still waits for them."""
        self._closed = True
        for group in list(self._children):
            group.cancel()
        for task in self._tasks:
            task.cancel()
        self._leave_if_done()

    def _leave_if_done(self) -> None:
        if self._closed and not self._tasks and not self._children and self._parent is not None:
            self._parent._children.discard(self)
            self._parent._leave_if_done()

    async def aclose(self) -> None:
        """Cancel every task (children first) and wait until all have ended. Idempotent."""
        self._closed = True
        for group in list(self._children):
            await group.aclose()
        self._children.clear()
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._parent is not None:
            self._parent._children.discard(self)

    async def wait(self) -> None:
        """Wait until every task now in the group (and its children) has ended, without cancelling them."""
        while self._tasks or any(c._tasks for c in self._children):
            pending = list(self._tasks) + [t for c in self._children for t in c._tasks]
            await asyncio.gather(*pending, return_exceptions=True)
