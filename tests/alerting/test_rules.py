"""The rule model and pack loading: validation with clear errors, rendering, overrides, the packaged copy."""

from pathlib import Path

import pytest
import yaml

from rewardscope.alerting.cli import compile_pack, generated_files, resolve_pack, stale_files
from rewardscope.alerting.pack import DEFAULT_PACK_PATH, load_overrides, load_pack, parse_pack
from rewardscope.alerting.rules import Rule, RuleError
from rewardscope.metrics.catalogue import Kind, metric

ROOT = Path(__file__).resolve().parents[2]


def threshold_rule(**changes):
    fields = dict(id="kl", alert="KL", kind="threshold", severity="warning", summary="KL {value} > {threshold} in {run_id}",
                  description="", runbook="kl", metric="grpo_kl", condition="greater", threshold=0.5)
    fields.update(changes)
    return Rule(**fields)


def test_the_package_ships_the_same_pack_as_the_checkout():
    assert DEFAULT_PACK_PATH.read_bytes() == (ROOT / "alerting" / "alerts.yml").read_bytes()


def test_checked_in_rules_and_package_copy_are_fresh():
    pack_path = resolve_pack(ROOT)
    assert pack_path == ROOT / "alerting" / "alerts.yml"
    files = generated_files(ROOT, pack_path, compile_pack(pack_path))
    assert sorted(p.relative_to(ROOT).as_posix() for p in files) == ["prometheus/rules/rewardscope-alerts.yml",
                                                                     "rewardscope/alerting/alerts.yml"]
    assert stale_files(files) == [], "run `rewardscope rules` and commit the result"


def test_default_pack_covers_the_grpo_failures():
    pack = load_pack()
    kinds = {(r.alert, r.severity): (r.kind, r.metric) for r in pack.rules}
    assert kinds == {
        ("GRPOWeakRewardSignal", "warning"): ("threshold", "grpo_reward_signal_to_noise"),
        ("GRPOWeakRewardSignal", "critical"): ("threshold", "grpo_reward_std"),
        ("GRPORewardFalling", "warning"): ("trend", "grpo_reward_mean"),
        ("GRPORewardFunctionFalling", "warning"): ("trend", "grpo_reward_fn_mean"),
        ("GRPOKLTooHigh", "warning"): ("threshold", "grpo_kl"),
        ("GRPOKLTooHigh", "critical"): ("threshold", "grpo_kl"),
        ("GRPOPolicyEntropyCollapse", "warning"): ("trend", "grpo_policy_entropy"),
        ("GRPOPolicyEntropyCollapse", "critical"): ("threshold", "grpo_policy_entropy"),
        ("GRPONoLearningSignal", "warning"): ("threshold", "grpo_group_zero_std_ratio"),
        ("GRPOCompletionsTruncated", "warning"): ("threshold", "grpo_completion_truncated_ratio"),
        ("GRPONonFiniteRewards", "error"): ("threshold", "grpo_reward_fn_nonfinite_samples"),
        ("GRPORewardHackingSuspected", "critical"): ("threshold", "grpo_reward_hacking_suspected"),
        ("GRPORunStalled", "error"): ("promql", None),
        ("GRPOExporterDown", "error"): ("promql", None),
        ("GRPORunEndedWhileFiring", "inherit"): ("promql", None),
        ("GRPOStepsSkipped", "warning"): ("promql", None),
        ("GRPOFunctionDominance", "warning"): ("threshold", "grpo_function_dominance_suspected"),
        ("GRPOLengthExploitation", "warning"): ("threshold", "grpo_length_exploitation_suspected"),
        ("GRPOKLAccelerating", "warning"): ("threshold", "grpo_kl_acceleration_suspected"),
        ("GRPOZeroSpreadTakeover", "warning"): ("threshold", "grpo_zero_spread_takeover_suspected"),
        ("GRPORankStraggler", "warning"): ("promql", None),
    }
    assert metric("grpo_reward_hacking_suspected").kind is Kind.GAUGE


def test_every_rule_has_texts_and_a_runbook_section():
    runbooks = (ROOT / "docs" / "runbooks.md").read_text(encoding="utf-8")
    anchors = {line[3:].strip().lower() for line in runbooks.splitlines() if line.startswith("## ")}
    pack = load_pack()
    for rule in pack.rules:
        assert rule.summary and rule.description, rule.id
        assert rule.runbook in anchors, f"docs/runbooks.md has no section '## {rule.alert}'"
        assert pack.settings.runbook_link(rule).endswith("docs/runbooks.md#" + rule.runbook)


def test_crossed_returns_the_violated_bound():
    greater, less = threshold_rule(), threshold_rule(condition="less", threshold=0.2)
    band = threshold_rule(condition="outside", threshold=[0.1, 0.9])
    assert (greater.crossed(0.6), greater.crossed(0.5), greater.crossed(None), greater.crossed(float("nan"))) == (0.5, None, None, None)
    assert (less.crossed(0.1), less.crossed(0.2)) == (0.2, None)
    assert (band.crossed(0.05), band.crossed(0.95), band.crossed(0.5), band.crossed(0.1)) == (0.1, 0.9, None, None)
    assert band.threshold == (0.1, 0.9) and band.threshold_text() == "[0.1, 0.9]"
    trend = Rule(id="t", alert="T", kind="trend", severity="info", summary="s", description="", runbook="t",
                 metric="grpo_reward_mean", window_steps=50, min_slope=-0.01)
    assert (trend.crossed(-0.02), trend.crossed(-0.01), trend.threshold_text()) == (-0.01, None, "-0.01")


def test_texts_render_in_process_and_as_prometheus_templates():
    rule = threshold_rule(summary="{reward_fn}/{run_id}: {value} vs {threshold} on {metric}")
    assert rule.render(rule.summary, {"run_id": "r1"}, 0.123456) == "/r1: 0.1235 vs 0.5 on grpo_kl"
    assert rule.render(rule.summary, {"run_id": "r1"}, None) == "/r1: n/a vs 0.5 on grpo_kl"
    assert rule.prometheus_template(rule.summary) == ('{{ $labels.reward_fn }}/{{ $labels.run_id }}: {{ printf "%.4g" $value }}'
                                                      ' vs 0.5 on grpo_kl')


@pytest.mark.parametrize("changes, message", [
    ({"id": "Bad-Id"}, "lower_snake_case"),
    ({"alert": "bad name"}, "Prometheus-style name"),
    ({"kind": "ratio"}, "kind must be one of threshold, trend, promql"),
    ({"severity": "page"}, "severity must be one of info, warning, error, critical"),
    ({"metric": "grpo_nope"}, "'grpo_nope' is not in the rewardscope catalogue"),
    ({"metric": "grpo_steps_total"}, "not a per-step gauge"),
    ({"condition": "equal"}, "condition must be one of greater, less, outside"),
    ({"threshold": "high"}, "threshold must be a finite number"),
    ({"threshold": float("inf")}, "threshold must be a finite number"),
    ({"condition": "outside", "threshold": 0.5}, "needs threshold: [low, high]"),
    ({"condition": "outside", "threshold": [0.9, 0.1]}, "band low 0.9 must be below high 0.1"),
    ({"window_steps": 10}, "window_steps does not apply to a threshold rule"),
    ({"for_steps": 0}, "for_steps must be an integer >= 1"),
    ({"for_": "1 minute"}, "for must be a Prometheus duration"),
    ({"for_": "1m"}, "for applies to promql rules only"),
    ({"keep_firing_for": "soon"}, "keep_firing_for must be a Prometheus duration"),
    ({"counter": "grpo_reward_fn_nonfinite_total"}, "counter 'grpo_reward_fn_nonfinite_total' must be a catalogue counter with the labels of grpo_kl"),
    ({"severity": "inherit"}, "or inherit for a promql rule"),
    ({"cooldown_steps": -1}, "cooldown_steps must be an integer >= 0"),
    ({"summary": "{value:.2f}"}, "unknown placeholder {value}"),
    ({"summary": "{step}"}, "unknown placeholder {step}"),
    ({"summary": "{{ $value }}"}, "literal braces are not allowed"),
    ({"summary": ""}, "summary and runbook are required"),
    ({"reward_fn": "check_answer"}, "reward_fn 'check_answer' needs a per-function metric"),
    ({"labels": {"severity": "x"}}, "label severity='x' is reserved"),
])
def test_bad_rules_are_clear_errors(changes, message):
    with pytest.raises(RuleError, match=message.replace("[", r"\[").replace("{", r"\{").replace("$", r"\$")):
        threshold_rule(**changes)


def test_bad_trend_and_promql_rules_are_clear_errors():
    base = dict(id="t", alert="T", severity="info", summary="s", description="", runbook="t")
    with pytest.raises(RuleError, match="window_steps must be an integer >= 2"):
        Rule(kind="trend", metric="grpo_reward_mean", window_steps=1, min_slope=-1.0, **base)
    with pytest.raises(RuleError, match="needs min_slope"):
        Rule(kind="trend", metric="grpo_reward_mean", window_steps=5, **base)
    with pytest.raises(RuleError, match="min_slope must be below max_slope"):
        Rule(kind="trend", metric="grpo_reward_mean", window_steps=5, min_slope=1.0, max_slope=0.0, **base)
    with pytest.raises(RuleError, match="catalogue does not define: grpo_last_step_seconds"):
        Rule(kind="promql", expr="time() - grpo_last_step_seconds > 5", **base)
    with pytest.raises(RuleError, match=r"use \$threshold in expr exactly when threshold is set"):
        Rule(kind="promql", expr="up == 0", threshold=3, **base)
    with pytest.raises(RuleError, match=r"may only use \$threshold, \$job and \$run"):
        Rule(kind="promql", expr="up{job=\"$name\"} == 0", **base)


def test_pack_errors_name_the_file_and_the_alert(tmp_path):
    entry = {"id": "kl", "alert": "KL", "kind": "threshold", "severity": "warning", "summary": "s", "runbook": "kl",
             "description": "", "metric": "grpo_kl", "condition": "greater", "threshold": 1}
    with pytest.raises(RuleError, match=r"p.yml: alert kl: unknown keys \['treshold'\]"):
        parse_pack({"alerts": [{**entry, "treshold": 2}]}, "p.yml")
    with pytest.raises(RuleError, match="duplicate alert ids"):
        parse_pack({"alerts": [entry, entry]})
    with pytest.raises(RuleError, match="alert name and severity must identify one rule"):
        parse_pack({"alerts": [entry, {**entry, "id": "kl2"}]})
    with pytest.raises(RuleError, match=r"dashboard_url must contain \{run_id\}"):
        parse_pack({"settings": {"dashboard_url": "http://grafana"}, "alerts": [entry]})
    with pytest.raises(RuleError, match="alerts must be a non-empty list"):
        parse_pack({"alerts": []})
    broken = tmp_path / "broken.yml"
    broken.write_text("alerts: [\n")
    with pytest.raises(RuleError, match=r"broken\.yml: not valid YAML"):
        load_pack(broken)
    pack = parse_pack({"settings": {"cooldown_steps": 4}, "alerts": [entry]})
    assert pack.rule("kl").cooldown_steps == 4 and pack.rule("kl").for_steps == 1 and pack.rule("kl").for_ == "0s"


def test_overrides_change_thresholds_without_editing_the_pack(tmp_path):
    path = tmp_path / "run.yml"
    path.write_text(yaml.safe_dump({"alerts": {"kl_too_high": {"threshold": 0.6, "for_steps": 2},
                                               "run_stalled": {"for": "2m"},
                                               "reward_falling": {"enabled": False}},
                                    "settings": {"dashboard_url": "https://grafana.example/d/x?run={run_id}"}}))
    pack = load_pack().with_overrides(load_overrides(path))
    kl = pack.rule("kl_too_high")
    assert (kl.threshold, kl.for_steps, pack.rule("run_stalled").for_) == (0.6, 2, "2m")
    assert pack.rule("reward_falling").enabled is False
    assert pack.settings.dashboard_link("r1") == "https://grafana.example/d/x?run=r1"
    assert load_pack().rule("kl_too_high").threshold == 0.3  # the pack itself is untouched


@pytest.mark.parametrize("data, message", [
    ({"alerts": {"kl_to_high": {"threshold": 1}}}, "no alert 'kl_to_high'"),
    ({"alerts": {"kl_too_high": {"metric": "grpo_loss"}}}, r"cannot override \['metric'\]"),
    ({"alerts": {"kl_too_high": {"threshold": "x"}}}, "threshold must be a finite number"),
    ({"run_id": "r1", "settings": {"dashboard_url": "x{run_id}"}}, "settings apply to every run"),
    ({"settings": {"cooldown_steps": 3}}, "only dashboard_url and runbook_url"),
    ({"run": "r1"}, "unknown top-level keys"),
    ({"run_id": "a b"}, "run_id must be a run name"),
])
def test_bad_overrides_are_clear_errors(data, message):
    with pytest.raises((RuleError, KeyError), match=message):
        load_pack().with_overrides(load_overrides(data))
