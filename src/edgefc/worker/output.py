"""Everything a function writes becomes ``log`` frames: print, sys.stderr, ``logging``, and raw fd 1/2 output.

Lines keep the request id of the event that wrote them; a Python traceback is one entry, not one per line.
"""

from __future__ import annotations

import codecs
import importlib
import io
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable

from edgefc.observe.ratelimit import TokenBucket

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


# Longer lines are cut here already: a line of many megabytes then costs neither the function's memory nor
# quadratic joining nor a frame over the protocol's limit; the store cuts again to its own max_line_bytes.
MAX_LINE_CHARS = 1024 * 1024


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _cut(text: str, total_bytes: int) -> str:
    """``text`` (already at most MAX_LINE_CHARS) with the store's truncation mark naming the whole size."""
    return f"{text}… [truncated: {total_bytes} bytes in all]"


def _sendable(text: str) -> str:
    """Text that can be encoded as UTF-8: lone surrogates (surrogateescape'd bytes) shown as ``\\xNN``."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:
            return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


_CHAIN = ("During handling of the above exception", "The above exception was the direct cause")
_HOLD_S = 0.1  # how long a finished traceback waits for a chained one to follow before it is sent alone

Tag = Callable[[], "str | None"]  # the request id a line belongs to, asked when the line (or block) starts
EmitLine = Callable[[str, bool, "str | None"], None]  # (line or traceback block, is_traceback, request id)


class _LineGrouper:
    """Splits written text into entries; folds a ``Traceback (most recent call last):`` block into one.

    A chained traceback (``During handling…`` / ``The above exception…``) stays one entry: a block that looks
    finished is held until the next line shows whether the chain goes on, or until :data:`_HOLD_S` passes.
    """

    def __init__(self, emit_line: EmitLine, tag: Tag = lambda: None) -> None:
        self._emit = emit_line
        self._tag = tag
        self._partial: list[str] = []  # the line being written, at most MAX_LINE_CHARS of it
        self._partial_chars = 0
        self._partial_bytes = 0  # the whole line's size, including what was cut off
        self._partial_cut = False
        self._tb: list[str] | None = None
        self._tb_rid: str | None = None
        self._blanks = 0  # blank lines after a finished-looking block, kept in case a chain follows
        self._held_at: float | None = None  # when the block started to look finished
        self._lock = threading.RLock()  # the releaser thread may emit a held block

    @property
    def holding(self) -> bool:
        return self._held_at is not None

    def feed(self, text: str) -> None:
        with self._lock:
            *lines, rest = text.split("\n")
            if lines:
                self._line(self._end_partial(lines[0]))
                for line in lines[1:]:
                    if len(line) > MAX_LINE_CHARS:
                        line = _cut(line[:MAX_LINE_CHARS], _utf8_len(line))
                    self._line(line)
            self._add_partial(rest)
            if self._held_at is not None:
                _releaser.watch(self)

    def _add_partial(self, piece: str) -> None:
        if not piece:
            return
        self._partial_bytes += _utf8_len(piece)
        room = MAX_LINE_CHARS - self._partial_chars
        if len(piece) > room:
            self._partial_cut = True
            piece = piece[:room]
        if piece:
            self._partial.append(piece)
            self._partial_chars += len(piece)

    def _end_partial(self, tail: str) -> str:
        """The line made of what was pending and ``tail``, cut with a mark when it grew too long."""
        if not self._partial:
            return tail if len(tail) <= MAX_LINE_CHARS else _cut(tail[:MAX_LINE_CHARS], _utf8_len(tail))
        self._add_partial(tail)
        line, total, cut = "".join(self._partial), self._partial_bytes, self._partial_cut
        self._partial, self._partial_chars, self._partial_bytes, self._partial_cut = [], 0, 0, False
        return _cut(line, total) if cut else line

    def _line(self, line: str) -> None:
        if self._held_at is not None:
            if not line:
                self._blanks += 1
                return
            if line.startswith(_CHAIN):
                assert self._tb is not None
                self._tb += [""] * self._blanks + [line]
                self._blanks, self._held_at = 0, None
                return
            self._release()
        if self._tb is not None:
            self._tb.append(line)
            if line and not line.startswith((" ", "\t", "Traceback")) and not line.startswith(_CHAIN):
                self._held_at = time.monotonic()
            return
        if line.startswith("Traceback (most recent call last):"):
            self._tb, self._tb_rid = [line], self._tag()
            return
        self._emit(line, False, self._tag())

    def _release(self) -> None:
        if self._tb is not None:
            block, self._tb, self._held_at = self._tb, None, None
            self._emit("\n".join(block), True, self._tb_rid)
        blanks, self._blanks = self._blanks, 0
        for _ in range(blanks):
            self._emit("", False, self._tb_rid)

    def release_stale(self, older_than: float) -> bool:
        """Emit a held block that nothing followed for ``older_than`` s; True when nothing is held any more."""
        with self._lock:
            if self._held_at is not None and time.monotonic() - self._held_at >= older_than:
                self._release()
            return self._held_at is None

    def flush(self) -> None:
        with self._lock:
            self._release()
            if self._partial:
                self._emit(self._end_partial(""), False, self._tag())


class _Releaser:
    """One daemon thread that sends held traceback blocks once it is clear no chained part follows."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groupers: set[_LineGrouper] = set()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, grouper: _LineGrouper) -> None:
        with self._lock:
            self._groupers.add(grouper)
            self._wake.set()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="edgefc-log-release", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(_HOLD_S / 2)
            with self._lock:
                groupers = list(self._groupers)
            for g in groupers:
                if g.release_stale(_HOLD_S):
                    with self._lock:
                        if not g.holding:
                            self._groupers.discard(g)
            with self._lock:
                if not self._groupers:
                    self._wake.clear()


_releaser = _Releaser()


def release_held() -> None:
    """Send every held traceback now (the worker is about to exit)."""
    with _releaser._lock:
        groupers = list(_releaser._groupers)
    for g in groupers:
        g.release_stale(0.0)


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
            g = self._local.grouper = _LineGrouper(self._line, current_request)
        return g

    def _line(self, line: str, is_traceback: bool, request_id: str | None) -> None:
        level = "error" if is_traceback else self._level
        self._emit(level, self._stream, request_id, _sendable(line))

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self._grouper().feed(s)
        return len(s)

    def flush(self) -> None:
        g = getattr(self._local, "grouper", None)
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
            self._emit(record.levelname.lower(), "log", rid, _sendable(message))
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
    grouper = _LineGrouper(lambda line, tb, rid: emit("error" if tb else level, stream, rid, line), current_request)
    # Incremental, so a character split between two reads stays whole; bytes that are not UTF-8 show as \xNN.
    decoder = codecs.getincrementaldecoder("utf-8")("backslashreplace")
    with open(fd, "rb", buffering=0) as pipe:
        while True:
            chunk = pipe.read(65536)
            if not chunk:
                break
            grouper.feed(decoder.decode(chunk))
    grouper.feed(decoder.decode(b"", final=True))
    grouper.flush()


# The gateway's default ``logs.rate_limit_lines_per_s``, for a gateway that does not send its own in ``init``.
DEFAULT_LINES_PER_S = 2000


class LogGate:
    """The function's log budget, kept in the worker: a line over it is dropped before it is framed and sent.

    A flood then costs the gateway no frame to read and decode per dropped line (issue 15's noisy neighbour);
    the gateway's own per-function limit still applies across instances. How many lines were dropped travels
    with the next line sent (``dropped`` in its frame), or alone at exit, so ``log_lines_dropped`` counts them.
    """

    def __init__(self, lines_per_s: float) -> None:
        self._bucket = TokenBucket(float(lines_per_s), time.monotonic())
        self._lock = threading.Lock()
        self._dropped = 0

    def admit(self) -> int | None:
        """None when the line is over budget (counted); else how many lines were dropped before it (to report)."""
        with self._lock:
            if not self._bucket.take(time.monotonic()):
                self._dropped += 1
                return None
            dropped, self._dropped = self._dropped, 0
            return dropped

    def take_dropped(self) -> int:
        """Lines dropped and not yet reported, now reported by the caller."""
        with self._lock:
            dropped, self._dropped = self._dropped, 0
            return dropped


def format_exception(exc: BaseException, skip: int = 0) -> list[str]:
    """The traceback lines of ``exc`` without the ``skip`` outermost frames (the worker's own)."""
    tb = exc.__traceback__
    for _ in range(skip):
        if tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
    return traceback.format_exception(type(exc), exc, tb)


_EDGEFC_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_IMPORTLIB_DIR = os.path.dirname(os.path.abspath(importlib.__file__)) + os.sep


def _internal(filename: str) -> bool:
    return filename.startswith((_EDGEFC_DIR, _IMPORTLIB_DIR, "<frozen importlib"))


def format_user_exception(exc: BaseException) -> list[str]:
    """The traceback lines of ``exc`` from the first frame of the user's code on (no worker or importlib frames)."""
    tb = exc.__traceback__
    while tb is not None and _internal(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    return traceback.format_exception(type(exc), exc, tb)


def now() -> float:
    return time.time()
