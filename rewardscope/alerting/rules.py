"""The alert rule model: one rule, validated, that both evaluators understand.

A rule is one of three kinds:

- ``threshold``: a per-step gauge of the catalogue compared with a threshold,
  ``greater`` (value > threshold), ``less`` (value < threshold) or ``outside`` a
  band (value < low or value > high).
- ``trend``: the least-squares slope per training step of a per-step gauge over its
  last ``window_steps`` recorded steps, below ``min_slope`` (falling) and/or above
  ``max_slope`` (rising). The monitor publishes that slope as
  ``grpo_metric_slope_per_step{metric, reward_fn, window_steps}``, so the compiled
  Prometheus rule reads exactly the number the in-process engine compares.
- ``promql``: liveness conditions only Prometheus can see (no step arrives when a run
  stalls). The expression may use ``$threshold`` and ``$run`` (the run_id matchers a
  per-run override adds, written inside a selector's braces). The in-process engine
  skips these rules.

A rule on a per-function metric (scope ``function`` in the catalogue) gives one alert
instance per reward function, labelled ``reward_fn``, as Prometheus would.

``for_steps`` is the in-process for-duration: the condition must hold on that many
consecutive recorded steps (1 = fire on the first). ``for`` is the Prometheus
for-duration in time. ``cooldown_steps`` suppresses repeats: after an instance
resolves it fires again only once that many recorded steps have passed.

Texts (summary, description) may use the placeholders ``{run_id}``, ``{reward_fn}``,
``{instance}`` (labels), ``{value}`` (4 significant digits), ``{threshold}``, ``{metric}`` and
``{window_steps}``; ``render`` fills them in-process and ``prometheus_template``
turns them into ``{{ $labels.run_id }}``, ``{{ printf "%.4g" $value }}`` and literals.

Usage::

    from rewardscope.alerting.rules import Rule
    rule = Rule(id="kl_too_high", alert="GRPOKLTooHigh", kind="threshold", severity="warning",
                summary="KL {value} above {threshold} in {run_id}", description="", runbook="kl-too-high",
                metric="grpo_kl", condition="greater", threshold=0.5, for_steps=3, for_="1m")
    rule.crossed(0.7)                                   # 0.5: the bound the value crossed
    rule.render(rule.summary, {"run_id": "r1"}, 0.7)    # 'KL 0.7 above 0.5 in r1'
"""

from __future__ import annotations

import math
import re
import string
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from ..metrics.catalogue import Kind, Scope, exposed_sample_names, metric

SEVERITIES = ("info", "warning", "error", "critical")
KINDS = ("threshold", "trend", "promql")
CONDITIONS = ("greater", "less", "outside")
PLACEHOLDERS = ("run_id", "reward_fn", "instance", "rank", "value", "threshold", "metric", "window_steps")

_LABEL_PLACEHOLDERS = ("run_id", "reward_fn", "instance", "rank")
_REWARD_FN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]*$")  # as RewardFunctionSpec names
_ID = re.compile(r"^[a-z][a-z0-9_]*$")
_ALERT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DURATION = re.compile(r"^(?:[0-9]+(?:ms|s|m|h|d|w|y))+$")
_EXPR_METRIC = re.compile(r"\b(?:grpo|rewardscope)_[A-Za-z0-9_]+")


class RuleError(ValueError):
    """An alert definition that cannot be used; the message names the rule and the field."""


def format_number(value: float) -> str:
    """Numbers in texts: 4 significant digits, as Go's printf "%.4g" writes them."""
    return f"{value:.4g}"


def _number(rule_id: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RuleError(f"alert {rule_id}: {name} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Rule:
    """One alert definition. Build it with keyword arguments; ``__post_init__`` validates."""

    id: str
    alert: str
    kind: str
    severity: str
    summary: str
    description: str
    runbook: str  # an anchor of docs/runbooks.md, or a full URL
    metric: str | None = None  # threshold, trend
    reward_fn: str | None = None  # per-function metrics: watch this function only (default: every function)
    condition: str | None = None  # threshold: greater | less | outside
    threshold: float | tuple[float, float] | None = None  # threshold (a pair for outside); promql's $threshold
    window_steps: int | None = None  # trend
    min_slope: float | None = None  # trend: fire when the slope is below
    max_slope: float | None = None  # trend: fire when the slope is above
    expr: str | None = None  # promql
    for_steps: int = 1
    for_: str = "0s"  # Prometheus 'for' (written "for" in YAML)
    cooldown_steps: int = 0
    enabled: bool = True
    labels: Mapping[str, str] = field(default_factory=dict)  # extra static labels

    def __post_init__(self) -> None:
        rid = self.id
        if not isinstance(rid, str) or not _ID.match(rid):
            raise RuleError(f"alert id {rid!r} must be lower_snake_case")
        if not isinstance(self.alert, str) or not _ALERT_NAME.match(self.alert):
            raise RuleError(f"alert {rid}: alert name {self.alert!r} must be a Prometheus-style name like GRPOKLTooHigh")
        if self.kind not in KINDS:
            raise RuleError(f"alert {rid}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.severity not in SEVERITIES:
            raise RuleError(f"alert {rid}: severity must be one of {', '.join(SEVERITIES)}, got {self.severity!r}")
        for name in ("summary", "description", "runbook"):
            if not isinstance(getattr(self, name), str):
                raise RuleError(f"alert {rid}: {name} must be text")
        if not self.summary or not self.runbook:
            raise RuleError(f"alert {rid}: summary and runbook are required")
        for text in (self.summary, self.description):
            self._check_text(text)
        if isinstance(self.for_steps, bool) or not isinstance(self.for_steps, int) or self.for_steps < 1:
            raise RuleError(f"alert {rid}: for_steps must be an integer >= 1, got {self.for_steps!r}")
        if isinstance(self.cooldown_steps, bool) or not isinstance(self.cooldown_steps, int) or self.cooldown_steps < 0:
            raise RuleError(f"alert {rid}: cooldown_steps must be an integer >= 0, got {self.cooldown_steps!r}")
        if not isinstance(self.for_, str) or not _DURATION.match(self.for_):
            raise RuleError(f"alert {rid}: for must be a Prometheus duration like 30s or 2m, got {self.for_!r}")
        if not isinstance(self.enabled, bool):
            raise RuleError(f"alert {rid}: enabled must be true or false")
        for key, value in self.labels.items():
            if key in ("alertname", "severity", "run_id", "reward_fn") or not _ALERT_NAME.match(str(key)) or not isinstance(value, str):
                raise RuleError(f"alert {rid}: label {key}={value!r} is reserved or not a text label")
        getattr(self, f"_check_{self.kind}")()

    # ------------------------------------------------------------------ validation per kind
    def _unused(self, *names: str) -> None:
        for name in names:
            if getattr(self, name) is not None:
                raise RuleError(f"alert {self.id}: {name} does not apply to a {self.kind} rule")

    def _check_metric(self) -> None:
        if not isinstance(self.metric, str):
            raise RuleError(f"alert {self.id}: a {self.kind} rule needs a metric")
        try:
            spec = metric(self.metric)
        except KeyError as error:
            raise RuleError(f"alert {self.id}: {error.args[0]}") from None
        if spec.kind is not Kind.GAUGE or not spec.stored:
            raise RuleError(f"alert {self.id}: {self.metric} is not a per-step gauge; threshold and trend rules read per-step gauges")
        if self.reward_fn is not None and (spec.scope is not Scope.FUNCTION or not isinstance(self.reward_fn, str)
                                           or not _REWARD_FN.match(self.reward_fn)):
            raise RuleError(f"alert {self.id}: reward_fn {self.reward_fn!r} needs a per-function metric and a function name")

    def _check_threshold(self) -> None:
        self._unused("window_steps", "min_slope", "max_slope", "expr")
        self._check_metric()
        if self.condition not in CONDITIONS:
            raise RuleError(f"alert {self.id}: condition must be one of {', '.join(CONDITIONS)}, got {self.condition!r}")
        if self.condition == "outside":
            if not isinstance(self.threshold, (list, tuple)) or len(self.threshold) != 2:
                raise RuleError(f"alert {self.id}: an outside condition needs threshold: [low, high]")
            low, high = (_number(self.id, "threshold", v) for v in self.threshold)
            if low >= high:
                raise RuleError(f"alert {self.id}: band low {low} must be below high {high}")
            object.__setattr__(self, "threshold", (low, high))
        else:
            object.__setattr__(self, "threshold", _number(self.id, "threshold", self.threshold))

    def _check_trend(self) -> None:
        self._unused("condition", "threshold", "expr")
        self._check_metric()
        if isinstance(self.window_steps, bool) or not isinstance(self.window_steps, int) or self.window_steps < 2:
            raise RuleError(f"alert {self.id}: window_steps must be an integer >= 2, got {self.window_steps!r}")
        if self.min_slope is None and self.max_slope is None:
            raise RuleError(f"alert {self.id}: a trend rule needs min_slope (falling) and/or max_slope (rising)")
        for name in ("min_slope", "max_slope"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _number(self.id, name, getattr(self, name)))
        if self.min_slope is not None and self.max_slope is not None and self.min_slope >= self.max_slope:
            raise RuleError(f"alert {self.id}: min_slope must be below max_slope")

    def _check_promql(self) -> None:
        self._unused("metric", "reward_fn", "condition", "window_steps", "min_slope", "max_slope")
        if not isinstance(self.expr, str) or not self.expr.strip():
            raise RuleError(f"alert {self.id}: a promql rule needs expr")
        if self.threshold is not None:
            object.__setattr__(self, "threshold", _number(self.id, "threshold", self.threshold))
        if ("$threshold" in self.expr) != (self.threshold is not None):
            raise RuleError(f"alert {self.id}: use $threshold in expr exactly when threshold is set")
        known = exposed_sample_names()
        unknown = sorted(set(_EXPR_METRIC.findall(self.expr)) - known)
        if unknown:
            raise RuleError(f"alert {self.id}: expr names metrics the catalogue does not define: {', '.join(unknown)}")
        try:
            string.Template(self.expr).substitute(threshold="0", run="")
        except (KeyError, ValueError) as error:
            raise RuleError(f"alert {self.id}: expr may only use $threshold and $run ({error})") from None

    def _check_text(self, text: str) -> None:
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as error:
            raise RuleError(f"alert {self.id}: bad placeholder in {text!r} ({error})") from None
        for _literal, name, spec, conversion in parsed:
            if name is not None and (name not in PLACEHOLDERS or spec or conversion):
                raise RuleError(f"alert {self.id}: unknown placeholder {{{name}}} in {text!r}; "
                                f"use {', '.join('{' + p + '}' for p in PLACEHOLDERS)}")
        if any("{" in literal or "}" in literal for literal, *_ in parsed):  # Go templates would read them
            raise RuleError(f"alert {self.id}: literal braces are not allowed in alert texts")

    # ------------------------------------------------------------------ evaluation helpers
    @property
    def per_function(self) -> bool:
        return self.metric is not None and metric(self.metric).scope is Scope.FUNCTION

    def functions(self, bound: tuple[str, ...]) -> tuple[str | None, ...]:
        """The reward functions this rule has an instance for, given a run's functions (None: run-level)."""
        if not self.per_function:
            return (None,)
        return (self.reward_fn,) if self.reward_fn is not None else bound

    @property
    def in_process(self) -> bool:
        """Whether the in-process engine evaluates this rule (promql rules need Prometheus)."""
        return self.kind != "promql"

    def bounds(self) -> tuple[float | None, float | None]:
        """(low, high): the rule fires when the value is below low or above high."""
        if self.kind == "promql":
            return None, self.threshold  # type: ignore[return-value]
        if self.kind == "trend":
            return self.min_slope, self.max_slope
        if self.condition == "greater":
            return None, self.threshold  # type: ignore[return-value]
        if self.condition == "less":
            return self.threshold, None  # type: ignore[return-value]
        return self.threshold  # type: ignore[return-value]

    def crossed(self, value: float | None) -> float | None:
        """The bound that ``value`` violates, or None (also for a missing value)."""
        if value is None or math.isnan(value):
            return None
        low, high = self.bounds()
        if low is not None and value < low:
            return low
        if high is not None and value > high:
            return high
        return None

    def threshold_text(self) -> str:
        """The limit as people read it: '0.5', or '[0.1, 0.9]' for a band (a trend's slope limits alike)."""
        if self.kind == "promql" and self.threshold is None:
            return ""
        low, high = self.bounds()
        if low is not None and high is not None:
            return f"[{format_number(low)}, {format_number(high)}]"
        return format_number(low if high is None else high)  # type: ignore[arg-type]

    def _literals(self) -> dict[str, str]:
        return {"threshold": self.threshold_text(), "metric": self.metric or "",
                "window_steps": "" if self.window_steps is None else str(self.window_steps)}

    def render(self, text: str, labels: Mapping[str, str], value: float | None) -> str:
        """Fill a text's placeholders for an in-process alert."""
        values = {**self._literals(), **{name: labels.get(name, "") for name in _LABEL_PLACEHOLDERS},
                  "value": "n/a" if value is None else format_number(value)}
        return text.format(**values)

    def prometheus_template(self, text: str) -> str:
        """The same text as a Prometheus annotation template."""
        values = {**self._literals(), **{name: f"{{{{ $labels.{name} }}}}" for name in _LABEL_PLACEHOLDERS},
                  "value": '{{ printf "%.4g" $value }}'}
        return text.format(**values)


def rule_fields() -> tuple[str, ...]:
    """Field names as written in YAML ('for' for the Prometheus duration)."""
    return tuple("for" if f.name == "for_" else f.name for f in fields(Rule))
