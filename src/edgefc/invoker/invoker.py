"""The invoker: runs events on functions for every trigger, and serves the SDK calls function code makes."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, Protocol

from edgefc.errors import EdgefcError, FunctionError, NotFound, Unavailable, ValidationError
from edgefc.invoker.asynclane import AsyncLanes
from edgefc.invoker.events import EventSink
from edgefc.invoker.ports import CallHandler, InstanceListener
from edgefc.invoker.table import FunctionTable
from edgefc.supervisor.instance import Runner
from edgefc.supervisor.manager import FunctionManager
from edgefc.tasks import TaskGroup

log = logging.getLogger("edgefc.invoker")

__all__ = ["CallHandler", "FunctionTable", "InvocationStore", "Invoker"]


class InvocationStore(Protocol):
    """Where async invocations are kept until they finished (the gateway's SQLite store). Blocking calls."""

    def add_invocation(self, inv_id: str, function: str, payload: bytes, trigger: dict[str, Any]) -> None: ...

    def start_invocation(self, inv_id: str) -> None: ...

    def finish_invocation(self, inv_id: str, *, result: bytes | None, error: dict[str, Any] | None) -> None: ...

    def invocation(self, inv_id: str) -> dict[str, Any] | None: ...

    def invocation_payload(self, inv_id: str) -> bytes: ...


class Invoker:
    """The dispatcher of DESIGN §1. Implements :class:`edgefc.supervisor.ports.Calls` for the managers."""

    def __init__(self, table: FunctionTable, store: InvocationStore, *, events: EventSink, tasks: TaskGroup) -> None:
        self.table = table
        self.store = store
        self.events = events
        self._tasks = tasks.child("invocations")
        # SDK operations served by other components, by prefix ("device.register" → handlers["device"]).
        self._handlers: dict[str, CallHandler] = {}
        self.lanes = AsyncLanes(lambda n, p, t, rid: self.invoke(n, p, trigger=t, request_id=rid))

    async def aclose(self) -> None:
        """Cancel the async invocations running now (they stay unfinished in the store and resume at next start)."""
        await self._tasks.aclose()

    # ---- functions ---------------------------------------------------------------------------------------------

    def manager(self, name: str) -> FunctionManager:
        """The manager of a deployed function. Raises NotFound."""
        manager = self.table.get(name)
        if manager is None:
            raise NotFound(f"no function named {name!r} is deployed")
        return manager

    def has(self, name: str) -> bool:
        return name in self.table

    async def invoke(self, name: str, payload: bytes, *, trigger: dict[str, Any] | None = None,
                     request_id: str | None = None) -> bytes:  # fmt: skip
        """Run one event synchronously. Raises NotFound, Busy, Unavailable or FunctionError."""
        manager = self.table.get(name)
        if manager is None:
            raise NotFound(f"no function named {name!r} is deployed")
        return await manager.invoke(payload, trigger=trigger, request_id=request_id)

    async def invoke_async(self, name: str, payload: bytes, trigger: dict[str, Any] | None = None) -> str:
        """Accept an event for later: it is on disk before this returns, and runs even across a restart.

        Raises NotFound, or Busy (429) when the function already has its cap of async invocations waiting."""
        self.manager(name)
        self.lanes.admit(name)
        inv_id = uuid.uuid4().hex
        trigger = trigger or {"type": "invoke"}
        try:
            await asyncio.to_thread(self.store.add_invocation, inv_id, name, payload, trigger)
        except BaseException:
            self.lanes.release(name)  # nothing was accepted: give the place back
            raise
        self._tasks.spawn(self._run_async(inv_id, name, None, trigger), f"async-{inv_id}")
        return inv_id

    async def _run_async(self, inv_id: str, name: str, payload: bytes | None, trigger: dict[str, Any]) -> None:
        async def load() -> bytes:
            # Read when it runs, not kept in memory while it waits: a long backlog costs disk, not RAM.
            data = payload if payload is not None else await asyncio.to_thread(self.store.invocation_payload, inv_id)
            await asyncio.to_thread(self.store.start_invocation, inv_id)
            return data

        result: bytes | None = None
        error: dict[str, Any] | None = None
        try:
            result = await self.lanes.run(inv_id, name, load, trigger)
        except EdgefcError as exc:
            error = exc.to_dict()
        await asyncio.to_thread(self.store.finish_invocation, inv_id, result=result, error=error)

    async def resume(self, unfinished: list[tuple[str, str, bytes, dict[str, Any]]]) -> None:
        """Run again the async invocations a previous run accepted but did not finish."""
        for inv_id, name, payload, trigger in unfinished:
            if self.has(name):
                self.lanes.admit(name, force=True)
                self._tasks.spawn(self._run_async(inv_id, name, payload, trigger), f"async-{inv_id}")
            else:
                err = {"type": "NotFound", "message": f"function {name!r} is no longer deployed"}
                await asyncio.to_thread(self.store.finish_invocation, inv_id, result=None, error=err)

    async def get_invocation(self, inv_id: str) -> dict[str, Any]:
        """An async invocation's record. Raises NotFound."""
        found = await asyncio.to_thread(self.store.invocation, inv_id)
        if found is None:
            raise NotFound(f"no invocation with id {inv_id!r}")
        return found

    async def restart(self, name: str) -> None:
        """Restart a function's instances. Raises NotFound."""
        await self.manager(name).restart()

    # ---- what the device service uses ----------------------------------------------------------------------------

    def ready_instance(self, name: str) -> Runner:
        """A ready instance of function ``name`` (a driver), to send callbacks to. Raises Unavailable."""
        manager = self.table.get(name)
        runner = manager.ready_runner() if manager is not None else None
        if runner is None:
            state = manager.state.value if manager is not None else "not deployed"
            raise Unavailable(f"driver {name!r} has no running instance (it is {state})")
        return runner

    def listen(self, listener: InstanceListener) -> None:
        self.events.listen(listener)

    def unlisten(self, listener: InstanceListener) -> None:
        self.events.unlisten(listener)

    def handle(self, prefix: str, handler: CallHandler) -> None:
        """Serve the SDK operations ``prefix.*`` (``device``, ``thing``) or the operation ``prefix`` (``publish``)."""
        self._handlers[prefix] = handler

    def unhandle(self, prefix: str, handler: CallHandler) -> None:
        if self._handlers.get(prefix) == handler:
            del self._handlers[prefix]

    # ---- the SDK -------------------------------------------------------------------------------------------------

    async def call(self, function: str, op: str, args: dict[str, Any]) -> Any:
        """Serve an SDK call made by ``function``'s code. Raises EdgefcError (sent back to the caller)."""
        if op == "invoke":
            return await self._sdk_invoke(function, args)
        handler = self._handlers.get(op.partition(".")[0])
        if handler is not None:
            return await handler(function, op, args)
        raise ValidationError([f"sdk: unknown operation {op!r}"])

    async def _sdk_invoke(self, function: str, args: dict[str, Any]) -> Any:
        name = str(args.get("name", ""))
        payload = bytes(args.get("payload") or b"")
        trigger = {"type": "invoke", "source": f"function:{function}"}
        if args.get("type") == "async":
            return await self.invoke_async(name, payload, trigger)
        timeout = args.get("timeout")
        coro = self.invoke(name, payload, trigger=trigger)
        if timeout:
            try:
                return await asyncio.wait_for(coro, float(timeout))
            except TimeoutError:
                raise FunctionError("Timeout", f"no answer from {name!r} within {timeout} s") from None
        return await coro
