"""One running instance as the supervisor sees it: its sandbox process, its connection, its events in flight."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from edgefc.errors import EdgefcError, FunctionError
from edgefc.sandbox.base import ExitStatus, Instance, stop_then_kill
from edgefc.tasks import TaskGroup
from edgefc.worker.calls import parse_call
from edgefc.worker.protocol import ProtocolError, encode, take_frames

log = logging.getLogger("edgefc.instance")

LogSink = Callable[[str, dict[str, Any]], None]  # (instance id, log frame)
CallHandler = Callable[[str, dict[str, Any]], Awaitable[Any]]  # (op, args) → value


class InstanceState(enum.StrEnum):
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    DEAD = "dead"


class _Frames(asyncio.Protocol):
    """The worker connection once it is authenticated: decodes frames as bytes arrive and hands them on."""

    def __init__(self, on_frame: Callable[[dict[str, Any]], None], transport: asyncio.BaseTransport,
                 on_broken: Callable[[str], None]) -> None:  # fmt: skip
        self._buf = bytearray()
        self._on_frame = on_frame
        self._on_broken = on_broken
        self._transport = transport
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self._buf += data
        try:
            for frame in take_frames(self._buf):
                self._on_frame(frame)
        except (ProtocolError, ValueError, KeyError, TypeError) as exc:
            # A worker that breaks the protocol loses its connection (and with it, its events).
            log.warning("closing a worker connection that sent a bad frame: %r", exc)
            self._on_broken(str(exc))
            self._transport.close()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class Runner:
    """Drives one instance: start handshake, events in flight, deadlines, SDK calls, exit."""

    def __init__(self, instance: Instance, *, on_log: LogSink, on_call: CallHandler, tasks: TaskGroup) -> None:
        self.instance = instance
        self.id = instance.spec.instance_id
        self.state = InstanceState.STARTING
        self.started_at = time.time()
        self.started_mono = time.monotonic()
        self.last_used = time.monotonic()
        self.inflight = 0
        self.exit: ExitStatus | None = None
        self.exit_reason: str | None = None  # "timeout" when we killed it for a late event
        self.body_error: FunctionError | None = None  # what a running module body raised (init_error after ready)
        self._on_log = on_log
        self._on_call = on_call
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[str, asyncio.Future[bytes]] = {}
        # One timer per instance, armed for the earliest deadline of the events in flight (a timer per event
        # costs more than the event): (deadline, timeout) by request id, in the order the events were sent.
        self._deadlines: dict[str, tuple[float, float]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._out: list[bytes] | None = None  # frames written in this loop iteration, sent together
        self._loop = asyncio.get_running_loop()
        self._callbacks: dict[int, asyncio.Future[Any]] = {}
        self._next_cid = 0
        self._calls = tasks.child(f"instance-{self.id}")  # SDK calls being served: cancelled when the instance ends
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Whoever waited for readiness may have gone (a cancelled start): the failure is reported by the exit.
        self.ready.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.ended: asyncio.Future[ExitStatus] = asyncio.get_running_loop().create_future()

    async def run(self, streams: Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]], init: dict[str, Any]) -> None:
        """Serve the instance until it ends; sets ``ready`` and ``ended``. Never raises."""
        waiter = asyncio.create_task(self.instance.wait(), name=f"wait-{self.id}")
        frames: _Frames | None = None
        try:
            conn = asyncio.ensure_future(streams)
            done, _ = await asyncio.wait({conn, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if conn in done and not conn.cancelled() and conn.exception() is None:
                _, self._writer = conn.result()
                # After the handshake frames go straight from the transport to _on_frame: no reader task, no
                # StreamReader wake-up per reply (the worker sends nothing between its hello and our init).
                frames = _Frames(self._on_frame, self._writer.transport, self._broken)
                self._writer.transport.set_protocol(frames)
                self._writer.write(encode({"t": "init", **init}))
            elif conn.done() and not conn.cancelled() and conn.exception() is None:
                conn.result()[1].close()  # connected just as the process ended: nobody will read it
            else:
                conn.cancel()
            await waiter
        except asyncio.CancelledError:
            self.instance.kill()
            await asyncio.shield(waiter)
            raise
        finally:
            if frames is not None:  # the last frames (log lines) the worker wrote before it ended
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(asyncio.shield(frames.closed), 1)
            self._finish(waiter.result() if waiter.done() and not waiter.cancelled() else ExitStatus(-9))

    def _finish(self, status: ExitStatus) -> None:
        self.exit = status
        self.state = InstanceState.DEAD
        error = self.failure()
        if not self.ready.done():
            self.ready.set_exception(error)
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(error)
        self._pending.clear()
        for cfut in self._callbacks.values():
            if not cfut.done():
                cfut.set_exception(error)
        self._callbacks.clear()
        self._deadlines.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._calls.cancel()
        if self._writer is not None:
            self._writer.close()
        if not self.ended.done():
            self.ended.set_result(status)

    def _broken(self, problem: str) -> None:
        """The worker sent a frame the gateway refuses (one past the frame cap: a result too large): the events
        in flight learn why now, and the instance, whose connection is gone, is killed (the keep-alive or the
        next event starts a fresh one)."""
        too_large = problem.startswith("frame of")  # ProtocolError's words for a frame past MAX_FRAME
        self.exit_reason = "result_too_large" if too_large else "protocol"
        what = "result too large" if too_large else "protocol error"
        error = FunctionError("Unhandled", f"{what}: instance {self.id} sent more than the gateway accepts ({problem}); "
                                           "return less (big data goes to a file or a topic); the instance was stopped")  # fmt: skip
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(error)
        self.state = InstanceState.STOPPING
        self.instance.kill()

    def failure(self) -> FunctionError:
        """The error that events in flight get when this instance ends."""
        status = self.exit or ExitStatus(-9)
        if status.oom:
            return FunctionError("OutOfMemory", f"instance {self.id} was killed at its memory limit")
        if self.exit_reason == "timeout":
            return FunctionError("Unhandled", f"instance {self.id} was killed because another event timed out")
        if self.state is InstanceState.STOPPING or self.exit_reason == "stopped":
            return FunctionError("Unhandled", f"instance {self.id} was stopped")
        how = f"signal {-status.code}" if status.code < 0 else f"exit code {status.code}"
        return FunctionError("Unhandled", f"instance {self.id} ended unexpectedly ({how})")

    def _on_frame(self, frame: dict[str, Any]) -> None:
        t = frame["t"]
        if t == "result":
            fut = self._pending.pop(frame["id"], None)
            if fut is not None and not fut.done():
                fut.set_result(frame.get("payload") or b"")
        elif t == "error":
            fut = self._pending.pop(frame["id"], None)
            if fut is not None and not fut.done():
                e = frame.get("error") or {}
                fut.set_exception(FunctionError(e.get("type", "Handled"), e.get("message", ""), e.get("stack")))
        elif t == "log":
            self._on_log(self.id, frame)
        elif t == "callback_reply":
            cfut = self._callbacks.pop(frame.get("cid", -1), None)
            if cfut is not None and not cfut.done():
                cfut.set_result(frame)
        elif t == "call":
            self._calls.spawn(self._serve_call(frame), f"call-{self.id}")
        elif t == "cast":
            self._calls.spawn(self._serve_cast(frame), f"cast-{self.id}")
        elif t == "ready":
            self.state = InstanceState.READY
            if not self.ready.done():
                self.ready.set_result(None)
        elif t == "init_error":
            e = frame.get("error") or {}
            if not self.ready.done():
                self.ready.set_exception(FunctionError("InitError", e.get("message", ""), e.get("stack")))
            elif frame.get("after_ready"):
                # A module body that kept running (Link IoT Edge style) raised after the instance was ready: the
                # worker exits next; the exit is this, not a plain "exited".
                self.exit_reason = "init_error"
                self.body_error = FunctionError(str(e.get("type", "Handled")), str(e.get("message", "")), e.get("stack"))

    async def _serve_call(self, frame: dict[str, Any]) -> None:
        try:
            value = await self._on_call(*parse_call(frame.get("op"), frame.get("args")))  # typed and capped
            reply = {"t": "reply", "cid": frame["cid"], "ok": True, "value": value}
        except EdgefcError as exc:
            reply = {"t": "reply", "cid": frame["cid"], "ok": False, "error": exc.to_dict()}
        except Exception as exc:  # noqa: BLE001 — an SDK call must get an answer whatever happens
            log.exception("SDK call %s failed", frame.get("op"))
            reply = {"t": "reply", "cid": frame["cid"], "ok": False, "error": {"type": "InternalError", "message": str(exc)}}
        self._send(encode(reply))

    async def _serve_cast(self, frame: dict[str, Any]) -> None:
        """An SDK call the worker does not wait for (``fc.publish`` at QoS 0): no reply; a refusal goes into
        the function's log, attributed to the event that made the call."""
        op = frame.get("op")
        try:
            await self._on_call(*parse_call(op, frame.get("args")))  # typed and capped, as a call
            return
        except EdgefcError as exc:
            message = f"{op} refused ({exc.type}): {exc.message}"
        except Exception as exc:  # noqa: BLE001 — nobody waits for an answer: the log is where it shows
            log.exception("SDK call %s failed", op)
            message = f"{op} failed: {exc}"
        rid = frame.get("rid")
        self._on_log(self.id, {"t": "log", "time": time.time(), "level": "error", "stream": "stderr",
                               "request_id": rid if isinstance(rid, str) else None, "message": message})  # fmt: skip

    def _send(self, data: bytes) -> None:
        """Queue a frame for the worker; the frames of one loop iteration go out in one write, in order."""
        out = self._out
        if out is None:
            self._out = [data]
            self._loop.call_soon(self._flush)
        else:
            out.append(data)

    def _flush(self) -> None:
        out, self._out = self._out, None
        writer = self._writer
        if out and writer is not None and not writer.is_closing():
            try:
                writer.write(out[0] if len(out) == 1 else b"".join(out))
            except Exception:  # noqa: BLE001 — the connection is going; run() reports how
                pass

    async def invoke(self, request_id: str, payload: bytes, trigger: dict[str, Any], timeout: float) -> bytes:
        """Run one event; raises FunctionError (Handled, Timeout, OutOfMemory, Unhandled)."""
        if self.state is not InstanceState.READY or self._writer is None:
            raise self.failure() if self.exit else FunctionError("Unhandled", f"instance {self.id} is not ready")
        loop = self._loop
        fut: asyncio.Future[bytes] = loop.create_future()
        self._pending[request_id] = fut
        self._send(encode({"t": "invoke", "id": request_id, "payload": payload, "deadline_ms": int(timeout * 1000), "trigger": trigger}))
        deadline = loop.time() + timeout
        self._deadlines[request_id] = (deadline, timeout)
        if self._timer is None or deadline < self._timer_at:
            self._arm(deadline)
        try:
            return await fut
        finally:
            self._deadlines.pop(request_id, None)
            self._pending.pop(request_id, None)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._expire)

    def _expire(self) -> None:
        """The timer is due: fail every event past its deadline, re-arm for the earliest one left."""
        self._timer = None
        now = self._loop.time()
        expired = [(rid, timeout) for rid, (deadline, timeout) in self._deadlines.items() if deadline <= now]
        for rid, timeout in expired:
            del self._deadlines[rid]
            self._deadline(rid, timeout)
        if self._deadlines and self.state is not InstanceState.DEAD:
            self._arm(min(deadline for deadline, _ in self._deadlines.values()))

    async def callback(self, op: str, args: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Ask the instance to run its handler for ``op`` (e.g. a driver's set-properties callback).

        Returns the reply frame ({ok, value | error}). Raises TimeoutError when no answer comes in time and
        FunctionError when the instance is not ready or ends meanwhile.
        """
        if self.state is not InstanceState.READY or self._writer is None:
            raise self.failure() if self.exit else FunctionError("Unhandled", f"instance {self.id} is not ready")
        self._next_cid += 1
        cid = self._next_cid
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._callbacks[cid] = fut
        self._send(encode({"t": "callback", "cid": cid, "op": op, "args": args}))
        try:
            return await asyncio.wait_for(fut, timeout)  # type: ignore[no-any-return]
        finally:
            self._callbacks.pop(cid, None)

    def _deadline(self, request_id: str, timeout: float) -> None:
        fut = self._pending.pop(request_id, None)
        if fut is None or fut.done():
            return
        fut.set_exception(FunctionError("Timeout", f"the event ran longer than its timeout of {timeout:g} s"))
        # The worker cannot stop a handler thread, so the instance goes; the next event gets a fresh one.
        self.exit_reason = "timeout"
        self.state = InstanceState.STOPPING
        self.instance.kill()

    async def stop(self, grace: float = 2.0) -> None:
        """Ask the worker to finish and exit (a ``stop`` frame); SIGKILL after ``grace``. Cancellation-safe."""
        if self.state is InstanceState.DEAD:
            return
        self.state = InstanceState.STOPPING
        self.exit_reason = self.exit_reason or "stopped"
        await stop_then_kill(self._ask_stop, self.kill, self.ended, grace)

    def _ask_stop(self) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._send(encode({"t": "stop"}))

    def kill(self) -> None:
        self.instance.kill()

    def status(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pid": self.instance.pid,
            "state": self.state.value,
            "started_at": self.started_at,
            "inflight": self.inflight,
            "memory_bytes": self.instance.memory_bytes(),
            "cpu_seconds": self.instance.cpu_seconds(),
        }
