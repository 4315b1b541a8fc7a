"""The worker: connects back to the gateway, loads the handler, serves events, carries SDK calls.

Started either as ``python -I -m edgefc.worker`` (containers) or as a fork of the fork server (processes); both
end up in :func:`run`. The function's module body runs on the main thread, as it would in any Python program
(and on Link IoT Edge, where it may never return: see ``startup.py``); the reader loop runs on its own thread from
the start, so SDK calls made at import get their replies and the gateway's events and callbacks are served while
the body runs. Handlers run on a pool of ``max_concurrency`` threads so an SDK call inside a handler can wait for
its reply.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from queue import SimpleQueue
from typing import Any, NoReturn

from edgefc.worker import output
from edgefc.worker.context import Context, FunctionInfo, TriggerInfo
from edgefc.worker.protocol import FrameReader, encode, recv_frame
from edgefc.worker.startup import BodyWatch

_DROP_REPORT_S = 0.5  # how soon a count of dropped log lines is sent when no line or answer carries it

_ENV_KEYS = ("EDGEFC_WORKER_SOCKET", "EDGEFC_WORKER_INSTANCE", "EDGEFC_WORKER_KEY", "EDGEFC_WORKER_CODE")


class RemoteError(Exception):
    """The gateway refused an SDK call; ``error`` is the error dict it sent."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("message", "error"))
        self.error = error


class Connection:
    """The worker's end of the socket: thread-safe sends, SDK calls matched to replies by call id."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = FrameReader(sock)
        self._send_lock = threading.Lock()
        self._calls: dict[int, Future[Any]] = {}
        self._next_cid = 0
        self._cid_lock = threading.Lock()

    def send(self, frame: dict[str, Any]) -> None:
        data = encode(frame)
        with self._send_lock:
            self.sock.sendall(data)

    def call(self, op: str, args: dict[str, Any], timeout: float | None = None) -> Any:
        """Make an SDK call through the gateway and wait for its reply; raises RemoteError on refusal and
        TimeoutError when no reply comes within ``timeout``."""
        with self._cid_lock:
            self._next_cid += 1
            cid = self._next_cid
            fut: Future[Any] = Future()
            self._calls[cid] = fut
        try:
            self.send({"t": "call", "cid": cid, "op": op, "args": args})
            try:
                reply = fut.result(timeout)
            except FutureTimeout:
                raise TimeoutError(f"no answer from the gateway to {op} within {timeout} s") from None
        finally:
            self._calls.pop(cid, None)
        if not reply.get("ok"):
            raise RemoteError(reply.get("error") or {})
        return reply.get("value")

    def cast(self, op: str, args: dict[str, Any], request_id: str | None) -> None:
        """Send an SDK call the gateway serves without answering (``fc.publish`` at QoS 0: fire and forget).

        The gateway writes a refusal into this function's log, attributed to ``request_id``. Raises OSError
        when the connection is gone.
        """
        self.send({"t": "cast", "op": op, "args": args, "rid": request_id})

    def resolve(self, frame: dict[str, Any]) -> None:
        fut = self._calls.get(frame.get("cid", -1))
        if fut is not None and not fut.done():
            fut.set_result(frame)

    def fail_all(self) -> None:
        for fut in list(self._calls.values()):
            if not fut.done():
                fut.set_result({"ok": False, "error": {"type": "Unavailable", "message": "gateway connection lost"}})


class HandlerPool:
    """Up to ``size`` handler threads fed from one queue: a lighter hand-off than a ThreadPoolExecutor.

    Threads start when an item finds none idle, so a function with ``max_concurrency`` 8 that never sees two
    events at once keeps one thread.
    """

    def __init__(self, size: int, name: str) -> None:
        self._size = max(1, size)
        self._name = name
        self._queue: SimpleQueue[tuple[Callable[[Any], None], Any] | None] = SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()

    def submit(self, fn: Callable[[Any], None], arg: Any) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1  # reserved for this item
                start = False
            else:
                start = len(self._threads) < self._size
                if start:
                    thread = threading.Thread(target=self._run, name=f"{self._name}_{len(self._threads)}", daemon=True)
                    self._threads.append(thread)
        self._queue.put((fn, arg))
        if start:
            thread.start()

    def _run(self) -> None:
        get = self._queue.get
        while True:
            item = get()
            if item is None:
                return
            fn, arg = item
            try:
                fn(arg)
            except BaseException:  # noqa: BLE001 — Worker.invoke reports failures itself; the thread must live on
                pass
            with self._lock:
                self._idle += 1

    def shutdown(self) -> None:
        """Let queued items finish, then end every thread."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()


class Worker:
    def __init__(self, conn: Connection, init: dict[str, Any]) -> None:
        self.conn = conn
        f = init["function"]
        self.info = FunctionInfo(
            name=f["name"],
            handler=f["handler"],
            memory=int(f["memory"]),
            timeout=float(f["timeout"]),
            version=str(f.get("version", "")),
            initializer=f.get("initializer"),
        )
        self.config = init.get("config")
        self.log_gate = output.LogGate(float(init.get("log_lines_per_s") or output.DEFAULT_LINES_PER_S))
        self._drop_timer: threading.Timer | None = None
        self.pool = HandlerPool(int(init.get("max_concurrency", 1)), "edgefc-h")
        # Requests the gateway makes of this instance (a driver's get/set/service callbacks) run on their own pool,
        # so a driver whose handler loops forever still answers them.
        self.callback_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="edgefc-cb")
        self.callbacks: dict[str, Any] = {}
        self.handler: Any = None
        self.stopping = False
        # Set once the module is imported and the initializer ran (or failed: then ``handler`` stays None).
        self.loaded = threading.Event()
        self._ready_sent = False
        self._ready_lock = threading.Lock()
        self._module_name, _, self._handler_attr = self.info.handler.rpartition(".")

    def emit_log(self, level: str, stream: str, request_id: str | None, message: str) -> None:
        dropped = self.log_gate.admit()
        if dropped is None:
            # Over the function's log budget: counted, and reported with the next line sent, at the end of the
            # event, or by a timer (a background thread that floods and then falls silent).
            with self._ready_lock:
                if self._drop_timer is None:
                    self._drop_timer = threading.Timer(_DROP_REPORT_S, self._report_dropped_later)
                    self._drop_timer.daemon = True
                    self._drop_timer.start()
            return
        frame = {"t": "log", "time": time.time(), "level": level, "stream": stream, "request_id": request_id,
                 "message": message}  # fmt: skip
        if dropped:
            frame["dropped"] = dropped
        with contextlib.suppress(OSError):
            self.conn.send(frame)

    def _report_dropped_later(self) -> None:
        with self._ready_lock:
            self._drop_timer = None
        self.report_dropped()

    def report_dropped(self) -> None:
        """Send the count of log lines dropped since the last line sent (a ``log`` frame without a message)."""
        dropped = self.log_gate.take_dropped()
        if dropped:
            with contextlib.suppress(OSError):
                self.conn.send({"t": "log", "dropped": dropped})

    def send_ready(self) -> None:
        """Tell the gateway this instance serves events (once)."""
        with self._ready_lock:
            if self._ready_sent:
                return
            self._ready_sent = True
        self.conn.send({"t": "ready"})

    def load(self) -> None:
        """Import the handler's module and run the initializer, on the calling (main) thread.

        Sends ``ready`` when they are done, or earlier when the module body settles into running for good
        (``startup.BodyWatch``). A failure before ``ready`` is a failed start (``init_error``: the gateway rolls
        the deployment back); after it, the body is reported as failed and the instance exits, for the keep-alive
        to restart. Raises nothing; returns normally only when the module loaded.
        """
        watch = BodyWatch(self.send_ready)
        watch.start()
        try:
            handler = _resolve(self.info.handler)
            if self.info.initializer:
                watch.finish()  # the initializer runs before the first event: no early ready
                init = _resolve(self.info.initializer)
                ctx = Context("init", self.info, TriggerInfo("init"), time.monotonic() + self.info.timeout)
                output.set_request("init")
                try:
                    init(ctx)
                finally:
                    output.set_request(None)
        except BaseException as exc:  # noqa: BLE001 — reported to the gateway, never fatal before that
            watch.finish()
            self._failed_start(exc)
        watch.finish()
        self.handler = handler
        self.loaded.set()
        self.send_ready()

    def _failed_start(self, exc: BaseException) -> NoReturn:
        """Report a module body or initializer that raised, then end the instance. Never returns."""
        stack = output.format_user_exception(exc)
        self.emit_log("error", "stderr", "init", "".join(stack).rstrip())
        with self._ready_lock:
            after_ready, self._ready_sent = self._ready_sent, True
        # After ``ready`` (a module body that ran for good, then raised) the gateway sees the exit, and the
        # keep-alive restarts the instance; ``after_ready`` tells it which of the two this is.
        error = {"type": "Handled", "message": _describe(exc), "stack": stack}
        with contextlib.suppress(OSError):
            self.conn.send({"t": "init_error", "error": error, "after_ready": after_ready})
        self.loaded.set()
        _finish(1)

    def _handler_for(self, deadline: float) -> Any:
        """The handler, waiting for it while the module body runs; it serves as soon as the body defined it.

        Raises LookupError when it is still not defined just before ``deadline`` (answering before the gateway's
        own deadline keeps a module that loops forever at import from being killed for it).
        """
        if self.handler is not None:
            return self.handler
        give_up = deadline - min(0.25, self.info.timeout / 10)
        while not self.loaded.is_set():
            if not self.info.initializer:
                module = sys.modules.get(self._module_name)
                found = getattr(module, self._handler_attr, None) if module is not None else None
                if callable(found):
                    return found
            if time.monotonic() >= give_up:
                raise LookupError(
                    f"handler {self.info.handler!r} is not defined yet: the module body is still running "
                    "(define the handler above a loop that runs at import)"
                )
            self.loaded.wait(0.01)
        if self.handler is None:
            raise LookupError(f"handler {self.info.handler!r} could not be loaded")
        return self.handler

    def invoke(self, frame: dict[str, Any]) -> None:
        rid = frame["id"]
        trig = frame.get("trigger") or {}
        deadline = time.monotonic() + frame.get("deadline_ms", self.info.timeout * 1000) / 1000.0
        trigger = TriggerInfo(trig.get("type", "invoke"), trig.get("topic"), trig.get("source"))
        ctx = Context(rid, self.info, trigger, deadline, trig.get("invoker_context"))
        output.set_request(rid)
        try:
            result = self._handler_for(deadline)(frame.get("payload", b""), ctx)
            payload = _encode_result(result)
        except BaseException as exc:  # noqa: BLE001 — every failure of user code is reported, never fatal
            stack = output.format_exception(exc, skip=1)
            self.emit_log("error", "stderr", rid, "".join(stack).rstrip())
            self._flush_streams()
            self.report_dropped()  # the count of lines dropped arrives before the answer
            self.conn.send({"t": "error", "id": rid, "error": {"type": "Handled", "message": _describe(exc), "stack": stack}})
            if isinstance(exc, SystemExit | KeyboardInterrupt):
                os._exit(1)
            return
        finally:
            output.set_request(None)
        self._flush_streams()
        self.report_dropped()  # the count of lines dropped arrives before the answer
        self.conn.send({"t": "result", "id": rid, "payload": payload})

    def serve(self) -> None:
        """The reader loop (on its own thread): dispatch frames until the gateway says stop or goes away, then
        let in-flight events finish and end the process."""
        code = 0
        try:
            next_frame = self.conn.reader.next
            while not self.stopping and self.dispatch(next_frame()):
                pass
            self.pool.shutdown()
        except (EOFError, OSError):
            self.conn.fail_all()
        except Exception as exc:  # noqa: BLE001 — a broken frame ends the instance, visibly
            self.emit_log("error", "stderr", None, f"edgefc worker: {_describe(exc)}")
            code = 1
        _finish(code)

    def dispatch(self, frame: dict[str, Any]) -> bool:
        """Handle one frame from the gateway; False once it said stop."""
        t = frame["t"]
        if t == "invoke":
            self.pool.submit(self.invoke, frame)
        elif t == "reply":
            self.conn.resolve(frame)
        elif t == "callback":
            self.callback_pool.submit(self.callback, frame)
        elif t == "stop":
            self.stopping = True
        return not self.stopping

    def callback(self, frame: dict[str, Any]) -> None:
        """Serve a ``callback`` frame: run the registered handler for its op, answer with ``callback_reply``."""
        op = frame.get("op", "")
        handler = self.callbacks.get(op)
        try:
            if handler is None:
                raise LookupError(f"this instance has no handler for {op!r}")
            value = handler(frame.get("args") or {})
            reply = {"t": "callback_reply", "cid": frame["cid"], "ok": True, "value": value}
        except BaseException as exc:  # noqa: BLE001 — the gateway must get an answer whatever the callback does
            reply = {"t": "callback_reply", "cid": frame["cid"], "ok": False,
                     "error": {"type": type(exc).__name__, "message": str(exc), "stack": output.format_exception(exc)}}  # fmt: skip
        try:
            self.conn.send(reply)
        except (OSError, TypeError, ValueError) as exc:
            self.conn.send({"t": "callback_reply", "cid": frame["cid"], "ok": False,
                            "error": {"type": "TypeError", "message": f"callback result cannot be sent: {exc}"}})  # fmt: skip

    @staticmethod
    def _flush_streams() -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _resolve(dotted: str) -> Any:
    module_name, _, attr = dotted.rpartition(".")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise AttributeError(f"module '{module_name}' has no function '{attr}'") from None


def _encode_result(result: Any) -> bytes:
    if result is None:
        return b""
    if isinstance(result, bytes | bytearray | memoryview):
        return bytes(result)
    if isinstance(result, str):
        return result.encode("utf-8")
    try:
        return json.dumps(result, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise TypeError(f"the handler returned {type(result).__name__}, which is not bytes, str or JSON: {exc}") from exc


_worker: Worker | None = None


def current() -> Worker:
    """The running worker (for the SDK); raises RuntimeError outside a function instance."""
    if _worker is None:
        raise RuntimeError("edgefc.sdk works only inside a function running on an edgefc gateway")
    return _worker


def _finish(code: int) -> NoReturn:
    """End the instance process from any thread: flush what the function wrote, then exit with ``code``."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(Exception):
        output.release_held()
    if _worker is not None:
        with contextlib.suppress(Exception):
            _worker.report_dropped()
    os._exit(code)


def run(socket_path: str, instance_id: str, key: str, code_dir: str) -> int:
    """Serve one instance until the gateway says stop or goes away; never returns (the process exits)."""
    global _worker
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(socket_path)
    conn = Connection(sock)
    conn.send({"t": "hello", "instance": instance_id, "key": key, "pid": os.getpid()})
    init = recv_frame(sock)
    worker = _worker = Worker(conn, init)

    output.capture_fds(worker.emit_log)
    sys.stdout = output.CapturedStream(worker.emit_log, "stdout", "info")
    sys.stderr = output.CapturedStream(worker.emit_log, "stderr", "warning")
    root = logging.getLogger()
    root.handlers[:] = [output.FrameLogHandler(worker.emit_log)]
    root.setLevel(logging.INFO)

    os.chdir(code_dir)
    sys.path.insert(0, code_dir)
    # The Link IoT Edge SDK shims (lethingaccesssdk, lecoresdk, leda_python) come last, after site-packages: a
    # copy in the function's code or a real installed package of that name wins over them (docs/migration.md).
    sys.path.append(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "compat"))
    # Link IoT Edge gives every function its id; drivers' SDK reads it at import.
    os.environ.setdefault("FUNCTION_ID", worker.info.name)
    # As pid 1 of a container the worker would ignore SIGTERM without a handler: stopping must work either way.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))

    threading.Thread(target=worker.serve, name="edgefc-reader", daemon=True).start()
    worker.load()
    # The module is loaded; the reader thread serves until the gateway says stop, then ends the process.
    threading.Event().wait()
    return 0  # not reached


def main() -> None:
    """Entry point of ``python -m edgefc.worker``: parameters come from EDGEFC_WORKER_* variables."""
    params = [os.environ.pop(k, "") for k in _ENV_KEYS]
    socket_path, instance_id, key, code_dir = params
    code = run(socket_path, instance_id, key, code_dir or os.getcwd())
    _finish(code)
