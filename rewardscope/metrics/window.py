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

from collections.abc import Iterable

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
    """The rolling window of a run and the slopes its trend rules read.

    ``keys`` are (metric, reward_fn or "", window) and ``columns`` their column in the row.
    Steps almost always arrive one apart; then a window's least-squares slope is a fixed
    weighted sum of its values, and every slope of the step is one matrix product over a
    contiguous view of the last rows (kept twice in a buffer of twice the capacity, so the
    last rows are always one slice). Metrics absent on some steps of the window, and
    windows with gaps in the steps, get RollingWindow.slopes, which handles both.
    """

    def __init__(self, width: int, keys: list[TrendKey], columns: list[int], window_size: int) -> None:
        self.keys = list(keys)
        self.window = RollingWindow(width, max([window_size] + [k[2] for k in keys]))
        self._columns = list(columns)
        lengths = sorted({k[2] for k in keys})
        self._used = np.array(sorted(set(columns)), dtype=np.intp)  # the row columns that trends read
        capacity = max(lengths, default=1)
        self._capacity = capacity
        self._buffer = np.full((2 * capacity, self._used.size), np.nan)
        self._steps = np.zeros(2 * capacity, dtype=np.int64)
        self._next = 0
        self._size = 0
        # weights[g] @ (the last `capacity` values, oldest first) = the slope over the last lengths[g] of them.
        self._weights = np.zeros((len(lengths), capacity))
        for g, length in enumerate(lengths):
            x = np.arange(length, dtype=np.float64)
            x -= x.mean()
            self._weights[g, capacity - length:] = x / (x @ x)
        group_of = {length: g for g, length in enumerate(lengths)}
        used_of = {int(c): u for u, c in enumerate(self._used)}
        self._pick = (np.array([group_of[k[2]] for k in keys], dtype=np.intp),
                      np.array([used_of[c] for c in columns], dtype=np.intp))

    def append(self, step: int, row: np.ndarray) -> dict[TrendKey, float]:
        """Add the step's row; return the slopes defined now (a window not yet full has none)."""
        self.window.append(step, row)
        if not self.keys:
            return {}
        values = row[self._used]
        p, capacity = self._next, self._capacity
        self._buffer[p] = values
        self._buffer[p + capacity] = values
        self._steps[p] = self._steps[p + capacity] = step
        self._next = (p + 1) % capacity
        self._size = min(self._size + 1, capacity)
        start = p + 1  # the last `capacity` rows, oldest first, are buffer[start : start + capacity]
        steps = self._steps[start:start + capacity]
        if self._size < capacity or steps[-1] - steps[0] != capacity - 1:
            return self._general_slopes(range(len(self.keys)))
        recent = self._buffer[start:start + capacity]
        present = ~np.isnan(recent)
        complete = present.all(axis=0)
        if complete.all():
            return dict(zip(self.keys, (self._weights @ recent)[self._pick].tolist()))
        # Metrics absent on some steps of the window (KL not passed, eval accuracy): the general path, for them only.
        groups, used = self._pick
        values = (self._weights @ np.where(present, recent, 0.0))[groups, used].tolist()
        whole = complete[used].tolist()
        slopes = {key: value for key, value, ok in zip(self.keys, values, whole) if ok}
        partial = present.any(axis=0)[used].tolist()
        slopes.update(self._general_slopes([i for i, (ok, some) in enumerate(zip(whole, partial)) if some and not ok]))
        return slopes

    def _general_slopes(self, indices: Iterable[int]) -> dict[TrendKey, float]:
        slopes: dict[TrendKey, float] = {}
        by_length: dict[int, list[int]] = {}
        for i in indices:
            by_length.setdefault(self.keys[i][2], []).append(i)
        for length, chosen in by_length.items():
            columns = np.array([self._columns[i] for i in chosen], dtype=np.intp)
            for i, value in zip(chosen, self.window.slopes(columns, length)):
                if value is not None:
                    slopes[self.keys[i]] = value
        return slopes

    def drop_last(self) -> None:
        """Forget the latest row (a step whose recording failed and will be retried)."""
        self.window.drop_last()
        if self._size:
            self._next = (self._next - 1) % self._capacity
            self._buffer[self._next] = self._buffer[self._next + self._capacity] = np.nan
            self._size -= 1
