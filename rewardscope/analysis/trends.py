"""Least-squares trends and correlations over short series, with a one-sided t-test.

The analyses ask two questions of a series of per-step values: is it rising (or
falling) beyond what its scatter around a straight line explains, and does it
move with another series. ``fit_trend`` answers the first with the ordinary
least-squares slope and its t statistic (n - 2 degrees of freedom); ``pearson``
answers the second.

Usage::

    from rewardscope.analysis.trends import fit_trend, pearson
    trend = fit_trend([1, 2, 3, 4], [0.1, 0.2, 0.35, 0.4])
    trend.slope, trend.rising(alpha=0.05)      # 0.105, True
    pearson([1, 2, 3], [3, 2, 1])              # -1.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=512)
def t_critical(alpha: float, dof: int) -> float:
    """One-sided critical value of Student's t: P(T > value) = alpha."""
    from scipy import stats  # imported on first use: keeps `import rewardscope.analysis` light

    return float(stats.t.isf(alpha, dof))


@dataclass(frozen=True)
class Trend:
    """A least-squares line through n points: slope per unit of x and its t statistic."""

    slope: float
    t: float
    n: int

    def rising(self, alpha: float) -> bool:
        """True when the slope is positive at one-sided significance level alpha."""
        return self.n >= 3 and self.t > t_critical(alpha, self.n - 2)

    def falling(self, alpha: float) -> bool:
        """True when the slope is negative at one-sided significance level alpha."""
        return self.n >= 3 and self.t < -t_critical(alpha, self.n - 2)

    def p_value(self, direction: str) -> float:
        """One-sided p-value of the slope being above 0 (``"rising"``) or below 0 (``"falling"``)."""
        if direction not in ("rising", "falling"):
            raise ValueError("direction must be 'rising' or 'falling'")
        from scipy import stats

        t = self.t if direction == "rising" else -self.t
        return float(stats.t.sf(t, self.n - 2))

    def to_dict(self) -> dict[str, float]:
        return {"slope": self.slope, "t": self.t, "n": self.n,
                "p_rising": self.p_value("rising"), "p_falling": self.p_value("falling")}


def fit_trend(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> Trend | None:
    """Slope of y against x with its t statistic; None below 3 points or when x does not vary.

    Points where y is NaN are left out. A perfect line has t = +-inf; a constant
    y has slope 0 and t = 0.
    """
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    present = ~np.isnan(ys)
    px, py = xs[present], ys[present]
    n = int(px.size)
    if n < 3:
        return None
    dx = px - px.mean()
    dy = py - py.mean()
    sxx = float(dx @ dx)
    if sxx == 0.0:
        return None
    sxy = float(dx @ dy)
    slope = sxy / sxx
    residual = max(float(dy @ dy) - slope * sxy, 0.0)
    if residual == 0.0:
        t = 0.0 if slope == 0.0 else math.copysign(math.inf, slope)
    else:
        t = slope / math.sqrt(residual / (n - 2) / sxx)
    return Trend(slope, t, n)


def pearson(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float | None:
    """Pearson correlation over the points where both are present; None below 3 points or without spread."""
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    present = ~(np.isnan(xs) | np.isnan(ys))
    px, py = xs[present], ys[present]
    if px.size < 3:
        return None
    dx, dy = px - px.mean(), py - py.mean()
    denominator = math.sqrt(float(dx @ dx) * float(dy @ dy))
    if denominator == 0.0:
        return None
    return max(-1.0, min(1.0, float(dx @ dy) / denominator))
