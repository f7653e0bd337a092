"""Act on a verdict, opt-in: stop the run when a critical alert fires (``--on-critical stop``).

By default (``on_critical="alert"``) alerts only alert. With ``"stop"``, the first
*critical* alert that fires in-process ends the run cleanly: the trainer saves a
checkpoint of the step and stops, and ``stopped.json`` in the run directory records
which alert stopped the run, the step it fired on, the step its condition started
holding (``onset_step``: the firing step less the rule's ``for_steps`` plus one) and the
last step before that (``last_good_step``: where to resume from, or roll back to).

``CriticalStop`` does this for rewardscope's trainer (a ``train()`` callback raising
``StopTraining``); rewardscope.integrations.trl uses ``critical_firing`` and
``write_stop_record`` through TRL's ``TrainerControl``.

Usage::

    from rewardscope.trainer.stopping import critical_firing, stop_record, write_stop_record
    event = critical_firing(monitor)            # a critical alert that fired on the latest step, or None
    if event is not None:
        write_stop_record(monitor.run_directory, stop_record(event, monitor))
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rewardscope.alerting.events import AlertEvent, AlertState

ON_CRITICAL = ("alert", "stop")
STOP_FILE = "stopped.json"


@dataclass(frozen=True)
class StopRecord:
    """Why and where a run was stopped."""

    alert: str
    severity: str
    labels: dict[str, str]
    summary: str
    fired_step: int
    onset_step: int
    last_good_step: int | None  # None: the condition held from the run's first step


def critical_firing(monitor: Any) -> AlertEvent | None:
    """The first critical alert that started firing on the monitor's latest recorded step, or None."""
    latest = monitor.latest
    if latest is None:
        return None
    for event in monitor.recent_alerts[::-1]:
        if event.step != latest.step:
            break
        if event.state is AlertState.FIRING and event.severity == "critical":
            return event
    return None


def stop_record(event: AlertEvent, monitor: Any) -> StopRecord:
    """The record of a stop on ``event``; the onset uses the firing rule's ``for_steps`` from the monitor's engine."""
    engine = getattr(monitor, "alert_engine", None)
    rules = [r for r in getattr(engine, "rules", ()) if r.alert == event.alertname and r.severity == event.severity]
    for_steps = rules[0].for_steps if rules else 1
    first_step = getattr(monitor, "_first_step", None)
    onset = event.step - for_steps + 1
    last_good = onset - 1 if first_step is None or onset - 1 >= first_step else None
    return StopRecord(event.alertname, event.severity, dict(event.labels), event.summary, event.step, onset, last_good)


def write_stop_record(run_directory: str | os.PathLike | None, record: StopRecord, checkpoint: str | None = None) -> Path | None:
    """Write ``stopped.json`` into the run directory (atomically); None when the run has no directory."""
    if run_directory is None:
        return None
    path = Path(run_directory) / STOP_FILE
    data = {**asdict(record), "checkpoint": checkpoint}
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)
    return path


def read_stop_record(run_directory: str | os.PathLike) -> dict | None:
    """The run's ``stopped.json`` as a dict, or None when the run was not stopped by an alert."""
    path = Path(run_directory) / STOP_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


class CriticalStop:
    """A ``train()`` callback: on a critical alert, record the stop and raise StopTraining (a checkpoint follows)."""

    def __init__(self, checkpoint_dir: str | os.PathLike | None = None) -> None:
        self.checkpoint_dir = checkpoint_dir
        self.record: StopRecord | None = None

    def __call__(self, event: Any) -> None:
        from rewardscope.trainer.checkpoints import checkpoint_name
        from rewardscope.trainer.grpo import StopTraining

        firing = critical_firing(event.monitor)
        if firing is None:
            return
        self.record = stop_record(firing, event.monitor)
        # train() saves the checkpoint of this step when StopTraining propagates; it is named after the step.
        checkpoint = None if self.checkpoint_dir is None else str(Path(self.checkpoint_dir) / checkpoint_name(event.step))
        write_stop_record(event.monitor.run_directory, self.record, checkpoint)
        raise StopTraining(f"critical alert {firing.alertname} fired at step {firing.step}: {firing.summary}")
