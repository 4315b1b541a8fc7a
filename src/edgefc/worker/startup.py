"""When an instance is ready: its module imported, or its module body settled into running for good.

On Link IoT Edge a function's module body may never return: the core SDK's HelloWorld publishes in a
``while True`` loop at module level, and drivers start their polling loop at import. There the instance is ready
once its runtime is up and the body keeps running. edgefc keeps its own contract for modules that do return
(ready when the import and the initializer are done; a failure then is a failed start that rolls a deployment
back) and tells the two apart without a guess from the code: a body that is still running but has mostly been
waiting for a while (it sleeps, waits on a timer or on the gateway) has settled into its loop, and so the instance
is ready. "Waiting" is what the kernel says: the time the body's thread spent on a CPU *or runnable in the run
queue* (Linux ``schedstat``), so that a body still computing on a busy machine, which gets little CPU but is
always runnable, is not taken for a waiting one. A body still busy after :data:`SETTLE_CAP_S` is taken as running
for good too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

SETTLE_WINDOW_S = 0.3  # how long the body must have been (mostly) waiting
SETTLE_MAX_BUSY = 0.3  # the share of that window it may have been on a CPU or runnable
SETTLE_CAP_S = 10.0  # a body still running after this long is taken as running for good, busy or not
_POLL_S = 0.02


def _busy_clock(thread: threading.Thread) -> Callable[[], float]:
    """Seconds ``thread`` has been on a CPU or waiting for one (Linux schedstat); without schedstat, its CPU
    time alone (which a busy machine can make look idle: the cap then still holds)."""
    path = f"/proc/self/task/{thread.native_id}/schedstat"
    try:
        with open(path, "rb") as f:
            f.read()
    except OSError:
        assert thread.ident is not None
        clock = time.pthread_getcpuclockid(thread.ident)
        return lambda: time.clock_gettime(clock)

    def busy() -> float:
        with open(path, "rb") as f:
            on_cpu, runnable, _ = f.read().split()
        return (int(on_cpu) + int(runnable)) / 1e9

    return busy


class BodyWatch:
    """Watches the thread running a module body; calls ``settled()`` once, when that body has settled.

    ``finish()`` (the body returned or raised) stops the watch; ``settled`` is then never called by it.
    """

    def __init__(self, settled: Callable[[], None], thread: threading.Thread | None = None) -> None:
        self._settled = settled
        self._done = threading.Event()
        self._busy = _busy_clock(thread or threading.current_thread())
        self._thread = threading.Thread(target=self._run, name="edgefc-body-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def finish(self) -> None:
        self._done.set()

    def _run(self) -> None:
        started = time.monotonic()
        try:
            samples = [(started, self._busy())]
        except OSError:  # the thread already ended
            return
        while not self._done.wait(_POLL_S):
            now = time.monotonic()
            try:
                samples.append((now, self._busy()))
            except OSError:  # the thread ended (its statistics went with it): nothing left to watch
                return
            while len(samples) > 2 and now - samples[1][0] >= SETTLE_WINDOW_S:
                samples.pop(0)
            span = now - samples[0][0]
            quiet = span >= SETTLE_WINDOW_S and samples[-1][1] - samples[0][1] <= SETTLE_MAX_BUSY * span
            if quiet or now - started >= SETTLE_CAP_S:
                if not self._done.is_set():
                    self._settled()
                return


__all__ = ["SETTLE_CAP_S", "SETTLE_WINDOW_S", "BodyWatch"]
