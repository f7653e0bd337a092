"""The Prometheus exposition of one run: a prometheus_client collector over a RunState.

``RunCollector`` copies the run's state under its lock (one scrape sees one step) and
yields one family per catalogue entry, in catalogue order, with the catalogue's name,
type and help. prometheus_client renders them, in the text format 0.0.4 or in
OpenMetrics, whichever the scraper asks for.

A histogram's ``_sum`` is a counter and must never decrease, so reward histograms expose
``_sum`` and ``_count`` only when their declared minimum is 0 or more (OpenMetrics pairs
them); the positive and negative parts of every reward sum are counters of their own,
and the ``le="+Inf"`` bucket counts the observations, so PromQL computes exact means.

Usage::

    from prometheus_client import CollectorRegistry, generate_latest
    registry = CollectorRegistry()
    registry.register(RunCollector(state))
    print(generate_latest(registry).decode())
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from ..metrics.catalogue import CATALOGUE, Kind, MetricSpec, Scope
from ..metrics.functions import combined_range
from ..metrics.histograms import HistogramBank
from .state import RunState

Labels = dict[str, str]


def _le(bound: float) -> str:
    return repr(float(bound)) if math.isfinite(bound) else "+Inf"


def _family(spec: MetricSpec) -> Metric:
    kind = spec.kind.value
    if spec.kind is Kind.COUNTER:  # prometheus_client names a counter family without its _total
        return Metric(spec.name[: -len("_total")], spec.help, kind)
    if spec.kind is Kind.INFO:
        return Metric(spec.name[: -len("_info")], spec.help, kind)
    return Metric(spec.name, spec.help, kind)


class RunCollector(Collector):
    """prometheus_client collector for one run; see the module docstring."""

    def __init__(self, state: RunState) -> None:
        self.state = state
        specs = state.specs
        declared = combined_range(specs)
        # Rows of the reward histogram bank whose values can never be negative, so _sum never decreases.
        self._sum_is_monotone = [s.min_value is not None and s.min_value >= 0 for s in specs]
        self._sum_is_monotone.append(declared is not None and declared[0] >= 0)
        self._gauges: dict[str, Callable[[RunState, Metric], None]] = {
            "grpo_reward_fn_weight": self._weights,
            "grpo_metric_slope_per_step": self._slopes,
            "grpo_alert_firing": self._alerts_firing,
            "grpo_run_ended": self._run_ended,
            "grpo_alert_active": self._alert_active,
            "grpo_step_duration_median_seconds": self._median_step,
            # Per-rank gauges come from rank 0's RankSignals collector (rewardscope/distributed.py), not the run state.
            **{spec.name: lambda s, family: None for spec in CATALOGUE if "rank" in spec.extra_labels},
        }
        self._histograms: dict[str, Callable[[RunState], tuple[HistogramBank, list[Labels], list[int], list[bool]]]] = {
            "grpo_step_duration_seconds": lambda s: (s.duration_histogram, [self._run], [0], [True]),
            "grpo_completion_length_tokens": lambda s: (s.length_histogram, [self._run], [0], [True]),
            "grpo_reward_fn_value": lambda s: (s.reward_histograms, self._by_fn, list(range(len(specs))),
                                               self._sum_is_monotone[:-1]),
            "grpo_reward_value": lambda s: (s.reward_histograms, [self._run], [len(specs)], self._sum_is_monotone[-1:]),
        }
        self._run: Labels = {"run_id": state.run_id}
        self._by_fn: list[Labels] = [{"run_id": state.run_id, "reward_fn": s.name} for s in specs]

    def describe(self) -> list[Metric]:
        return []  # the families depend on the run's state; an empty describe keeps registration lazy

    def collect(self) -> Iterator[Metric]:
        s = self.state.copy()
        for spec in CATALOGUE:
            family = _family(spec)
            if spec.kind is Kind.INFO:
                labels = {**self._run, **{k: str(s.run_info.get(k, "")) for k in spec.extra_labels}}
                family.add_sample(spec.name, labels, 1.0)
            elif spec.kind is Kind.GAUGE and spec.stored:
                self._row_gauge(s, spec, family)
            elif spec.kind is Kind.GAUGE:
                self._gauges[spec.name](s, family)
            elif spec.kind is Kind.COUNTER:
                self._counter(s, spec, family)
            else:
                self._histogram(spec.name, family, *self._histograms[spec.name](s))
            if family.samples:
                yield family

    # ------------------------------------------------------------------ one family each
    def _row_gauge(self, s: RunState, spec: MetricSpec, family: Metric) -> None:
        if s.latest is None:
            return
        if spec.scope is Scope.RUN:
            value = float(s.latest[s.layout.index(spec.name)])
            if not math.isnan(value):
                family.add_sample(spec.name, self._run, value)
            return
        for labels, value in zip(self._by_fn, s.latest[s.layout.function_slots[spec.name]].tolist()):
            if not math.isnan(value):
                family.add_sample(spec.name, labels, value)

    def _counter(self, s: RunState, spec: MetricSpec, family: Metric) -> None:
        if spec.extra_labels:
            for values, value in sorted(s.labelled_counters[spec.name].items()):
                family.add_sample(spec.name, {**self._run, **dict(zip(spec.extra_labels, values))}, value)
        elif spec.scope is Scope.FUNCTION:
            for labels, value in zip(self._by_fn, s.function_counters[spec.name].tolist()):
                family.add_sample(spec.name, labels, value)
        else:
            family.add_sample(spec.name, self._run, s.run_counters[spec.name])

    def _weights(self, s: RunState, family: Metric) -> None:
        for labels, spec in zip(self._by_fn, s.specs):
            family.add_sample(family.name, labels, float(spec.weight))

    def _slopes(self, s: RunState, family: Metric) -> None:
        for (name, fn, window), value in sorted(s.slopes.items()):
            if math.isfinite(value):
                labels = {**self._run, "metric": name, "reward_fn": fn, "window_steps": str(window)}
                family.add_sample(family.name, labels, value)

    def _alerts_firing(self, s: RunState, family: Metric) -> None:
        for (name, severity), count in sorted(s.alerts_firing.items()):
            family.add_sample(family.name, {**self._run, "alertname": name, "severity": severity}, 1.0 if count else 0.0)

    def _alert_active(self, s: RunState, family: Metric) -> None:
        for i in s.alert_instances:
            labels = {**self._run, "alert_id": i.alert_id, "alert": i.alert, "severity": i.severity, "reward_fn": i.reward_fn}
            family.add_sample(family.name, labels, 1.0 if i.active else 0.0)

    def _median_step(self, s: RunState, family: Metric) -> None:
        if s.median_step_seconds is not None:
            family.add_sample(family.name, self._run, s.median_step_seconds)

    def _run_ended(self, s: RunState, family: Metric) -> None:
        family.add_sample(family.name, self._run, 1.0 if s.ended else 0.0)

    @staticmethod
    def _histogram(name: str, family: Metric, bank: HistogramBank, label_sets: list[Labels], rows: list[int],
                   with_sum: list[bool]) -> None:
        cumulative_by_row = bank.cumulative_counts()
        for row, labels, expose_sum in zip(rows, label_sets, with_sum):
            cumulative = cumulative_by_row[row].tolist()
            bounds = [_le(b) for b in bank.edges[row]] + ["+Inf"]
            for le, count in zip(bounds, cumulative):
                family.add_sample(name + "_bucket", {**labels, "le": le}, float(count))
            if expose_sum:  # OpenMetrics: _count and _sum come together, and only for non-negative observations
                family.add_sample(name + "_count", labels, float(cumulative[-1]))
                family.add_sample(name + "_sum", labels, float(np.float64(bank.sums[row])))
