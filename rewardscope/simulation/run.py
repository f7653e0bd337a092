"""Drive a RewardMonitor with simulated steps at a chosen step rate, showing progress.

``drive`` records the steps of a simulated run one by one, sleeping between them so
that they arrive at ``rate`` steps per second (0 = as fast as possible), the way a
trainer would feed the monitor while Prometheus scrapes it. ``Progress`` shows where
the run is: one line rewritten in place on a terminal, a line every 10% of the run
(or every 30 s, and at the first step) otherwise. ``AlertPrinter`` is a sink that prints alert transitions
without tearing that line and counts the alerts firing.

Usage::

    from rewardscope import RewardMonitor, LEGACY_REWARD_FUNCTIONS
    from rewardscope.simulation.run import drive
    from rewardscope.simulation.scenarios import simulate_steps

    with RewardMonitor("demo", LEGACY_REWARD_FUNCTIONS, group_size=8, run_dir=None) as monitor:
        recorded = drive(monitor, simulate_steps("healthy", 20), rate=0)   # 20
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TextIO

from ..alerting.events import AlertEvent, AlertState
from ..metrics.layout import StepMetrics
from ..monitor import RewardMonitor, format_alert
from .scenarios import SimulatedStep

# Falling further behind the schedule than this restarts it, instead of catching up in a burst.
_MAX_LAG_SECONDS = 1.0


class Progress:
    """Progress of a run of ``total`` steps on ``stream`` (a TTY gets one updating line)."""

    def __init__(self, total: int, stream: TextIO | None = None, *, tty: bool | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.clock = clock
        self.alerts_firing = 0
        self._first_time: float | None = None  # when the first step was recorded
        self._last_print = float("-inf")  # the first step always prints: the run has started
        self._next_tenth = 1
        self._line_open = False

    def line(self, step: int, done: int, metrics: StepMetrics | None, now: float) -> str:
        # Steps after the first over the time since the first: the pace, whatever the set-up time before it.
        elapsed = 0.0 if self._first_time is None else now - self._first_time
        rate = (done - 1) / elapsed if elapsed > 0 else 0.0
        parts = [f"step {step}/{self.total} ({100 * done // max(self.total, 1)}%)", f"{rate:.1f} steps/s"]
        if metrics is not None:
            for label, name, fmt in (("reward", "grpo_reward_mean", ".3g"), ("zero-spread", "grpo_group_zero_std_ratio", ".2f"),
                                     ("kl", "grpo_kl", ".3g"), ("entropy", "grpo_policy_entropy", ".3g")):
                value = metrics.value(name)
                parts.append(f"{label} {'-' if value is None else format(value, fmt)}")
        parts.append(f"alerts firing {self.alerts_firing}")
        return "  ".join(parts)

    def update(self, step: int, done: int, metrics: StepMetrics | None) -> None:
        """Called after every recorded step; prints only when a new line is due."""
        now = self.clock()
        if self._first_time is None:
            self._first_time = now
        if self.tty:
            if now - self._last_print < 0.2 and done < self.total:
                return
            self.stream.write("\r\x1b[2K" + self.line(step, done, metrics, now))
            self._line_open = True
        else:
            tenth_due = done * 10 >= self._next_tenth * self.total
            if not (tenth_due or now - self._last_print >= 30.0 or done == self.total):
                return
            while self._next_tenth * self.total <= done * 10:
                self._next_tenth += 1
            self.stream.write(self.line(step, done, metrics, now) + "\n")
        self._last_print = now
        self.stream.flush()

    def interject(self, text: str, stream: TextIO | None = None) -> None:
        """Print a whole line (an alert) without leaving it glued to the progress line."""
        self.finish()
        print(text, file=stream if stream is not None else sys.stdout, flush=True)

    def finish(self) -> None:
        """End the updating line so that what follows starts on a fresh line."""
        if self._line_open:
            self.stream.write("\n")
            self.stream.flush()
            self._line_open = False


class AlertPrinter:
    """A sink that prints each alert transition and keeps the count of alerts firing."""

    name = "alert_printer"
    loud = False

    def __init__(self, progress: Progress | None, print_alerts: bool, stream: TextIO | None = None) -> None:
        self.progress = progress
        self.print_alerts = print_alerts
        self.stream = stream
        self._firing: set[tuple[str, tuple[tuple[str, str], ...]]] = set()

    def write_step(self, metrics: StepMetrics) -> None:
        events: Sequence[AlertEvent] = getattr(metrics, "events", ())  # a StepRecord carries the step's alert transitions
        for event in events:
            key = (event.alertname, tuple(sorted(event.labels.items())))
            if event.state is AlertState.FIRING:
                self._firing.add(key)
            else:
                self._firing.discard(key)
            if self.print_alerts:
                if self.progress is not None:
                    self.progress.interject(format_alert(event), self.stream)
                else:
                    print(format_alert(event), file=self.stream, flush=True)
        if events and self.progress is not None:
            self.progress.alerts_firing = len(self._firing)

    def close(self, summary: dict) -> None:
        pass


def drive(monitor: RewardMonitor, steps: Iterable[SimulatedStep], *, rate: float, progress: Progress | None = None,
          clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> int:
    """Record every step into ``monitor`` at ``rate`` steps per second; return how many were recorded.

    Step k (0-based) is due ``k / rate`` seconds after the first, so the rate does not drift with
    the time spent recording. KeyboardInterrupt propagates: the caller closes the monitor.
    """
    if rate < 0:
        raise ValueError(f"rate must be >= 0 steps per second (0 = as fast as possible), got {rate}")
    interval = 1.0 / rate if rate > 0 else 0.0
    start = clock()
    done = 0
    for index, sim in enumerate(steps):
        if interval:
            due = start + index * interval
            now = clock()
            if now < due:
                sleep(due - now)
            elif now - due > _MAX_LAG_SECONDS:
                start = now - index * interval
        metrics = monitor.record_step(sim.step, **sim.kwargs)
        if metrics is not None:
            done += 1
        if progress is not None:
            progress.update(sim.step, done, metrics)
    if progress is not None:
        progress.finish()
    return done


def linger(seconds: float | None, sleep: Callable[[float], None] = time.sleep) -> None:
    """Keep the process (and its /metrics server thread) alive: ``seconds``, or until Ctrl-C when None."""
    if seconds is None:
        while True:
            sleep(3600.0)
    elif seconds > 0:
        sleep(seconds)
