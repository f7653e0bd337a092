"""Pure per-step statistics of a GRPO batch: numpy in, numbers out, no I/O.

One call computes every reward statistic of a step, vectorised over the whole
(functions x samples) array; there is no Python loop over samples. Samples are
ordered group by group: completions ``g*G .. g*G+G-1`` answer the same prompt.

Non-finite rewards (NaN, +-inf) are excluded from every statistic and counted.
A completion whose weighted rewards are not all finite is excluded from the
combined-reward statistics; a prompt group holding such a completion is
excluded from the group signals.

Usage::

    import numpy as np
    from rewardscope.metrics.functions import RewardFunctionSpec
    from rewardscope.metrics.step import compute_reward_statistics

    specs = (RewardFunctionSpec("a", 1.0, 0.0, 1.0),)
    stats = compute_reward_statistics(np.array([[0.0, 1.0, 1.0, 1.0]]), specs, group_size=2)
    stats.run["grpo_reward_mean"]            # 0.75
    stats.run["grpo_group_zero_std_ratio"]   # 0.5
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import kernel
from .functions import RewardFunctionSpec, combined_range
from .histograms import DEFAULT_REWARD_EDGES, REWARD_BUCKETS, BucketLayout, linear_edges

ENTROPY_BINS = 10
assert REWARD_BUCKETS % ENTROPY_BINS == 0, "entropy bins pair up histogram buckets"
_LN_ENTROPY_BINS = math.log(ENTROPY_BINS)


@dataclass(frozen=True)
class RewardStatistics:
    """Reward statistics of one step.

    ``run`` maps run-level catalogue names to values; ``per_function`` maps
    per-function catalogue names to float arrays aligned with the specs (NaN
    where a value is undefined). ``combined`` is each completion's combined
    reward (NaN where excluded). ``bucket_counts``, ``bucket_sums`` and
    ``bucket_totals`` are this step's histogram increments for the rows of
    ``FunctionTable.buckets`` (one per function, then the combined reward);
    ``positive_sums`` and ``negative_sums`` split each row's sum of finite values into
    its positive part and the magnitude of its negative part, so counters built on them
    only grow (``bucket_sums`` = positive - negative).
    """

    run: dict[str, float]
    per_function: dict[str, np.ndarray]
    combined: np.ndarray
    bucket_counts: np.ndarray
    positive_sums: np.ndarray
    negative_sums: np.ndarray
    bucket_totals: np.ndarray

    @property
    def bucket_sums(self) -> np.ndarray:
        return self.positive_sums - self.negative_sums


class StepInputError(ValueError):
    """A step's input cannot be used; ``reason`` is the label of the skip counter."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class FunctionTable:
    """Per-function constants, precomputed once per run for the vectorised step."""

    specs: tuple[RewardFunctionSpec, ...]
    weights: np.ndarray  # (F,)
    low: np.ndarray  # (F,) declared minimum, NaN when undeclared
    high: np.ndarray  # (F,) declared maximum, NaN when undeclared
    combined_range: tuple[float, float] | None
    buckets: BucketLayout  # rows: each function, then the combined reward
    never_negative: np.ndarray  # (F+1,) bool: a declared minimum >= 0, per function then for the combined reward
    low_bounds: np.ndarray  # (F+1,) declared minimum per function then NaN for the combined reward (not reported)
    high_bounds: np.ndarray  # (F+1,) the same for the maxima
    missing_bounds: np.ndarray  # (2, F+1) bool: no declared maximum, no declared minimum (so no saturation ratio)
    compiled: bool  # reduce finite batches with the compiled kernel (metrics/kernel.py), else with numpy
    arithmetic_buckets: tuple | None  # BucketLayout.arithmetic(), built once

    @classmethod
    def build(cls, specs: Sequence[RewardFunctionSpec], compiled: bool | None = None) -> FunctionTable:
        """``compiled``: None uses the compiled kernel when numba is installed; False forces the numpy path."""
        specs = tuple(specs)
        weights = np.array([s.weight for s in specs], dtype=np.float64)
        nan = float("nan")
        low = np.array([nan if s.min_value is None else s.min_value for s in specs], dtype=np.float64)
        high = np.array([nan if s.max_value is None else s.max_value for s in specs], dtype=np.float64)
        declared = combined_range(specs)
        edges = [linear_edges(s.min_value, s.max_value) if s.min_value is not None and s.max_value is not None
                 else DEFAULT_REWARD_EDGES for s in specs]
        edges.append(linear_edges(*declared) if declared else DEFAULT_REWARD_EDGES)
        never_negative = np.append(low >= 0, declared is not None and declared[0] >= 0)
        # The combined row's saturation ratios are not reported: NaN bounds leave its flags False.
        low_bounds, high_bounds = np.append(low, nan), np.append(high, nan)
        buckets = BucketLayout(edges)
        return cls(specs, weights, low, high, declared, buckets, never_negative, low_bounds, high_bounds,
                   np.isnan(np.stack([high_bounds, low_bounds])), kernel.available() if compiled is None else compiled,
                   buckets.arithmetic())

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.specs)


def compute_reward_statistics(rewards: np.ndarray, specs: Sequence[RewardFunctionSpec] | FunctionTable,
                              group_size: int, *, spare_row: bool = False) -> RewardStatistics:
    """Every reward statistic of one step from the (F, N) reward array.

    ``spare_row=True``: ``rewards`` is (F + 1, N), float64 and C-contiguous, its last row free; the combined reward
    is written there, which saves copying a large batch. Raises StepInputError for an empty batch, N not divisible
    by group_size, or rewards whose sum overflows.
    """
    table = specs if isinstance(specs, FunctionTable) else FunctionTable.build(specs)
    rewards = np.asarray(rewards, dtype=np.float64)
    if spare_row:
        rewards, stacked = rewards[:-1], rewards
    n_functions, n_samples = rewards.shape
    if n_samples == 0:
        raise StepInputError("empty_batch", "empty batch: every reward array has length 0")
    if group_size < 1 or n_samples % group_size:
        raise StepInputError("group_size_mismatch",
                             f"batch of {n_samples} completions is not a whole number of groups of {group_size}")
    # Row F of `stacked` is the combined reward, so one reduction serves functions and combined alike.
    if not spare_row:
        stacked = np.empty((n_functions + 1, n_samples))
        stacked[:n_functions] = rewards
    np.dot(table.weights, rewards, out=stacked[n_functions])
    # Each path returns None unless every value and every row's sum is finite: then the masking path runs.
    reductions = _reduce_compiled(stacked, table, group_size) if table.compiled else _reduce_numpy(stacked, table, group_size)
    if reductions is not None:
        stats = _statistics_all_finite(stacked, reductions, table, group_size)
    else:
        stats = _statistics_with_nonfinite(rewards, table, group_size)
    if not (np.isfinite(stats.positive_sums).all() and np.isfinite(stats.negative_sums).all()):
        raise StepInputError("overflow", "rewards so large that their sum overflows float64; the step cannot be used")
    return stats


def _reduce_compiled(stacked: np.ndarray, table: FunctionTable, group_size: int) -> kernel.RowReductions | None:
    out = kernel.reduce_rows(stacked, group_size, table.high_bounds, table.low_bounds, table.arithmetic_buckets)
    if out is None or not np.isfinite(out.sums).all():  # a value not finite, or finite values whose sum overflows
        return None
    if out.bucket_counts is None:  # rows bucketed by searchsorted
        out = dataclasses.replace(out, bucket_counts=table.buckets.counts(stacked))
    return out


def _reduce_numpy(stacked: np.ndarray, table: FunctionTable, group_size: int) -> kernel.RowReductions | None:
    """The reductions ``kernel.reduce_rows`` computes, by numpy: the reference path, and the path without numba."""
    rows, n = stacked.shape
    sums = stacked.sum(axis=1)
    if not np.isfinite(sums).all():
        return None
    means = sums / n
    mins, maxs = stacked.min(axis=1), stacked.max(axis=1)
    variances = _guarded_variance(np.einsum("ij,ij->i", stacked, stacked) / n, means, mins == maxs,
                                  lambda r: stacked[r].var(axis=1))
    n_groups = n // group_size
    # A contiguous (G, rows*B) copy makes the per-group reductions run along the fast axis.
    members = stacked.reshape(rows * n_groups, group_size).T.copy()
    g_min, g_max = members.min(axis=0), members.max(axis=0)
    g_zero = g_max == g_min
    g_mean = np.add.reduce(members, axis=0) / group_size
    g_var = _guarded_variance(np.einsum("ij,ij->j", members, members) / group_size, g_mean, g_zero,
                              lambda cols: members[:, cols].var(axis=0))
    shape = (rows, n_groups)
    g_min, g_max, g_var, g_zero = g_min.reshape(shape), g_max.reshape(shape), g_var.reshape(shape), g_zero.reshape(shape)
    # One reduction for the three per-group flags of every row: zero spread, all at the maximum, all at the minimum.
    flags = np.empty((3, rows, n_groups), dtype=bool)
    flags[0] = g_zero
    np.greater_equal(g_min, table.high_bounds[:, None], out=flags[1])
    np.less_equal(g_max, table.low_bounds[:, None], out=flags[2])
    positive = np.add.reduce(np.maximum(stacked, 0.0), axis=1)
    return kernel.RowReductions(sums, variances, mins, maxs, positive, np.add.reduce(flags, axis=2, dtype=np.int64),
                                np.add.reduce(np.sqrt(g_var), axis=1), np.add.reduce(g_var, axis=1),
                                table.buckets.counts(stacked))


def _statistics_all_finite(stacked: np.ndarray, r: kernel.RowReductions, table: FunctionTable,
                           group_size: int) -> RewardStatistics:
    rows, n = stacked.shape
    n_groups = n // group_size
    f = rows - 1
    means = r.sums / n
    counts = r.bucket_counts
    assert counts is not None
    ratios = r.group_counts / n_groups
    ratios[1:][table.missing_bounds] = np.nan
    std_means = r.group_std_sums / n_groups
    run = _combined_values(means[f], r.variances[f], r.mins[f], r.maxs[f], r.sums[f], n)
    run["grpo_reward_nonfinite_samples"] = 0.0
    if table.combined_range is not None:
        run["grpo_reward_entropy_ratio"] = _entropy_from_buckets(counts[table.buckets.slices[f]], n)
    else:
        run["grpo_reward_entropy_ratio"] = _entropy_ratio(stacked[f], None)
    run["grpo_group_zero_std_ratio"] = float(ratios[0, f])
    run["grpo_group_reward_std_mean"] = float(std_means[f])
    if group_size > 1 and r.variances[f] > 0:
        run["grpo_reward_signal_to_noise"] = _signal_to_noise(float(r.group_variance_sums[f]) / n_groups, r.variances[f])
    per_function = {
        "grpo_reward_fn_mean": means[:f],
        "grpo_reward_fn_std": np.sqrt(r.variances[:f]),
        "grpo_reward_fn_min": r.mins[:f],
        "grpo_reward_fn_max": r.maxs[:f],
        "grpo_reward_fn_contribution_ratio": _contributions(table.weights, r.sums[:f]),
        "grpo_reward_fn_nonfinite_samples": np.zeros(f),
        "grpo_reward_fn_group_zero_std_ratio": ratios[0, :f],
        "grpo_reward_fn_group_std_mean": std_means[:f],
        "grpo_reward_fn_group_all_max_ratio": ratios[1, :f],
        "grpo_reward_fn_group_all_min_ratio": ratios[2, :f],
    }
    # Not skipped for rows declared non-negative: a function may break its declaration, a counter must not decrease.
    return RewardStatistics(run, per_function, stacked[f], counts, r.positive_sums, r.positive_sums - r.sums,
                            np.full(rows, n))


def _guarded_variance(mean_square: np.ndarray, mean: np.ndarray, constant: np.ndarray, two_pass) -> np.ndarray:
    """Population variance by E[x^2] - E[x]^2: exactly 0 where ``constant``, redone by ``two_pass(indices)``
    where the shortcut would cancel (large offset, tiny spread)."""
    variances = mean_square - mean * mean
    variances[constant] = 0.0
    unsafe = variances < 1e-9 * mean * mean
    unsafe &= ~constant
    if unsafe.any():
        indices = np.flatnonzero(unsafe)
        variances[indices] = two_pass(indices)
    return np.maximum(variances, 0.0)


def _combined_values(mean: float, var: float, low: float, high: float, total: float, n: int) -> dict[str, float]:
    return {
        "grpo_reward_mean": float(mean),
        "grpo_reward_std": math.sqrt(var),
        "grpo_reward_variance": float(var),
        "grpo_reward_min": float(low),
        "grpo_reward_max": float(high),
        "grpo_reward_sum_of_batch": float(total),
    }


def _combined_group_values(zero: np.ndarray, std: np.ndarray, var: np.ndarray, total_var: float, group_size: int,
                           run: dict[str, float]) -> None:
    if zero.size == 0:
        return
    run["grpo_group_zero_std_ratio"] = np.count_nonzero(zero) / zero.size
    run["grpo_group_reward_std_mean"] = float(np.add.reduce(std)) / zero.size
    if group_size > 1 and total_var > 0:
        run["grpo_reward_signal_to_noise"] = _signal_to_noise(float(np.add.reduce(var)) / zero.size, total_var)


def _signal_to_noise(mean_within_variance: float, total_variance: float) -> float:
    # Equal group sizes: total variance = mean within-group variance + variance of the group means.
    return math.sqrt(min(mean_within_variance / total_variance, 1.0))


def _contributions(weights: np.ndarray, sums: np.ndarray) -> np.ndarray:
    mass = np.abs(weights * sums)
    total = mass.sum()
    return mass / total if total > 0 else np.zeros_like(mass)


def _saturation(hit: np.ndarray, bound: np.ndarray, valid: np.ndarray | np.bool_ | None = None) -> np.ndarray:
    if valid is None:
        ratio = np.count_nonzero(hit, axis=1) / hit.shape[1]
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = (hit & valid).sum(axis=1) / valid.sum(axis=1)
    return np.where(np.isnan(bound), np.nan, ratio)


def _entropy_from_buckets(counts: np.ndarray, n: int) -> float:
    """Entropy over ENTROPY_BINS bins made by pairing the 2 * ENTROPY_BINS linear histogram buckets."""
    # counts: [<= low, REWARD_BUCKETS linear buckets, +Inf]; values at the low bound join the first bin.
    linear = counts[1:-1].reshape(ENTROPY_BINS, -1).sum(axis=1)
    linear[0] += counts[0]
    linear[-1] += counts[-1]
    return _normalised_entropy(linear, n)


def _entropy_ratio(values: np.ndarray, declared: tuple[float, float] | None) -> float:
    """Normalised Miller-Madow entropy over ENTROPY_BINS equal-width bins (see the catalogue)."""
    low, high = declared if declared is not None else (float(values.min()), float(values.max()))
    if high <= low:
        return 0.0
    index = np.ceil((values - low) * (ENTROPY_BINS / (high - low)) - 1e-9).astype(np.int64) - 1
    np.clip(index, 0, ENTROPY_BINS - 1, out=index)
    return _normalised_entropy(np.bincount(index, minlength=ENTROPY_BINS), values.size)


def _normalised_entropy(counts: np.ndarray, n: int) -> float:
    occupied = counts[counts > 0]
    p = occupied / n
    entropy = float(-(p * np.log(p)).sum()) + (occupied.size - 1) / (2.0 * n)
    return min(max(entropy, 0.0), _LN_ENTROPY_BINS) / _LN_ENTROPY_BINS


def _statistics_with_nonfinite(rewards: np.ndarray, table: FunctionTable, group_size: int) -> RewardStatistics:
    """The slow path: masks out NaN and infinities, counts them, and drops incomplete groups."""
    import warnings

    n_functions, n = rewards.shape
    finite = np.isfinite(rewards)
    clean = np.where(finite, rewards, np.nan)
    weighted = table.weights != 0
    combined = table.weights[weighted] @ np.where(finite[weighted], rewards[weighted], 0.0)
    combined[~finite[weighted].all(axis=0)] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows give NaN: "undefined"
        sums = np.nansum(clean, axis=1)
        means, stds = np.nanmean(clean, axis=1), np.nanstd(clean, axis=1)
        mins, maxs = np.nanmin(clean, axis=1), np.nanmax(clean, axis=1)

    combined[~np.isfinite(combined)] = np.nan  # finite rewards whose weighted sum overflows
    counts = np.zeros(table.buckets.size, dtype=np.int64)
    positive_sums = np.zeros(n_functions + 1)
    negative_sums = np.zeros(n_functions + 1)
    bucket_totals = np.zeros(n_functions + 1, dtype=np.int64)
    rows = list(rewards) + [combined]
    masks = list(finite) + [~np.isnan(combined)]
    for r, (values, mask) in enumerate(zip(rows, masks)):
        kept = values[mask]
        if kept.size:
            counts += table.buckets.row_counts(r, kept)
            positive_sums[r] = kept[kept > 0].sum()
            negative_sums[r] = -kept[kept < 0].sum()
            bucket_totals[r] = kept.size

    valid = combined[~np.isnan(combined)]
    run: dict[str, float] = {"grpo_reward_nonfinite_samples": float(n - valid.size)}
    if valid.size:
        run.update(_combined_values(valid.mean(), valid.var(), valid.min(), valid.max(), valid.sum(), valid.size))
        run["grpo_reward_entropy_ratio"] = _entropy_ratio(valid, table.combined_range)

    n_groups = n // group_size
    grouped = clean.reshape(n_functions, n_groups, group_size)
    fn_valid = ~np.isnan(grouped).any(axis=2)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        g_min, g_max, g_std = grouped.min(axis=2), grouped.max(axis=2), grouped.std(axis=2)
        valid_groups = fn_valid.sum(axis=1)
        zero_ratio = ((g_max == g_min) & fn_valid).sum(axis=1) / valid_groups
        std_mean = np.where(fn_valid, g_std, 0.0).sum(axis=1) / valid_groups
    combined_groups = combined.reshape(n_groups, group_size)
    combined_groups = combined_groups[~np.isnan(combined_groups).any(axis=1)]
    if combined_groups.shape[0]:
        g_var = combined_groups.var(axis=1)
        zero = combined_groups.max(axis=1) == combined_groups.min(axis=1)
        _combined_group_values(zero, np.sqrt(g_var), g_var, float(combined_groups.var()), group_size, run)

    per_function = {
        "grpo_reward_fn_mean": means,
        "grpo_reward_fn_std": stds,
        "grpo_reward_fn_min": mins,
        "grpo_reward_fn_max": maxs,
        "grpo_reward_fn_contribution_ratio": _contributions(table.weights, sums),
        "grpo_reward_fn_nonfinite_samples": (~finite).sum(axis=1).astype(np.float64),
        "grpo_reward_fn_group_zero_std_ratio": zero_ratio,
        "grpo_reward_fn_group_std_mean": std_mean,
        "grpo_reward_fn_group_all_max_ratio": _saturation(g_min >= table.high[:, None], table.high, fn_valid),
        "grpo_reward_fn_group_all_min_ratio": _saturation(g_max <= table.low[:, None], table.low, fn_valid),
    }
    return RewardStatistics(run, per_function, combined, counts, positive_sums, negative_sums, bucket_totals)
