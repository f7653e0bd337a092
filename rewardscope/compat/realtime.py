"""The old alerting API (``RealtimeMonitor``), kept working on top of the alert engine.

Code written for the system we replace keeps running unchanged::

    from rewardscope import RealtimeMonitor, AlertLevel

    monitor = RealtimeMonitor(print_alerts=False)
    monitor.add_threshold_alert("signal_to_noise", threshold=0.5, condition="less", level=AlertLevel.WARNING)
    monitor.add_trend_alert("mean_reward", min_slope=-0.01, window_size=10)
    alerts = monitor.check_metrics(1, {"signal_to_noise": 0.2, "mean_reward": 1.0})
    print(alerts[0].alertname, alerts[0].state.value)     # signal_to_noise_less_0_5 firing
    print(monitor.get_alert_summary()["firing"])         # ['signal_to_noise_less_0_5']

What changed, and why:

- Rules are engine rules: several per metric, trend windows of any length (the old
  trend alerts with a window above 10 never fired), ``None`` or missing values are
  skipped instead of crashing.
- ``check_metrics`` returns the alert *transitions* of the step as AlertEvents: an
  alert fires once when its condition holds (for ``for_steps`` steps) and resolves
  once when it clears. Repeats are suppressed for ``cooldown_steps`` steps after it
  resolves (steps, not wall-clock seconds as before; default: the pack's setting, 10).
- A rule on a per-function key (``rewards/functions/<fn>``) watches that function.
- Recent alerts live in a bounded deque (``max_recent`` events).

Metric names: the old short names map to catalogue names (table ``OLD_NAMES`` below);
the W&B/TensorBoard keys of the old system (``rewards/mean``, ``training/kl_divergence``,
``rewards/functions/<fn>`` ...) and catalogue names (``grpo_kl``) work too.

==========================  ==============================================
old name                    catalogue metric
==========================  ==============================================
mean_reward, reward_mean    grpo_reward_mean
std_reward, reward_std      grpo_reward_std
min_reward / max_reward     grpo_reward_min / grpo_reward_max
total_reward                grpo_reward_sum_of_batch
reward_variance, variance   grpo_reward_variance
signal_to_noise, snr        grpo_reward_signal_to_noise
entropy, reward_entropy     grpo_reward_entropy_ratio
kl_divergence, kl           grpo_kl
policy_entropy              grpo_policy_entropy
advantage_mean / _std       grpo_advantage_mean / grpo_advantage_std
clip_ratio                  grpo_clip_ratio
grad_norm                   grpo_grad_norm
loss                        grpo_loss
learning_rate               grpo_learning_rate
completion_length           grpo_completion_length_mean_tokens
truncated_ratio             grpo_completion_truncated_ratio
zero_std_ratio              grpo_group_zero_std_ratio
eval_accuracy               grpo_eval_accuracy_ratio
==========================  ==============================================
"""

from __future__ import annotations

import math
import numbers
from collections import Counter, deque
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any

import numpy as np

from ..alerting.engine import AlertEngine
from ..alerting.events import AlertEvent, AlertState, format_alert
from ..alerting.pack import AlertPack, load_pack
from ..alerting.rules import Rule, format_number
from ..metrics.catalogue import CATALOGUE, metric
from ..metrics.window import RollingWindow
from .names import OLD_NAMES

_LEGACY_RUN_KEYS = {s.legacy_key: s.name for s in CATALOGUE if s.legacy_key and "{fn}" not in s.legacy_key}
# Most specific pattern first: "rewards/functions/f_std" is the std of f, not the mean of "f_std".
_LEGACY_FN_KEYS = sorted(((s.legacy_key.split("{fn}"), s.name) for s in CATALOGUE if s.legacy_key and "{fn}" in s.legacy_key),
                         key=lambda item: -len("".join(item[0])))


RECENT_IN_SUMMARY = 10


class AlertLevel(str, Enum):
    """Alert severities of the old API; the values are the engine's severities."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


def resolve_metric(name: str) -> tuple[str, str | None]:
    """(catalogue metric, reward_fn or None) for an old name, a legacy W&B key or a catalogue name.

    KeyError names the unknown metric.
    """
    if name in OLD_NAMES:
        return OLD_NAMES[name], None
    if name in _LEGACY_RUN_KEYS:
        return _LEGACY_RUN_KEYS[name], None
    for (prefix, suffix), catalogue_name in _LEGACY_FN_KEYS:
        if name.startswith(prefix) and name.endswith(suffix) and len(name) > len(prefix) + len(suffix):
            fn = name[len(prefix):len(name) - len(suffix)]
            if "/" not in fn:
                return catalogue_name, fn
    try:
        spec = metric(name)
    except KeyError:
        raise KeyError(f"unknown metric {name!r}: use a catalogue name (grpo_...), a legacy key, "
                       f"or one of {', '.join(sorted(OLD_NAMES))}") from None
    return spec.name, None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    value = float(value)
    return None if math.isnan(value) else value


class RealtimeMonitor:
    """The old ``RealtimeMonitor``: rules added one by one, ``check_metrics`` with a dict every step."""

    def __init__(self, alert_callback: Callable[[AlertEvent], None] | None = None, print_alerts: bool = True, *,
                 run_id: str = "realtime", max_recent: int = 1000) -> None:
        self.alert_callback = alert_callback
        self.print_alerts = print_alerts
        self.engine = AlertEngine(AlertPack(load_pack().settings, (), "RealtimeMonitor"))
        self.engine.bind(run_id, ())
        self.recent: deque[AlertEvent] = deque(maxlen=max_recent)
        self._fired: Counter[tuple[str, str]] = Counter()  # (alertname, severity) -> times fired
        self._windows: dict[tuple[str, str | None], RollingWindow] = {}
        self._capacity: dict[str, int] = {}  # metric -> longest trend window on it
        self._last_step: int | None = None
        self._cooldown_steps = self.engine.pack.settings.cooldown_steps

    # ------------------------------------------------------------------ adding rules
    def _add(self, rule: Rule) -> Rule:
        self.engine.add_rule(rule)
        if rule.kind == "trend" and rule.metric is not None and rule.window_steps is not None:
            self._capacity[rule.metric] = max(self._capacity.get(rule.metric, 0), rule.window_steps)
            for (name, fn), window in list(self._windows.items()):
                if name == rule.metric and window.capacity < rule.window_steps:
                    del self._windows[(name, fn)]  # rebuilt larger on the next step; its trend restarts
        return rule

    def add_threshold_alert(self, metric_name: str, threshold: float, condition: str = "greater",
                            level: AlertLevel = AlertLevel.WARNING, *, for_steps: int = 1,
                            cooldown_steps: int | None = None) -> Rule:
        """Alert when ``metric_name`` is greater (or less) than ``threshold``; returns the engine rule."""
        name, fn = resolve_metric(metric_name)
        alert = f"{metric_name}_{condition}_{format_number(threshold)}"
        return self._add(Rule(id=_rule_id(alert, self.engine), alert=_alert_name(alert), kind="threshold",
                              severity=AlertLevel(level).value, metric=name, condition=condition, threshold=threshold,
                              summary=f"{metric_name} is {{value}}, {condition} than {{threshold}}", description="",
                              runbook="realtime-alerts", reward_fn=fn, for_steps=for_steps,
                              cooldown_steps=self._cooldown(cooldown_steps)))

    def add_trend_alert(self, metric_name: str, min_slope: float | None = None, max_slope: float | None = None,
                        window_size: int = 10, level: AlertLevel = AlertLevel.WARNING, *, for_steps: int = 1,
                        cooldown_steps: int | None = None) -> Rule:
        """Alert when the slope per step of ``metric_name`` over ``window_size`` steps leaves [min_slope, max_slope]."""
        name, fn = resolve_metric(metric_name)
        alert = f"{metric_name}_trend_{window_size}"
        return self._add(Rule(id=_rule_id(alert, self.engine), alert=_alert_name(alert), kind="trend",
                              severity=AlertLevel(level).value, metric=name, window_steps=window_size,
                              min_slope=min_slope, max_slope=max_slope,
                              summary=f"{metric_name} slope {{value}} per step over {{window_steps}} steps, limit {{threshold}}",
                              description="", runbook="realtime-alerts", reward_fn=fn, for_steps=for_steps,
                              cooldown_steps=self._cooldown(cooldown_steps)))

    def _cooldown(self, cooldown_steps: int | None) -> int:
        return self._cooldown_steps if cooldown_steps is None else cooldown_steps

    def setup_default_alerts(self) -> None:
        """Add the default pack's in-process rules (the same as RewardMonitor(alerts=True)); calling it again adds nothing."""
        present = {r.id for r in self.engine.base_pack.rules}
        for rule in load_pack().rules:
            if rule.in_process and rule.id not in present:
                self._add(rule)

    # ------------------------------------------------------------------ every step
    def check_metrics(self, step: int, metrics: Mapping[str, Any]) -> list[AlertEvent]:
        """Evaluate every rule on this step's metrics; returns the alerts that fired or resolved.

        Unknown keys are ignored; None, NaN and non-numbers count as missing.
        """
        if isinstance(step, bool) or not isinstance(step, numbers.Integral):
            raise TypeError(f"step must be an integer, got {step!r}")
        self._last_step = int(step)
        values: dict[tuple[str, str | None], float] = {}
        for key, raw in metrics.items():
            try:
                resolved = resolve_metric(str(key))
            except KeyError:
                continue
            value = _number(raw)
            if value is not None:
                values[resolved] = value
        functions = sorted({fn for _, fn in values if fn is not None} | set(self.engine.reward_functions))
        if tuple(functions) != self.engine.reward_functions:
            self.engine.bind(self.engine.run_id, functions)
        for name, capacity in self._capacity.items():
            for fn in [None, *functions]:
                window = self._windows.get((name, fn))
                if window is None:
                    window = self._windows[(name, fn)] = RollingWindow(1, capacity)
                window.append(int(step), np.array([values.get((name, fn), np.nan)]))

        def slope_of(name: str, fn: str | None, window_steps: int) -> float | None:
            window = self._windows.get((name, fn))
            return None if window is None else window.slope(0, window_steps)

        events = self.engine.evaluate_values(int(step), None, lambda name, fn: values.get((name, fn)), slope_of)
        for event in events:
            self.recent.append(event)
            if event.state is AlertState.FIRING:
                self._fired[(event.alertname, event.severity)] += 1
            if self.print_alerts:
                print(format_alert(event), flush=True)
            if self.alert_callback is not None:
                self.alert_callback(event)
        return events

    # ------------------------------------------------------------------ reading back
    def get_recent_alerts(self, n: int = 10) -> list[AlertEvent]:
        """The last ``n`` alert transitions, oldest first."""
        return list(self.recent)[-n:] if n > 0 else []

    def get_alert_summary(self) -> dict[str, Any]:
        """Counts of alerts fired (total, by level, by alert), the alerts firing now and the latest transitions
        (``recent_alerts``, as the old summary had: the last 10, oldest first)."""
        by_level: Counter[str] = Counter()
        by_alert: Counter[str] = Counter()
        for (alertname, severity), count in self._fired.items():
            by_level[severity] += count
            by_alert[alertname] += count
        return {"total_alerts": sum(self._fired.values()),
                "by_level": {level.value: by_level.get(level.value, 0) for level in AlertLevel},
                "by_alert": dict(by_alert),
                "firing": sorted({rule.alert for rule, _ in self.engine.firing()}),
                "recent_alerts": [event.to_json() for event in list(self.recent)[-RECENT_IN_SUMMARY:]],
                "last_step": self._last_step}


def _alert_name(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c == "_" else "_" for c in text)
    return cleaned if not cleaned[0].isdigit() else "_" + cleaned


def _rule_id(alert: str, engine: AlertEngine) -> str:
    base = _alert_name(alert).lower().strip("_") or "rule"
    if not base[0].isalpha():
        base = "r_" + base
    taken = {r.id for r in engine.base_pack.rules}
    rule_id, n = base, 2
    while rule_id in taken:
        rule_id, n = f"{base}_{n}", n + 1
    return rule_id
