"""The in-process alert state that /metrics exports: what the compiled rules read.

The monitor evaluates the alert pack on every recorded step (``AlertEngine``). A step
rate of 10 steps/s and a 5 s scrape interval mean Prometheus sees one step in fifty,
so the compiled rules do not re-evaluate the per-step conditions in time; they read
the engine's verdict, counted in steps, from these series (rewardscope/exporter/exposition.py
writes them from the run state):

- ``grpo_alert_active{alert_id, alert, severity, reward_fn}``: 1 while the instance
  fires in-process, else 0 (one series per instance from the first scrape on);
- ``grpo_alert_activations_total{...}``: times the instance started firing, a counter,
  so an alert that fired and resolved between two scrapes still shows as an increase;
- ``grpo_step_duration_median_seconds``: the median time between recent steps, which
  scales GRPORunStalled to the run's own pace.

After ``close()`` the series keep their last values, so while /metrics lingers they say
which alerts were still firing at the last step.

Usage::

    from rewardscope.alerting.engine import AlertEngine
    from rewardscope.alerting.exposition import alert_state
    engine = AlertEngine.default()
    engine.bind("run-1", ["correct"])
    instances, median_step_seconds = alert_state(engine)
    print(len(instances), median_step_seconds)     # 14 None
"""

from __future__ import annotations

from typing import Any

from .engine import InstanceState


def alert_state(engine: Any) -> tuple[tuple[InstanceState, ...], float | None]:
    """(every alert instance, median step seconds) of an evaluator; nothing for one without per-instance state."""
    instance_states = getattr(engine, "instance_states", None)
    if instance_states is None:  # no engine installed: Prometheus step rules then have nothing to read
        return (), None
    return tuple(instance_states()), engine.median_step_seconds()
