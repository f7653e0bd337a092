"""OpenTelemetry mirror: the run's gauges and counters as OTel metrics, pushed over OTLP/HTTP.

The sink keeps the same RunState as the Prometheus sink (exporter/state.py) and reports
it through observable instruments, so both outputs agree by construction:

- every per-step gauge of the catalogue (the run store's columns) as an observable
  gauge of the same name, for the latest step only; a metric absent from the latest
  step (KL the trainer did not pass) reports no point, eval accuracy keeps its last
  measured value, as on /metrics;
- every counter of the catalogue (steps, samples, tokens, the positive and negative
  reward sums, non-finite rewards, skipped steps by reason, alerts fired, sink errors)
  as an observable counter with its cumulative value;
- ``grpo_alert_firing{alertname,severity}`` from the alert transitions.

Histograms are not mirrored (OTel's explicit-bucket histograms want observations, not
bucket counts). Attributes are ``run_id``, plus ``reward_fn`` and the counter's own labels.

Units follow UCUM, as OTel asks, and are chosen so that an OTLP to Prometheus
translation, which appends the unit to the name unless the name already contains
it, gives back the catalogue's names: ``s`` and ``1`` only where the name already
ends in ``_seconds`` or ``_ratio``, otherwise the catalogue's unit as an annotation
(``{reward}``), which translators drop.

Without a ``meter_provider`` the sink builds its own: an SDK MeterProvider whose
PeriodicExportingMetricReader pushes to an OTLP/HTTP collector every
``export_interval_seconds``. ``endpoint`` is the full metrics URL
(``http://collector:4318/v1/metrics``); left out, the exporter reads the standard
``OTEL_EXPORTER_OTLP_*`` variables, and the resource reads ``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES``. That provider is shut down (one last export) on close;
a provider you pass in is only flushed, since it belongs to you. Exports run on the
reader's own thread, so an unreachable collector never blocks a step: the SDK logs
the failed export (it is not counted in rewardscope_sink_errors_total). Not ``loud``:
an error inside write_step is counted there, and training goes on.

Usage::

    from rewardscope import RewardMonitor
    from rewardscope.exporter.otel_sink import OpenTelemetrySink
    sink = OpenTelemetrySink("run-1", endpoint="http://localhost:4318/v1/metrics")
    with RewardMonitor("run-1", ["correct"], extra_sinks=[sink]) as monitor:
        monitor.record_step(1, {"correct": [0.0, 1.0]})

Needs ``pip install 'rewardscope[otel]'`` and, for the built-in exporter,
``opentelemetry-exporter-otlp-proto-http``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from .._version import __version__
from ..metrics.catalogue import CATALOGUE, Kind, MetricSpec, Scope, metric, stored_metrics
from ..metrics.functions import as_specs
from .base import Sink
from .record import StepRecord
from .state import RunState

EXPORTER_PACKAGE = "opentelemetry-exporter-otlp-proto-http"


def otel_unit(spec: MetricSpec) -> str:
    """The OTel unit of a catalogue metric; see the module docstring for the rule."""
    if spec.unit == "seconds" and spec.name.endswith("_seconds"):
        return "s"
    if spec.unit == "ratio" and spec.name.endswith("_ratio"):
        return "1"
    return f"{{{spec.unit}}}" if spec.unit else ""


def _import_sdk() -> dict[str, Any]:
    try:
        from opentelemetry.metrics import Observation
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    except ImportError as error:
        raise ImportError("the OpenTelemetry mirror needs opentelemetry-sdk: pip install 'rewardscope[otel]'") from error
    return {"Observation": Observation, "MeterProvider": MeterProvider, "PeriodicExportingMetricReader": PeriodicExportingMetricReader}


def _import_exporter() -> Any:
    try:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    except ImportError as error:
        raise ImportError(f"the OpenTelemetry mirror's OTLP exporter needs {EXPORTER_PACKAGE}: pip install {EXPORTER_PACKAGE} "
                          "(or pass your own meter_provider)") from error
    return OTLPMetricExporter


class OpenTelemetrySink(Sink):
    """Mirrors the run's gauges and counters to an OTel MeterProvider; see the module docstring."""

    name = "otel"

    def __init__(self, run_id: str, *, meter_provider: Any = None, endpoint: str | None = None,
                 export_interval_seconds: float = 10.0) -> None:
        sdk = _import_sdk()
        self._observation = sdk["Observation"]
        self.run_id = run_id
        self._owns_provider = meter_provider is None
        if meter_provider is None:
            if not export_interval_seconds > 0:
                raise ValueError(f"export_interval_seconds must be positive, got {export_interval_seconds!r}")
            exporter_class = _import_exporter()
            # Only pass what was given, so the exporter's own environment defaults still apply.
            exporter = exporter_class(endpoint=endpoint) if endpoint is not None else exporter_class()
            reader = sdk["PeriodicExportingMetricReader"](exporter, export_interval_millis=export_interval_seconds * 1000.0)
            meter_provider = sdk["MeterProvider"](metric_readers=[reader])
        elif endpoint is not None:
            raise ValueError("endpoint configures the sink's own exporter; with a meter_provider, configure its readers instead")
        self.meter_provider = meter_provider
        # One meter per run: the SDK returns the existing instrument (and drops the new callbacks)
        # when a name is registered twice on one meter, so two runs sharing a provider need two scopes.
        meter = meter_provider.get_meter("rewardscope", __version__, attributes={"run_id": run_id})
        self.state: RunState | None = None  # made from the first step, which says the run's reward functions
        self._pending: list[tuple[str, tuple[str, ...]]] = []  # skips and sink errors before the first step
        self._closed = False
        for spec in stored_metrics(Scope.RUN) + stored_metrics(Scope.FUNCTION):
            meter.create_observable_gauge(spec.name, callbacks=[self._gauge_callback(spec)], unit=otel_unit(spec),
                                          description=spec.help)
        alert = metric("grpo_alert_firing")
        meter.create_observable_gauge(alert.name, callbacks=[self._alert_callback], unit=otel_unit(alert),
                                      description=alert.help)
        for spec in CATALOGUE:
            if spec.kind is Kind.COUNTER:
                meter.create_observable_counter(spec.name, callbacks=[self._counter_callback(spec)], unit=otel_unit(spec),
                                                description=spec.help)

    # ------------------------------------------------------------------ callbacks (export thread)
    def _points(self, read: Callable[[RunState], list[tuple[float, dict[str, str]]]], *, cumulative: bool = False) -> list[Any]:
        state = self.state
        # A finished run's gauges stop reporting; its counters keep their final values, as counters do.
        if state is None or (self._closed and not cumulative):
            return []
        with state.lock:
            points = read(state)
        return [self._observation(value, attributes) for value, attributes in points]

    def _attributes(self, reward_fn: str | None = None, **labels: str) -> dict[str, str]:
        return {"run_id": self.run_id, **({} if reward_fn is None else {"reward_fn": reward_fn}), **labels}

    def _gauge_callback(self, spec: MetricSpec) -> Callable[[Any], Iterable[Any]]:
        def read(state: RunState) -> list[tuple[float, dict[str, str]]]:
            if state.latest is None:
                return []
            if spec.scope is Scope.RUN:
                pairs = [(state.latest[state.layout.index(spec.name)], self._attributes())]
            else:
                values = state.latest[state.layout.function_slots[spec.name]].tolist()
                pairs = [(v, self._attributes(fn)) for fn, v in zip(state.layout.reward_functions, values)]
            return [(float(v), a) for v, a in pairs if not math.isnan(v)]

        return lambda options: self._points(read)

    def _counter_callback(self, spec: MetricSpec) -> Callable[[Any], Iterable[Any]]:
        def read(state: RunState) -> list[tuple[float, dict[str, str]]]:
            if spec.extra_labels:
                return [(v, self._attributes(**dict(zip(spec.extra_labels, k)))) for k, v in state.labelled_counters[spec.name].items()]
            if spec.scope is Scope.FUNCTION:
                values = state.function_counters[spec.name].tolist()
                return [(v, self._attributes(fn)) for fn, v in zip(state.layout.reward_functions, values)]
            return [(state.run_counters[spec.name], self._attributes())]

        return lambda options: self._points(read, cumulative=True)

    def _alert_callback(self, options: Any) -> Iterable[Any]:
        return self._points(lambda state: [(1 if count > 0 else 0, self._attributes(alertname=name, severity=severity))
                                           for (name, severity), count in state.alerts_firing.items()])

    # ------------------------------------------------------------------ the sink
    def write_step(self, record: StepRecord) -> None:
        if self._closed:
            raise RuntimeError("the OpenTelemetry sink is closed")
        if self.state is None:
            if record.bucket_layout is None:
                raise ValueError("the OpenTelemetry sink needs the StepRecords of a RewardMonitor")
            self.state = RunState.create(self.run_id, as_specs(record.reward_functions), record.bucket_layout)
            for name, labels in self._pending:
                self.state.count(name, labels)
        self.state.apply(record)

    def write_skip(self, step: Any, reason: str, message: str) -> None:
        self._count("grpo_skipped_steps_total", (reason,))

    def write_sink_error(self, sink: str) -> None:
        self._count("rewardscope_sink_errors_total", (sink,))

    def _count(self, name: str, labels: tuple[str, ...]) -> None:
        if self.state is None:
            self._pending.append((name, labels))
        else:
            self.state.count(name, labels)

    def close(self, summary: dict) -> None:
        """Export the last values, then stop reporting; shut down the provider only if the sink built it."""
        if self._closed:
            return
        try:
            if self._owns_provider:
                self.meter_provider.shutdown()
            else:
                self.meter_provider.force_flush()
        finally:
            # A provider passed in outlives the run: its gauges must not report a finished run forever.
            self._closed = True
