"""The terminal sink: prints alert transitions as they happen and remembers which alerts fire.

It keeps the last 1,000 transitions and the alert instances firing now, which the
monitor's ``recent_alerts``, ``alerts_firing`` and summary read (the trainer's closing
summary lists the alerts still firing at the end of the run).

Usage::

    printer = AlertPrinter(tqdm.write, enabled=True)   # or None: print to stdout
    monitor = RewardMonitor(..., extra_sinks=[printer])
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from ..alerting.events import AlertEvent, AlertState, format_alert
from .base import Sink
from .record import StepRecord

MAX_RECENT_ALERTS = 1000


class AlertPrinter(Sink):
    """Prints alert transitions (when enabled) and tracks the alerts firing; see the module docstring."""

    name = "alert_printer"

    def __init__(self, printer: Callable[[str], None] | None = None, *, enabled: bool = True) -> None:
        # A progress bar's writer (tqdm.write) keeps printed alerts from tearing the bar.
        self.printer = printer or (lambda line: print(line, flush=True))
        self.enabled = enabled
        self.recent: deque[AlertEvent] = deque(maxlen=MAX_RECENT_ALERTS)
        self._firing: dict[tuple[str, tuple[tuple[str, str], ...]], AlertEvent] = {}

    def write_step(self, record: StepRecord) -> None:
        for event in record.events:
            self.recent.append(event)
            key = (event.alertname, tuple(sorted(event.labels.items())))
            if event.state is AlertState.FIRING:
                self._firing[key] = event
            else:
                self._firing.pop(key, None)
            if self.enabled:
                self.printer(format_alert(event))

    def firing(self) -> list[AlertEvent]:
        """The FIRING event of every alert instance that has not resolved, in the order they fired."""
        return list(self._firing.values())
