"""Classic Prometheus histograms kept as numpy arrays, several rows at once.

A bank holds one histogram per row (one per reward function, say), each with its
own upper bounds. ``observe`` sorts a whole (rows x samples) array into buckets
with one searchsorted and one bincount: rows are shifted apart on the number line
so a single sorted edge array serves them all. Counts are kept per bucket and made
cumulative only when read, as the exposition format wants.

Usage::

    import numpy as np
    from rewardscope.metrics.histograms import HistogramBank, linear_edges
    bank = HistogramBank([linear_edges(0.0, 1.0, 4)])
    bank.observe(np.array([[0.0, 0.3, 1.0, 7.0]]))
    bank.cumulative_counts()[0]    # counts for le = 0, 0.25, 0.5, 0.75, 1, +Inf -> [1, 1, 2, 2, 3, 4]
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

# Buckets for rewards whose function declares no range: symmetric, finer near 0.
DEFAULT_REWARD_EDGES = np.array([-10, -5, -3, -2, -1, -0.5, -0.25, -0.1, 0, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10], dtype=np.float64)
DEFAULT_LENGTH_EDGES = np.array([2.0 ** k for k in range(2, 15)])  # 4 .. 16384 tokens
STEP_DURATION_EDGES = np.array([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600], dtype=np.float64)
REWARD_BUCKETS = 20


def linear_edges(low: float, high: float, buckets: int = REWARD_BUCKETS) -> np.ndarray:
    """``buckets + 1`` upper bounds from low to high, rounded so decimal rewards land on them exactly."""
    return np.round(np.linspace(low, high, buckets + 1), 10)


class HistogramBank:
    """Cumulative-on-read histograms, one per row, updated with whole arrays."""

    def __init__(self, edges_per_row: Sequence[np.ndarray]) -> None:
        self.edges = [np.asarray(e, dtype=np.float64) for e in edges_per_row]
        for e in self.edges:
            if e.ndim != 1 or e.size == 0 or np.any(np.diff(e) <= 0):
                raise ValueError("histogram edges must be strictly increasing")
        rows = len(self.edges)
        lows = np.array([e[0] - 1.0 for e in self.edges])
        highs = np.array([e[-1] + 1.0 for e in self.edges])
        spans = highs - lows
        bases = np.concatenate(([0.0], np.cumsum(spans + 1.0)[:-1]))
        self._shift = bases - lows  # row r occupies [bases[r], bases[r] + spans[r]]
        self._lows = lows
        self._highs = highs
        self._flat_edges = np.concatenate([e + s for e, s in zip(self.edges, self._shift)])
        self._row_of_edge_start = np.arange(rows)  # bucket = position + row (each row has one extra +Inf bucket)
        self._n_buckets = self._flat_edges.size + rows
        self.counts = np.zeros(self._n_buckets, dtype=np.int64)
        self.sums = np.zeros(rows)
        self.totals = np.zeros(rows, dtype=np.int64)
        self._slices = []
        start = 0
        for e in self.edges:
            self._slices.append(slice(start, start + e.size + 1))
            start += e.size + 1

    @property
    def rows(self) -> int:
        return len(self.edges)

    def observe(self, values: np.ndarray) -> None:
        """Add a (rows, samples) array of finite values."""
        values = np.asarray(values, dtype=np.float64)
        shifted = np.clip(values, self._lows[:, None], self._highs[:, None]) + self._shift[:, None]
        buckets = np.searchsorted(self._flat_edges, shifted.ravel(), side="left")
        buckets += np.repeat(self._row_of_edge_start, values.shape[1])
        self.counts += np.bincount(buckets, minlength=self._n_buckets)
        self.sums += values.sum(axis=1)
        self.totals += values.shape[1]

    def observe_row(self, row: int, values: np.ndarray) -> None:
        """Add finite values to one row (rows may then have different sample counts)."""
        values = np.asarray(values, dtype=np.float64).ravel()
        if values.size == 0:
            return
        shifted = np.clip(values, self._lows[row], self._highs[row]) + self._shift[row]
        buckets = np.searchsorted(self._flat_edges, shifted, side="left") + row
        self.counts += np.bincount(buckets, minlength=self._n_buckets)
        self.sums[row] += values.sum()
        self.totals[row] += values.size

    def cumulative_counts(self) -> list[np.ndarray]:
        """Per row: cumulative counts for each upper bound, then +Inf."""
        return [np.cumsum(self.counts[s]) for s in self._slices]
