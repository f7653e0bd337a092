"""The Prometheus sink: a run's counters, histograms and latest values on /metrics.

PrometheusSink is one sink among the others: it adds each StepRecord to its RunState
(state.py), registers a RunCollector (exposition.py) in a prometheus_client registry,
and, when given a port, serves that registry with MetricsServer (server.py: content
negotiation, gzip, TLS and basic auth). With its own registry it also exports
prometheus_client's standard process, platform and garbage-collector metrics
(``process_metrics=False`` turns them off).

On ``close`` the run is marked ended (``grpo_run_ended 1``) and, with
``linger_seconds``, /metrics stays up that long, so Prometheus scrapes the final state
and alert rules can tell a run that ended from one that died.

Usage::

    from rewardscope.exporter.prometheus import PrometheusSink
    sink = PrometheusSink(state, port=0)           # state: a RunState; 0 = any free port
    sink.write_step(record); print(sink.server.url); sink.close({})
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from .base import Sink
from .exposition import RunCollector
from .record import StepRecord
from .server import DEFAULT_HOST, DEFAULT_PORT, MetricsServer
from .state import RunState
from .webconfig import WebConfig

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "PrometheusSink"]

log = logging.getLogger("rewardscope")


class PrometheusSink(Sink):
    """Counters, histograms and gauges of one run for Prometheus; see the module docstring."""

    name = "prometheus"

    def __init__(self, state: RunState, *, registry: CollectorRegistry | None = None, port: int | None = None,
                 host: str = DEFAULT_HOST, web_config: WebConfig | None = None, process_metrics: bool = True,
                 linger_seconds: float = 0.0) -> None:
        if linger_seconds < 0:
            raise ValueError(f"linger_seconds must be 0 or more, got {linger_seconds!r}")
        self.state = state
        self.linger_seconds = float(linger_seconds)
        own_registry = registry is None
        # Runs sharing a registry expose the same names, so RunCollector describes none; this flag keeps name[] working.
        self.registry = CollectorRegistry(support_collectors_without_names=True) if registry is None else registry
        self.collector = RunCollector(state)
        self.registry.register(self.collector)
        if own_registry and process_metrics:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        self.server: MetricsServer | None = None
        if port is not None:
            try:
                self.server = MetricsServer(self.registry, host, port, web_config=web_config)
            except BaseException:
                self.registry.unregister(self.collector)
                raise
            log.info("serving %s", self.server.url)

    def write_step(self, record: StepRecord) -> None:
        self.state.apply(record)

    def write_skip(self, step: Any, reason: str, message: str) -> None:
        self.state.count("grpo_skipped_steps_total", (reason,))

    def write_sink_error(self, sink: str) -> None:
        self.state.count("rewardscope_sink_errors_total", (sink,))

    def close(self, summary: dict) -> None:
        self.state.end()
        try:
            if self.server is not None and self.linger_seconds > 0:
                log.info("run ended; /metrics stays up %.0f s so Prometheus sees the final state", self.linger_seconds)
                time.sleep(self.linger_seconds)
        finally:
            if self.server is not None:
                self.server.stop()
            with contextlib.suppress(KeyError):
                self.registry.unregister(self.collector)
