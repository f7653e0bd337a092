"""The per-step row: which stored metrics a run has, in which column, and StepMetrics.

A run's stored gauges are laid out once, from the catalogue and the run's reward
functions, as a fixed list of columns. Each step fills one float row (NaN =
absent); the run store writes that row, the rolling window keeps it, and alert
rules and trends read it by (metric, reward_fn).

Usage::

    from rewardscope.metrics.layout import StepLayout
    layout = StepLayout(("format_exact", "check_answer"))
    layout.column_names()[:2]       # ['grpo_step', 'grpo_last_step_timestamp_seconds']
    layout.index("grpo_reward_fn_mean", "check_answer")
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .catalogue import Scope, metric, stored_metrics


def column_name(name: str, reward_fn: str | None) -> str:
    """The run store's column name: ``metric`` or ``metric{fn}``."""
    return name if reward_fn is None else f"{name}{{{reward_fn}}}"


class StepLayout:
    """Fixed column order of the stored per-step gauges of one run."""

    def __init__(self, reward_functions: tuple[str, ...]) -> None:
        self.reward_functions = tuple(reward_functions)
        self.run_metrics = tuple(s.name for s in stored_metrics(Scope.RUN))
        self.function_metrics = tuple(s.name for s in stored_metrics(Scope.FUNCTION))
        columns: list[tuple[str, str | None]] = [(m, None) for m in self.run_metrics]
        # Function-major order keeps one function's columns together in the file.
        columns += [(m, fn) for fn in self.reward_functions for m in self.function_metrics]
        self.columns: tuple[tuple[str, str | None], ...] = tuple(columns)
        self._index = {key: i for i, key in enumerate(self.columns)}
        self.run_index = np.array([self._index[(m, None)] for m in self.run_metrics])
        n_fn = len(self.reward_functions)
        # function_slots[m] = the F column indices of per-function metric m, in function order.
        self.function_slots = {m: np.array([self._index[(m, fn)] for fn in self.reward_functions]) for m in self.function_metrics}
        self.width = len(columns)
        self._n_fn = n_fn

    def index(self, name: str, reward_fn: str | None = None) -> int:
        try:
            return self._index[(name, reward_fn)]
        except KeyError:
            spec = metric(name)  # raises a clear KeyError for unknown metrics
            if spec.scope is Scope.FUNCTION and reward_fn not in self.reward_functions:
                raise KeyError(f"unknown reward function {reward_fn!r}; this run has {list(self.reward_functions)}") from None
            raise KeyError(f"metric {name!r} is not stored per step") from None

    def has(self, name: str, reward_fn: str | None = None) -> bool:
        return (name, reward_fn) in self._index

    def column_names(self) -> list[str]:
        return [column_name(m, fn) for m, fn in self.columns]

    def new_row(self) -> np.ndarray:
        return np.full(self.width, np.nan)


@dataclass(frozen=True)
class StepMetrics:
    """Everything recorded for one step: the stored row plus the raw rewards when kept.

    ``value(name, reward_fn)`` returns a float, or None when the metric is absent
    this step (not passed by the trainer, or undefined, e.g. SNR with G = 1).
    """

    step: int
    timestamp: float
    layout: StepLayout
    row: np.ndarray
    rewards: np.ndarray | None = None  # (F, N) raw rewards, only when distributions are logged

    def value(self, name: str, reward_fn: str | None = None) -> float | None:
        v = float(self.row[self.layout.index(name, reward_fn)])
        return None if math.isnan(v) else v

    @property
    def reward_functions(self) -> tuple[str, ...]:
        return self.layout.reward_functions

    def items(self) -> Iterator[tuple[str, str | None, float]]:
        """(metric, reward_fn, value) for every value present this step."""
        for (name, fn), v in zip(self.layout.columns, self.row.tolist()):
            if not math.isnan(v):
                yield name, fn, v

    def as_dict(self) -> dict[str, float]:
        """Present values keyed by run store column name (``metric`` or ``metric{fn}``)."""
        return {column_name(name, fn): v for name, fn, v in self.items()}
