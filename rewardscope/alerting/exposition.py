"""The in-process alert state as Prometheus samples: what the compiled rules read.

The monitor evaluates the alert pack on every recorded step (``AlertEngine``). A step
rate of 10 steps/s and a 5 s scrape interval mean Prometheus sees one step in fifty,
so the compiled rules do not re-evaluate the per-step conditions in time; they read
the engine's verdict, counted in steps, from these series:

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
    from rewardscope.alerting.exposition import alert_state_families
    engine = AlertEngine.default()
    engine.bind("run-1", ["correct"])
    for name, kind, samples in alert_state_families("run-1", engine.instance_states(), None):
        print(name, kind, len(samples))
"""

from __future__ import annotations

from typing import Sequence

from .engine import InstanceState

Sample = tuple[str, tuple[tuple[str, str], ...], float]


def alert_state_families(run_id: str, states: Sequence[InstanceState], median_step_seconds: float | None,
                         run_ended: bool = False) -> list[tuple[str, str, list[Sample]]]:
    """(family name, Prometheus type, samples) for the alert-state metrics of one run."""
    active: list[Sample] = []
    activations: list[Sample] = []
    for state in states:
        labels = (("run_id", run_id), ("alert_id", state.alert_id), ("alert", state.alert), ("severity", state.severity),
                  ("reward_fn", state.reward_fn))
        active.append(("grpo_alert_active", labels, 1.0 if state.active else 0.0))
        activations.append(("grpo_alert_activations_total", labels, float(state.activations)))
    families = [("grpo_alert_active", "gauge", active), ("grpo_alert_activations_total", "counter", activations),
                # TEMPORARY until the lead's grpo_run_ended (issue 9) is merged: then the exporter publishes it.
                ("grpo_run_ended", "gauge", [("grpo_run_ended", (("run_id", run_id),), 1.0 if run_ended else 0.0)])]
    if median_step_seconds is not None:
        families.append(("grpo_step_duration_median_seconds", "gauge",
                         [("grpo_step_duration_median_seconds", (("run_id", run_id),), median_step_seconds)]))
    return families
