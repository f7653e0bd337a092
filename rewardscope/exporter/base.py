"""The sink interface, and the fan-out that keeps one failing sink from stopping training.

Every output of a run is a sink: the run store, Prometheus, W&B, TensorBoard,
OpenTelemetry, your own. A sink receives each step's complete StepRecord (the stored
row, the counter and histogram increments, the trend slopes and the step's alert
events), the steps that were skipped, the errors of other sinks, and finally the run's
summary. Subclass ``Sink`` and override what you need: adding an output touches one file.

The fan-out calls every sink in turn. An exception from a sink is counted (every sink
hears of it through ``write_sink_error``; Prometheus exports it as
``rewardscope_sink_errors_total{sink}``) and logged once per (sink, error type), and
the other sinks go on. A sink marked ``loud`` (the run store) re-raises instead, and
the sinks after it do not see the step: losing the run's history silently would be
worse than stopping, and /metrics must not show a step the store does not have.

Usage::

    from rewardscope.exporter.base import FanOut, Sink

    class PrintMeans(Sink):
        name = "print"

        def write_step(self, record):
            print(record.step, record.value("grpo_reward_mean"))

    monitor = RewardMonitor("run", ["correct"], extra_sinks=[PrintMeans()])
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from ..metrics.layout import StepMetrics
from .record import StepRecord

log = logging.getLogger("rewardscope")


class Sink:
    """One output of a run. Every method is optional; the defaults do nothing."""

    name: str = "sink"
    loud: bool = False

    def write_step(self, record: StepRecord) -> None:
        """One recorded step (``record.events`` holds its alert transitions)."""

    def write_skip(self, step: Any, reason: str, message: str) -> None:
        """A step that record_step rejected (``reason`` is the skip counter's label)."""

    def write_sink_error(self, sink: str) -> None:
        """Another sink failed; the run goes on."""

    def close(self, summary: dict) -> None:
        """The run ended (``summary`` is what summary.json holds)."""


class FanOut:
    """Calls every sink; counts and logs failures of all but loud sinks."""

    def __init__(self, sinks: Iterable[Sink]) -> None:
        self.sinks = list(sinks)
        self._logged: set[tuple[str, type]] = set()

    def _call(self, sink: Sink, method: str, *args: Any) -> None:
        function = getattr(sink, method, None)  # sinks written before Sink existed may lack the newer methods
        if function is None:
            return
        try:
            function(*args)
        except Exception as error:
            if getattr(sink, "loud", False):
                raise
            key = (sink.name, type(error))
            if key not in self._logged:
                self._logged.add(key)
                log.warning("sink %s failed in %s (%s: %s); counted in rewardscope_sink_errors_total, training goes on",
                            sink.name, method, type(error).__name__, error)
            self._report_error(sink.name)

    def _report_error(self, failed: str) -> None:
        for sink in self.sinks:
            try:
                sink.write_sink_error(failed)
            except Exception:  # a sink that cannot even count errors must not recurse into this path
                log.debug("sink %s failed to count an error of %s", sink.name, failed, exc_info=True)

    def write_step(self, record: StepMetrics) -> None:
        """Every sink's write_step; the monitor passes StepRecords, the old DashboardManager plain StepMetrics."""
        for sink in self.sinks:
            self._call(sink, "write_step", record)

    def write_skip(self, step: Any, reason: str, message: str) -> None:
        for sink in self.sinks:
            self._call(sink, "write_skip", step, reason, message)

    def close(self, summary: dict) -> None:
        for sink in self.sinks:
            self._call(sink, "close", summary)
