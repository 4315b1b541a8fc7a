"""Capped, jittered exponential backoff: the one retry pacing of the messaging side.

Used by the MQTT links' reconnects, the managed broker's restarts, a router lane waiting for an absent target
and the durable queue's retry schedule. The core engineer's shared backoff module (issue 14) was not on main
when this was written; once it lands, this module should become a thin re-export of it.

Jitter is "equal jitter" (aiomqtt's reconnect loop and AWS's architecture note): the delay is drawn from
``[d/2, d]`` so a fleet that lost one broker does not come back in lockstep, yet never waits less than half.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


def backoff_delay(attempt: int, first: float, cap: float, rng: random.Random | None = None) -> float:
    """The jittered wait before retry number ``attempt`` (1, 2, …): ``first * 2**(attempt-1)`` capped at ``cap``.

    Raises ValueError for an ``attempt`` below 1 or a negative ``first``/``cap``.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be at least 1, got {attempt}")
    if first < 0 or cap < 0:
        raise ValueError("first and cap must not be negative")
    base = min(cap, first * 2 ** min(attempt - 1, 62))
    return base * (0.5 + (rng or random).random() / 2)


@dataclass
class Backoff:
    """A retry loop's pacing: ``next()`` is the wait before the next try, ``reset()`` after a success."""

    first: float = 0.1
    cap: float = 30.0
    attempts: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next(self) -> float:
        """The jittered, capped wait before the next attempt; each call doubles the base up to ``cap``."""
        self.attempts += 1
        return backoff_delay(self.attempts, self.first, self.cap, self.rng)

    def reset(self) -> None:
        """Start over from ``first`` (the thing worked)."""
        self.attempts = 0
