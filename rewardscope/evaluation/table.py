"""The detection table: run records reduced to detection rate, delay, hold and false alarms per alert.

For each failure scenario and each alert meant for it (rewardscope.evaluation.grid.MEANT),
over that scenario's runs:

- detected: the share of runs in which the alert fired at or after the onset (of the part it
  is meant for); a firing before the onset does not count, it is reported as ``early``;
- delay: the first firing step minus the onset step, median and worst over the detected runs;
- held: over the detected runs, the mean share of steps from the first firing to the end of the
  run on which the alert was firing (no scenario recovers: the failure persists to the end);
- flapping: the share of detected runs in which the alert resolved and fired again (a
  defect: the failure was still there);
- missed in: the variations of the runs in which it never fired after the onset.

The row ``(any meant alert)`` counts the earliest of the scenario's meant alerts (the old
system's rule left out) from the scenario's onset, and holds while any of them fires. For healthy runs (four paces,
``healthy_steps`` steps each), per alert: the share of runs in which it fired at all and its
firings per 1,000 healthy steps.

Usage::

    from rewardscope.evaluation.table import detection_rows, false_alarm_rows, render
    print(render(detection_rows(records), false_alarm_rows(records)))
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from .grid import HEALTHY, MEANT, SEED_RULE, Meant
from .runner import AlertTimeline, RunRecord

ANY = "(any meant alert)"


@dataclass(frozen=True)
class DetectionRow:
    scenario: str
    alert: str
    runs: int
    detected: float
    median_delay: float | None
    worst_delay: int | None
    held: float | None
    flapping: float | None
    early: float
    missed: dict[str, int]  # variation -> runs in which the alert never fired after the onset


@dataclass(frozen=True)
class FalseAlarmRow:
    alert: str
    runs: int
    runs_with_alarm: float
    per_1000_steps: float
    by_pace: dict[str, float]


def _union(timelines: Sequence[AlertTimeline], last_step: int) -> AlertTimeline:
    return AlertTimeline(sorted({s for t in timelines for s in t.steps}), last_step)


def _row(scenario: str, alert: str, observations: list[tuple[AlertTimeline | None, int, str]]) -> DetectionRow:
    """``observations``: per run, the alert's timeline (None: never fired), the onset it is measured from and the
    run's variation."""
    delays, held, flapped, early = [], [], 0, 0
    missed: dict[str, int] = {}
    for timeline, onset, variation in observations:
        first = None if timeline is None else timeline.first_at_or_after(onset)
        if timeline is not None:
            early += timeline.fired_before(onset)
        if first is None or timeline is None:
            missed[variation] = missed.get(variation, 0) + 1
            continue
        delays.append(first - onset)
        held.append(timeline.held_share(first))
        flapped += timeline.firings(first) > 1
    n, d = len(observations), len(delays)
    return DetectionRow(scenario, alert, n, d / n if n else 0.0, statistics.median(delays) if d else None,
                        max(delays) if d else None, statistics.fmean(held) if d else None, flapped / d if d else None,
                        early / n if n else 0.0, missed)


def detection_rows(records: Sequence[RunRecord]) -> list[DetectionRow]:
    rows = []
    for scenario, meant in MEANT.items():
        runs = [r for r in records if r.spec.scenario is scenario]
        if not runs:
            continue

        def onset(record: RunRecord, m: Meant) -> int:
            return record.spec.onset + m.after_ramps * record.ramp

        for m in meant:
            rows.append(_row(scenario.value, m.alert, [(r.timelines.get(m.alert), onset(r, m), r.spec.variation.name)
                                                       for r in runs]))
        alerts = [m for m in meant if m.alert != SEED_RULE]
        observations = []
        for r in runs:
            present = [r.timelines[m.alert] for m in alerts if m.alert in r.timelines]
            observations.append((_union(present, r.spec.steps) if present else None, r.spec.onset, r.spec.variation.name))
        rows.append(_row(scenario.value, ANY, observations))
    return rows


def false_alarm_rows(records: Sequence[RunRecord]) -> list[FalseAlarmRow]:
    healthy = [r for r in records if r.spec.scenario in HEALTHY]
    if not healthy:
        return []
    alerts = sorted({m.alert for meant in MEANT.values() for m in meant} | {a for r in healthy for a in r.timelines})
    rows = []
    steps = sum(r.steps_recorded for r in healthy)
    for alert in alerts:
        fired = [r for r in healthy if alert in r.timelines]
        firings = sum(r.timelines[alert].firings() for r in fired)
        by_pace = {}
        for pace in HEALTHY:
            of_pace = [r for r in healthy if r.spec.scenario is pace]
            if of_pace:
                by_pace[pace.value] = sum(1 for r in of_pace if alert in r.timelines) / len(of_pace)
        rows.append(FalseAlarmRow(alert, len(healthy), len(fired) / len(healthy), 1000.0 * firings / steps, by_pace))
    return rows


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def render(detections: Sequence[DetectionRow], false_alarms: Sequence[FalseAlarmRow]) -> str:
    """Both tables as Markdown."""
    lines = ["| Scenario | Alert | Runs | Detected | Median delay | Worst delay | Held | Flapping | Fired before onset "
             "| Missed in |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in detections:
        median = "-" if row.median_delay is None else f"{row.median_delay:g}"
        worst = "-" if row.worst_delay is None else str(row.worst_delay)
        missed = ", ".join(f"{name} x{count}" for name, count in sorted(row.missed.items(), key=lambda kv: -kv[1])) or "-"
        lines.append(f"| {row.scenario} | {row.alert} | {row.runs} | {_pct(row.detected)} | {median} | {worst} | "
                     f"{_pct(row.held)} | {_pct(row.flapping)} | {_pct(row.early)} | {missed} |")
    if false_alarms:
        paces = list(false_alarms[0].by_pace)
        lines += ["", "| Alert (healthy runs) | Runs | Runs with a false alarm | Firings per 1,000 steps | "
                  + " | ".join(paces) + " |", "|---|---|---|---|" + "---|" * len(paces)]
        for fa in false_alarms:
            lines.append(f"| {fa.alert} | {fa.runs} | {_pct(fa.runs_with_alarm)} | {fa.per_1000_steps:.2f} | "
                         + " | ".join(_pct(fa.by_pace[p]) for p in paces) + " |")
    return "\n".join(lines)
