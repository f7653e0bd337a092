"""The in-process alert engine: evaluates a pack's rules on every recorded step.

``AlertEngine`` implements the monitor's AlertEvaluator protocol. Each step it reads
every threshold rule's metric from the step's StepMetrics and every trend rule's
slope from the monitor's rolling window, and keeps one state per alert instance
(a rule, plus a reward function for per-function metrics):

- the condition held on ``for_steps`` consecutive recorded steps -> FIRING event;
- the condition stops holding (or the value is missing) -> RESOLVED event;
- after resolving, the instance fires again only once ``cooldown_steps`` recorded
  steps have passed (repeat suppression counted in steps, not seconds).

A missing value (None: not passed by the trainer, undefined this step, a slope whose
window is not full yet) never fires and never crashes; it resolves a firing
instance, as a series that disappears resolves a Prometheus alert. Metrics measured
on some steps only (``sticky`` in the catalogue, e.g. eval accuracy) keep their
state on steps without a measurement, as /metrics keeps their last value.

PromQL rules (liveness) are skipped: only Prometheus sees a run that stopped.

``instance_states()`` lists every instance of the bound run with whether it fires and how many
times it started firing; the monitor exports them (``grpo_alert_active``,
``grpo_alert_activations_total``) and the compiled Prometheus rules read them, so Prometheus
fires the alerts this engine fires whatever the step rate (rewardscope/alerting/compiler.py).
``median_step_seconds()`` is the median time between recent steps, for GRPORunStalled.

Usage::

    from rewardscope import RewardMonitor
    from rewardscope.alerting.engine import AlertEngine

    engine = AlertEngine.default(overrides={"alerts": {"kl_too_high": {"threshold": 0.5}}})
    monitor = RewardMonitor("run-1", ["correct"], group_size=4, run_dir=None, alerts=engine)
    # monitor.record_step(...) now returns metrics and emits AlertEvents to the sinks
"""

from __future__ import annotations

import functools
import os
import statistics
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ..metrics.catalogue import metric
from .events import AlertEvent, AlertState
from .pack import AlertPack, Overrides, OverridesSource, applicable, load_overrides, load_pack
from .rules import Rule

STEP_INTERVAL_WINDOW = 101  # steps whose intervals give the median step time
TrendKey = tuple[str, str, int]  # (metric, reward_fn or "", window in steps), as in rewardscope.monitor
ValueOf = Callable[[str, "str | None"], "float | None"]


@dataclass
class _Instance:
    """What the engine remembers of one alert instance between steps."""

    streak: int = 0  # consecutive recorded steps on which the condition held
    firing: bool = False
    since_resolved: int | None = None  # recorded steps since it last resolved
    activations: int = 0  # times it started firing: a counter, so a scrape cannot miss a short firing


@dataclass(frozen=True)
class InstanceState:
    """The exported state of one alert instance: ``grpo_alert_active`` and ``grpo_alert_activations_total``."""

    alert_id: str
    alert: str
    severity: str
    reward_fn: str  # "" for a run-level rule
    active: bool
    activations: int


class AlertEngine:
    """Evaluates threshold and trend rules of an AlertPack for one run."""

    def __init__(self, pack: AlertPack, overrides: Sequence[OverridesSource] = ()) -> None:
        self.base_pack = pack
        self.overrides: list[Overrides] = [load_overrides(o) for o in overrides]
        for o in self.overrides:  # unknown alert ids or bad values fail now, not at bind time
            pack.with_overrides(o)
        self.run_id = ""
        self.reward_functions: tuple[str, ...] = ()
        self._states: dict[tuple[str, str | None], _Instance] = {}
        # Recent intervals between recorded steps: their median scales GRPORunStalled to the run's own pace.
        self._step_intervals: deque[float] = deque(maxlen=STEP_INTERVAL_WINDOW)
        self._last_timestamp: float | None = None
        self.bind("", ())

    @classmethod
    def default(cls, overrides: OverridesSource | Sequence[OverridesSource] | None = None) -> AlertEngine:
        """The engine of the default pack, with optional overrides (mapping, file path, or a list of them)."""
        return cls.from_file(None, overrides)

    @classmethod
    def from_file(cls, path: str | os.PathLike | None, overrides: OverridesSource | Sequence[OverridesSource] | None = None) -> AlertEngine:
        if overrides is None:
            sources: list[OverridesSource] = []
        elif isinstance(overrides, (list, tuple)):
            sources = list(overrides)
        else:
            sources = [overrides]  # type: ignore[list-item]  # one source: a mapping, a path or an Overrides
        return cls(load_pack(path), sources)

    # ------------------------------------------------------------------ AlertEvaluator protocol
    def bind(self, run_id: str, reward_functions: Sequence[str]) -> None:
        """Set the run: its overrides apply from now on; instance states of known rules are kept."""
        pack = self.base_pack
        for o in applicable(self.overrides, run_id):
            pack = pack.with_overrides(o)
        self.pack = pack
        self.run_id = run_id
        self.reward_functions = tuple(reward_functions)
        self.rules: tuple[Rule, ...] = tuple(r for r in pack.rules if r.enabled and r.in_process)
        # Every instance of the bound run, resolved once: what each step evaluates, in rule order.
        self._instances: list[tuple[Rule, str | None, str, bool, _Instance]] = []
        for rule in self.rules:
            name = str(rule.metric)  # step rules always have one (Rule validates it)
            sticky = metric(name).sticky and rule.kind == "threshold"
            for fn in rule.functions(self.reward_functions):
                state = self._states.setdefault((rule.id, fn), _Instance())
                self._instances.append((rule, fn, name, sticky, state))
        self._exported: list[InstanceState] | None = None  # instance_states(), rebuilt after a transition

    def trend_requirements(self) -> list[tuple[str, int]]:
        """(metric, window_steps) of every trend rule, each once."""
        return list(dict.fromkeys((str(r.metric), int(r.window_steps or 0)) for r in self.rules if r.kind == "trend"))

    def evaluate(self, metrics, slopes: Mapping[TrendKey, float | None]) -> list[AlertEvent]:
        """Evaluate every rule on one step; returns the firing and resolved transitions."""
        return self.evaluate_values(metrics.step, metrics.timestamp, metrics.value,
                                    lambda name, fn, window: slopes.get((name, fn or "", window)))

    # ------------------------------------------------------------------ the evaluation
    def evaluate_values(self, step: int, timestamp: float | None, value_of: ValueOf,
                        slope_of: Callable[[str, str | None, int], float | None]) -> list[AlertEvent]:
        """Evaluate with lookup functions: ``value_of(metric, reward_fn)``, ``slope_of(metric, reward_fn, window)``."""
        timestamp = time.time() if timestamp is None else timestamp
        if self._last_timestamp is not None and timestamp > self._last_timestamp:
            self._step_intervals.append(timestamp - self._last_timestamp)
        self._last_timestamp = timestamp
        events: list[AlertEvent] = []
        for rule, fn, name, sticky, state in self._instances:
            if rule.kind == "trend":
                value = slope_of(name, fn, int(rule.window_steps or 0))
            else:
                value = value_of(name, fn)
            if value is None and sticky:
                continue  # not measured this step: keep the state, as /metrics keeps the last value
            event = self._step_instance(rule, fn, state, value, step, timestamp)
            if event is not None:
                events.append(event)
        if events:
            self._exported = None
        return events

    def _step_instance(self, rule: Rule, fn: str | None, state: _Instance, value: float | None, step: int,
                       timestamp: float) -> AlertEvent | None:
        if state.since_resolved is not None:
            state.since_resolved += 1
        bound = rule.crossed(value)
        if bound is None:
            state.streak = 0
            if not state.firing:
                return None
            state.firing = False
            state.since_resolved = 0
            return self._event(rule, fn, AlertState.RESOLVED, value, None, step, timestamp)
        state.streak += 1
        cooling = state.since_resolved is not None and state.since_resolved < rule.cooldown_steps
        if state.firing or state.streak < rule.for_steps or cooling:
            return None
        state.firing = True
        state.activations += 1
        return self._event(rule, fn, AlertState.FIRING, value, bound, step, timestamp)

    def _event(self, rule: Rule, fn: str | None, state: AlertState, value: float | None, bound: float | None,
               step: int, timestamp: float) -> AlertEvent:
        labels = {"run_id": self.run_id, **dict(rule.labels)}
        if fn is not None:
            labels["reward_fn"] = fn
        return AlertEvent(alertname=rule.alert, state=state, severity=rule.severity, step=step, timestamp=timestamp,
                          labels=labels, value=value, threshold=bound, summary=rule.render(rule.summary, labels, value),
                          description=rule.render(rule.description, labels, value),
                          runbook_url=self.pack.settings.runbook_link(rule))

    # ------------------------------------------------------------------ reading back
    def firing(self) -> list[tuple[Rule, str | None]]:
        """(rule, reward_fn) of every instance firing now."""
        by_id = {r.id: r for r in self.rules}
        return [(by_id[rid], fn) for (rid, fn), s in self._states.items() if s.firing and rid in by_id]

    def instance_states(self) -> list[InstanceState]:
        """Every alert instance of the bound run, firing or not, in rule order: what /metrics exports.

        The compiled Prometheus rules read these series (see rewardscope.alerting.compiler), so an
        instance is listed from bind() on, with 0 activations, before it ever fires.
        """
        if self._exported is None:  # firing and activations change only with a transition
            self._exported = [InstanceState(rule.id, rule.alert, rule.severity, fn or "", state.firing, state.activations)
                              for rule, fn, _, _, state in self._instances]
        return self._exported

    def median_step_seconds(self) -> float | None:
        """Median wall time between the last recorded steps (up to STEP_INTERVAL_WINDOW), None before two steps."""
        if not self._step_intervals:
            return None
        return float(statistics.median(self._step_intervals))

    def add_rule(self, rule: Rule) -> None:
        """Add a rule to this engine (the legacy RealtimeMonitor API builds its rules this way)."""
        pack = AlertPack(self.base_pack.settings, self.base_pack.rules + (rule,), self.base_pack.source)
        self.base_pack = pack
        self.bind(self.run_id, self.reward_functions)


@functools.lru_cache(maxsize=1)
def default_trend_requirements() -> tuple[tuple[str, int], ...]:
    """The slopes the default pack's compiled Prometheus rules read; the monitor always publishes them."""
    return tuple(AlertEngine.default().trend_requirements())
