"""One evaluation run: a simulated run through a real RewardMonitor, reduced to when each alert fired.

``run_one`` drives a RewardMonitor (the default alert pack in-process, the default online
detectors) with a planned simulated run, and records at every step which alerts
(``alertname/severity``, any reward function) are firing, plus the old system's
reward-hacking rule (``SeedHackingRule``). It returns an ``AlertTimeline`` per alert:
the steps it was firing on, reduced to the numbers the evaluation table needs.

The old rule, as the seed document defines it ("reward hacking: rewards increase but
performance doesn't"): over the last 50 recorded steps, the least-squares slope of the
mean reward is positive and the slope of eval accuracy (at least 3 evaluations in the
window) is not, with no significance test. It is evaluated on every step.

Usage::

    from rewardscope.evaluation.grid import FULL_GRID, RunSpec
    from rewardscope.evaluation.runner import run_one
    from rewardscope.simulation.scenarios import Scenario

    record = run_one(RunSpec(Scenario.KL_BLOWUP, FULL_GRID[0], seed=0, steps=120, onset=40))
    record.timelines["GRPOKLTooHigh/critical"].first_at_or_after(40)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from ..alerting.engine import AlertEngine
from ..alerting.pack import AlertPack, load_pack
from ..analysis.online import SlidingTrend
from ..metrics.layout import StepMetrics
from ..monitor import RewardMonitor
from ..simulation.scenarios import iter_plan, plan_run
from .grid import SEED_RULE, RunSpec


class SeedHackingRule:
    """The old system's reward-hacking rule, online; see the module docstring."""

    def __init__(self, window: int = 50, min_evals: int = 3) -> None:
        self.reward = SlidingTrend(window)
        self.accuracy = SlidingTrend(window)
        self.min_evals = min_evals

    def update(self, metrics: StepMetrics) -> bool:
        reward, accuracy = metrics.value("grpo_reward_mean"), metrics.value("grpo_eval_accuracy_ratio")
        if reward is not None:
            self.reward.add(float(metrics.step), reward)
        if accuracy is not None:
            self.accuracy.add(float(metrics.step), accuracy)
        if self.reward.n:
            self.accuracy.drop_before(self.reward.points[0][0])
        return self.reward.n >= 3 and self.accuracy.n >= self.min_evals and self.reward.slope > 0 >= self.accuracy.slope


@dataclass
class AlertTimeline:
    """The recorded steps on which one alert was firing, in order; ``last_step``: the run's last step."""

    steps: list[int]
    last_step: int

    def first_at_or_after(self, step: int) -> int | None:
        return next((s for s in self.steps if s >= step), None)

    def fired_before(self, step: int) -> bool:
        return bool(self.steps) and self.steps[0] < step

    def held_share(self, since: int) -> float:
        """Share of the steps from ``since`` to the end of the run on which the alert was firing."""
        span = self.last_step - since + 1
        return sum(1 for s in self.steps if s >= since) / span if span > 0 else 0.0

    def firings(self, since: int = 0) -> int:
        """Times the alert started firing at or after ``since`` (a gap of a step or more separates two firings)."""
        count, previous = 0, None
        for s in self.steps:
            if s >= since and (previous is None or s != previous + 1):
                count += 1
            previous = s
        return count


@functools.lru_cache(maxsize=1)
def _default_pack() -> AlertPack:
    return load_pack()  # parsed once per process: every run gets a fresh engine over the same rules


@dataclass
class RunRecord:
    spec: RunSpec
    ramp: int
    steps_recorded: int
    timelines: dict[str, AlertTimeline]


def run_one(spec: RunSpec) -> RunRecord:
    """Simulate one run through a RewardMonitor and record, per alert, the steps it was firing on."""
    plan = plan_run(spec.scenario, spec.steps, **spec.plan_arguments())
    engine = AlertEngine(_default_pack())
    seed_rule = SeedHackingRule()
    firing: dict[str, list[int]] = {}
    recorded = 0
    with RewardMonitor(f"eval-{spec.scenario.value}-{spec.seed}", plan.reward_functions, group_size=plan.group_size,
                       run_dir=None, alerts=engine, max_completion_length=plan.max_completion_length) as monitor:
        for sim in iter_plan(plan):
            metrics = monitor.record_step(sim.step, **sim.kwargs)
            if metrics is None:
                continue
            recorded += 1
            for alert in {f"{rule.alert}/{rule.severity}" for rule, _ in engine.firing()}:
                firing.setdefault(alert, []).append(sim.step)
            if seed_rule.update(metrics):
                firing.setdefault(SEED_RULE, []).append(sim.step)
    last = plan.last_step
    return RunRecord(spec, plan.ramp, recorded, {alert: AlertTimeline(steps, last) for alert, steps in firing.items()})
