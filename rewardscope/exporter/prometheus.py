"""Prometheus exposition of a run: a custom collector over the run's state, and /metrics.

The collector renders the latest step's snapshot, the counters and the histograms
of one RunState, copied under the run's lock so one scrape sees one step. Every
family comes from a catalogue entry (name, type, help); a test fails if the
collector emits anything else.

Usage::

    from prometheus_client import CollectorRegistry, generate_latest
    registry = CollectorRegistry()
    registry.register(RunCollector(state))
    print(generate_latest(registry).decode())

    server = MetricsServer(registry, host="127.0.0.1", port=0)   # 0 = any free port
    print(server.port); server.stop()
"""

from __future__ import annotations

import logging
import math
import threading
from typing import Iterator

import numpy as np
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.samples import Sample
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily,
                                    Metric)

from ..metrics.catalogue import CATALOGUE, Kind, Scope, metric
from ..metrics.histograms import HistogramBank
from ..metrics.state import RunState

log = logging.getLogger("rewardscope")

DEFAULT_PORT = 19464
DEFAULT_HOST = "127.0.0.1"

_ROW_GAUGES = tuple(s for s in CATALOGUE if s.kind is Kind.GAUGE and s.stored)


def _le(bound: float) -> str:
    return repr(float(bound)) if math.isfinite(bound) else "+Inf"


def _histogram(name: str, labels: list[str], bank: HistogramBank, label_values: list[list[str]],
               rows: range | None = None) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, metric(name).help, labels=labels)
    cumulative_by_row = bank.cumulative_counts()
    for row, values in zip(rows or range(len(label_values)), label_values):
        cumulative = cumulative_by_row[row]
        buckets = [(_le(b), float(c)) for b, c in zip(bank.edges[row], cumulative[:-1])]
        buckets.append(("+Inf", float(cumulative[-1])))
        # prometheus_client drops _sum and _count when a bucket bound is negative (an OpenMetrics rule);
        # rewards are often negative and rate(_sum)/rate(_count) is the exact mean we promise, so add them here.
        family.add_metric(values, buckets, None)
        base = dict(zip(labels, values))
        family.samples.append(Sample(name + "_count", base, float(cumulative[-1])))
        family.samples.append(Sample(name + "_sum", base, float(bank.sums[row])))
    return family


class RunCollector:
    """prometheus_client collector for one run."""

    def __init__(self, state: RunState) -> None:
        self.state = state

    def describe(self) -> list:
        return []  # the families depend on the run's state; an empty describe keeps registration lazy

    def collect(self) -> Iterator[Metric]:
        s = self.state
        with s.lock:
            s.counters["rewardscope_scrapes_total"] += 1
            latest = None if s.latest is None else s.latest.copy()
            counters = dict(s.counters)
            labelled = {k: dict(v) for k, v in s.labelled_counters.items()}
            nonfinite = s.nonfinite_totals.copy()
            slopes = dict(s.slopes)
            firing = dict(s.alerts_firing)
            reward_bank = s.reward_histograms.copy()
            length_bank = s.length_histogram.copy()
            duration_bank = s.duration_histogram.copy()
        run = s.run_id
        fns = s.layout.reward_functions

        info = InfoMetricFamily("grpo_run", metric("grpo_run_info").help, labels=["run_id"])
        info.add_metric([run], {k: s.run_info.get(k, "") for k in metric("grpo_run_info").extra_labels})
        yield info

        if latest is not None:
            for spec in _ROW_GAUGES:
                family = GaugeMetricFamily(spec.name, spec.help, labels=list(spec.labels))
                if spec.scope is Scope.RUN:
                    v = latest[s.layout.index(spec.name)]
                    if not math.isnan(v):
                        family.add_metric([run], float(v))
                else:
                    for fn, v in zip(fns, latest[s.layout.function_slots[spec.name]].tolist()):
                        if not math.isnan(v):
                            family.add_metric([run, fn], v)
                if family.samples:
                    yield family

        weight = GaugeMetricFamily("grpo_reward_fn_weight", metric("grpo_reward_fn_weight").help, labels=["run_id", "reward_fn"])
        for spec in s.specs:
            weight.add_metric([run, spec.name], spec.weight)
        yield weight

        if slopes:
            family = GaugeMetricFamily("grpo_metric_slope_per_step", metric("grpo_metric_slope_per_step").help,
                                       labels=list(metric("grpo_metric_slope_per_step").labels))
            for (name, fn, window), value in sorted(slopes.items()):
                if value is not None and math.isfinite(value):
                    family.add_metric([run, name, fn, str(window)], value)
            yield family

        family = GaugeMetricFamily("grpo_alert_firing", metric("grpo_alert_firing").help, labels=list(metric("grpo_alert_firing").labels))
        for (name, severity), count in sorted(firing.items()):
            family.add_metric([run, name, severity], 1.0 if count else 0.0)
        yield family

        for name in ("grpo_steps_total", "grpo_samples_total", "grpo_tokens_total", "rewardscope_record_seconds_total",
                     "rewardscope_scrapes_total"):
            c = CounterMetricFamily(name, metric(name).help, labels=["run_id"])
            c.add_metric([run], counters.get(name, 0.0))
            yield c

        for name in ("grpo_skipped_steps_total", "grpo_alerts_fired_total", "rewardscope_sink_errors_total"):
            spec = metric(name)
            c = CounterMetricFamily(name, spec.help, labels=list(spec.labels))
            for label_values, value in sorted(labelled.get(name, {}).items()):
                c.add_metric([run, *label_values], value)
            yield c

        c = CounterMetricFamily("grpo_reward_fn_nonfinite_total", metric("grpo_reward_fn_nonfinite_total").help, labels=["run_id", "reward_fn"])
        for fn, value in zip(fns, nonfinite.tolist()):
            c.add_metric([run, fn], value)
        yield c

        yield _histogram("grpo_reward_fn_value", ["run_id", "reward_fn"], reward_bank, [[run, fn] for fn in fns])
        yield _histogram("grpo_reward_value", ["run_id"], reward_bank, [[run]], rows=range(len(fns), len(fns) + 1))
        yield _histogram("grpo_completion_length_tokens", ["run_id"], length_bank, [[run]])
        yield _histogram("grpo_step_duration_seconds", ["run_id"], duration_bank, [[run]])


class MetricsServer:
    """/metrics over HTTP from a background thread; ``stop()`` closes the socket."""

    def __init__(self, registry: CollectorRegistry, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        except OSError as error:
            raise OSError(f"cannot serve /metrics on {host}:{port}: {error.strerror or error}; "
                          f"pass another port (0 picks a free one)") from error
        self.host = host
        self.port = int(self._server.server_address[1])
        self._stopped = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def stop(self) -> None:
        if not self._stopped.is_set():
            self._stopped.set()
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
