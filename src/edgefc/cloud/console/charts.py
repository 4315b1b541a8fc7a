"""Small line charts over time: the geometry of an SVG polyline, drawn by the templates."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

WIDTH = 160
HEIGHT = 36


@dataclass(frozen=True)
class Sparkline:
    """Points of a polyline in a ``WIDTH``×``HEIGHT`` box, and the range they span."""

    points: str
    area: str
    low: float
    high: float
    last: float | None
    count: int


def sparkline(values: Sequence[float | int | None], *, floor: float | None = 0.0,
              width: int = WIDTH, height: int = HEIGHT) -> Sparkline:
    """The polyline of ``values`` (oldest first; None and non-finite values are skipped).

    ``floor`` pins the bottom of the scale (0 for CPU and memory) so a flat line reads as "steady", not "zero".
    """
    clean = [float(v) for v in values if isinstance(v, int | float) and math.isfinite(v)]
    if not clean:
        return Sparkline("", "", 0.0, 0.0, None, 0)
    low = min(clean) if floor is None else min(floor, min(clean))
    high = max(clean)
    span = high - low or 1.0
    step = width / max(len(clean) - 1, 1)
    pad = 2
    coords = [
        (round(i * step, 1), round(pad + (height - 2 * pad) * (1 - (v - low) / span), 1))
        for i, v in enumerate(clean)
    ]
    if len(coords) == 1:
        coords.append((float(width), coords[0][1]))
    points = " ".join(f"{x},{y}" for x, y in coords)
    area = f"0,{height} {points} {coords[-1][0]},{height}"
    return Sparkline(points, area, low, high, clean[-1], len(clean))
