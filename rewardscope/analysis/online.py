"""O(1) building blocks of the online detectors: a sliding least-squares trend, a CUSUM, a held verdict.

Every detector reads one step at a time and must cost a few microseconds, so these
keep running sums instead of refitting arrays:

- ``SlidingTrend``: least-squares line through the last ``window`` (x, y) points from
  running sums (Σx, Σy, Σxy, Σx², Σy², refreshed from the points every ``window``
  additions so rounding cannot drift); its slope t statistic has n - 2 degrees of
  freedom and is compared with the one-sided critical value ``t_critical(alpha, n - 2)``
  (cached per n): a slope whose one-sided confidence interval excludes zero.
- ``Cusum``: the one-sided CUSUM ``S = max(0, S + x - k)``, signalling when ``S >= h``; fed
  with z-scores (mean 0, sd 1 when nothing is wrong), its in-control run length is known
  (k = 0.5, h = 8: about 10^4 steps between false signals), and its delay after a shift of
  the mean to d > k is about ``h / (d - k)`` steps.
- ``HeldVerdict``: the memory of a verdict. It turns on when the trigger holds on
  ``confirm`` consecutive steps and then stays on, whatever the trigger does, until the
  detector reports recovery; flapping (on, off, on while the failure persists) is what
  it prevents.

Usage::

    from rewardscope.analysis.online import Cusum, SlidingTrend
    trend = SlidingTrend(5)
    for x, y in enumerate([1.0, 2.0, 2.9, 4.1, 5.0]):
        trend.add(x, y)
    round(trend.slope, 3), trend.rising(0.01)     # (1.0, True)
    cusum = Cusum(k=0.5, h=2.0)
    [cusum.add(z) for z in (1.0, 1.5, 1.0)]        # [False, False, True]
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from .trends import t_critical


class SlidingTrend:
    """Least-squares slope of the last ``window`` points, updated in O(1) per point."""

    def __init__(self, window: int) -> None:
        if window < 3:
            raise ValueError(f"a trend window needs at least 3 points, got {window}")
        self.window = window
        self.points: deque[tuple[float, float]] = deque()
        self._added = 0
        self._reset_sums()

    def _reset_sums(self) -> None:
        self.sx = self.sy = self.sxx = self.sxy = self.syy = 0.0
        for x, y in self.points:
            self._accumulate(x, y, 1.0)

    def _accumulate(self, x: float, y: float, sign: float) -> None:
        self.sx += sign * x
        self.sy += sign * y
        self.sxx += sign * x * x
        self.sxy += sign * x * y
        self.syy += sign * y * y

    def add(self, x: float, y: float) -> None:
        self.points.append((x, y))
        self._accumulate(x, y, 1.0)
        if len(self.points) > self.window:
            old_x, old_y = self.points.popleft()
            self._accumulate(old_x, old_y, -1.0)
        self._added += 1
        if self._added % self.window == 0:
            self._reset_sums()

    def drop_before(self, x: float) -> None:
        """Forget the points whose x is below ``x`` (keeps a sparse series inside another's window)."""
        dropped = False
        while self.points and self.points[0][0] < x:
            old_x, old_y = self.points.popleft()
            self._accumulate(old_x, old_y, -1.0)
            dropped = True
        if dropped and not self.points:
            self._reset_sums()

    @property
    def n(self) -> int:
        return len(self.points)

    def _centred(self) -> tuple[float, float, float]:
        n = len(self.points)
        sxx = self.sxx - self.sx * self.sx / n
        sxy = self.sxy - self.sx * self.sy / n
        syy = self.syy - self.sy * self.sy / n
        return sxx, sxy, syy

    @property
    def slope(self) -> float:
        if len(self.points) < 2:
            return 0.0
        sxx, sxy, _ = self._centred()
        return sxy / sxx if sxx > 0 else 0.0

    @property
    def t(self) -> float:
        """t statistic of the slope (0 below 3 points or without spread in x; +-inf for a perfect line)."""
        n = len(self.points)
        if n < 3:
            return 0.0
        sxx, sxy, syy = self._centred()
        if sxx <= 1e-12 * max(1.0, self.sxx):
            return 0.0
        slope = sxy / sxx
        residual = syy - slope * sxy
        # Rounding leaves a tiny residual for an exact line: below 1e-12 of the spread, it is one.
        if residual <= 1e-12 * max(syy, 1e-300):
            return 0.0 if slope == 0.0 else math.copysign(math.inf, slope)
        return slope / math.sqrt(residual / (n - 2) / sxx)

    def fitted(self, x: float) -> float:
        """The line's value at ``x`` (the mean of y when no line can be fitted)."""
        n = len(self.points)
        if n == 0:
            return math.nan
        return self.sy / n + self.slope * (x - self.sx / n)

    def evidence(self, alpha: float, rising: bool) -> float:
        """t over its one-sided critical value, in the asked direction (>= 1: significant at ``alpha``)."""
        if len(self.points) < 3:
            return 0.0
        t = self.t if rising else -self.t
        return t / t_critical(alpha, len(self.points) - 2)

    def rising(self, alpha: float) -> bool:
        return self.evidence(alpha, True) > 1.0

    def falling(self, alpha: float) -> bool:
        return self.evidence(alpha, False) > 1.0


class Cusum:
    """One-sided upper CUSUM of a stream: ``S = min(cap, max(0, S + x - k))``; signals at ``S >= h``.

    ``cap`` (default 2h) bounds how long the evidence of a long failure takes to drain after it ends.
    """

    def __init__(self, k: float, h: float, cap: float | None = None) -> None:
        if h <= 0:
            raise ValueError(f"the CUSUM threshold h must be positive, got {h}")
        self.k = k
        self.h = h
        self.cap = 2.0 * h if cap is None else cap
        self.s = 0.0

    def add(self, x: float) -> bool:
        self.s = min(self.cap, max(0.0, self.s + x - self.k))
        return self.s >= self.h

    @property
    def evidence(self) -> float:
        """S / h clipped to [0, 1]."""
        return min(1.0, self.s / self.h)


class HeldVerdict:
    """A verdict that needs ``confirm`` consecutive triggering steps to turn on and recovery to turn off."""

    def __init__(self, confirm: int = 1) -> None:
        if confirm < 1:
            raise ValueError(f"confirm must be at least 1 step, got {confirm}")
        self.confirm = confirm
        self.on = False
        self.streak = 0
        self.fired_at: int | None = None

    def update(self, step: int, triggered: bool, recovered: bool) -> bool:
        """Feed one step: whether the trigger holds and whether recovery is shown; returns the verdict."""
        self.streak = self.streak + 1 if triggered else 0
        if not self.on and self.streak >= self.confirm:
            self.on = True
            self.fired_at = step
        elif self.on and recovered and not triggered:
            self.on = False
            self.fired_at = None
        return self.on


class MultiTrend:
    """Least-squares slopes of K series sampled at the same x, over the last ``window`` points, vectorised.

    The points sit in a ring buffer (window x K); each question is answered from it with one
    matrix product (Σy and Σxy of every series at once) instead of K running sums, so K slopes
    cost about as much as one: ``add(x, values)`` with a length-K vector, ``t()`` the K t
    statistics, ``fitted(x)`` the K lines' values.
    """

    def __init__(self, window: int, k: int) -> None:
        if window < 3:
            raise ValueError(f"a trend window needs at least 3 points, got {window}")
        self.window = window
        self.k = k
        self.basis = np.zeros((2, window))  # rows: 1 for a held point (0 for an empty slot), its x
        self.ys = np.zeros((window, k))
        self.n = 0
        self._next = 0

    def add(self, x: float, values: np.ndarray) -> None:
        i = self._next
        self.basis[0, i], self.basis[1, i] = 1.0, x
        self.ys[i] = values
        self._next = (i + 1) % self.window
        self.n = min(self.n + 1, self.window)

    @property
    def oldest_x(self) -> float:
        return float(self.basis[1, self._next if self.n == self.window else 0])

    def _centred(self) -> tuple[float, float, np.ndarray, np.ndarray]:
        """(mean x, Sxx, Sxy per series, mean y per series) of the held points."""
        n = self.n
        xs = self.basis[1]
        mean_x = float(xs.sum()) / n
        sxx = float(xs @ xs) - n * mean_x * mean_x
        sums = self.basis @ self.ys  # row 0: Σy, row 1: Σxy
        mean_y = sums[0] / n
        return mean_x, sxx, sums[1] - n * mean_x * mean_y, mean_y

    def t(self) -> np.ndarray:
        """t statistics of the K slopes (0 below 3 points or without spread; very large for exact lines)."""
        n = self.n
        if n < 3:
            return np.zeros(self.k)
        mean_x, sxx, sxy, mean_y = self._centred()
        if sxx <= 1e-12 * max(1.0, mean_x * mean_x * n):
            return np.zeros(self.k)
        syy = np.einsum("ij,ij->j", self.ys, self.ys) - n * mean_y * mean_y
        slope = sxy / sxx
        # An exact line leaves only rounding in the residual: floored at 1e-12 of the spread, its t is huge
        # (about 1e6 and more) instead of infinite, and a constant series keeps t = 0.
        residual = np.maximum(syy - slope * sxy, 1e-12 * np.abs(syy) + 1e-300)
        return slope / np.sqrt(residual / ((n - 2) * sxx))

    def fitted(self, x: float) -> np.ndarray:
        """The K lines' values at ``x``."""
        mean_x, sxx, sxy, mean_y = self._centred()
        slope = sxy / sxx if sxx > 0 else np.zeros(self.k)
        return mean_y + slope * (x - mean_x)
