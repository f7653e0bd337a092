"""OpenTelemetry mirror: each step's stored gauges as OTel metrics, pushed over OTLP/HTTP.

Every per-step gauge the run store keeps (the catalogue's stored gauges) becomes an
observable gauge of the same name, with the catalogue's help as description and
attributes ``run_id`` (plus ``reward_fn`` for per-function metrics). The gauges
report the latest recorded step only: the sink holds one step's values, whatever
the run length. A metric absent from the latest step (KL the trainer did not pass,
SNR with G = 1) reports no point, as on /metrics; eval accuracy, measured on some
steps only, keeps its last measured value, as on /metrics. ``grpo_steps_total`` counts the
steps written to this sink and ``grpo_alert_firing{alertname,severity}`` follows the
alert transitions. Samples and tokens are not mirrored: StepMetrics does not carry
the batch size unless distributions are kept.

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

from typing import Any, Callable, Iterable, Sequence

from .._version import __version__
from ..alerting.events import AlertEvent, AlertState
from ..metrics.catalogue import MetricSpec, Scope, metric, stored_metrics
from ..metrics.layout import StepMetrics

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


class OpenTelemetrySink:
    """Mirrors each step's stored gauges to an OTel MeterProvider; see the module docstring."""

    name = "otel"
    loud = False

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

        # The latest step's points, replaced whole on each step: the export thread reads
        # one consistent dict while training writes the next.
        self._points: dict[str, list[tuple[float, dict[str, str]]]] = {}
        self._sticky: dict[tuple[str, str | None], float] = {}
        self._firing: dict[tuple[str, str], int] = {}
        self._closed = False
        gauges = stored_metrics(Scope.RUN) + stored_metrics(Scope.FUNCTION)
        self._sticky_names = frozenset(spec.name for spec in gauges if spec.sticky)
        for spec in gauges:
            meter.create_observable_gauge(spec.name, callbacks=[self._callback(spec.name)], unit=otel_unit(spec),
                                          description=spec.help)
        alert = metric("grpo_alert_firing")
        meter.create_observable_gauge(alert.name, callbacks=[self._alert_callback], unit=otel_unit(alert),
                                      description=alert.help)
        steps = metric("grpo_steps_total")
        self._steps = meter.create_counter(steps.name, unit=otel_unit(steps), description=steps.help)

    # ------------------------------------------------------------------ callbacks (export thread)
    def _callback(self, name: str) -> Callable[[Any], Iterable[Any]]:
        def observe(options: Any) -> Iterable[Any]:
            return [self._observation(value, attributes) for value, attributes in self._points.get(name, ())]

        return observe

    def _alert_callback(self, options: Any) -> Iterable[Any]:
        return [self._observation(1 if count > 0 else 0, {"run_id": self.run_id, "alertname": alertname, "severity": severity})
                for (alertname, severity), count in list(self._firing.items())]

    # ------------------------------------------------------------------ the sink
    def write_step(self, metrics: StepMetrics) -> None:
        if self._closed:
            raise RuntimeError("the OpenTelemetry sink is closed")
        present = {(name, fn): value for name, fn, value in metrics.items()}
        # Sticky metrics (eval accuracy) keep their last measured value, as /metrics does.
        for key, value in present.items():
            if key[0] in self._sticky_names:
                self._sticky[key] = value
        points: dict[str, list[tuple[float, dict[str, str]]]] = {}
        for (name, fn), value in {**self._sticky, **present}.items():
            attributes = {"run_id": self.run_id} if fn is None else {"run_id": self.run_id, "reward_fn": fn}
            points.setdefault(name, []).append((value, attributes))
        self._points = points
        self._steps.add(1, {"run_id": self.run_id})

    def write_alerts(self, events: Sequence[AlertEvent]) -> None:
        # A count per (alertname, severity), like /metrics: one alert may fire for several reward functions.
        firing = dict(self._firing)
        for event in events:
            key = (event.alertname, event.severity)
            delta = 1 if event.state is AlertState.FIRING else -1
            firing[key] = max(firing.get(key, 0) + delta, 0)
        self._firing = firing

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
            self._points, self._firing = {}, {}
