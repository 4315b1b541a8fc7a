"""When an instance is ready: its module imported, or its module body settled into running for good.

On Link IoT Edge a function's module body may never return: the core SDK's HelloWorld publishes in a
``while True`` loop at module level, and drivers start their polling loop at import. There the instance is ready
once its runtime is up and the body keeps running. edgefc keeps its own contract for modules that do return
(ready when the import and the initializer are done; a failure then is a failed start that rolls a deployment
back) and tells the two apart without a guess from the code: a body that is still running and has been waiting
for a while (it sleeps, waits on a timer or on the gateway: its thread used almost no CPU, or the kernel mostly
found it sleeping rather than runnable) has settled into its loop, and so the instance is ready. A body that
keeps computing (runnable, even when a busy machine gives it only a share of a CPU) is taken as still importing
until :data:`SETTLE_CAP_S`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

SETTLE_WINDOW_S = 0.3  # how long the body must have been (mostly) asleep
SETTLE_MIN_ASLEEP = 0.8  # settled: this share of that window's samples found it asleep, or…
SETTLE_MAX_CPU = 0.1  # …it used at most this share of a CPU (a woken thread waits runnable on a busy machine)
SETTLE_CAP_S = 10.0  # a body still running after this long is taken as running for good, busy or not
_POLL_S = 0.02


def _asleep_probe(thread: threading.Thread) -> Callable[[], bool]:
    """Whether ``thread`` is asleep now (Linux: its state in /proc is S, a wait it chose); without /proc, a
    probe that never says so (the cap then makes the instance ready)."""
    path = f"/proc/self/task/{thread.native_id}/stat"

    def asleep() -> bool:
        try:
            with open(path, "rb") as f:
                stat = f.read()
        except OSError:
            return False
        # "pid (comm) S ...": the comm may hold spaces and parentheses, the state follows the last ")".
        return stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] == b"S"

    return asleep


def _thread_cpu(thread: threading.Thread) -> Callable[[], float]:
    """A clock of the CPU time ``thread`` has used; without per-thread clocks, the process's (errs to busy)."""
    try:
        assert thread.ident is not None
        clock = time.pthread_getcpuclockid(thread.ident)
    except (AttributeError, AssertionError, OSError):
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
        self._asleep = _asleep_probe(target)
        self._cpu = _thread_cpu(target)
        self._thread = threading.Thread(target=self._run, name="edgefc-body-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def finish(self) -> None:
        self._done.set()

    def _run(self) -> None:
        started = time.monotonic()
        try:
            samples: list[tuple[float, float, bool]] = [(started, self._cpu(), False)]
        except OSError:
            return
        while not self._done.wait(_POLL_S):
            now = time.monotonic()
            try:
                samples.append((now, self._cpu(), self._asleep()))
            except OSError:  # the thread ended (its CPU clock went with it): nothing left to watch
                return
            while len(samples) > 2 and now - samples[1][0] >= SETTLE_WINDOW_S:
                samples.pop(0)
            span = now - samples[0][0]
            cpu = samples[-1][1] - samples[0][1]
            asleep = sum(1 for _, _, s in samples[1:] if s)
            quiet = cpu <= SETTLE_MAX_CPU * span or asleep >= SETTLE_MIN_ASLEEP * (len(samples) - 1)
            settled = span >= SETTLE_WINDOW_S and quiet
            if settled or now - started >= SETTLE_CAP_S:
                if not self._done.is_set():
                    self._settled()
                return


__all__ = ["SETTLE_CAP_S", "SETTLE_WINDOW_S", "BodyWatch"]
