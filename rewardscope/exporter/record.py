"""StepRecord: everything one step produces, computed once, handed to every sink.

``RewardMonitor.record_step`` validates the step's input, computes one StepRecord and
fans it out. A sink never recomputes anything: the run store writes ``row``, the
Prometheus sink adds the increments to its counters and histograms, the mirrors log
the row, and every sink sees the same alert events. A record is a StepMetrics (the
stored row, read with ``value(name, reward_fn)``) plus:

- the increments behind the counters and histograms: samples, tokens, the reward
  histogram's bucket counts, the positive and negative parts of the reward sums (kept
  apart so every counter only grows), non-finite rewards per function, the finite
  completion lengths and the time since the previous step;
- the trend slopes published for the alert rules, and the alert transitions of the step;
- the step's raw arrays for sinks that keep samples (distributions, evidence).

Usage::

    record = monitor.record_step(1, {"correct": rewards})
    record.value("grpo_reward_mean"), record.samples, record.events
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..alerting.events import AlertEvent
from ..metrics.histograms import BucketLayout
from ..metrics.layout import StepMetrics

TrendKey = tuple[str, str, int]  # (metric, reward_fn or "", window in steps)


@dataclass(frozen=True)
class StepRecord(StepMetrics):
    """One step, complete: the stored row (StepMetrics) and what the sinks add up."""

    samples: int = 0
    tokens: float | None = None
    duration_seconds: float | None = None
    compute_seconds: float = 0.0
    bucket_layout: BucketLayout | None = None  # the reward histogram's bounds (rows: each function, then combined)
    # Histogram increments, rows: each reward function, then the combined reward.
    reward_bucket_counts: np.ndarray | None = None
    reward_positive_sums: np.ndarray | None = None
    reward_negative_sums: np.ndarray | None = None
    reward_finite_counts: np.ndarray | None = None
    nonfinite_by_function: np.ndarray | None = None
    completion_lengths: np.ndarray | None = None  # finite lengths only
    slopes: dict[TrendKey, float] = field(default_factory=dict)  # defined slopes only
    events: Sequence[AlertEvent] = ()
    alert_instances: Sequence[Any] = ()  # rewardscope.alerting.engine.InstanceState of every alert instance
    median_step_seconds: float | None = None
    # The step's own arrays, for sinks that keep samples (None when not passed).
    batch_rewards: np.ndarray | None = None  # (F, N) rewards as passed; ``rewards`` is set only when distributions are logged
    advantages: np.ndarray | None = None
    prompts: Sequence[str] | None = None
    completions: Sequence[str] | None = None
