"""One compiled pass over a step's rewards: the reductions behind every reward statistic.

Why compiled: numpy needs some forty calls per step for these reductions (row sums,
minima, maxima, positive parts, the group reductions, the histogram index), each a
full pass over the (functions + 1, samples) array or a tiny call dominated by its
overhead. ``bench/bench_core.py --part statistics`` measured the numpy path at
80 µs for N = 1,024 and 7.7 ms for N = 65,536 (F = 4), this kernel (numba, one
pass per row) at 13 µs and 0.6 ms.

numba pins numpy below its next major versions, so it is optional: ``available()``
imports numba and compiles the pass once per process (about a second the first time;
numba caches the machine code next to this file, or under ``NUMBA_CACHE_DIR``, so later
processes load it in a fraction of that). Where numba is missing or fails, ``available()``
is False (a failure is logged once) and ``metrics/step.py`` uses its numpy path, which
stays the reference the kernel is tested against (``tests/core/test_statistics_kernel.py``).

Variances are computed from squared deviations about the mean (a group's about its own
mean, a row's as the groups' squares plus those of the group means about the row mean),
so they do not cancel for rewards with a large offset; a row or group whose values are
all equal has variance exactly 0.

Usage::

    import numpy as np
    from rewardscope.metrics import kernel
    stacked = np.array([[0.0, 1.0, 1.0, 1.0]])
    if kernel.available():
        out = kernel.reduce_rows(stacked, 2, np.array([np.nan]), np.array([np.nan]), None)
        out.group_counts[0].tolist()    # [1]: the second group has no spread
        out.variances.tolist()          # [0.1875]
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger("rewardscope")


@dataclass(frozen=True)
class RowReductions:
    """Per row of a (rows, N) array of finite values grouped by ``group_size``."""

    sums: np.ndarray
    variances: np.ndarray  # population variance
    mins: np.ndarray
    maxs: np.ndarray
    positive_sums: np.ndarray  # the sum of the positive values
    group_counts: np.ndarray  # (3, rows): groups whose values are all equal, all >= the row's ``high``, all <= its ``low``
    group_std_sums: np.ndarray  # the sum over groups of each group's population std
    group_variance_sums: np.ndarray  # the sum over groups of each group's population variance
    bucket_counts: np.ndarray | None  # flat histogram counts, when ``buckets`` were given


def available() -> bool:
    """Whether the compiled pass can run: numba is installed, imports and compiles it (once per process, at the
    first call: about a second, or 0.1-0.3 s from numba's cache). A failure is logged once and the callers use
    their numpy path."""
    global _KERNEL, _UNAVAILABLE
    if _KERNEL is None and _UNAVAILABLE is None:
        if importlib.util.find_spec("numba") is None:
            _UNAVAILABLE = "numba is not installed"
            return False
        try:
            import numba  # imported here, not at the top: commands that compute no statistics skip its 0.2 s

            kernel = numba.njit(cache=True, nogil=True)(_reduce_rows)
            nan = np.full(1, np.nan)
            kernel(np.zeros((1, 1)), 1, nan, nan, nan, nan, nan, nan, np.zeros(0, dtype=np.intp), 0, False)
        except Exception as error:  # a numba that does not match this numpy, a compiler error: numpy still works
            _UNAVAILABLE = f"{type(error).__name__}: {error}"
            log.warning("rewardscope: the compiled statistics pass is unavailable (%s); computing with numpy",
                        _UNAVAILABLE)
            return False
        _KERNEL = kernel
    return _KERNEL is not None


_KERNEL: Any = None
_UNAVAILABLE: str | None = None


def reduce_rows(stacked: np.ndarray, group_size: int, high: np.ndarray, low: np.ndarray,
                buckets: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int] | None
                ) -> RowReductions | None:
    """Every reduction of ``stacked`` (C-contiguous float64) in one compiled pass per row; None when a value
    is NaN or infinite.

    ``high``/``low`` are per-row bounds for the saturation counts (NaN: none). ``buckets`` is
    ``BucketLayout.arithmetic()`` (scale, offset, floor, ceiling, lookup, size) or None for no counts.
    """
    if buckets is None:
        scale = offset = floor = ceiling = np.zeros(stacked.shape[0])
        lookup, size, count = np.zeros(0, dtype=np.intp), 0, False
    else:
        scale, offset, floor, ceiling, lookup, size = buckets
        count = True
    if not available():
        raise RuntimeError(f"the compiled statistics pass is unavailable: {_UNAVAILABLE}")
    (finite, sums, variances, mins, maxs, positive, group_counts, std_sums, var_sums,
     counts) = _KERNEL(stacked, group_size, high, low, scale, offset, floor, ceiling, lookup, size, count)
    if not finite:
        return None
    return RowReductions(sums, variances, mins, maxs, positive, group_counts, std_sums, var_sums, counts if count else None)


def _reduce_rows(stacked, group_size, high, low, scale, offset, floor, ceiling, lookup, size, count):  # pragma: no cover
    # Compiled by numba (coverage cannot see inside); its equality with the numpy path is tested. Sums run per group
    # first, then over the groups: short dependency chains, and the row variance needs no second pass over the row.
    rows, n = stacked.shape
    n_groups = n // group_size
    sums, variances = np.zeros(rows), np.zeros(rows)
    mins, maxs, positive = np.empty(rows), np.empty(rows), np.zeros(rows)
    group_counts = np.zeros((3, rows), np.int64)
    std_sums, var_sums = np.zeros(rows), np.zeros(rows)
    counts = np.zeros(size, np.int64)
    group_means = np.empty(n_groups)
    for r in range(rows):
        row_min, row_max, row_sum, row_positive, within = np.inf, -np.inf, 0.0, 0.0, 0.0
        for k in range(n_groups):
            start = k * group_size
            g_min, g_max, g_sum, g_positive = np.inf, -np.inf, 0.0, 0.0
            for j in range(start, start + group_size):
                v = stacked[r, j]
                if v - v != 0.0:  # NaN or an infinity: the caller takes its masking path
                    return False, sums, variances, mins, maxs, positive, group_counts, std_sums, var_sums, counts
                g_sum += v
                g_min = min(g_min, v)
                g_max = max(g_max, v)
                g_positive += max(v, 0.0)
                if count:
                    cell = int(min(max(v * scale[r] + offset[r], floor[r]), ceiling[r]))
                    counts[lookup[cell] if lookup.size else cell] += 1
            row_sum += g_sum
            row_positive += g_positive
            row_min = min(row_min, g_min)
            row_max = max(row_max, g_max)
            group_means[k] = g_mean = g_sum / group_size
            if g_min == g_max:
                group_counts[0, r] += 1
            else:
                g_squares = 0.0
                for j in range(start, start + group_size):
                    g_squares += (stacked[r, j] - g_mean) ** 2
                within += g_squares
                std_sums[r] += np.sqrt(g_squares / group_size)
                var_sums[r] += g_squares / group_size
            group_counts[1, r] += g_min >= high[r]
            group_counts[2, r] += g_max <= low[r]
        sums[r], mins[r], maxs[r], positive[r] = row_sum, row_min, row_max, row_positive
        if row_min != row_max:  # squares within the groups plus those of the group means about the row mean
            mean, between = row_sum / n, 0.0
            for k in range(n_groups):
                between += (group_means[k] - mean) ** 2
            variances[r] = (within + group_size * between) / n
    return True, sums, variances, mins, maxs, positive, group_counts, std_sums, var_sums, counts
