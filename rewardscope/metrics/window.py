"""Bounded per-step history: the last W stored rows, and slopes over them.

Memory is O(window), never O(steps). The run store on disk is the full history.

Usage::

    import numpy as np
    from rewardscope.metrics.window import RollingWindow
    w = RollingWindow(width=1, capacity=3)
    for step, v in enumerate([1.0, 2.0, 4.0, 8.0]):
        w.append(step, np.array([v]))
    w.column(0).tolist()        # [2.0, 4.0, 8.0]
    w.slope(0, last=2)          # 4.0 per step
"""

from __future__ import annotations

import numpy as np


class RollingWindow:
    """Ring buffer of the latest ``capacity`` rows with their step numbers."""

    def __init__(self, width: int, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("window capacity must be at least 1")
        self.capacity = capacity
        self._rows = np.full((capacity, width), np.nan)
        self._steps = np.zeros(capacity, dtype=np.int64)
        self._next = 0
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def append(self, step: int, row: np.ndarray) -> None:
        self._rows[self._next] = row
        self._steps[self._next] = step
        self._next = (self._next + 1) % self.capacity
        self._size = min(self._size + 1, self.capacity)

    def _order(self, last: int | None) -> np.ndarray:
        n = self._size if last is None else min(last, self._size)
        return (np.arange(self._next - n, self._next)) % self.capacity

    def steps(self, last: int | None = None) -> np.ndarray:
        return self._steps[self._order(last)]

    def column(self, index: int, last: int | None = None) -> np.ndarray:
        """Values of one column, oldest first (NaN where absent)."""
        return self._rows[self._order(last), index]

    def rows(self, last: int | None = None) -> np.ndarray:
        return self._rows[self._order(last)]

    def slope(self, index: int, last: int) -> float | None:
        """Least-squares slope per step of a column over its last ``last`` rows.

        None until the window holds ``last`` rows with at least two present values:
        a trend over fewer points than asked for would fire on noise.
        """
        return self.slopes(np.array([index]), last)[0]

    def slopes(self, indices: np.ndarray, last: int) -> list[float | None]:
        """``slope`` of several columns at once, vectorised over the columns (absent values ignored)."""
        if self._size < last:
            return [None] * len(indices)
        order = self._order(last)
        y = self._rows[order][:, indices]  # (last, columns)
        x = self._steps[order].astype(np.float64)
        x -= x.mean()
        denominator = float(x @ x)
        present = ~np.isnan(y)
        if present.all():  # the common case: x is centred, so x @ y alone gives the covariance
            if denominator == 0.0:
                return [None] * len(indices)
            return (x @ y / denominator).tolist()
        counts = present.sum(axis=0)
        x = x[:, None]
        y = np.where(present, y, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            x_mean = (x * present).sum(axis=0) / counts
            y_mean = y.sum(axis=0) / counts
            dx = np.where(present, x - x_mean, 0.0)
            denominator_by_column = (dx * dx).sum(axis=0)
            slopes = (dx * (y - y_mean)).sum(axis=0) / denominator_by_column
        defined = (counts >= 2) & (denominator_by_column > 0)
        return [float(v) if ok else None for v, ok in zip(slopes.tolist(), defined.tolist())]

    def drop_last(self) -> None:
        """Forget the latest row (a step whose recording failed and will be retried)."""
        if self._size:
            self._next = (self._next - 1) % self.capacity
            self._rows[self._next] = np.nan
            self._size -= 1


TrendKey = tuple[str, str, int]  # (metric, reward_fn or "", window in steps)


class TrendSet:
    """The rolling window of a run and the slopes its trend rules read, grouped by window length.

    ``keys`` are (metric, reward_fn or "", window) and ``columns`` their column in the row;
    each step, ``slopes()`` gives every defined slope from one vectorised pass per window length.
    """

    def __init__(self, width: int, keys: list[TrendKey], columns: list[int], window_size: int) -> None:
        self.keys = list(keys)
        self._groups: dict[int, tuple[list[TrendKey], np.ndarray]] = {}
        for key, column in zip(keys, columns):
            group_keys, group_columns = self._groups.get(key[2], ([], np.zeros(0, dtype=np.intp)))
            self._groups[key[2]] = (group_keys + [key], np.append(group_columns, column))
        self.window = RollingWindow(width, max([window_size] + [k[2] for k in keys]))

    def append(self, step: int, row: np.ndarray) -> dict[TrendKey, float]:
        """Add the step's row; return the slopes defined now (a window not yet full has none)."""
        self.window.append(step, row)
        slopes: dict[TrendKey, float] = {}
        for window, (keys, columns) in self._groups.items():
            for key, value in zip(keys, self.window.slopes(columns, window)):
                if value is not None:
                    slopes[key] = value
        return slopes
