"""The mining curve as inline SVG coordinates: the group's average and upper bound over the batches."""

from __future__ import annotations

from dataclasses import dataclass

WIDTH, HEIGHT, MARGIN = 560, 170, 34


@dataclass(frozen=True)
class Curve:
    average: str  # SVG polyline points
    bound: str
    low: float  # the value at the bottom edge
    high: float  # at the top edge
    first: int  # batch numbers at the left and right edges
    last: int
    width: int = WIDTH
    height: int = HEIGHT
    margin: int = MARGIN

    @property
    def bottom(self) -> int:
        return self.height - self.margin // 2

    @property
    def right(self) -> int:
        return self.width - 8


def curve(analyses) -> Curve | None:
    """`analyses`: (batch, avg, hi) of each finished batch, in order; None with fewer than two."""
    points = [(a.batch, a.avg, a.hi) for a in analyses]
    if len(points) < 2:
        return None
    values = [v for _, avg, hi in points for v in (avg, hi)]
    low, high = min(values), max(values)
    pad = max((high - low) * 0.08, 0.005)
    low, high = max(0.0, low - pad), high + pad
    first, last = points[0][0], points[-1][0]

    def xy(batch: int, value: float) -> str:
        x = MARGIN + (WIDTH - 8 - MARGIN) * (batch - first) / max(last - first, 1)
        y = (HEIGHT - MARGIN // 2) - (HEIGHT - MARGIN) * (value - low) / (high - low)
        return f"{x:.1f},{y:.1f}"

    return Curve(
        " ".join(xy(b, avg) for b, avg, _ in points),
        " ".join(xy(b, hi) for b, _, hi in points),
        low,
        high,
        first,
        last,
    )
