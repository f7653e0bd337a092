"""Compile an alert pack to Prometheus alerting rules (and a Prometheus Operator manifest).

Each enabled rule becomes one Prometheus alerting rule:

- threshold: ``grpo_kl > 0.5``; ``outside`` gives ``x < low or x > high``; the
  series' labels (run_id, reward_fn for per-function metrics) carry into the alert;
- trend: the same comparison on the slope the monitor publishes,
  ``grpo_metric_slope_per_step{metric="grpo_reward_mean",window_steps="20"} < -0.005``;
- promql: the rule's expression, ``$threshold`` and ``$run`` filled in.

Labels: ``severity`` and the rule's static labels. Annotations: ``summary`` and
``description`` (placeholders turned into ``{{ $labels.run_id }}``, ``{{ printf "%.4g"
$value }}`` ...), ``value``, ``threshold``, ``runbook_url`` and ``dashboard`` (the
pack's Grafana URL for the alert's run). The Slack templates read these names.

Overrides without a run_id change the rule for every run. An override with a run_id
compiles the rule twice: ``{run_id="that-run"}`` with the override and
``{run_id!="that-run"}`` with the pack's values (several runs: one matcher each).

Usage::

    from rewardscope.alerting.pack import load_pack
    from rewardscope.alerting.compiler import compile_groups, rules_yaml
    groups = compile_groups(load_pack())
    print(rules_yaml(groups, source="alerting/alerts.yml")[:200])
"""

from __future__ import annotations

import string
from typing import Any, Sequence

import yaml

from .pack import AlertPack, Overrides
from .rules import Rule, RuleError

SLOPE_METRIC = "grpo_metric_slope_per_step"
STEP_GROUP = "rewardscope-steps"
LIVENESS_GROUP = "rewardscope-liveness"


def promql_number(value: float) -> str:
    """A float literal that Prometheus parses back to exactly the same float."""
    return repr(float(value))


def _selector(rule: Rule, matchers: Sequence[str]) -> str:
    if rule.reward_fn is not None:
        matchers = [f'reward_fn="{rule.reward_fn}"', *matchers]
    if rule.kind == "trend":
        inner = [f'metric="{rule.metric}"', f'window_steps="{rule.window_steps}"', *matchers]
        return SLOPE_METRIC + "{" + ",".join(inner) + "}"
    return rule.metric + ("{" + ",".join(matchers) + "}" if matchers else "")  # type: ignore[operator]


def rule_expr(rule: Rule, matchers: Sequence[str] = ()) -> str:
    """The PromQL expression of a rule; ``matchers`` (e.g. ``run_id="x"``) narrow it to some runs."""
    if rule.kind == "promql":
        threshold = "" if rule.threshold is None else promql_number(rule.threshold)  # type: ignore[arg-type]
        if matchers and "$run" not in rule.expr:  # type: ignore[operator]
            raise RuleError(f"alert {rule.id}: its expr has no $run, so it cannot be overridden for one run")
        expr = rule.expr if matchers else rule.expr.replace("{$run}", "")  # type: ignore[union-attr]
        return string.Template(expr).substitute(threshold=threshold, run=",".join(matchers)).strip()
    selector = _selector(rule, matchers)
    low, high = rule.bounds()
    parts = []
    if low is not None:
        parts.append(f"{selector} < {promql_number(low)}")
    if high is not None:
        parts.append(f"{selector} > {promql_number(high)}")
    return " or ".join(parts)


def compile_rule(rule: Rule, pack: AlertPack, matchers: Sequence[str] = ()) -> dict[str, Any]:
    """One Prometheus alerting rule as a mapping, ready for YAML."""
    settings = pack.settings
    annotations = {
        "summary": rule.prometheus_template(rule.summary),
        "description": rule.prometheus_template(rule.description),
        "value": '{{ printf "%.4g" $value }}',
        "threshold": rule.threshold_text(),
        "runbook_url": settings.runbook_link(rule),
        "dashboard": settings.dashboard_url.replace("{run_id}", "{{ $labels.run_id }}"),
    }
    if not annotations["threshold"]:
        del annotations["threshold"]  # a liveness rule without a threshold
    return {"alert": rule.alert, "expr": rule_expr(rule, matchers), "for": rule.for_,
            "labels": {"severity": rule.severity, **dict(rule.labels)}, "annotations": annotations}


def compile_groups(pack: AlertPack, overrides: Sequence[Overrides] = ()) -> list[dict[str, Any]]:
    """The rule groups of a pack with overrides applied (see the module docstring)."""
    for o in overrides:
        if o.run_id is None:
            pack = pack.with_overrides(o)
    scoped = [o for o in overrides if o.run_id is not None]
    groups: dict[str, list[dict[str, Any]]] = {STEP_GROUP: [], LIVENESS_GROUP: []}
    for rule in pack.rules:
        target = groups[LIVENESS_GROUP if rule.kind == "promql" else STEP_GROUP]
        runs = [o for o in scoped if rule.id in o.alerts]
        if rule.enabled:
            target.append(compile_rule(rule, pack, [f'run_id!="{o.run_id}"' for o in runs]))
        for o in runs:
            overridden = pack.with_overrides(o)
            if overridden.rule(rule.id).enabled:
                target.append(compile_rule(overridden.rule(rule.id), overridden, [f'run_id="{o.run_id}"']))
    return [{"name": name, "rules": rules} for name, rules in groups.items() if rules]


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=1000, allow_unicode=True)


def rules_yaml(groups: list[dict[str, Any]], source: str) -> str:
    """A Prometheus rule file (rule_files entry) with a do-not-edit header."""
    header = (f"# Generated by `rewardscope rules` from {source}. Do not edit: change the alert definitions\n"
              f"# and run `rewardscope rules` again (`rewardscope rules --check` fails while this file is stale).\n")
    return header + _dump({"groups": groups})


def operator_manifest(groups: list[dict[str, Any]], *, name: str = "rewardscope-alerts", namespace: str | None = None,
                      labels: dict[str, str] | None = None) -> str:
    """A Prometheus Operator ``PrometheusRule`` holding the same groups."""
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    metadata["labels"] = {"app.kubernetes.io/name": "rewardscope", **dict(labels or {})}
    return _dump({"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": metadata,
                  "spec": {"groups": groups}})
