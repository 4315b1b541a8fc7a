"""Everything a function writes becomes ``log`` frames: print, sys.stderr, ``logging``, and raw fd 1/2 output.

Lines keep the request id of the event that wrote them; a Python traceback is one entry, not one per line.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable

Emit = Callable[[str, str, "str | None", str], None]  # (level, stream, request_id, message)

_current = threading.local()
_active: set[str] = set()
_active_lock = threading.Lock()


def set_request(request_id: str | None) -> None:
    """Mark the calling thread as working on ``request_id`` (None when done)."""
    old = getattr(_current, "request_id", None)
    with _active_lock:
        if old is not None:
            _active.discard(old)
        if request_id is not None:
            _active.add(request_id)
    _current.request_id = request_id


def current_request() -> str | None:
    rid = getattr(_current, "request_id", None)
    if rid is not None:
        return rid
    with _active_lock:  # a thread of the user's own: attribute to the one event in flight, if there is one
        return next(iter(_active)) if len(_active) == 1 else None


class _LineGrouper:
    """Splits written text into entries; folds a ``Traceback (most recent call last):`` block into one."""

    def __init__(self, emit_line: Callable[[str, bool], None]) -> None:
        self._emit = emit_line
        self._partial = ""
        self._tb: list[str] | None = None

    def feed(self, text: str) -> None:
        text = self._partial + text
        *lines, self._partial = text.split("\n")
        for line in lines:
            self._line(line)

    def _line(self, line: str) -> None:
        if self._tb is not None:
            self._tb.append(line)
            if line and not line.startswith((" ", "\t")) and not line.startswith("Traceback"):
                if not line.startswith(("During handling", "The above exception")):
                    block, self._tb = self._tb, None
                    self._emit("\n".join(block), True)
            return
        if line.startswith("Traceback (most recent call last):"):
            self._tb = [line]
            return
        self._emit(line, False)

    def flush(self) -> None:
        if self._tb is not None:
            block, self._tb = self._tb, None
            self._emit("\n".join(block), True)
        if self._partial:
            partial, self._partial = self._partial, ""
            self._emit(partial, False)


class CapturedStream(io.TextIOBase):
    """Replacement for sys.stdout / sys.stderr: one entry per line, per thread."""

    def __init__(self, emit: Emit, stream: str, level: str) -> None:
        self._emit = emit
        self._stream = stream
        self._level = level
        self._local = threading.local()

    def _grouper(self) -> _LineGrouper:
        g = getattr(self._local, "grouper", None)
        if g is None:
            g = self._local.grouper = _LineGrouper(self._line)
        return g

    def _line(self, line: str, is_traceback: bool) -> None:
        level = "error" if is_traceback else self._level
        self._emit(level, self._stream, current_request(), line)

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self._grouper().feed(s)
        return len(s)

    def flush(self) -> None:
        g = getattr(self._local, "grouper", None)
        if g is not None and g._partial == "" and g._tb is None:
            return
        if g is not None:
            g.flush()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def isatty(self) -> bool:
        return False


class FrameLogHandler(logging.Handler):
    """Root logging handler: each record one entry with its level; exc_info folded into the same entry."""

    def __init__(self, emit: Emit) -> None:
        super().__init__(logging.DEBUG)
        self._emit = emit
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            rid = getattr(record, "request_id", None) or current_request()
            self._emit(record.levelname.lower(), "log", rid, message)
        except Exception:  # noqa: BLE001 — logging must never raise into user code
            self.handleError(record)


def capture_fds(emit: Emit) -> None:
    """Point fd 1 and 2 at pipes read by daemon threads, so output of C code and subprocesses is kept too."""
    for fd, stream, level in ((1, "stdout", "info"), (2, "stderr", "warning")):
        r, w = os.pipe()
        os.dup2(w, fd)
        os.close(w)
        threading.Thread(target=_pump, args=(r, emit, stream, level), name=f"edgefc-fd{fd}", daemon=True).start()


def _pump(fd: int, emit: Emit, stream: str, level: str) -> None:
    grouper = _LineGrouper(lambda line, tb: emit("error" if tb else level, stream, current_request(), line))
    with open(fd, "rb", buffering=0) as pipe:
        while True:
            chunk = pipe.read(65536)
            if not chunk:
                break
            grouper.feed(chunk.decode("utf-8", "replace"))
    grouper.flush()


def format_exception(exc: BaseException, skip: int = 0) -> list[str]:
    """The traceback lines of ``exc`` without the ``skip`` outermost frames (the worker's own)."""
    tb = exc.__traceback__
    for _ in range(skip):
        if tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
    return traceback.format_exception(type(exc), exc, tb)


def now() -> float:
    return time.time()
