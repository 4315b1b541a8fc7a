"""One benchmark figure as CONTRACT §8 stores it, with its baseline, ratio and target; and percentiles.

``figure(...)`` returns ``{"value", "unit", "detail"}`` where ``detail`` always carries ``n``, ``baseline``,
``baseline_what``, ``ratio`` (value / baseline), ``target`` (text, e.g. ``"<= 30 ms"``) and ``ok``, plus
whatever the benchmark adds. The runner's table reads those keys, so figures of every module line up.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Target:
    """A bound on a figure: at most or at least ``value``, and optionally a bound on the ratio to the baseline."""

    op: str  # "<=" or ">="
    value: float
    ratio_op: str | None = None
    ratio: float | None = None

    def text(self, unit: str) -> str:
        out = f"{self.op} {self.value:g} {unit}"
        if self.ratio is not None:
            out += f", {self.ratio_op} {self.ratio:g}x"
        return out

    def met(self, value: float, ratio: float | None) -> bool:
        if not _holds(self.op, value, self.value):
            return False
        if self.ratio is not None and self.ratio_op is not None:
            return ratio is not None and _holds(self.ratio_op, ratio, self.ratio)
        return True


def _holds(op: str, left: float, right: float) -> bool:
    if op == "<=":
        return left <= right
    if op == ">=":
        return left >= right
    raise ValueError(f"unknown comparison {op!r}")


def at_most(value: float) -> Target:
    """Target: the figure is at most ``value``."""
    return Target("<=", value)


def at_least(value: float, *, ratio: float | None = None) -> Target:
    """Target: the figure is at least ``value`` (and at least ``ratio`` times its baseline)."""
    return Target(">=", value, ">=" if ratio is not None else None, ratio)


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation; raises ValueError on no samples."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    pos = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def rounded(value: float) -> float:
    """Three significant digits: enough for figures measured on a noisy machine."""
    if value == 0 or not math.isfinite(value):
        return value
    digits = max(0, 2 - math.floor(math.log10(abs(value))))
    return round(value, digits)


def figure(value: float, unit: str, *, n: int, target: Target | None = None, baseline: float | None = None,
           baseline_what: str | None = None, **detail: Any) -> dict[str, Any]:  # fmt: skip
    """A CONTRACT §8 result entry; ``ratio`` is value / baseline when there is a baseline."""
    ratio = value / baseline if baseline else None
    out: dict[str, Any] = {"n": n}
    if baseline is not None:
        out.update(
            baseline=rounded(baseline), baseline_what=baseline_what, ratio=rounded(ratio) if ratio else None
        )
    if target is not None:
        out.update(target=target.text(unit), ok=target.met(value, ratio))
    out.update(detail)
    return {"value": rounded(value), "unit": unit, "detail": out}


def skipped(unit: str, reason: str, target: Target | None = None) -> dict[str, Any]:
    """An entry for a figure that could not be measured here; ``value`` is null and ``detail.skipped`` says why."""
    detail: dict[str, Any] = {"skipped": reason}
    if target is not None:
        detail["target"] = target.text(unit)
    return {"value": None, "unit": unit, "detail": detail}
