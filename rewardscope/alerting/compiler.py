"""Compile an alert pack to Prometheus alerting rules (and a Prometheus Operator manifest).

Step rules (threshold, trend) are evaluated by the monitor on every recorded step; the
compiled rule reads that verdict instead of re-evaluating a gauge in time. A step rate of
10 steps/s and a 5 s scrape mean Prometheus sees one step in fifty, and a ``for:`` in time
means something else at 0.1 and at 10 steps/s; ``for_steps`` counted in-process means the
same everywhere. So ``kl_blowup`` compiles to::

    grpo_kl{job="rewardscope"}
      and on(run_id, reward_fn) (grpo_alert_active{job="rewardscope",alert_id="kl_blowup"} == 1
        or increase(grpo_alert_activations_total{job="rewardscope",alert_id="kl_blowup"}[1m]) > 0)
      and on(run_id) grpo_run_ended{job="rewardscope"} == 0

- the left side is the value shown in the message (the gauge, or the slope of a trend rule,
  or ``increase(counter[1m])`` for an event rule with ``counter:``); its labels (run_id,
  reward_fn, window_steps ...) become the alert's labels;
- ``grpo_alert_active == 1``: the engine holds the instance firing (for_steps held);
- the activations counter: an instance that fired and resolved between two scrapes
  still fires in Prometheus for a minute, so a short verdict reaches Slack;
- ``grpo_run_ended == 0``: only a live run's alerts fire; when a run ends while an
  alert fires, GRPORunEndedWhileFiring says so (see alerting/alerts.yml) and the
  alert's resolution is inhibited in Alertmanager, so on-call never reads "resolved";
- ``keep_firing_for`` (settings, 30 s) bridges that hand-over and single failed scrapes.

Promql rules (liveness) are compiled as written, with ``$job`` (the pack's job matcher),
``$run`` (job plus per-run matchers, inside a selector's braces) and ``$threshold``.

Labels: ``severity`` (a promql rule with ``severity: inherit`` keeps its series' severity
label) and the rule's static labels. Annotations: ``summary``, ``description``, ``value``,
``threshold``, ``runbook_url`` and ``dashboard``. The Slack templates read these names.

Overrides without a run_id change the rule for every run. An override with a run_id
compiles the rule twice: ``{run_id="that-run"}`` with the override and
``{run_id!="that-run"}`` with the pack's values (several runs: one matcher each). A
threshold override of a step rule must also reach the run's monitor (its in-process
engine decides when the rule fires): pass the same file to ``AlertEngine.default``.

Usage::

    from rewardscope.alerting.pack import load_pack
    from rewardscope.alerting.compiler import compile_groups, rules_yaml
    groups = compile_groups(load_pack())
    print(rules_yaml(groups, source="alerting/alerts.yml")[:200])
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

import yaml

from .pack import AlertPack, Overrides
from .rules import INHERIT, Rule, RuleError

SLOPE_METRIC = "grpo_metric_slope_per_step"
# How long an activation that Prometheus never saw as active keeps the alert firing (and an event rule's window).
ACTIVATION_WINDOW = "1m"
STEP_GROUP = "rewardscope-steps"
LIVENESS_GROUP = "rewardscope-liveness"
RECORDING_GROUP = "rewardscope-recording"


def promql_number(value: float) -> str:
    """A float literal that Prometheus parses back to exactly the same float."""
    return repr(float(value))


def _selector(name: str, matchers: Sequence[str]) -> str:
    return name + "{" + ",".join(matchers) + "}"


def _value_expr(rule: Rule, matchers: Sequence[str]) -> str:
    """What a step rule's message shows: the gauge, the slope, or the counter's increase of an event rule."""
    if rule.reward_fn is not None:
        matchers = [*matchers, f'reward_fn="{rule.reward_fn}"']
    if rule.kind == "trend":
        return _selector(SLOPE_METRIC, [*matchers, f'metric="{rule.metric}"', f'window_steps="{rule.window_steps}"'])
    if rule.counter is not None:
        return f"increase({_selector(rule.counter, matchers)}[{ACTIVATION_WINDOW}])"
    return _selector(rule.metric, matchers)  # type: ignore[arg-type]


def rule_expr(rule: Rule, matchers: Sequence[str] = (), job: str = "rewardscope") -> str:
    """The PromQL expression of a rule; ``matchers`` (e.g. ``run_id="x"``) narrow it to some runs."""
    job_matcher = f'job="{job}"'
    if rule.kind == "promql":
        threshold = "" if rule.threshold is None else promql_number(rule.threshold)  # type: ignore[arg-type]
        if matchers and "$run" not in rule.expr:  # type: ignore[operator]
            raise RuleError(f"alert {rule.id}: its expr has no $run, so it cannot be overridden for one run")
        return string.Template(rule.expr).substitute(  # type: ignore[arg-type]
            threshold=threshold, job=job_matcher, run=",".join([job_matcher, *matchers])).strip()
    scoped = [job_matcher, *matchers]
    state = [*scoped, f'alert_id="{rule.id}"']
    return (f"{_value_expr(rule, scoped)}\n"
            f"  and on(run_id, reward_fn) ({_selector('grpo_alert_active', state)} == 1\n"
            f"    or increase({_selector('grpo_alert_activations_total', state)}[{ACTIVATION_WINDOW}]) > 0)\n"
            f"  and on(run_id) {_selector('grpo_run_ended', scoped)} == 0")


def compile_rule(rule: Rule, pack: AlertPack, matchers: Sequence[str] = ()) -> dict[str, Any]:
    """One Prometheus alerting rule as a mapping, ready for YAML."""
    settings = pack.settings
    labels = {"severity": rule.severity, **dict(rule.labels)}
    if rule.severity == INHERIT:
        del labels["severity"]  # the series' own severity label (GRPORunEndedWhileFiring: the ended alert's)
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
    compiled: dict[str, Any] = {"alert": rule.alert, "expr": rule_expr(rule, matchers, settings.job)}
    if rule.kind == "promql":
        compiled["for"] = rule.for_
    if rule.keep_firing_for or rule.kind != "promql":
        compiled["keep_firing_for"] = rule.keep_firing_for or settings.keep_firing_for
    return {**compiled, "labels": labels, "annotations": annotations}


def recording_rules(job: str) -> list[dict[str, Any]]:
    """Recording rules for the heavy queries of the dashboards and of a fleet's central Prometheus.

    Per run (``run:``) or per run and reward function (``run_fn:``), over a fixed 1 m window:
    the exact reward means from the monotone positive and negative sum counters (rewards can be
    negative, so a histogram's _sum is no counter), step-time quantiles, and the step rate.
    """
    run, fn = "job, instance, run_id", "job, instance, run_id, reward_fn"
    sel = f'{{job="{job}"}}'

    def rate(name: str, by: str, extra: str = "") -> str:
        selector = sel if not extra else sel[:-1] + "," + extra + "}"
        return f"sum by ({by}) (rate({name}{selector}[1m]))"

    def exact_mean(prefix: str, by: str) -> str:
        observations = rate(prefix + "_value_bucket", by, 'le="+Inf"')
        return f"({rate(prefix + '_positive_sum_total', by)} - {rate(prefix + '_negative_sum_total', by)})\n  / {observations}"

    quantile = f"sum by ({run}, le) (rate(grpo_step_duration_seconds_bucket{sel}[1m]))"
    return [
        {"record": "run:grpo_reward_exact_mean:rate1m", "expr": exact_mean("grpo_reward", run)},
        {"record": "run_fn:grpo_reward_fn_exact_mean:rate1m", "expr": exact_mean("grpo_reward_fn", fn)},
        {"record": "run:grpo_step_duration_seconds:p50_rate1m", "expr": f"histogram_quantile(0.5, {quantile})"},
        {"record": "run:grpo_step_duration_seconds:p90_rate1m", "expr": f"histogram_quantile(0.9, {quantile})"},
        {"record": "run:grpo_steps:rate1m", "expr": rate("grpo_steps_total", run)},
    ]


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
    groups[RECORDING_GROUP] = list(recording_rules(pack.settings.job))
    return [{"name": name, "rules": rules} for name, rules in groups.items() if rules]


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (the step rules' expressions) as literal blocks people can read."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _text)


def _dump(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000, allow_unicode=True)


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
