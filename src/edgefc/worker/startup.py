"""When an instance is ready: its module imported, or its module body settled into running for good.

On Link IoT Edge a function's module body may never return: the core SDK's HelloWorld publishes in a
``while True`` loop at module level, and drivers start their polling loop at import. There the instance is ready
once its runtime is up and the body keeps running. edgefc keeps its own contract for modules that do return
(ready when the import and the initializer are done; a failure then is a failed start that rolls a deployment
back) and tells the two apart without a guess from the code: a body that is still running and has stopped
using the CPU (it sleeps, waits on a timer or on the gateway) has settled into its loop, and so the instance is
ready. A body that keeps the CPU busy is taken as still importing until :data:`SETTLE_CAP_S`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

SETTLE_WINDOW_S = 0.3  # how long the body must have been (mostly) idle
SETTLE_MAX_BUSY = 0.3  # the share of that window it may have spent on the CPU
SETTLE_CAP_S = 10.0  # a body still running after this long is taken as running for good, busy or not
_POLL_S = 0.02


def _thread_cpu(ident: int) -> Callable[[], float]:
    """A clock of the CPU time thread ``ident`` has used (Linux: its per-thread CPU clock)."""
    try:
        clock = time.pthread_getcpuclockid(ident)
    except (AttributeError, OSError):  # no per-thread clocks: take the process's, which errs towards "busy"
        return time.process_time
    return lambda: time.clock_gettime(clock)


class BodyWatch:
    """Watches the thread running a module body; calls ``settled()`` once, when that body has settled.

    ``finish()`` (the body returned or raised) stops the watch; ``settled`` is then never called by it.
    """

    def __init__(self, settled: Callable[[], None], thread: threading.Thread | None = None) -> None:
        self._settled = settled
        self._done = threading.Event()
        target = thread or threading.current_thread()
        assert target.ident is not None
        self._cpu = _thread_cpu(target.ident)
        self._thread = threading.Thread(target=self._run, name="edgefc-body-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def finish(self) -> None:
        self._done.set()

    def _run(self) -> None:
        started = time.monotonic()
        samples: list[tuple[float, float]] = [(started, self._cpu())]
        while not self._done.wait(_POLL_S):
            now, cpu = time.monotonic(), self._cpu()
            samples.append((now, cpu))
            while len(samples) > 2 and now - samples[1][0] >= SETTLE_WINDOW_S:
                samples.pop(0)
            first_at, first_cpu = samples[0]
            span = now - first_at
            idle = span >= SETTLE_WINDOW_S and (cpu - first_cpu) <= SETTLE_MAX_BUSY * span
            if idle or now - started >= SETTLE_CAP_S:
                if not self._done.is_set():
                    self._settled()
                return


__all__ = ["SETTLE_CAP_S", "SETTLE_WINDOW_S", "BodyWatch"]
