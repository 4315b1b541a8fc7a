"""When a continuous function's instance ends, how long to wait before the next start.

A gateway on a plant floor has nobody to type ``restart``: by default a continuous function is restarted
whenever it exits, for ever, with a capped backoff (the product edgefc follows does the same). ``give_up_after``
exists for callers that want a crash loop to end in ``failed``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from edgefc.backoff import delay

DEFAULT_CAP_S = 60.0


@dataclass
class RestartDecision:
    delay: float  # seconds before the next start
    crash_loop: bool  # several quick failures in a row
    give_up: bool  # too many: state `failed` until a redeploy or an explicit restart


@dataclass
class RestartPolicy:
    """Capped, jittered exponential backoff (:mod:`edgefc.backoff`) with a crash-loop detector.

    The first restart is immediate; a run that lasted ``stable_after`` seconds resets the count.
    """

    first_delay: float = 0.1
    cap: float = DEFAULT_CAP_S
    jitter: float = 0.2
    stable_after: float = 10.0
    crash_loop_after: int = 3
    give_up_after: int | None = None  # None: never
    failures: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def on_exit(self, uptime: float) -> RestartDecision:
        if uptime >= self.stable_after:
            self.failures = 0
        self.failures += 1
        if self.give_up_after is not None and self.failures >= self.give_up_after:
            return RestartDecision(delay=0.0, crash_loop=True, give_up=True)
        if self.failures == 1:
            return RestartDecision(delay=0.0, crash_loop=False, give_up=False)
        wait = delay(self.failures - 1, first=self.first_delay, cap=self.cap, jitter=self.jitter, rng=self.rng)
        return RestartDecision(delay=wait, crash_loop=self.failures >= self.crash_loop_after, give_up=False)

    def reset(self) -> None:
        self.failures = 0
