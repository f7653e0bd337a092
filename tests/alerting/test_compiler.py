"""The compiler: PromQL per rule kind, per-run overrides as run_id matchers, the Operator manifest, the CLI."""

import re
import shutil
from pathlib import Path

import pytest
import yaml

from rewardscope.alerting import cli
from rewardscope.alerting.compiler import compile_groups, operator_manifest, rule_expr
from rewardscope.alerting.pack import load_overrides, load_pack
from rewardscope.alerting.rules import Rule, RuleError
from rewardscope.cli import main
from rewardscope.metrics.catalogue import exposed_sample_names

ROOT = Path(__file__).resolve().parents[2]
PROMQL_WORDS = {"and", "or", "unless", "on", "ignoring", "by", "without", "group_left", "group_right", "bool", "offset"}


def exprs(groups):
    return {(r.get("alert"), r["labels"].get("severity", "inherit")): r["expr"] for g in groups for r in g["rules"] if "alert" in r}


def referenced_metrics(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers outside strings, matchers, ranges and function calls."""
    expr = re.sub(r'"[^"]*"', "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(on|ignoring|by|without|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set(re.findall(r"\b([A-Za-z_:][A-Za-z0-9_:]*)\b(?!\s*\()", expr))
    return {n for n in names if n not in PROMQL_WORDS and not re.fullmatch(r"\d+\w*", n)}


JOB = 'job="rewardscope"'


def step_expr(value: str, alert_id: str, matchers: str = "") -> str:
    """The compiled form of a step rule (see rewardscope/alerting/compiler.py)."""
    state = f'{JOB}{matchers},alert_id="{alert_id}"'
    return (f"{value}\n"
            f"  and on(run_id, reward_fn) (grpo_alert_active{{{state}}} == 1\n"
            f"    or increase(grpo_alert_activations_total{{{state}}}[1m]) > 0)\n"
            f"  and on(run_id) grpo_run_ended{{{JOB}{matchers}}} == 0")


def test_default_pack_compiles_to_these_expressions():
    slope = 'grpo_metric_slope_per_step{{' + JOB + ',metric="{}",window_steps="{}"}}'
    compiled = exprs(compile_groups(load_pack()))
    del compiled[("GRPORunEndedWhileFiring", "inherit")]  # checked below
    assert compiled == {
        ("GRPOWeakRewardSignal", "warning"): step_expr(f"grpo_reward_signal_to_noise{{{JOB}}}", "weak_reward_signal"),
        ("GRPOWeakRewardSignal", "critical"): step_expr(f"grpo_reward_std{{{JOB}}}", "no_reward_spread"),
        ("GRPORewardFalling", "warning"): step_expr(slope.format("grpo_reward_mean", 20), "reward_falling"),
        ("GRPORewardFunctionFalling", "warning"): step_expr(slope.format("grpo_reward_fn_mean", 45), "reward_fn_falling"),
        ("GRPOKLTooHigh", "warning"): step_expr(f"grpo_kl{{{JOB}}}", "kl_too_high"),
        ("GRPOKLTooHigh", "critical"): step_expr(f"grpo_kl{{{JOB}}}", "kl_blowup"),
        ("GRPOPolicyEntropyCollapse", "warning"): step_expr(slope.format("grpo_policy_entropy", 20), "entropy_falling"),
        ("GRPOPolicyEntropyCollapse", "critical"): step_expr(f"grpo_policy_entropy{{{JOB}}}", "entropy_collapsed"),
        ("GRPONoLearningSignal", "warning"): step_expr(f"grpo_group_zero_std_ratio{{{JOB}}}", "no_learning_signal"),
        ("GRPOCompletionsTruncated", "warning"): step_expr(f"grpo_completion_truncated_ratio{{{JOB}}}", "completions_truncated"),
        ("GRPONonFiniteRewards", "error"): step_expr(f"increase(grpo_reward_fn_nonfinite_total{{{JOB}}}[1m])", "nonfinite_rewards"),
        ("GRPORewardHackingSuspected", "critical"): step_expr(f"grpo_reward_hacking_suspected{{{JOB}}}", "reward_hacking_suspected"),
        ("GRPORunStalled", "error"): (f"(time() - grpo_last_step_timestamp_seconds{{{JOB}}}) > clamp_min(10 * "
                                      f"grpo_step_duration_median_seconds{{{JOB}}}, 300.0) and on(run_id) grpo_run_ended{{{JOB}}} == 0"),
        ("GRPOExporterDown", "error"): (f"max by (job, instance, run_id) (last_over_time(grpo_run_ended{{{JOB}}}[1h]) == 0) "
                                        f"and on(job, instance) up{{{JOB}}} == 0"),
        ("GRPOStepsSkipped", "warning"): f"increase(grpo_skipped_steps_total{{{JOB}}}[5m]) > 0",
        ("GRPORankStraggler", "warning"): (f"grpo_rank_work_seconds{{{JOB}}} > on(run_id) group_left() (1.5 * avg by (run_id) "
                                           f"(grpo_rank_work_seconds{{{JOB}}})) and grpo_rank_work_seconds{{{JOB}}} > 1"),
        ("GRPOFunctionDominance", "warning"): step_expr(f"grpo_function_dominance_suspected{{{JOB}}}", "function_dominance"),
        ("GRPOLengthExploitation", "warning"): step_expr(f"grpo_length_exploitation_suspected{{{JOB}}}", "length_exploitation"),
        ("GRPOKLAccelerating", "warning"): step_expr(f"grpo_kl_acceleration_suspected{{{JOB}}}", "kl_accelerating"),
        ("GRPOZeroSpreadTakeover", "warning"): step_expr(f"grpo_zero_spread_takeover_suspected{{{JOB}}}", "zero_spread_takeover"),
    }
    (ended,) = [r for g in compile_groups(load_pack()) for r in g["rules"] if r.get("alert") == "GRPORunEndedWhileFiring"]
    assert ended["labels"] == {} and ended["for"] == "10s"  # the ended alert's own severity label routes the notice
    assert ended["expr"] == (f"max by (job, instance, run_id, alert, alert_id, severity, reward_fn) (last_over_time("
                             f"grpo_alert_active{{{JOB}}}[1h]) == 1) unless on(run_id) grpo_run_ended{{{JOB}}} == 0")


def test_step_rules_have_no_for_in_time_and_keep_firing_briefly():
    rules = [r for g in compile_groups(load_pack()) for r in g["rules"]]
    steps = [r for r in rules if "grpo_alert_active" in r["expr"] and r.get("alert") != "GRPORunEndedWhileFiring"]
    assert len(steps) == 16 and all("for" not in r and r["keep_firing_for"] == "30s" for r in steps)
    with pytest.raises(RuleError, match="kl_too_high: for applies to promql rules only"):
        load_pack().with_overrides(load_overrides({"alerts": {"kl_too_high": {"for": "2m"}}}))


def test_the_job_is_set_once_for_every_rule(tmp_path):
    pack = (ROOT / "alerting" / "alerts.yml").read_text().replace("job: rewardscope", "job: grpo-training")
    (tmp_path / "alerts.yml").write_text(pack)
    for expr in exprs(compile_groups(load_pack(tmp_path / "alerts.yml"))).values():
        assert 'job="grpo-training"' in expr and 'job="rewardscope"' not in expr, expr


def test_every_metric_the_compiled_rules_read_is_in_the_catalogue():
    known = exposed_sample_names() | {"up"}
    groups = compile_groups(load_pack())
    for expr in [*exprs(groups).values(), *(r["expr"] for g in groups for r in g["rules"] if "record" in r)]:
        assert referenced_metrics(expr) <= known, expr
    assert referenced_metrics('time() - grpo_x{run_id="a"} > 3 and on(job) max_over_time(up[1h]) == 1') == {"grpo_x", "up"}


def test_band_and_two_sided_trend_and_one_function_show_their_value():
    base = dict(id="x", alert="X", severity="info", summary="s", description="", runbook="x")
    band = Rule(kind="threshold", metric="grpo_reward_mean", condition="outside", threshold=[0.1, 0.9], **base)
    assert rule_expr(band) == step_expr(f"grpo_reward_mean{{{JOB}}}", "x")
    trend = Rule(kind="trend", metric="grpo_reward_fn_mean", reward_fn="gold", window_steps=50, min_slope=-0.5, max_slope=0.5, **base)
    selector = f'grpo_metric_slope_per_step{{{JOB},reward_fn="gold",metric="grpo_reward_fn_mean",window_steps="50"}}'
    assert rule_expr(trend) == step_expr(selector, "x")


def test_annotations_carry_value_threshold_runbook_and_dashboard():
    (rule,) = [r for g in compile_groups(load_pack()) for r in g["rules"] if r.get("alert") == "GRPONonFiniteRewards"]
    assert rule["labels"] == {"severity": "error"}
    assert rule["annotations"] == {
        "summary": 'Reward function {{ $labels.reward_fn }} returns non-finite rewards in run {{ $labels.run_id }} '
                   '({{ printf "%.4g" $value }})',
        "description": 'Reward function {{ $labels.reward_fn }} of run {{ $labels.run_id }} returned NaN or infinity '
                       '({{ printf "%.4g" $value }}: in the step in-process, in the last minute in Prometheus, from the counter '
                       'grpo_reward_fn_nonfinite_total, so a NaN step between two scrapes is not missed). They are excluded from '
                       'the statistics, but the trainer may still feed them to the loss. The function has a bug (division by zero, '
                       'failed parse).',
        "value": '{{ printf "%.4g" $value }}',
        "threshold": "0",
        "runbook_url": "https://github.com/rewardscope/rewardscope/blob/main/docs/runbooks.md#grpononfiniterewards",
        "dashboard": "http://localhost:3000/d/rewardscope-overview?var-run_id={{ $labels.run_id }}",
    }


def test_run_scoped_overrides_compile_to_run_id_matchers():
    overrides = [load_overrides({"run_id": "big-model", "alerts": {"kl_too_high": {"threshold": 0.6},
                                                                    "run_stalled": {"threshold": 1800, "for": "5m"},
                                                                    "reward_falling": {"enabled": False}}}),
                 load_overrides({"run_id": "tiny", "alerts": {"kl_too_high": {"threshold": 0.1}}}),
                 load_overrides({"alerts": {"completions_truncated": {"threshold": 0.8}}})]
    rules = [r for g in compile_groups(load_pack(), overrides) for r in g["rules"]]
    kl = [(r["expr"], r["annotations"]["threshold"]) for r in rules if r.get("alert") == "GRPOKLTooHigh" and r["labels"]["severity"] == "warning"]
    assert kl == [(step_expr(f'grpo_kl{{{JOB},run_id!="big-model",run_id!="tiny"}}', "kl_too_high", ',run_id!="big-model",run_id!="tiny"'), "0.3"),
                  (step_expr(f'grpo_kl{{{JOB},run_id="big-model"}}', "kl_too_high", ',run_id="big-model"'), "0.6"),
                  (step_expr(f'grpo_kl{{{JOB},run_id="tiny"}}', "kl_too_high", ',run_id="tiny"'), "0.1")]
    falling = [r["expr"] for r in rules if r.get("alert") == "GRPORewardFalling"]
    assert len(falling) == 1 and 'run_id!="big-model"' in falling[0]
    truncated = [r["annotations"]["threshold"] for r in rules if r.get("alert") == "GRPOCompletionsTruncated"]
    assert truncated == ["0.8"]
    stalled = [(r["expr"], r["for"]) for r in rules if r.get("alert") == "GRPORunStalled"]
    assert [f for _, f in stalled] == ["30s", "5m"]
    assert f'grpo_step_duration_median_seconds{{{JOB},run_id!="big-model"}}, 300.0)' in stalled[0][0]
    assert f'grpo_step_duration_median_seconds{{{JOB},run_id="big-model"}}, 1800.0)' in stalled[1][0]


def test_promql_rules_without_run_cannot_be_scoped():
    base = dict(alert="X", severity="info", summary="s", description="", runbook="x", kind="promql")
    rule = Rule(id="only_job", expr="up{$job} == 0", **base)
    with pytest.raises(RuleError, match=r"only_job: its expr has no \$run"):
        rule_expr(rule, ['run_id="r"'])


def test_operator_manifest_holds_the_same_groups():
    groups = compile_groups(load_pack())
    manifest = yaml.safe_load(operator_manifest(groups, namespace="monitoring", labels={"release": "kube-prometheus-stack"}))
    assert manifest["apiVersion"] == "monitoring.coreos.com/v1" and manifest["kind"] == "PrometheusRule"
    assert manifest["metadata"] == {"name": "rewardscope-alerts", "namespace": "monitoring",
                                    "labels": {"app.kubernetes.io/name": "rewardscope", "release": "kube-prometheus-stack"}}
    assert manifest["spec"]["groups"] == groups


def checkout_copy(tmp_path):
    """A minimal checkout: the pack, the package directory and the checked-in rules."""
    for rel in ("alerting/alerts.yml", "rewardscope/alerting/alerts.yml", "prometheus/rules/rewardscope-alerts.yml"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    return tmp_path


def test_rules_check_fails_when_the_pack_changed_and_rules_regenerates(tmp_path, capsys):
    root = checkout_copy(tmp_path)
    assert main(["rules", "--root", str(root), "--check"]) == 0
    pack = root / "alerting" / "alerts.yml"
    pack.write_text(pack.read_text().replace("threshold: 0.75", "threshold: 0.7"))  # no_learning_signal
    assert main(["rules", "--root", str(root), "--check"]) == 1
    err = capsys.readouterr().err
    assert "stale: prometheus/rules/rewardscope-alerts.yml" in err and "stale: rewardscope/alerting/alerts.yml" in err
    assert main(["rules", "--root", str(root)]) == 0
    assert "threshold: '0.7'\n" in (root / "prometheus/rules/rewardscope-alerts.yml").read_text()
    assert (root / "rewardscope/alerting/alerts.yml").read_text() == pack.read_text()
    assert main(["rules", "--root", str(root), "--check"]) == 0


def test_rules_cli_overrides_out_and_operator(tmp_path, capsys):
    overrides = tmp_path / "run.yml"
    overrides.write_text("run_id: r7\nalerts:\n  kl_too_high: {threshold: 0.5}\n")
    out = tmp_path / "deploy"
    assert main(["rules", "--root", str(tmp_path), "--overrides", str(overrides), "--out", str(out),
                 "--operator", str(tmp_path / "rule.yml"), "--operator-label", "release=prom"]) == 0
    text = (out / cli.RULES_FILE).read_text()
    assert text.startswith("# Generated by `rewardscope rules` from ")  # the packaged pack: no checkout here
    assert 'grpo_kl{job="rewardscope",run_id="r7"}' in text
    assert yaml.safe_load((tmp_path / "rule.yml").read_text())["metadata"]["labels"]["release"] == "prom"
    capsys.readouterr()
    assert main(["rules", "--root", str(tmp_path), "--overrides", str(tmp_path / "missing.yml")]) == 2
    assert "missing.yml" in capsys.readouterr().err
    assert main(["rules", "--root", str(tmp_path), "--operator-label", "release"]) == 2
