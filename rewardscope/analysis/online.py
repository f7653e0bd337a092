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
import operator
from collections import deque

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
        points = self.points
        points.append((x, y))
        self._added += 1
        if self._added % self.window == 0:
            if len(points) > self.window:
                points.popleft()
            self._reset_sums()
            return
        if len(points) > self.window:
            old_x, old_y = points.popleft()
            self.sx += x - old_x
            self.sy += y - old_y
            self.sxx += x * x - old_x * old_x
            self.sxy += x * y - old_x * old_y
            self.syy += y * y - old_y * old_y
        else:
            self.sx += x
            self.sy += y
            self.sxx += x * x
            self.sxy += x * y
            self.syy += y * y

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

    def fit(self, x: float) -> tuple[float, float, float]:
        """(slope, t, the line's value at ``x``) in one pass: what ``slope``, ``t`` and ``fitted(x)`` return."""
        n = len(self.points)
        if n < 2:
            return 0.0, 0.0, (self.sy / n if n else math.nan)
        mean_x, mean_y = self.sx / n, self.sy / n
        sxx = self.sxx - self.sx * mean_x
        sxy = self.sxy - self.sx * mean_y
        slope = sxy / sxx if sxx > 0 else 0.0
        at_x = mean_y + slope * (x - mean_x)
        if n < 3 or sxx <= 1e-12 * max(1.0, self.sxx):
            return slope, 0.0, at_x
        syy = self.syy - self.sy * mean_y
        residual = syy - slope * sxy
        if residual <= 1e-12 * max(syy, 1e-300):
            return slope, (0.0 if slope == 0.0 else math.copysign(math.inf, slope)), at_x
        return slope, slope / math.sqrt(residual / (n - 2) / sxx), at_x

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
    """Least-squares slopes of K series sampled at the same x, over the last ``window`` points, in O(K) per point.

    Plain Python floats, not numpy: K is a handful (the reward-hacking detector has 1 + 2F series), and
    a numpy call on a K-vector costs more than the arithmetic. Running sums (Σy, Σxy, Σy² per series;
    Σx, Σx² shared) are updated with the new point and the one leaving the window, x is taken from an
    origin moved to the oldest point and every sum recomputed from the held points every ``window``
    additions, so rounding cannot drift. ``add(x, values)`` with K values, ``t()`` the K t statistics
    (``t_of(i)`` one of them), ``fitted(x)`` the K lines' values.
    """

    def __init__(self, window: int, k: int) -> None:
        if window < 3:
            raise ValueError(f"a trend window needs at least 3 points, got {window}")
        self.window = window
        self.k = k
        self.xs: deque[float] = deque()
        self.rows: deque[list[float]] = deque()
        self._added = 0
        self._origin = 0.0
        self._refresh()

    def _refresh(self) -> None:
        origin = self._origin = self.xs[0] if self.xs else 0.0
        dxs = [x - origin for x in self.xs]
        self.sx = sum(dxs)
        self.sxx = sum(map(operator.mul, dxs, dxs))
        columns = list(zip(*self.rows)) if self.rows else [()] * self.k
        self.sy: list[float] = [sum(column) for column in columns]
        self.sxy: list[float] = [sum(map(operator.mul, dxs, column)) for column in columns]
        self.syy: list[float] = [sum(map(operator.mul, column, column)) for column in columns]
        self._centred: tuple[float, float] | None = None

    @property
    def n(self) -> int:
        return len(self.xs)

    def add(self, x: float, values) -> None:  # values: a list (or another sequence, a 1-D array) of K floats
        row = values if type(values) is list else [float(v) for v in values]
        dx = x - self._origin
        self.xs.append(x)
        self.rows.append(row)
        self._added += 1
        self._centred = None
        if self._added % (4 * self.window) == 0:
            if len(self.xs) > self.window:
                self.xs.popleft()
                self.rows.popleft()
            self._refresh()
            return
        sy, sxy, syy = self.sy, self.sxy, self.syy  # updated in place: an indexed loop is the cheapest in CPython
        if len(self.xs) > self.window:
            old_dx = self.xs.popleft() - self._origin
            old = self.rows.popleft()
            self.sx += dx - old_dx
            self.sxx += dx * dx - old_dx * old_dx
            for i in range(self.k):
                v, o = row[i], old[i]
                sy[i] += v - o
                sxy[i] += dx * v - old_dx * o
                syy[i] += v * v - o * o
        else:
            self.sx += dx
            self.sxx += dx * dx
            for i in range(self.k):
                v = row[i]
                sy[i] += v
                sxy[i] += dx * v
                syy[i] += v * v

    @property
    def oldest_x(self) -> float:
        return self.xs[0] if self.xs else 0.0

    def _centred_x(self) -> tuple[float, float] | None:
        """(mean of x - origin, Sxx), None below 3 points or without spread in x."""
        if self._centred is None:
            n = len(self.xs)
            if n < 3:
                return None
            mean_x = self.sx / n
            sxx = self.sxx - self.sx * mean_x
            self._centred = (mean_x, sxx) if sxx > 1e-12 * max(1.0, self.sxx) else (mean_x, 0.0)
        return self._centred if self._centred[1] > 0.0 else None

    def sxy_of(self, i: int) -> float:
        """Centred Σ(x - x̄)(y - ȳ) of series i: its sign is the slope's."""
        n = len(self.xs)
        return self.sxy[i] - self.sx * self.sy[i] / n if n else 0.0

    def t_of(self, i: int) -> float:
        """t statistic of series i's slope (0 below 3 points or without spread; very large for an exact line)."""
        centred = self._centred_x()
        if centred is None:
            return 0.0
        n = len(self.xs)
        mean_x, sxx = centred
        sy = self.sy[i]
        sxy = self.sxy[i] - mean_x * sy
        syy = self.syy[i] - sy * sy / n
        slope = sxy / sxx
        # An exact line leaves only rounding in the residual: floored at 1e-12 of the spread, its t is huge
        # (about 1e6 and more) instead of infinite, and a constant series keeps t = 0.
        residual = max(syy - slope * sxy, 1e-12 * abs(syy) + 1e-300)
        return slope / math.sqrt(residual / ((n - 2) * sxx))

    def t(self) -> list[float]:
        """t statistics of the K slopes."""
        return [self.t_of(i) for i in range(self.k)]

    def fitted_of(self, i: int, x: float) -> float:
        """Series i's line at ``x`` (its mean where no line can be fitted; NaN without points)."""
        n = len(self.xs)
        if n == 0:
            return math.nan
        mean_x = self.sx / n
        sxx = self.sxx - self.sx * mean_x
        sy = self.sy[i]
        if sxx <= 0.0:
            return sy / n
        return sy / n + (self.sxy[i] - mean_x * sy) / sxx * (x - self._origin - mean_x)

    def fitted(self, x: float) -> list[float]:
        """The K lines' values at ``x`` (the means where no line can be fitted)."""
        n = len(self.xs)
        if n == 0:
            return [math.nan] * self.k
        mean_x = self.sx / n
        sxx = self.sxx - self.sx * mean_x
        dx = x - self._origin - mean_x
        if sxx <= 0.0:
            return [sy / n for sy in self.sy]
        return [sy / n + (sxy - mean_x * sy) / sxx * dx for sy, sxy in zip(self.sy, self.sxy)]
