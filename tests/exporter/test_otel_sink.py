"""OpenTelemetrySink through a real RewardMonitor: exact values read back from an in-memory reader, close, missing packages."""

import sys
from typing import ClassVar

import numpy as np
import pytest

pytest.importorskip("opentelemetry.sdk", reason="the OpenTelemetry mirror is optional (rewardscope[otel])")
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExporter, MetricExportResult

from rewardscope import RewardFunctionSpec, RewardMonitor
from rewardscope.alerting.events import AlertEvent, AlertState
from rewardscope.exporter.otel_sink import OpenTelemetrySink
from rewardscope.metrics.catalogue import CATALOGUE, Kind, Scope, metric, stored_metrics

SPECS = [RewardFunctionSpec("format", 1.0, 0.0, 3.0), RewardFunctionSpec("answer", 1.0, -1.0, 3.0)]
EXPORTER_MODULE = "opentelemetry.exporter.otlp.proto.http.metric_exporter"


FIRING = AlertEvent("RewardCollapse", AlertState.FIRING, "critical", 1, 0.0, {"run_id": "run"})


class Scripted:
    """An alert evaluator that emits the given events at the given steps."""

    def __init__(self, script):
        self.script = script

    def bind(self, run_id, reward_functions):
        pass

    def trend_requirements(self):
        return []

    def evaluate(self, metrics, slopes):
        return self.script.get(metrics.step, [])


def provider():
    reader = InMemoryMetricReader()
    return MeterProvider(metric_readers=[reader]), reader


def monitor(run_id, sink):
    return RewardMonitor(run_id, SPECS, group_size=2, run_dir=None, prometheus_port=None, extra_sinks=[sink])


def record(monitor, step, scale=1.0, **extra):
    extra.setdefault("kl", 0.125 * step)
    return monitor.record_step(step, {"format": np.array([0.0, 3.0, 3.0, 3.0]) * scale, "answer": np.array([-1.0, 3.0, 1.0, 1.0])},
                               advantages=[-1.0, 1.0, 0.5, -0.5], **extra)


def collect(data):
    """{metric: {sorted attribute items: value}} plus {metric: (unit, description)} of a MetricsData."""
    values, meta = {}, {}
    for resource in data.resource_metrics if data is not None else ():
        for scope in resource.scope_metrics:
            for m in scope.metrics:
                meta[m.name] = (m.unit, m.description)
                for point in m.data.data_points:
                    values.setdefault(m.name, {})[tuple(sorted(point.attributes.items()))] = point.value
    return values, meta


def read(reader):
    return collect(reader.get_metrics_data())[0]


RUN = (("run_id", "run"),)


def fn(name):
    return (("reward_fn", name), ("run_id", "run"))


def test_gauges_report_the_latest_step_with_exact_values():
    meter_provider, reader = provider()
    sink = OpenTelemetrySink("run", meter_provider=meter_provider)
    with monitor("run", sink) as m:
        record(m, 1)
        first = read(reader)
        record(m, 2, scale=0.5)
        second = read(reader)
    # combined rewards: step 1 -> -1, 6, 4, 4; step 2 -> -1, 4.5, 2.5, 2.5
    assert first["grpo_reward_mean"] == {RUN: 3.25}
    assert first["grpo_reward_fn_mean"] == {fn("format"): 2.25, fn("answer"): 1.0}
    assert second["grpo_step"] == {RUN: 2.0}
    assert second["grpo_reward_mean"] == {RUN: 2.125}
    assert second["grpo_reward_sum_of_batch"] == {RUN: 8.5}
    assert second["grpo_reward_fn_mean"] == {fn("format"): 1.125, fn("answer"): 1.0}
    assert second["grpo_reward_fn_std"][fn("answer")] == pytest.approx(np.std([-1.0, 3.0, 1.0, 1.0]))
    assert second["grpo_reward_fn_contribution_ratio"] == pytest.approx({fn("format"): 4.5 / 8.5, fn("answer"): 4 / 8.5})
    assert second["grpo_reward_fn_min"] == {fn("format"): 0.0, fn("answer"): -1.0}
    assert second["grpo_kl"] == {RUN: 0.25}
    assert second["grpo_advantage_std"] == {RUN: pytest.approx(np.sqrt(0.625))}
    # every gauge point is exactly the latest step's value: nothing of step 1 is left
    latest = m.latest
    for name, series in second.items():
        if metric(name).kind is Kind.COUNTER:
            continue
        for attributes, value in series.items():
            assert value == latest.value(name, dict(attributes).get("reward_fn"))
    # the counters are the same RunState as /metrics: cumulative, samples and reward parts included
    assert second["grpo_steps_total"] == {RUN: 2}
    assert second["grpo_samples_total"] == {RUN: 8}
    assert second["grpo_reward_fn_negative_sum_total"] == {fn("format"): 0.0, fn("answer"): 2.0}
    assert second["grpo_reward_fn_positive_sum_total"][fn("format")] == 13.5


def test_every_stored_gauge_is_declared_with_the_catalogue_help_and_a_round_tripping_unit():
    meter_provider, reader = provider()
    sink = OpenTelemetrySink("run", meter_provider=meter_provider)
    with RewardMonitor("run", SPECS, group_size=2, run_dir=None, extra_sinks=[sink], alerts=Scripted({1: [FIRING]})) as m:
        record(m, 1, policy_entropy=1.5, eval_accuracy=0.5, clip_ratio=0.1, grad_norm=1.0, loss=0.2, learning_rate=1e-6,
               completion_lengths=[10, 20, 30, 40], max_completion_length=40)
        values, meta = collect(reader.get_metrics_data())
    stored = {s.name for scope in (Scope.RUN, Scope.FUNCTION) for s in stored_metrics(scope)}
    # No sink failed; and with neither /metrics nor a registry, no engine verdicts are kept for Prometheus's rules.
    counters = {s.name for s in CATALOGUE if s.kind is Kind.COUNTER} - {"rewardscope_sink_errors_total", "grpo_alert_activations_total"}
    assert set(meta) == stored | counters | {"grpo_alert_firing"}
    for name, (_unit, description) in meta.items():
        assert description == metric(name).help
    assert meta["grpo_reward_mean"][0] == "{reward}"
    assert meta["grpo_reward_variance"][0] == "{reward^2}"
    assert meta["grpo_reward_fn_contribution_ratio"][0] == "1"
    assert meta["grpo_last_step_timestamp_seconds"][0] == "s"
    # "1" would make a Prometheus translation append _ratio; the annotation is dropped instead
    assert meta["grpo_reward_signal_to_noise"][0] == "{ratio}"
    assert meta["grpo_steps_total"][0] == "{steps}"
    assert values["grpo_completion_length_mean_tokens"] == {RUN: 25.0}


def test_absent_metrics_report_no_point_and_eval_accuracy_keeps_its_last_value():
    meter_provider, reader = provider()
    sink = OpenTelemetrySink("run", meter_provider=meter_provider)
    with RewardMonitor("run", SPECS, group_size=4, run_dir=None, extra_sinks=[sink]) as m:
        record(m, 1, eval_accuracy=0.5)
        first = read(reader)
        record(m, 2, kl=None)
        second = read(reader)
    assert first["grpo_kl"] == {RUN: 0.125} and first["grpo_eval_accuracy_ratio"] == {RUN: 0.5}
    assert "grpo_kl" not in second
    assert second["grpo_eval_accuracy_ratio"] == {RUN: 0.5}
    assert "grpo_policy_entropy" not in second


def test_alert_transitions():
    meter_provider, reader = provider()
    sink = OpenTelemetrySink("run", meter_provider=meter_provider)
    labels = {"run_id": "run"}
    script = {1: [AlertEvent("RewardCollapse", AlertState.FIRING, "critical", 1, 0.0, labels),
                  AlertEvent("FunctionSaturated", AlertState.FIRING, "warning", 1, 0.0, {**labels, "reward_fn": "format"}),
                  AlertEvent("FunctionSaturated", AlertState.FIRING, "warning", 1, 0.0, {**labels, "reward_fn": "answer"})],
              2: [AlertEvent("RewardCollapse", AlertState.RESOLVED, "critical", 2, 0.0, labels),
                  AlertEvent("FunctionSaturated", AlertState.RESOLVED, "warning", 2, 0.0, {**labels, "reward_fn": "format"})]}
    with RewardMonitor("run", SPECS, group_size=2, run_dir=None, extra_sinks=[sink], alerts=Scripted(script)) as m:
        record(m, 1)
        record(m, 2)
        values = read(reader)
    assert values["grpo_alert_firing"] == {(("alertname", "RewardCollapse"), ("run_id", "run"), ("severity", "critical")): 0,
                                           (("alertname", "FunctionSaturated"), ("run_id", "run"), ("severity", "warning")): 1}
    assert values["grpo_alerts_fired_total"] == {(("alertname", "RewardCollapse"), ("run_id", "run"), ("severity", "critical")): 1,
                                                 (("alertname", "FunctionSaturated"), ("run_id", "run"), ("severity", "warning")): 2}


def test_two_runs_share_one_provider():
    meter_provider, reader = provider()
    a, b = OpenTelemetrySink("a", meter_provider=meter_provider), OpenTelemetrySink("b", meter_provider=meter_provider)
    with monitor("a", a) as ma, monitor("b", b) as mb:
        record(ma, 1)
        record(mb, 1, scale=0.5)
        values = read(reader)
    assert values["grpo_reward_mean"] == {(("run_id", "a"),): 3.25, (("run_id", "b"),): 2.125}


def test_close_flushes_a_passed_provider_without_shutting_it_down():
    meter_provider, reader = provider()
    sink = OpenTelemetrySink("run", meter_provider=meter_provider)
    with monitor("run", sink) as m:
        record(m, 1)
    values = read(reader)
    # the run is over: its gauges stop; the cumulative step counter stays, as counters do
    assert "grpo_reward_mean" not in values and values["grpo_steps_total"] == {RUN: 1}
    # the caller's provider still works
    meter_provider.get_meter("caller").create_counter("caller_total").add(1)
    assert read(reader)["caller_total"] == {(): 1}
    with pytest.raises(RuntimeError, match="closed"):
        sink.write_step(m.latest)
    sink.close({})  # a second close is a no-op


class FakeExporter(MetricExporter):
    """Stands in for OTLPMetricExporter: records what would have been sent; no network."""

    instances: ClassVar[list] = []

    def __init__(self, endpoint=None):
        super().__init__()
        self.endpoint, self.exported, self.shut_down = endpoint, [], False
        FakeExporter.instances.append(self)

    def export(self, metrics_data, timeout_millis=10_000, **kwargs):
        self.exported.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis=10_000):
        return True

    def shutdown(self, timeout_millis=30_000, **kwargs):
        self.shut_down = True


def test_the_own_provider_exports_over_otlp_and_is_shut_down_on_close(monkeypatch):
    pytest.importorskip(EXPORTER_MODULE)
    monkeypatch.setattr(f"{EXPORTER_MODULE}.OTLPMetricExporter", FakeExporter)
    monkeypatch.setattr(FakeExporter, "instances", [])
    # a long interval: the only export is the final one that shutdown makes
    sink = OpenTelemetrySink("run", endpoint="http://collector.invalid:4318/v1/metrics", export_interval_seconds=3600)
    with monitor("run", sink) as m:
        record(m, 1)
    (exporter,) = FakeExporter.instances
    assert exporter.endpoint == "http://collector.invalid:4318/v1/metrics"
    assert exporter.shut_down
    values, _ = collect(exporter.exported[-1])
    assert values["grpo_reward_mean"] == {RUN: 3.25}
    assert values["grpo_reward_fn_mean"] == {fn("format"): 2.25, fn("answer"): 1.0}


def test_bad_arguments():
    meter_provider, _ = provider()
    with pytest.raises(ValueError, match="endpoint"):
        OpenTelemetrySink("run", meter_provider=meter_provider, endpoint="http://localhost:4318/v1/metrics")
    with pytest.raises(ValueError, match="export_interval_seconds"):
        OpenTelemetrySink("run", export_interval_seconds=0)


def test_a_missing_sdk_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.metrics", None)
    with pytest.raises(ImportError, match=r"pip install 'rewardscope\[otel\]'"):
        OpenTelemetrySink("run")


def test_a_missing_otlp_exporter_is_a_clear_error_unless_a_provider_is_passed(monkeypatch):
    monkeypatch.setitem(sys.modules, EXPORTER_MODULE, None)
    with pytest.raises(ImportError, match="pip install opentelemetry-exporter-otlp-proto-http"):
        OpenTelemetrySink("run")
    meter_provider, reader = provider()
    sink = OpenTelemetrySink("run", meter_provider=meter_provider)
    with monitor("run", sink) as m:
        record(m, 1)
        assert read(reader)["grpo_reward_mean"] == {RUN: 3.25}
