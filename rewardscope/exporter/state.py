"""What a run exposes between steps: latest values, counters, histograms, trend slopes, alert state.

A sink that reports cumulative values (Prometheus, OpenTelemetry) keeps one RunState
and calls ``apply(record)`` once per step; its readers copy it under the state's lock
(``copy()``), so one scrape always sees one consistent step. Counters only grow:
rewards that can be negative are summed as a positive and a negative part, so
``rate()`` over any window gives exact averages whatever the scrape timing.

Usage::

    from rewardscope.exporter.state import RunState
    state = RunState.create("run-1", specs, FunctionTable.build(specs).buckets)
    state.apply(record)
    state.copy().run_counters["grpo_steps_total"]
"""

from __future__ import annotations

import copy
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..alerting.events import AlertState
from ..metrics.catalogue import CATALOGUE, SKIP_REASONS, Kind, Scope
from ..metrics.functions import RewardFunctionSpec
from ..metrics.histograms import DEFAULT_LENGTH_EDGES, STEP_DURATION_EDGES, BucketLayout, HistogramBank
from ..metrics.layout import StepLayout
from .record import StepRecord, TrendKey

STICKY_NAMES = tuple(s.name for s in CATALOGUE if s.sticky)
_COUNTERS = tuple(s for s in CATALOGUE if s.kind is Kind.COUNTER)
LABELLED_COUNTERS = tuple(s.name for s in _COUNTERS if s.extra_labels)  # by reason, sink, alert, ...
RUN_COUNTERS = tuple(s.name for s in _COUNTERS if s.scope is Scope.RUN and not s.extra_labels)
FUNCTION_COUNTERS = tuple(s.name for s in _COUNTERS if s.scope is Scope.FUNCTION)


def length_edges(max_completion_length: int | None) -> np.ndarray:
    """16 linear buckets up to the generation limit when it is known, else powers of two."""
    if max_completion_length:
        return np.unique(np.round(np.linspace(max_completion_length / 16, max_completion_length, 16)))
    return DEFAULT_LENGTH_EDGES


@dataclass
class RunState:
    run_id: str
    specs: tuple[RewardFunctionSpec, ...]
    layout: StepLayout
    run_info: dict[str, str]
    reward_histograms: HistogramBank  # rows: each reward function, then the combined reward
    length_histogram: HistogramBank
    duration_histogram: HistogramBank
    lock: threading.Lock = field(default_factory=threading.Lock)
    latest: np.ndarray | None = None  # exported row: the latest step, sticky metrics carried forward
    run_counters: dict[str, float] = field(default_factory=dict)
    function_counters: dict[str, np.ndarray] = field(default_factory=dict)
    labelled_counters: dict[str, dict[tuple[str, ...], float]] = field(default_factory=dict)
    slopes: dict[TrendKey, float] = field(default_factory=dict)
    alerts_firing: dict[tuple[str, str], int] = field(default_factory=dict)  # (alertname, severity) -> instances
    ended: bool = False
    alert_instances: tuple = ()  # rewardscope.alerting.engine.InstanceState: grpo_alert_active
    median_step_seconds: float | None = None

    @classmethod
    def create(cls, run_id: str, specs: Sequence[RewardFunctionSpec], reward_buckets: BucketLayout, *,
               run_info: dict[str, str] | None = None, max_completion_length: int | None = None) -> RunState:
        specs = tuple(specs)
        return cls(
            run_id=run_id,
            specs=specs,
            layout=StepLayout(tuple(s.name for s in specs)),
            run_info=dict(run_info or {}),
            reward_histograms=HistogramBank(reward_buckets),
            length_histogram=HistogramBank([length_edges(max_completion_length)]),
            duration_histogram=HistogramBank([STEP_DURATION_EDGES]),
            run_counters=dict.fromkeys(RUN_COUNTERS, 0.0),
            function_counters={name: np.zeros(len(specs)) for name in FUNCTION_COUNTERS},
            labelled_counters={name: defaultdict(float, {(r,): 0.0 for r in SKIP_REASONS} if name == "grpo_skipped_steps_total" else {})
                               for name in LABELLED_COUNTERS},
        )

    def apply(self, record: StepRecord) -> None:
        """Add one step: the latest row, every counter and histogram, slopes and alert transitions."""
        f = len(self.specs)
        with self.lock:
            self.latest = self._carry_sticky(record.row)
            counters = self.run_counters
            counters["grpo_steps_total"] += 1
            counters["grpo_samples_total"] += record.samples
            if record.tokens is not None:
                counters["grpo_tokens_total"] += record.tokens
            counters["rewardscope_record_seconds_total"] += record.compute_seconds
            positive, negative = record.reward_positive_sums, record.reward_negative_sums
            counts, finite = record.reward_bucket_counts, record.reward_finite_counts
            if positive is not None and negative is not None and counts is not None and finite is not None:
                # The bank's sums are positive parts: exposed as _sum only for rows declared non-negative, they never decrease.
                self.reward_histograms.add(counts, positive, finite)
                self.function_counters["grpo_reward_fn_positive_sum_total"] += positive[:f]
                self.function_counters["grpo_reward_fn_negative_sum_total"] += negative[:f]
                counters["grpo_reward_positive_sum_total"] += positive[f]
                counters["grpo_reward_negative_sum_total"] += negative[f]
            if record.nonfinite_by_function is not None:
                self.function_counters["grpo_reward_fn_nonfinite_total"] += record.nonfinite_by_function
            if record.completion_lengths is not None:
                self.length_histogram.observe_row(0, record.completion_lengths)
            if record.duration_seconds is not None:
                self.duration_histogram.observe_value(0, record.duration_seconds)
            self.slopes = record.slopes
            self._set_alert_state(record.alert_instances, record.median_step_seconds)
            for event in record.events:
                self._apply_alert(event.alertname, event.severity, event.state is AlertState.FIRING)

    def set_alert_state(self, instances, median_step_seconds: float | None) -> None:
        with self.lock:
            self._set_alert_state(instances, median_step_seconds)

    def _set_alert_state(self, instances, median_step_seconds: float | None) -> None:
        self.alert_instances = tuple(instances)
        self.median_step_seconds = median_step_seconds
        activations = self.labelled_counters["grpo_alert_activations_total"]
        for i in self.alert_instances:
            activations[(i.alert_id, i.alert, i.severity, i.reward_fn)] = float(i.activations)

    def _apply_alert(self, alertname: str, severity: str, firing: bool) -> None:
        key = (alertname, severity)
        if firing:
            self.alerts_firing[key] = self.alerts_firing.get(key, 0) + 1
            self.labelled_counters["grpo_alerts_fired_total"][key] += 1
        else:
            self.alerts_firing[key] = max(self.alerts_firing.get(key, 0) - 1, 0)

    def _carry_sticky(self, row: np.ndarray) -> np.ndarray:
        """The row to export: sticky metrics absent this step keep their last value."""
        if self.latest is None:
            return row
        exported = row
        for name in STICKY_NAMES:
            i = self.layout.index(name)
            if exported[i] != exported[i]:  # NaN: not measured this step
                if exported is row:
                    exported = row.copy()
                exported[i] = self.latest[i]
        return exported

    def count(self, name: str, labels: tuple[str, ...], amount: float = 1.0) -> None:
        """Add to a labelled counter (skipped steps by reason, sink errors by sink)."""
        with self.lock:
            self.labelled_counters[name][labels] += amount

    def end(self) -> None:
        with self.lock:
            self.ended = True

    def copy(self) -> RunState:
        """A consistent copy for one scrape, taken under the lock (the scrape counter counts it)."""
        with self.lock:
            self.run_counters["rewardscope_scrapes_total"] += 1
            clone = copy.copy(self)
            clone.lock = threading.Lock()
            clone.latest = None if self.latest is None else self.latest.copy()
            clone.run_counters = dict(self.run_counters)
            clone.function_counters = {k: v.copy() for k, v in self.function_counters.items()}
            clone.labelled_counters = {k: dict(v) for k, v in self.labelled_counters.items()}
            clone.slopes = dict(self.slopes)
            clone.alerts_firing = dict(self.alerts_firing)
            clone.reward_histograms = self.reward_histograms.copy()
            clone.length_histogram = self.length_histogram.copy()
            clone.duration_histogram = self.duration_histogram.copy()
        return clone
