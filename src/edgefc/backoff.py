"""The one backoff of edgefc: capped, jittered exponential delays between tries (aiomqtt's reconnect loop).

Every retry loop (keep-alive restarts, broker restarts, reconnects, queue redelivery) takes its delays from
here, so "how long until the next try" means the same thing everywhere and is tested once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


def delay(attempt: int, *, first: float, cap: float, factor: float = 2.0, jitter: float = 0.2,
          rng: random.Random | None = None) -> float:  # fmt: skip
    """The delay before try ``attempt`` (1 = the first retry): ``first·factor^(attempt-1)``, jittered by ±``jitter``
    (a fraction), then capped — the cap is the longest anything ever waits. Raises ValueError for attempt < 1."""
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    base = first * factor ** min(attempt - 1, 64)
    spread = (rng or random).uniform(-jitter, jitter) if jitter else 0.0
    return max(0.0, min(cap, base * (1 + spread)))


@dataclass
class Backoff:
    """A retry loop's state: ``next()`` gives the next delay, ``reset()`` after a success starts over."""

    first: float = 0.1
    cap: float = 60.0
    factor: float = 2.0
    jitter: float = 0.2
    attempts: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next(self) -> float:
        """The delay before the next try (counts it)."""
        self.attempts += 1
        return delay(self.attempts, first=self.first, cap=self.cap, factor=self.factor, jitter=self.jitter, rng=self.rng)

    def reset(self) -> None:
        self.attempts = 0
