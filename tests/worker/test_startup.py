"""BodyWatch: a module body that settles into a loop makes the instance ready; one that computes does not."""

from __future__ import annotations

import threading
import time

from edgefc.worker import startup
from edgefc.worker.startup import BodyWatch


def watch(body: str, seconds: float) -> float | None:
    """Run ``body`` (sleep or spin) on a thread for ``seconds``; when did the watch call it settled (None: never)."""
    settled = threading.Event()
    at: list[float] = []
    started = threading.Event()

    def run() -> None:
        started.set()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if body == "sleep":
                time.sleep(0.01)

    thread = threading.Thread(target=run)
    thread.start()
    started.wait(5)
    t0 = time.monotonic()
    w = BodyWatch(lambda: (at.append(time.monotonic() - t0), settled.set()), thread)
    w.start()
    thread.join(10)
    w.finish()
    return at[0] if at else None


def test_a_sleeping_loop_settles_within_about_the_window() -> None:
    when = watch("sleep", 2.0)
    assert when is not None and startup.SETTLE_WINDOW_S <= when < 1.5


def test_a_body_that_computes_and_returns_is_not_called_settled() -> None:
    assert watch("spin", 0.6) is None
