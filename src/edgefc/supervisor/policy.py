"""When a continuous function's instance ends, how long to wait before the next start, and when to give up."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class RestartDecision:
    delay: float  # seconds before the next start
    crash_loop: bool  # several quick failures in a row: state `backoff`
    give_up: bool  # too many: state `failed` until a redeploy or an explicit restart


@dataclass
class RestartPolicy:
    """Capped, jittered exponential backoff with a crash-loop detector.

    The first restart is immediate; a run that lasted ``stable_after`` seconds resets the count.
    """

    first_delay: float = 0.1
    cap: float = 30.0
    jitter: float = 0.2
    stable_after: float = 10.0
    crash_loop_after: int = 3
    give_up_after: int = 8
    failures: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def on_exit(self, uptime: float) -> RestartDecision:
        if uptime >= self.stable_after:
            self.failures = 0
        self.failures += 1
        if self.failures >= self.give_up_after:
            return RestartDecision(delay=0.0, crash_loop=True, give_up=True)
        if self.failures == 1:
            return RestartDecision(delay=0.0, crash_loop=False, give_up=False)
        delay = self.first_delay * 2 ** min(self.failures - 2, 62)
        # Jitter first, then the cap: the cap is the longest a function ever waits.
        delay = min(self.cap, delay * (1 + self.rng.uniform(-self.jitter, self.jitter)))
        return RestartDecision(delay=delay, crash_loop=self.failures >= self.crash_loop_after, give_up=False)

    def reset(self) -> None:
        self.failures = 0
