"""Step histories: the table of per-step catalogue values every offline analysis reads.

A StepHistory holds a run's steps in order, its reward functions (names, weights,
declared ranges) and, per step, the catalogue's stored gauges keyed by
``(metric, reward_fn)`` (NaN where a value is absent). It is built from

- a run directory written by RewardMonitor: ``load_run(run_dir)``;
- run-store step dicts, as ``read_steps`` yields them (``{"grpo_step": 3, "grpo_reward_mean": 0.5,
  "grpo_reward_fn_mean{check_answer}": 1.0, ...}``): ``history_from_steps``;
- the old API's shape, a list of per-step ``{function: per-sample rewards array}`` or
  ``{function: mean}``: ``history_from_rewards``. Arrays go through the same step
  statistics as a live run (rewardscope.metrics.step), so every analysis sees the same
  quantities whichever way the history arrived. Means alone give only the
  function means, their contributions and the combined mean.

``load_history`` picks the right builder for whatever it is given.

Usage::

    import numpy as np
    from rewardscope.analysis.history import load_history
    history = load_history([{"a": np.array([0.0, 1.0])}, {"a": np.array([1.0, 1.0])}])
    history.column("grpo_reward_mean").tolist()        # [0.5, 1.0]
    history.column("grpo_reward_fn_std", "a").tolist()  # [0.5, 0.0]
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..exporter.runstore import read_manifest, read_steps
from ..metrics.catalogue import Scope, metric
from ..metrics.functions import RewardFunctionSpec, as_specs
from ..metrics.step import FunctionTable, StepInputError, compute_reward_statistics

Key = tuple[str, "str | None"]


@dataclass(frozen=True)
class StepHistory:
    """Per-step catalogue values of one run, oldest step first.

    ``samples`` is the number of completions with a finite combined reward in each
    step (NaN when unknown: a run-store step whose mean reward is exactly 0, or a
    history of means).
    """

    steps: np.ndarray
    functions: tuple[RewardFunctionSpec, ...]
    values: Mapping[Key, np.ndarray]
    samples: np.ndarray

    def __len__(self) -> int:
        return int(self.steps.size)

    @property
    def function_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.functions)

    def spec(self, name: str) -> RewardFunctionSpec:
        for spec in self.functions:
            if spec.name == name:
                return spec
        raise KeyError(f"unknown reward function {name!r}; this history has {list(self.function_names)}")

    def column(self, name: str, reward_fn: str | None = None) -> np.ndarray:
        """Values of a catalogue metric over the steps (NaN where absent)."""
        spec = metric(name)
        if spec.scope is Scope.FUNCTION:
            self.spec(reward_fn or "")
        elif reward_fn is not None:
            raise KeyError(f"metric {name!r} is not per reward function")
        found = self.values.get((name, reward_fn))
        return np.full(len(self), np.nan) if found is None else found

    def has(self, name: str, reward_fn: str | None = None) -> bool:
        """True when the metric is present in at least one step."""
        return not np.isnan(self.column(name, reward_fn)).all()


def _parse_column(key: str) -> Key:
    name, brace, rest = key.partition("{")
    if not brace:
        return key, None
    if not rest.endswith("}"):
        raise ValueError(f"malformed run-store column {key!r}: expected metric{{reward_fn}}")
    return name, rest[:-1]


def _build(steps: Sequence[int], specs: tuple[RewardFunctionSpec, ...], rows: Sequence[Mapping[Key, float]],
           samples: Sequence[float]) -> StepHistory:
    if not rows:
        raise ValueError("empty history: no steps to analyse")
    steps_array = np.asarray(steps, dtype=np.int64)
    if steps_array.size != len(rows):
        raise ValueError(f"{steps_array.size} step numbers for {len(rows)} steps of history")
    if np.any(np.diff(steps_array) <= 0):
        raise ValueError("step numbers must be strictly increasing")
    keys = {k for row in rows for k in row}
    values = {k: np.array([row.get(k, math.nan) for row in rows], dtype=np.float64) for k in keys}
    return StepHistory(steps_array, specs, values, np.asarray(samples, dtype=np.float64))


def history_from_steps(step_dicts: Iterable[Mapping[str, float]],
                       reward_functions: Sequence[RewardFunctionSpec | str] | None = None) -> StepHistory:
    """A history from run-store step dicts (``read_steps`` output or the same shape).

    Reward functions default to the names found in the ``metric{fn}`` columns, weight 1.
    """
    rows: list[dict[Key, float]] = []
    steps: list[int] = []
    names: list[str] = []
    for number, step in enumerate(step_dicts):
        row: dict[Key, float] = {}
        for column, value in step.items():
            name, fn = _parse_column(column)
            metric(name)  # a clear KeyError for a column the catalogue does not define
            if fn is not None and fn not in names:
                names.append(fn)
            row[(name, fn)] = math.nan if value is None else float(value)
        if ("grpo_step", None) not in row:
            raise ValueError(f"run-store step {number} has no grpo_step")
        steps.append(int(row.pop(("grpo_step", None))))
        rows.append(row)
    specs = as_specs(reward_functions if reward_functions is not None else names)
    unknown = set(names) - {s.name for s in specs}
    if unknown:
        raise ValueError(f"steps name reward functions {sorted(unknown)} that are not declared")
    samples = []
    for row in rows:
        total, mean = row.get(("grpo_reward_sum_of_batch", None), math.nan), row.get(("grpo_reward_mean", None), math.nan)
        samples.append(round(total / mean) if mean and math.isfinite(total) and math.isfinite(mean) else math.nan)
    return _build(steps, specs, rows, samples)


def load_run(run_dir: str | os.PathLike) -> StepHistory:
    """The history of a run directory written by RewardMonitor (its manifest gives weights and ranges)."""
    manifest = read_manifest(run_dir)
    specs = [RewardFunctionSpec(**spec) for spec in manifest.get("reward_functions", [])] or None
    return history_from_steps(read_steps(run_dir), specs)


def _step_rewards(entry: Mapping[str, Any], names: tuple[str, ...], number: int) -> np.ndarray:
    """(F, N) per-sample rewards, or (F,) means; NaN for a function missing this step."""
    unknown = [k for k in entry if k not in names]
    if unknown:
        raise ValueError(f"step {number} of the history names unknown reward function(s) {unknown}; expected {list(names)}")
    arrays = {}
    for name, value in entry.items():
        if value is None:
            continue
        try:
            arrays[name] = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"step {number}: rewards of {name!r} are not numbers") from None
    scalar = {n for n, a in arrays.items() if a.ndim == 0}
    if scalar and len(scalar) != len(arrays):
        raise ValueError(f"step {number} mixes per-sample arrays and means; give one or the other for every function")
    if scalar or not arrays:
        return np.array([float(arrays[n]) if n in arrays else math.nan for n in names])
    lengths = {a.size for a in arrays.values()}
    if len(lengths) > 1:
        raise ValueError(f"step {number}: reward arrays have different lengths {sorted(lengths)}")
    n = lengths.pop()
    return np.stack([arrays[name].reshape(-1) if name in arrays else np.full(n, math.nan) for name in names])


def history_from_rewards(reward_history: Sequence[Mapping[str, Any]], function_names: Sequence[str] | None = None, *,
                         steps: Sequence[int] | None = None,
                         reward_functions: Sequence[RewardFunctionSpec | str] | None = None,
                         group_size: int = 1) -> StepHistory:
    """A history from the old API's shape: per step ``{function: rewards array}`` or ``{function: mean}``.

    ``steps`` defaults to 0, 1, 2, ...; ``group_size`` is the completions per prompt (G)
    of the per-sample arrays; ``reward_functions`` (specs) gives weights and ranges,
    else the function names (default: the keys of the first step) get weight 1.
    A function missing from a step, or given as None, is absent that step.
    """
    if reward_history is None or len(reward_history) == 0:
        raise ValueError("empty history: no steps to analyse")
    if reward_functions is not None:
        specs = as_specs(reward_functions)
    else:
        specs = as_specs(function_names if function_names is not None else list(reward_history[0]))
    table = FunctionTable.build(specs)
    names = table.names
    rows: list[dict[Key, float]] = []
    samples: list[float] = []
    for number, entry in enumerate(reward_history):
        if not isinstance(entry, Mapping):
            raise ValueError(f"step {number} of the history is a {type(entry).__name__}, expected a dict of rewards by function")
        rewards = _step_rewards(entry, names, number)
        row: dict[Key, float] = {}
        if rewards.ndim == 2:
            try:
                stats = compute_reward_statistics(rewards, table, group_size)
            except StepInputError as error:
                raise ValueError(f"step {number}: {error}") from None
            row.update({(name, None): value for name, value in stats.run.items()})
            for name, per_fn in stats.per_function.items():
                row.update({(name, fn): float(v) for fn, v in zip(names, per_fn)})
            row[("grpo_group_size", None)] = float(group_size)
            samples.append(rewards.shape[1] - stats.run["grpo_reward_nonfinite_samples"])
        else:
            means = rewards
            row.update({("grpo_reward_fn_mean", fn): float(v) for fn, v in zip(names, means)})
            present = ~np.isnan(means)
            mass = np.abs(table.weights * np.where(present, means, 0.0))
            if mass.sum() > 0:
                row.update({("grpo_reward_fn_contribution_ratio", fn): float(v)
                            for fn, v, p in zip(names, mass / mass.sum(), present) if p})
            weighted = table.weights != 0
            if present[weighted].all():
                row[("grpo_reward_mean", None)] = float(table.weights[weighted] @ means[weighted])
            samples.append(math.nan)
        rows.append(row)
    return _build(range(len(rows)) if steps is None else list(steps), specs, rows, samples)


def load_history(source: Any, function_names: Sequence[str] | None = None, *, steps: Sequence[int] | None = None,
                 reward_functions: Sequence[RewardFunctionSpec | str] | None = None, group_size: int = 1) -> StepHistory:
    """A StepHistory from a run directory, run-store step dicts, the old per-step reward dicts, or a StepHistory."""
    if isinstance(source, StepHistory):
        return source
    if isinstance(source, (str, os.PathLike)):
        return load_run(source)
    if isinstance(source, Mapping) or not isinstance(source, Iterable):
        raise ValueError("history must be a run directory or a list of per-step dicts")
    source = list(source)
    if not source:
        raise ValueError("empty history: no steps to analyse")
    first = source[0]
    if isinstance(first, Mapping) and any(str(k).startswith("grpo_") for k in first):
        if steps is not None:
            raise ValueError("run-store steps carry their own step numbers (grpo_step); do not pass steps")
        return history_from_steps(source, reward_functions if reward_functions is not None else function_names)
    return history_from_rewards(source, function_names, steps=steps, reward_functions=reward_functions, group_size=group_size)
