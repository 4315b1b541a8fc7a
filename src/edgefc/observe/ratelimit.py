"""The per-function rate limit of log lines: a token bucket."""

from __future__ import annotations


class TokenBucket:
    """``rate`` tokens per second with a burst of one second's worth; ``take`` spends one if there is one."""

    __slots__ = ("rate", "tokens", "stamp")

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.stamp = now

    def take(self, now: float) -> bool:
        """Refill for the time since the last call, then spend one token; False when there is none."""
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
