"""RewardMetricsTracker: the old per-step tracking API, as a thin layer over RewardMonitor.

``track_step`` hands the step to a RewardMonitor (no run directory and no
/metrics server unless asked for) and returns a ``RewardMetrics`` with the old
fields. The flaws of the system we replace are fixed:

- memory is bounded: only the last ``window_size`` steps are kept (the old tracker
  kept every step forever in ``step_to_metrics``); summaries, trends and moving
  averages are over that window, totals over the whole run;
- the combined reward is sized from the data, not from ``batch_size *
  num_generations`` (the old tracker crashed on its own README example);
- None is tolerated: None training values are simply absent, and a reward of None
  (a whole function, or single completions) is a missing value, excluded from the
  statistics and counted as non-finite;
- the old quantities follow the catalogue's definitions: ``entropy`` is the
  normalised entropy (0..1, does not grow with batch size), ``signal_to_noise`` the
  GRPO within-group share of the spread (None with ``num_generations == 1``), and
  ``contributions`` the sign-safe share of the absolute reward mass, in percent.

Usage::

    import numpy as np
    from rewardscope.compat import RewardMetricsTracker
    tracker = RewardMetricsTracker(reward_function_names=["func1", "func2"], window_size=100)
    metrics = tracker.track_step(step=42, rewards_by_function={"func1": np.array([1.0, 2.0, 1.5]),
                                 "func2": np.array([0.5, 0.7, 0.6])}, kl_divergence=0.05, policy_entropy=2.3,
                                 batch_size=3, num_generations=1)
    metrics.mean_reward                                  # 2.1
    tracker.get_function_statistics("func1")["mean"]     # 1.5
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..metrics.functions import RewardFunctionSpec
from ..metrics.layout import StepMetrics
from ..monitor import RewardMonitor
from .names import FUNCTION_FIELDS, METRIC_FIELDS, OLD_NAMES

# The old RewardMetrics fields and their catalogue metrics, from the one name table.
RUN_FIELDS: dict[str, str] = {name: OLD_NAMES[name] for name in METRIC_FIELDS}
_PERCENT_FIELDS = frozenset({"contributions"})


@dataclass(frozen=True)
class RewardMetrics:
    """One tracked step with the old fields; None where a value is absent this step.

    ``step_metrics`` is the underlying StepMetrics (every catalogue value of the
    step); ``reward_distribution`` holds the raw rewards by function when the
    tracker tracks distributions (only on the metrics track_step returns).
    """

    step: int
    timestamp: float
    batch_size: int
    num_generations: int
    mean_reward: float | None = None
    std_reward: float | None = None
    min_reward: float | None = None
    max_reward: float | None = None
    total_reward: float | None = None
    signal_to_noise: float | None = None
    entropy: float | None = None
    variance: float | None = None
    kl_divergence: float | None = None
    policy_entropy: float | None = None
    advantage_mean: float | None = None
    advantage_std: float | None = None
    function_rewards: dict[str, float | None] = field(default_factory=dict)
    function_stds: dict[str, float | None] = field(default_factory=dict)
    contributions: dict[str, float | None] = field(default_factory=dict)
    reward_distribution: dict[str, np.ndarray] | None = field(default=None, repr=False)
    step_metrics: StepMetrics | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_step(cls, metrics: StepMetrics, batch_size: int, keep_distribution: bool = True) -> RewardMetrics:
        # One read of the row as Python floats: per-value lookups cost more than the rest of the old API's step.
        row, layout = metrics.row.tolist(), metrics.layout
        values: dict[str, Any] = {name: _present(row[layout.index(catalogue)]) for name, catalogue in RUN_FIELDS.items()}
        for name, catalogue in FUNCTION_FIELDS.items():
            scale = 100.0 if name in _PERCENT_FIELDS else 1.0
            values[name] = {fn: None if math.isnan(row[i]) else scale * row[i]
                            for fn, i in zip(metrics.reward_functions, layout.function_slots[catalogue].tolist())}
        distribution = None
        if keep_distribution and metrics.rewards is not None:
            distribution = dict(zip(metrics.reward_functions, metrics.rewards))
        group_size = metrics.value("grpo_group_size")
        return cls(step=metrics.step, timestamp=metrics.timestamp, batch_size=batch_size,
                   num_generations=1 if group_size is None else int(group_size), reward_distribution=distribution,
                   step_metrics=metrics, **values)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (no arrays): the old fields plus every catalogue value of the step under ``"metrics"``."""
        data: dict[str, Any] = {"step": self.step, "timestamp": self.timestamp, "batch_size": self.batch_size,
                                "num_generations": self.num_generations}
        data.update({name: getattr(self, name) for name in RUN_FIELDS})
        data.update({name: dict(getattr(self, name)) for name in FUNCTION_FIELDS})
        if self.step_metrics is not None:
            data["metrics"] = self.step_metrics.as_dict()
        return data


def _present(value: float) -> float | None:
    return None if math.isnan(value) else value


def _stats(values: list[float | None]) -> dict[str, float] | None:
    present = np.array([v for v in values if v is not None], dtype=np.float64)
    if present.size == 0:
        return None
    return {"mean": float(present.mean()), "std": float(present.std()), "min": float(present.min()),
            "max": float(present.max()), "latest": float(present[-1])}


class RewardMetricsTracker:
    """The old tracker API on RewardMonitor; see the module docstring.

    ``reward_function_names`` may also hold RewardFunctionSpecs (weights, ranges).
    ``run_dir`` keeps the full history on disk (the run store), ``prometheus_port``
    serves /metrics (0 = a free port); both are off by default. Bad input raises
    StepInputError with the reason.
    """

    def __init__(self, reward_function_names: Sequence[str | RewardFunctionSpec], window_size: int = 100,
                 track_distributions: bool = False, *, run_id: str = "tracker", run_dir: str | os.PathLike | None = None,
                 prometheus_port: int | None = None, **monitor_options: Any) -> None:
        if window_size < 1:
            raise ValueError(f"window_size must be at least 1, got {window_size}")
        self.window_size = window_size
        self.track_distributions = track_distributions
        # The old tracker ran no detectors: none by default here either (pass detectors=None for rewardscope's defaults).
        monitor_options.setdefault("detectors", [])
        self.monitor = RewardMonitor(run_id, reward_function_names, run_dir=run_dir, prometheus_port=prometheus_port,
                                     window_size=window_size, log_distributions=track_distributions, on_bad_input="raise",
                                     **monitor_options)
        self.reward_function_names = list(self.monitor.layout.reward_functions)
        self._recent: deque[RewardMetrics] = deque(maxlen=window_size)

    @staticmethod
    def _rewards_with_missing(rewards_by_function: Mapping[str, Any]) -> Mapping[str, Any]:
        """A function whose rewards are None gets NaN rewards (missing values) of the batch's length."""
        if not isinstance(rewards_by_function, Mapping):
            raise TypeError("rewards_by_function must map reward function names to arrays of rewards")
        if all(v is not None for v in rewards_by_function.values()):
            return rewards_by_function
        given = [v for v in rewards_by_function.values() if v is not None]
        if not given:
            raise ValueError("rewards_by_function has no rewards: every function's rewards are None")
        n = np.asarray(given[0]).size  # the monitor checks that the other functions agree
        return {k: np.full(n, np.nan) if v is None else v for k, v in rewards_by_function.items()}

    def track_step(self, step: int, rewards_by_function: Mapping[str, Any], kl_divergence: float | None = None,
                   policy_entropy: float | None = None, batch_size: int | None = None, num_generations: int | None = 1,
                   advantages: Any = None, *, completion_lengths: Any = None, max_completion_length: int | None = None,
                   clip_ratio: float | None = None, grad_norm: float | None = None, loss: float | None = None,
                   learning_rate: float | None = None, eval_accuracy: float | None = None,
                   tokens: int | None = None) -> RewardMetrics:
        """Record one step and return its RewardMetrics.

        ``num_generations`` is the group size G (completions per prompt; None = 1).
        ``batch_size`` is accepted for compatibility only: sizes come from the arrays.
        """
        rewards = self._rewards_with_missing(rewards_by_function)
        metrics = self.monitor.record_step(
            step, rewards, group_size=num_generations or 1, kl=kl_divergence, policy_entropy=policy_entropy,
            advantages=advantages, completion_lengths=completion_lengths, max_completion_length=max_completion_length,
            clip_ratio=clip_ratio, grad_norm=grad_norm, loss=loss, learning_rate=learning_rate,
            eval_accuracy=eval_accuracy, tokens=tokens)
        assert metrics is not None  # on_bad_input="raise": a bad step raised StepInputError above
        result = RewardMetrics.from_step(metrics, int(np.asarray(next(iter(rewards.values()))).size))
        # The window keeps the stored row only: the batch's arrays (rewards, advantages, texts) stay on the
        # metrics returned here and in the run store, so a window of large batches costs no more than one of small.
        self._recent.append(replace(result, reward_distribution=None,
                                    step_metrics=StepMetrics(metrics.step, metrics.timestamp, metrics.layout, metrics.row)))
        return result

    # ------------------------------------------------------------------ reading back
    def _series(self, metric_name: str) -> list[float | None]:
        if metric_name in RUN_FIELDS:
            return [getattr(m, metric_name) for m in self._recent]
        if metric_name in self.reward_function_names:
            return [m.function_rewards.get(metric_name) for m in self._recent]
        raise KeyError(f"unknown metric {metric_name!r}: use one of {sorted(RUN_FIELDS)} or a reward function name "
                       f"{self.reward_function_names}")

    def get_moving_average(self, metric_name: str, window: int = 10) -> float | None:
        """Mean of the metric's last ``window`` present values (a field name such as 'mean_reward', or a function name)."""
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        present = [v for v in self._series(metric_name) if v is not None][-window:]
        return float(np.mean(present)) if present else None

    def get_function_statistics(self, function_name: str) -> dict[str, float | None]:
        """Mean, std, min, max and latest of the function's batch mean over the window, its mean std and contribution (%)."""
        if function_name not in self.reward_function_names:
            raise KeyError(f"unknown reward function {function_name!r}; tracking {self.reward_function_names}")
        means = _stats([m.function_rewards.get(function_name) for m in self._recent])
        stds = _stats([m.function_stds.get(function_name) for m in self._recent])
        contributions = _stats([m.contributions.get(function_name) for m in self._recent])
        empty: dict[str, float | None] = {"mean": None, "std": None, "min": None, "max": None, "latest": None}
        result: dict[str, float | None] = dict(means) if means else empty
        result["mean_std"] = None if stds is None else stds["mean"]
        result["mean_contribution"] = None if contributions is None else contributions["mean"]
        return result

    def get_recent_trends(self, num_steps: int = 50) -> dict[str, dict[str, float | None]]:
        """Per metric over the last ``num_steps`` tracked steps (at most the window): least-squares slope per step,
        first and last value and their difference."""
        if num_steps < 2:
            raise ValueError(f"a trend needs at least 2 steps, got num_steps={num_steps}")
        recent = list(self._recent)[-num_steps:]
        steps = np.array([m.step for m in recent], dtype=np.float64)
        trends: dict[str, dict[str, float | None]] = {}
        for name in list(RUN_FIELDS) + self.reward_function_names:
            values = np.array([math.nan if v is None else v for v in self._series(name)[-num_steps:]], dtype=np.float64)
            present = ~np.isnan(values)
            if present.sum() < 2 or np.ptp(steps[present]) == 0:
                continue
            x, y = steps[present], values[present]
            slope = float(np.polyfit(x, y, 1)[0])
            trends[name] = {"slope": slope, "start": float(y[0]), "end": float(y[-1]), "change": float(y[-1] - y[0])}
        return trends

    def get_summary(self) -> dict[str, Any]:
        """Whole-run totals (steps, samples, non-finite rewards) and window statistics of every metric and function."""
        run = self.monitor.summary()
        return {
            "total_steps": run["steps_recorded"],
            "first_step": run["first_step"],
            "last_step": run["last_step"],
            "window_steps": len(self._recent),
            "total_samples": run["samples"],
            "nonfinite_rewards": run["nonfinite_rewards"],
            "metrics": {name: s for name in RUN_FIELDS if (s := _stats(self._series(name))) is not None},
            "functions": {fn: self.get_function_statistics(fn) for fn in self.reward_function_names},
        }

    def export_to_dict(self) -> dict[str, Any]:
        """The summary and every step of the window as plain dicts (the full history is in the run store, if any)."""
        return {
            "reward_function_names": list(self.reward_function_names),
            "window_size": self.window_size,
            "summary": self.get_summary(),
            "recent_metrics": [m.to_dict() for m in self._recent],
        }

    def close(self) -> None:
        self.monitor.close()

    def __enter__(self) -> RewardMetricsTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
