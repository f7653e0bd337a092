"""Downsampling of long series that keeps every extreme: min-max decimation.

A series of n points is cut into ``buckets`` consecutive runs of equal length (in point
order); from each run the point with the smallest and the one with the largest value are
kept, in their original order. A chart of the result shows every spike and dip of the full
series (the largest and smallest value of each bucket, so of the whole run, are always
there), with at most ``2 * buckets`` points. Series with at most ``2 * buckets`` points are
kept whole. Missing values (NaN) are never chosen; a bucket with none left is dropped.

Bands (a lower and an upper series drawn as a filled area) use ``envelope``: one point per
bucket, at the bucket's first x, with the bucket's lowest lower value and highest upper value,
so the band still covers every point it covered before.

Usage::

    import numpy as np
    from rewardscope.htmlreport.downsample import minmax_indices
    y = np.sin(np.arange(100_000) / 500.0)
    kept = minmax_indices(y, buckets=1000)      # indices into y, sorted, <= 2000 of them
    float(y[kept].max()) == float(y.max())      # True
"""

from __future__ import annotations

import warnings

import numpy as np

DEFAULT_BUCKETS = 1000


def _bucketed(values: np.ndarray, buckets: int) -> tuple[np.ndarray, int]:
    """``values`` padded with NaN to a (buckets, width) array, and the width."""
    width = -(-values.size // buckets)
    padded = np.full(buckets * width, np.nan, dtype=np.float64)
    padded[: values.size] = values
    return padded.reshape(buckets, width), width


def minmax_indices(values: np.ndarray, buckets: int = DEFAULT_BUCKETS) -> np.ndarray:
    """Sorted indices of the points kept by min-max decimation (see the module docstring)."""
    values = np.asarray(values, dtype=np.float64)
    if buckets < 1:
        raise ValueError(f"buckets must be at least 1, got {buckets}")
    finite = np.flatnonzero(~np.isnan(values))
    if values.size <= 2 * buckets:
        return finite
    grid, width = _bucketed(values, buckets)
    present = ~np.all(np.isnan(grid), axis=1)
    offsets = np.arange(buckets) * width
    low = np.argmin(np.where(np.isnan(grid), np.inf, grid), axis=1) + offsets
    high = np.argmax(np.where(np.isnan(grid), -np.inf, grid), axis=1) + offsets
    return np.unique(np.concatenate([low[present], high[present]]))


def envelope(x: np.ndarray, lower: np.ndarray, upper: np.ndarray,
             buckets: int = DEFAULT_BUCKETS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, lower, upper) of a band reduced to at most ``buckets`` points that covers the original band."""
    x, lower, upper = (np.asarray(a, dtype=np.float64) for a in (x, lower, upper))
    if x.size <= 2 * buckets:
        return x, lower, upper
    low_grid, width = _bucketed(lower, buckets)
    high_grid, _ = _bucketed(upper, buckets)
    starts = np.arange(buckets) * width
    keep = starts < x.size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN bucket gives NaN: a gap in the band
        low = np.nanmin(low_grid, axis=1)
        high = np.nanmax(high_grid, axis=1)
    return x[starts[keep]], low[keep], high[keep]
