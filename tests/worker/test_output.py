"""The worker's output capture: lines become entries, a traceback (chained too) is one entry, request ids stick."""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefc.worker import output
from edgefc.worker.output import CapturedStream, FrameLogHandler, _LineGrouper, _pump, set_request

Entry = tuple[str, str, "str | None", str]  # (level, stream, request id, message)


def _raise_plain() -> None:
    raise ValueError("bad reading")


def _raise_from() -> None:
    try:
        _raise_plain()
    except ValueError as exc:
        raise RuntimeError("sensor failed") from exc


def _raise_during() -> None:
    try:
        _raise_plain()
    except ValueError:
        readings: dict[str, float] = {}
        readings["missing"] += 1  # an error while handling another: the implicit chain


def _raise_three() -> None:
    try:
        _raise_from()
    except RuntimeError as exc:
        raise OSError("gave up") from exc


def tb_text(raiser) -> str:  # type: ignore[no-untyped-def]
    try:
        raiser()
    except Exception as exc:  # noqa: BLE001
        return "".join(traceback.format_exception(exc))
    raise AssertionError("did not raise")


def raised(exc: BaseException) -> BaseException:
    """``exc`` with a traceback, as an exception that was really raised has."""
    try:
        raise exc
    except BaseException as caught:  # noqa: BLE001
        return caught


def wait_until(predicate, timeout: float = 3.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError("timed out")


class Lines:
    """A grouper with its output collected."""

    def __init__(self, rid: str | None = None) -> None:
        self.out: list[tuple[str, bool, str | None]] = []
        self.g = _LineGrouper(lambda line, tb, r: self.out.append((line, tb, r)), lambda: rid)

    def feed(self, *chunks: str) -> Lines:
        for c in chunks:
            self.g.feed(c)
        return self

    def flushed(self) -> list[tuple[str, bool, str | None]]:
        self.g.flush()
        return self.out


@pytest.fixture
def entries() -> Iterator[list[Entry]]:
    got: list[Entry] = []
    yield got
    set_request(None)


def collector(got: list[Entry]):  # type: ignore[no-untyped-def]
    lock = threading.Lock()

    def emit(level: str, stream: str, rid: str | None, message: str) -> None:
        with lock:
            got.append((level, stream, rid, message))

    return emit


# ---- the line grouper --------------------------------------------------------------------------------------


def test_plain_lines_are_one_entry_each() -> None:
    assert Lines().feed("one\ntwo\n\nthree\n").flushed() == [("one", False, None), ("two", False, None),
                                                            ("", False, None), ("three", False, None)]  # fmt: skip


def test_a_traceback_is_one_entry_between_ordinary_lines() -> None:
    text = tb_text(_raise_plain)
    out = Lines().feed("before\n", text, "after\n").flushed()
    assert [tb for _, tb, _ in out] == [False, True, False]
    assert out[0][0] == "before" and out[2][0] == "after"
    block = out[1][0]
    assert block == text.rstrip("\n")
    assert block.startswith("Traceback (most recent call last):") and block.endswith("ValueError: bad reading")


@pytest.mark.parametrize("raiser", [_raise_from, _raise_during, _raise_three], ids=["from", "during", "three"])
def test_a_chained_traceback_is_one_entry(raiser) -> None:  # type: ignore[no-untyped-def]
    text = tb_text(raiser)
    assert text.count("Traceback (most recent call last):") >= 2
    out = Lines().feed(text, "after\n").flushed()
    assert [(tb, line) for line, tb, _ in out] == [(True, text.rstrip("\n")), (False, "after")]


def test_a_chained_traceback_written_line_by_line_is_one_entry() -> None:
    text = tb_text(_raise_three)
    lines = Lines()
    for line in text.splitlines(keepends=True):
        lines.feed(line)
    assert lines.flushed() == [(text.rstrip("\n"), True, None)]


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_where_writes_split_the_text_does_not_matter(cuts: list[int]) -> None:
    text = "a line\n" + tb_text(_raise_from) + "partial and then the rest\nlast"
    points = sorted({c % (len(text) + 1) for c in cuts})
    chunks = [text[i:j] for i, j in zip([0, *points], [*points, len(text)], strict=True)]
    expected = Lines().feed(text).flushed()
    assert Lines().feed(*chunks).flushed() == expected
    assert [tb for _, tb, _ in expected] == [False, True, False, False]
    assert expected[-1][0] == "last"


def test_partial_lines_join_and_flush_sends_the_rest() -> None:
    lines = Lines().feed("temp", "erature", "=21", ".5\nhumid")
    assert lines.out == [("temperature=21.5", False, None)]
    assert lines.flushed() == [("temperature=21.5", False, None), ("humid", False, None)]
    assert len(lines.flushed()) == 2  # a second flush sends nothing new


def test_a_finished_traceback_that_nothing_follows_is_sent_on_its_own() -> None:
    text = tb_text(_raise_plain)
    lines = Lines(rid="r1").feed(text)
    wait_until(lambda: lines.out)
    assert lines.out == [(text.rstrip("\n"), True, "r1")]


def test_a_traceback_cut_short_by_flush_is_still_one_entry() -> None:
    head = "Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n"
    assert Lines().feed(head).flushed() == [(head.rstrip("\n"), True, None)]


def test_blank_lines_after_a_traceback_are_kept_when_no_chain_follows() -> None:
    text = tb_text(_raise_plain)
    out = Lines().feed(text, "\n\nnext\n").flushed()
    assert out == [(text.rstrip("\n"), True, None), ("", False, None), ("", False, None), ("next", False, None)]


def test_release_held_sends_held_blocks_at_once() -> None:
    text = tb_text(_raise_plain)
    lines = Lines().feed(text)
    output.release_held()
    assert lines.out == [(text.rstrip("\n"), True, None)]


# ---- streams, request ids, logging ---------------------------------------------------------------------------


def test_captured_stream_levels_and_request_id(entries: list[Entry]) -> None:
    out = CapturedStream(collector(entries), "stdout", "info")
    err = CapturedStream(collector(entries), "stderr", "warning")
    set_request("req-1")
    print("hello", file=out)
    print("careful", file=err)
    traceback.print_exception(raised(RuntimeError("boom")), file=err)
    err.flush()
    set_request(None)
    print("between events", file=out)
    assert entries[:2] == [("info", "stdout", "req-1", "hello"), ("warning", "stderr", "req-1", "careful")]
    assert entries[2][:3] == ("error", "stderr", "req-1") and entries[2][3].endswith("RuntimeError: boom")
    assert entries[3] == ("info", "stdout", None, "between events")


def test_request_ids_follow_the_thread_that_wrote(entries: list[Entry]) -> None:
    stream = CapturedStream(collector(entries), "stdout", "info")
    barrier = threading.Barrier(2)

    def event(rid: str) -> None:
        set_request(rid)
        barrier.wait()
        for i in range(50):
            stream.write(f"{rid} line {i}\n")
        traceback.print_exception(raised(ValueError(rid)), file=stream)
        stream.flush()
        barrier.wait()
        set_request(None)

    threads = [threading.Thread(target=event, args=(rid,)) for rid in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(entries) == 102
    for level, _, rid, message in entries:
        assert rid in ("a", "b")
        if level == "error":
            assert message.startswith("Traceback") and message.endswith(f"ValueError: {rid}")
        else:
            assert message.startswith(f"{rid} line ")


def test_a_users_own_thread_is_attributed_to_the_single_event_in_flight(entries: list[Entry]) -> None:
    stream = CapturedStream(collector(entries), "stdout", "info")

    def own_thread(text: str) -> None:
        print(text, file=stream)

    set_request("only")
    t = threading.Thread(target=own_thread, args=("from my thread",))
    t.start()
    t.join()
    done = threading.Event()

    def second_event() -> None:  # a second event in flight: a stray line can no longer be attributed
        set_request("other")
        done.wait(5)
        set_request(None)

    t2 = threading.Thread(target=second_event)
    t2.start()
    wait_until(lambda: len(output._active) == 2)
    t = threading.Thread(target=own_thread, args=("ambiguous",))
    t.start()
    t.join()
    done.set()
    t2.join()
    assert entries == [("info", "stdout", "only", "from my thread"), ("info", "stdout", None, "ambiguous")]


def test_a_held_traceback_keeps_the_request_id_of_the_writer(entries: list[Entry]) -> None:
    stream = CapturedStream(collector(entries), "stderr", "warning")
    set_request("rid-7")
    traceback.print_exception(raised(ValueError("late")), file=stream)  # no flush: the releaser thread sends it
    set_request(None)
    wait_until(lambda: entries)
    assert entries[0][:3] == ("error", "stderr", "rid-7")


def test_logging_record_with_exception_is_one_entry_at_its_level(entries: list[Entry]) -> None:
    logger = logging.getLogger("edgefc-test-output")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = FrameLogHandler(collector(entries))
    logger.addHandler(handler)
    try:
        set_request("log-1")
        logger.warning("valve %s stuck", 3)
        try:
            _raise_from()
        except RuntimeError:
            logger.exception("reading failed")
        logger.info("tagged", extra={"request_id": "explicit"})
    finally:
        logger.removeHandler(handler)
        set_request(None)
    assert entries[0] == ("warning", "log", "log-1", "edgefc-test-output: valve 3 stuck")
    level, stream, rid, message = entries[1]
    assert (level, stream, rid) == ("error", "log", "log-1")
    assert "reading failed" in message and "ValueError: bad reading" in message and "RuntimeError: sensor failed" in message
    assert entries[2][2] == "explicit"
    assert len(entries) == 3


def test_fd_pump_folds_a_chained_traceback_and_keeps_raw_lines(entries: list[Entry]) -> None:
    r, w = os.pipe()
    pump = threading.Thread(target=_pump, args=(r, collector(entries), "stderr", "warning"))
    pump.start()
    text = "raw line from C\n" + tb_text(_raise_during) + "tail without newline"
    for i in range(0, len(text), 37):  # arrives in pieces, as from a pipe
        os.write(w, text[i : i + 37].encode())
    os.close(w)
    pump.join(5)
    assert [(lvl, msg.splitlines()[0] if msg else msg) for lvl, _, _, msg in entries] == [
        ("warning", "raw line from C"), ("error", "Traceback (most recent call last):"), ("warning", "tail without newline"),
    ]  # fmt: skip
    assert "KeyError: 'missing'" in entries[1][3] and "ValueError: bad reading" in entries[1][3]
