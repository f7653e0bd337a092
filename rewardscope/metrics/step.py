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

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .functions import RewardFunctionSpec, combined_range

ENTROPY_BINS = 10
_LN_ENTROPY_BINS = math.log(ENTROPY_BINS)


@dataclass(frozen=True)
class RewardStatistics:
    """Reward statistics of one step.

    ``run`` maps run-level catalogue names to values; ``per_function`` maps
    per-function catalogue names to float arrays aligned with the specs
    (NaN where a value is undefined). ``combined`` is the combined reward of
    every completion (NaN where excluded), ``finite_mask`` marks finite rewards.
    """

    run: dict[str, float]
    per_function: dict[str, np.ndarray]
    combined: np.ndarray
    finite_mask: np.ndarray | None  # None when every reward is finite (the fast path)


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
    weighted_rows: np.ndarray  # indices of functions with weight != 0
    low: np.ndarray  # (F,) declared minimum, NaN when undeclared
    high: np.ndarray  # (F,) declared maximum, NaN when undeclared
    entropy_range: tuple[float, float] | None

    @classmethod
    def build(cls, specs: Sequence[RewardFunctionSpec]) -> "FunctionTable":
        specs = tuple(specs)
        weights = np.array([s.weight for s in specs], dtype=np.float64)
        nan = float("nan")
        low = np.array([nan if s.min_value is None else s.min_value for s in specs], dtype=np.float64)
        high = np.array([nan if s.max_value is None else s.max_value for s in specs], dtype=np.float64)
        return cls(specs, weights, np.flatnonzero(weights != 0), low, high, combined_range(specs))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.specs)


def compute_reward_statistics(rewards: np.ndarray, specs: Sequence[RewardFunctionSpec] | FunctionTable,
                              group_size: int) -> RewardStatistics:
    """Every reward statistic of one step from the (F, N) reward array.

    Raises StepInputError for an empty batch or N not divisible by group_size.
    """
    table = specs if isinstance(specs, FunctionTable) else FunctionTable.build(specs)
    rewards = np.asarray(rewards, dtype=np.float64)
    n_functions, n_samples = rewards.shape
    if n_samples == 0:
        raise StepInputError("empty_batch", "empty batch: every reward array has length 0")
    if group_size < 1 or n_samples % group_size:
        raise StepInputError("group_size_mismatch",
                             f"batch of {n_samples} completions is not a whole number of groups of {group_size}")

    finite = np.isfinite(rewards)
    all_finite = bool(finite.all())
    if all_finite:
        per_fn = _function_moments(rewards)
        combined = table.weights[table.weighted_rows] @ rewards[table.weighted_rows]
        nonfinite_counts = np.zeros(n_functions)
        finite_mask = None
    else:
        clean = np.where(finite, rewards, np.nan)
        per_fn = _function_moments_nan(clean)
        nonfinite_counts = (~finite).sum(axis=1).astype(np.float64)
        weighted = clean[table.weighted_rows]
        combined = table.weights[table.weighted_rows] @ np.where(np.isnan(weighted), 0.0, weighted)
        combined[np.isnan(weighted).any(axis=0)] = np.nan
        finite_mask = finite

    fn_mean, fn_std, fn_min, fn_max, fn_sum = per_fn
    mass = np.abs(table.weights * fn_sum)
    total_mass = mass.sum()
    contribution = mass / total_mass if total_mass > 0 else np.zeros(n_functions)

    run: dict[str, float] = {}
    per_function: dict[str, np.ndarray] = {
        "grpo_reward_fn_mean": fn_mean,
        "grpo_reward_fn_std": fn_std,
        "grpo_reward_fn_min": fn_min,
        "grpo_reward_fn_max": fn_max,
        "grpo_reward_fn_contribution_ratio": contribution,
        "grpo_reward_fn_nonfinite": nonfinite_counts,
    }

    valid = combined if all_finite else combined[~np.isnan(combined)]
    run["grpo_reward_nonfinite_samples"] = float(n_samples - valid.size)
    if valid.size:
        mean = float(valid.mean())
        var = float(valid.var())
        run["grpo_reward_mean"] = mean
        run["grpo_reward_std"] = math.sqrt(var)
        run["grpo_reward_variance"] = var
        run["grpo_reward_min"] = float(valid.min())
        run["grpo_reward_max"] = float(valid.max())
        run["grpo_reward_batch_sum"] = float(valid.sum())
        run["grpo_reward_entropy_ratio"] = _entropy_ratio(valid, table.entropy_range)

    _group_signals(rewards if all_finite else np.where(finite, rewards, np.nan), combined, table, group_size,
                   all_finite, run, per_function)
    return RewardStatistics(run, per_function, combined, finite_mask)


def _function_moments(rewards: np.ndarray) -> tuple[np.ndarray, ...]:
    total = rewards.sum(axis=1)
    return total / rewards.shape[1], rewards.std(axis=1), rewards.min(axis=1), rewards.max(axis=1), total


def _function_moments_nan(clean: np.ndarray) -> tuple[np.ndarray, ...]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows give NaN: "undefined"
        total = np.nansum(clean, axis=1)
        return np.nanmean(clean, axis=1), np.nanstd(clean, axis=1), np.nanmin(clean, axis=1), np.nanmax(clean, axis=1), total


def _entropy_ratio(values: np.ndarray, declared: tuple[float, float] | None) -> float:
    """Normalised Miller-Madow entropy over ENTROPY_BINS equal-width bins (see the catalogue)."""
    low, high = declared if declared is not None else (float(values.min()), float(values.max()))
    if high <= low:
        return 0.0
    index = ((values - low) * (ENTROPY_BINS / (high - low))).astype(np.int64)
    np.clip(index, 0, ENTROPY_BINS - 1, out=index)
    counts = np.bincount(index, minlength=ENTROPY_BINS)
    n = values.size
    occupied = counts[counts > 0]
    p = occupied / n
    entropy = float(-(p * np.log(p)).sum()) + (occupied.size - 1) / (2.0 * n)
    return min(max(entropy, 0.0), _LN_ENTROPY_BINS) / _LN_ENTROPY_BINS


def _group_signals(rewards: np.ndarray, combined: np.ndarray, table: FunctionTable, group_size: int, all_finite: bool,
                   run: dict[str, float], per_function: dict[str, np.ndarray]) -> None:
    n_functions, n_samples = rewards.shape
    n_groups = n_samples // group_size
    grouped = rewards.reshape(n_functions, n_groups, group_size)
    combined_groups = combined.reshape(n_groups, group_size)
    if all_finite:
        fn_valid = None
        combined_valid = None
    else:
        fn_valid = ~np.isnan(grouped).any(axis=2)  # (F, B)
        combined_valid = ~np.isnan(combined_groups).any(axis=1)  # (B,)

    g_min = grouped.min(axis=2)
    g_max = grouped.max(axis=2)
    g_std = grouped.std(axis=2)
    zero = g_max == g_min
    all_max = g_min >= table.high[:, None]
    all_min = g_max <= table.low[:, None]
    if fn_valid is None:
        zero_ratio = zero.mean(axis=1)
        std_mean = g_std.mean(axis=1)
        max_ratio = all_max.mean(axis=1)
        min_ratio = all_min.mean(axis=1)
    else:
        counts = fn_valid.sum(axis=1).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            zero_ratio = (zero & fn_valid).sum(axis=1) / counts
            std_mean = np.where(fn_valid, g_std, 0.0).sum(axis=1) / counts
            max_ratio = (all_max & fn_valid).sum(axis=1) / counts
            min_ratio = (all_min & fn_valid).sum(axis=1) / counts
    max_ratio = np.where(np.isnan(table.high), np.nan, max_ratio)
    min_ratio = np.where(np.isnan(table.low), np.nan, min_ratio)
    per_function["grpo_reward_fn_group_zero_std_ratio"] = zero_ratio
    per_function["grpo_reward_fn_group_std_mean"] = std_mean
    per_function["grpo_reward_fn_group_all_max_ratio"] = max_ratio
    per_function["grpo_reward_fn_group_all_min_ratio"] = min_ratio

    groups = combined_groups if combined_valid is None else combined_groups[combined_valid]
    if groups.shape[0] == 0:
        return
    within_var = groups.var(axis=1)
    run["grpo_group_zero_std_ratio"] = float((groups.max(axis=1) == groups.min(axis=1)).mean())
    run["grpo_group_reward_std_mean"] = float(np.sqrt(within_var).mean())
    total_var = float(groups.var())
    if group_size > 1 and total_var > 0:
        # Equal group sizes: total variance = mean within-group variance + variance of group means.
        run["grpo_reward_signal_to_noise"] = math.sqrt(min(float(within_var.mean()) / total_var, 1.0))
