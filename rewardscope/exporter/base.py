"""The sink interface and the fan-out that keeps one failing sink from stopping training.

A sink receives each step's metrics, alert events and the final summary. The
fan-out calls every sink in turn; an exception from a sink is counted in
``rewardscope_sink_errors_total{sink}`` and logged once per (sink, error type),
and the other sinks go on. A sink marked ``loud`` (the run store) re-raises:
losing the run's history silently would be worse than stopping.

Usage::

    from rewardscope.exporter.base import FanOut
    fanout = FanOut([my_sink], on_error=lambda sink: None)
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable, Protocol, Sequence

from ..alerting.events import AlertEvent
from ..metrics.layout import StepMetrics

log = logging.getLogger("rewardscope")


class Sink(Protocol):
    name: str
    loud: bool

    def write_step(self, metrics: StepMetrics) -> None: ...

    def write_alerts(self, events: Sequence[AlertEvent]) -> None: ...

    def close(self, summary: dict) -> None: ...


class FanOut:
    """Calls every sink; counts and logs failures of all but loud sinks."""

    def __init__(self, sinks: Iterable[Sink], on_error: Callable[[str], None]) -> None:
        self.sinks = list(sinks)
        self._on_error = on_error
        self._logged: set[tuple[str, type]] = set()

    def _call(self, sink: Sink, method: str, *args: object) -> None:
        try:
            getattr(sink, method)(*args)
        except Exception as error:
            if getattr(sink, "loud", False):
                raise
            self._on_error(sink.name)
            key = (sink.name, type(error))
            if key not in self._logged:
                self._logged.add(key)
                log.warning("sink %s failed in %s (%s: %s); counted in rewardscope_sink_errors_total, training goes on",
                            sink.name, method, type(error).__name__, error)

    def write_step(self, metrics: StepMetrics) -> None:
        for sink in self.sinks:
            self._call(sink, "write_step", metrics)

    def write_alerts(self, events: Sequence[AlertEvent]) -> None:
        if events:
            for sink in self.sinks:
                self._call(sink, "write_alerts", events)

    def close(self, summary: dict) -> None:
        for sink in self.sinks:
            self._call(sink, "close", summary)
