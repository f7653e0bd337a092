"""Classic Prometheus histograms kept as numpy arrays, several rows at once.

A BucketLayout says, for each row (one per reward function, say), its upper
bounds; ``counts`` sorts a whole (rows x samples) array into buckets in a few
vectorised operations and returns this batch's counts (pure). A HistogramBank
accumulates those counts; they are made cumulative only when read, as the
exposition format wants.

Rows whose bounds are equally spaced (rewards with a declared range) are bucketed
by arithmetic; other rows by one ``searchsorted`` with the rows shifted apart on
the number line. A value within 1e-9 of a bucket width above a bound counts in the
bucket below: the tolerance that lets decimal rewards sitting on a bound (0.2,
0.25) land in the bucket whose ``le`` they equal despite float rounding.

Usage::

    import numpy as np
    from rewardscope.metrics.histograms import BucketLayout, HistogramBank, linear_edges
    bank = HistogramBank(BucketLayout([linear_edges(0.0, 1.0, 4)]))
    bank.observe(np.array([[0.0, 0.3, 1.0, 7.0]]))
    bank.cumulative_counts()[0].tolist()    # le = 0, 0.25, 0.5, 0.75, 1, +Inf -> [1, 1, 2, 2, 3, 4]
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

# Buckets for rewards whose function declares no range: symmetric, finer near 0.
DEFAULT_REWARD_EDGES = np.array([-10, -5, -3, -2, -1, -0.5, -0.25, -0.1, 0, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10], dtype=np.float64)
DEFAULT_LENGTH_EDGES = np.array([2.0 ** k for k in range(2, 15)])  # 4 .. 16384 tokens
STEP_DURATION_EDGES = np.array([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600], dtype=np.float64)
REWARD_BUCKETS = 20
_ON_BOUND_TOLERANCE = 1e-9
MAX_GRID_CELLS = 4096


def linear_edges(low: float, high: float, buckets: int = REWARD_BUCKETS) -> np.ndarray:
    """``buckets + 1`` upper bounds from low to high, rounded so decimal rewards land on them exactly."""
    return np.round(np.linspace(low, high, buckets + 1), 10)


def _grid_step(edges: np.ndarray) -> float | None:
    """The coarsest step d with every edge at edges[0] + k * d (k an integer), when that grid has at most
    MAX_GRID_CELLS cells; None otherwise. The default reward edges (-10, -5, ..., -0.1, 0, 0.1, ...) sit on a
    grid of 0.05: 400 cells."""
    diffs = np.diff(edges)
    if diffs.size == 0:
        return None
    fractions = [Fraction(float(x)).limit_denominator(10**6) for x in diffs]
    if any(abs(float(f) - float(x)) > 1e-12 * max(1.0, abs(float(x))) for f, x in zip(fractions, diffs)):
        return None
    step = fractions[0]
    for f in fractions[1:]:
        step = Fraction(math.gcd(step.numerator * f.denominator, f.numerator * step.denominator), step.denominator * f.denominator)
    return float(step) if (edges[-1] - edges[0]) / float(step) <= MAX_GRID_CELLS + 0.5 else None


def _is_linear(edges: np.ndarray) -> bool:
    steps = np.diff(edges)
    return edges.size >= 2 and bool(np.allclose(steps, steps[0], rtol=1e-9, atol=0))


class BucketLayout:
    """Upper bounds of each row and a pure, vectorised bucketing of a batch."""

    def __init__(self, edges_per_row: Sequence[np.ndarray]) -> None:
        self.edges = [np.asarray(e, dtype=np.float64) for e in edges_per_row]
        for e in self.edges:
            if e.ndim != 1 or e.size == 0 or np.any(np.diff(e) <= 0):
                raise ValueError("histogram edges must be strictly increasing")
        sizes = np.array([e.size + 1 for e in self.edges])  # + the +Inf bucket
        starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        self.slices = [slice(int(s), int(s + n)) for s, n in zip(starts, sizes)]
        self.size = int(sizes.sum())
        self.linear = all(_is_linear(e) for e in self.edges)
        grid = [None if e.size < 2 else _grid_step(e) for e in self.edges]
        self._lookup: np.ndarray | None = None
        if self.linear:
            low = np.array([e[0] for e in self.edges])
            scale = np.array([(e.size - 1) / (e[-1] - e[0]) for e in self.edges])
            self._scale = scale[:, None]
            # trunc(x + 1 - tol) == ceil(x) for the bucket index x = (v - low) * scale, up to the tolerance.
            self._offset = (starts + 1 - _ON_BOUND_TOLERANCE - low * scale)[:, None]
            self._floor = starts[:, None].astype(np.float64)
            self._ceiling = (starts + sizes - 1)[:, None].astype(np.float64)
        elif all(step is not None for step in grid):
            self._set_up_grid([float(step) for step in grid if step is not None], starts)
        else:
            lows = np.array([e[0] - 1.0 for e in self.edges])
            highs = np.array([e[-1] + 1.0 for e in self.edges])
            bases = np.concatenate(([0.0], np.cumsum(highs - lows + 1.0)[:-1]))
            self._shift = (bases - lows)[:, None]
            self._lows, self._highs = lows[:, None], highs[:, None]
            self._flat_edges = np.concatenate([e + s for e, s in zip(self.edges, self._shift[:, 0])])
            self._row_index = np.arange(len(self.edges))[:, None]

    def _set_up_grid(self, steps: list[float], starts: np.ndarray) -> None:
        """Edges on a fine regular grid: bucket by arithmetic on the grid, then one table lookup of the bucket."""
        tables, offsets, scales, lows, cells_per_row = [], [], [], [], []
        offset = 0
        for edges, step, start in zip(self.edges, steps, starts):
            cells = round(float(edges[-1] - edges[0]) / step)
            # Fine cell k (0 = at or below the first edge, cells + 1 = above the last) -> its bucket.
            bounds = edges[0] + step * np.arange(cells + 1)
            table = np.searchsorted(edges, bounds - step * 1e-6, side="left")
            tables.append(np.append(table, edges.size) + start)
            offsets.append(offset)
            scales.append(1.0 / step)
            lows.append(edges[0])
            cells_per_row.append(cells)
            offset += cells + 2
        scale, low, first = np.array(scales), np.array(lows), np.array(offsets, dtype=np.float64)
        self._lookup = np.concatenate(tables).astype(np.intp)
        self._scale = scale[:, None]
        self._offset = (first + 1 - _ON_BOUND_TOLERANCE - low * scale)[:, None]
        self._floor = first[:, None]
        self._ceiling = (first + np.array(cells_per_row) + 1)[:, None]

    @property
    def rows(self) -> int:
        return len(self.edges)

    def arithmetic(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int] | None:
        """What a compiled pass needs to bucket by arithmetic as ``counts`` does: per row scale, offset, floor
        and ceiling (cell = trunc(clip(v * scale + offset, floor, ceiling))), the cell-to-bucket lookup (empty:
        the cell is the bucket) and the number of buckets; None for rows bucketed by ``searchsorted``."""
        if not (self.linear or self._lookup is not None):
            return None
        lookup = self._lookup if self._lookup is not None else np.zeros(0, dtype=np.intp)
        return (self._scale[:, 0].copy(), self._offset[:, 0].copy(), self._floor[:, 0].copy(),
                self._ceiling[:, 0].copy(), lookup, self.size)

    def counts(self, values: np.ndarray) -> np.ndarray:
        """This batch's per-bucket counts (flat, row after row) of a (rows, samples) array of finite values."""
        if self.linear or self._lookup is not None:
            index = values * self._scale
            index += self._offset
            np.minimum(index, self._ceiling, out=index)
            np.maximum(index, self._floor, out=index)
            if self._lookup is not None:
                return np.bincount(self._lookup.take(index.astype(np.intp).ravel()), minlength=self.size)
        else:
            shifted = np.clip(values, self._lows, self._highs) + self._shift
            index = np.searchsorted(self._flat_edges, shifted) + self._row_index
        return np.bincount(index.astype(np.intp).ravel(), minlength=self.size)

    def row_counts(self, row: int, values: np.ndarray) -> np.ndarray:
        """Flat counts for finite values of a single row."""
        edges = self.edges[row]
        counts = np.zeros(self.size, dtype=np.int64)
        local = np.searchsorted(edges, values, side="left")
        counts[self.slices[row]] = np.bincount(local, minlength=edges.size + 1)
        return counts


class HistogramBank:
    """Accumulated histograms over a BucketLayout."""

    def __init__(self, layout: BucketLayout | Sequence[np.ndarray]) -> None:
        self.layout = layout if isinstance(layout, BucketLayout) else BucketLayout(layout)
        self.counts = np.zeros(self.layout.size, dtype=np.int64)
        self.sums = np.zeros(self.layout.rows)
        self.totals = np.zeros(self.layout.rows, dtype=np.int64)
        self._edge_lists = [e.tolist() for e in self.layout.edges]

    @property
    def edges(self) -> list[np.ndarray]:
        return self.layout.edges

    def add(self, counts: np.ndarray, sums: np.ndarray, totals: np.ndarray | int) -> None:
        self.counts += counts
        self.sums += sums
        self.totals += totals

    def observe(self, values: np.ndarray) -> None:
        """Add a (rows, samples) array of finite values."""
        values = np.asarray(values, dtype=np.float64)
        self.add(self.layout.counts(values), values.sum(axis=1), values.shape[1])

    def observe_row(self, row: int, values: np.ndarray) -> None:
        """Add finite values to one row (rows may then have different sample counts)."""
        values = np.asarray(values, dtype=np.float64).ravel()
        if values.size:
            self.counts += self.layout.row_counts(row, values)
            self.sums[row] += values.sum()
            self.totals[row] += values.size

    def observe_value(self, row: int, value: float) -> None:
        """Add one finite value to one row (a step's duration): a bisection, no array work."""
        start = self.layout.slices[row].start
        self.counts[start + bisect.bisect_left(self._edge_lists[row], value)] += 1
        self.sums[row] += value
        self.totals[row] += 1

    def cumulative_counts(self) -> list[np.ndarray]:
        """Per row: cumulative counts for each upper bound, then +Inf."""
        return [np.cumsum(self.counts[s]) for s in self.layout.slices]

    def copy(self) -> HistogramBank:
        clone = HistogramBank(self.layout)
        clone.counts, clone.sums, clone.totals = self.counts.copy(), self.sums.copy(), self.totals.copy()
        return clone
