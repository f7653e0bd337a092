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
    return {(r["alert"], r["labels"]["severity"]): r["expr"] for g in groups for r in g["rules"]}


def referenced_metrics(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers outside strings, matchers, ranges and function calls."""
    expr = re.sub(r'"[^"]*"', "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(on|ignoring|by|without|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set(re.findall(r"\b([A-Za-z_:][A-Za-z0-9_:]*)\b(?!\s*\()", expr))
    return {n for n in names if n not in PROMQL_WORDS and not re.fullmatch(r"\d+\w*", n)}


def test_default_pack_compiles_to_these_expressions():
    assert exprs(compile_groups(load_pack())) == {
        ("GRPOWeakRewardSignal", "warning"): "grpo_reward_signal_to_noise < 0.3",
        ("GRPOWeakRewardSignal", "critical"): "grpo_reward_std < 1e-09",
        ("GRPORewardFalling", "warning"): 'grpo_metric_slope_per_step{metric="grpo_reward_mean",window_steps="20"} < -0.08',
        ("GRPORewardFunctionFalling", "warning"): 'grpo_metric_slope_per_step{metric="grpo_reward_fn_mean",window_steps="30"} < -0.015',
        ("GRPOKLTooHigh", "warning"): "grpo_kl > 0.3",
        ("GRPOKLTooHigh", "critical"): "grpo_kl > 1.0",
        ("GRPOPolicyEntropyCollapse", "warning"): 'grpo_metric_slope_per_step{metric="grpo_policy_entropy",window_steps="20"} < -0.015',
        ("GRPOPolicyEntropyCollapse", "critical"): "grpo_policy_entropy < 0.1",
        ("GRPONoLearningSignal", "warning"): "grpo_group_zero_std_ratio > 0.75",
        ("GRPOCompletionsTruncated", "warning"): "grpo_completion_truncated_ratio > 0.5",
        ("GRPONonFiniteRewards", "error"): "grpo_reward_fn_nonfinite_samples > 0.0",
        ("GRPORewardHackingSuspected", "critical"): "grpo_reward_hacking_suspected > 0.5",
        ("GRPORunStalled", "error"): "time() - grpo_last_step_timestamp_seconds > 300.0",
        ("GRPOExporterDown", "warning"): 'up{job="rewardscope"} == 0 and on(job, instance) max_over_time(up{job="rewardscope"}[1h]) == 1',
        ("GRPOFunctionDominance", "warning"): "grpo_function_dominance_suspected > 0.5",
        ("GRPOLengthExploitation", "warning"): "grpo_length_exploitation_suspected > 0.5",
        ("GRPOKLAccelerating", "warning"): "grpo_kl_acceleration_suspected > 0.5",
        ("GRPOZeroSpreadTakeover", "warning"): "grpo_zero_spread_takeover_suspected > 0.5",
        ("GRPORankStraggler", "warning"): "grpo_rank_work_seconds > on(run_id) group_left() (1.5 * avg by (run_id) (grpo_rank_work_seconds))"
                                          " and grpo_rank_work_seconds > 1",
    }


def test_every_metric_the_compiled_rules_read_is_in_the_catalogue():
    known = exposed_sample_names() | {"up"}
    for expr in exprs(compile_groups(load_pack())).values():
        assert referenced_metrics(expr) <= known, expr
    assert referenced_metrics('time() - grpo_x{run_id="a"} > 3 and on(job) max_over_time(up[1h]) == 1') == {"grpo_x", "up"}


def test_band_and_two_sided_trend_and_one_function():
    base = dict(id="x", alert="X", severity="info", summary="s", description="", runbook="x")
    band = Rule(kind="threshold", metric="grpo_reward_mean", condition="outside", threshold=[0.1, 0.9], **base)
    assert rule_expr(band) == "grpo_reward_mean < 0.1 or grpo_reward_mean > 0.9"
    trend = Rule(kind="trend", metric="grpo_reward_fn_mean", reward_fn="gold", window_steps=50, min_slope=-0.5, max_slope=0.5, **base)
    selector = 'grpo_metric_slope_per_step{metric="grpo_reward_fn_mean",window_steps="50",reward_fn="gold"}'
    assert rule_expr(trend) == f"{selector} < -0.5 or {selector} > 0.5"


def test_annotations_carry_value_threshold_runbook_and_dashboard():
    (rule,) = [r for g in compile_groups(load_pack()) for r in g["rules"] if r["alert"] == "GRPONonFiniteRewards"]
    assert rule["for"] == "0s" and rule["labels"] == {"severity": "error"}
    assert rule["annotations"] == {
        "summary": 'Reward function {{ $labels.reward_fn }} returns non-finite rewards in run {{ $labels.run_id }} '
                   '({{ printf "%.4g" $value }} this step)',
        "description": 'Reward function {{ $labels.reward_fn }} of run {{ $labels.run_id }} returned NaN or infinity for '
                       '{{ printf "%.4g" $value }} completions in the latest step. They are excluded from the statistics, but '
                       'the trainer may still feed them to the loss. The function has a bug (division by zero, failed parse).',
        "value": '{{ printf "%.4g" $value }}',
        "threshold": "0",
        "runbook_url": "https://github.com/rewardscope/rewardscope/blob/main/docs/runbooks.md#grpononfiniterewards",
        "dashboard": "http://localhost:3000/d/rewardscope-overview?var-run_id={{ $labels.run_id }}",
    }


def test_run_scoped_overrides_compile_to_run_id_matchers():
    overrides = [load_overrides({"run_id": "big-model", "alerts": {"kl_too_high": {"threshold": 0.6, "for": "5m"},
                                                                    "run_stalled": {"threshold": 1800},
                                                                    "reward_falling": {"enabled": False}}}),
                 load_overrides({"run_id": "tiny", "alerts": {"kl_too_high": {"threshold": 0.1}}}),
                 load_overrides({"alerts": {"completions_truncated": {"threshold": 0.8}}})]
    rules = [r for g in compile_groups(load_pack(), overrides) for r in g["rules"]]
    got = [(r["expr"], r["for"]) for r in rules if r["alert"] in ("GRPOKLTooHigh", "GRPORunStalled", "GRPORewardFalling",
                                                                   "GRPOCompletionsTruncated") and r["labels"]["severity"] != "critical"]
    assert got == [
        ('grpo_metric_slope_per_step{metric="grpo_reward_mean",window_steps="20",run_id!="big-model"} < -0.08', "1m"),
        ('grpo_kl{run_id!="big-model",run_id!="tiny"} > 0.3', "1m"),
        ('grpo_kl{run_id="big-model"} > 0.6', "5m"),
        ('grpo_kl{run_id="tiny"} > 0.1', "1m"),
        ("grpo_completion_truncated_ratio > 0.8", "1m"),
        ('time() - grpo_last_step_timestamp_seconds{run_id!="big-model"} > 300.0', "1m"),
        ('time() - grpo_last_step_timestamp_seconds{run_id="big-model"} > 1800.0', "1m"),
    ]


def test_promql_rules_without_run_cannot_be_scoped():
    with pytest.raises(RuleError, match=r"exporter_down: its expr has no \$run"):
        compile_groups(load_pack(), [load_overrides({"run_id": "r", "alerts": {"exporter_down": {"for": "5m"}}})])


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
    pack.write_text(pack.read_text().replace("threshold: 0.75", "threshold: 0.7"))
    assert main(["rules", "--root", str(root), "--check"]) == 1
    err = capsys.readouterr().err
    assert "stale: prometheus/rules/rewardscope-alerts.yml" in err and "stale: rewardscope/alerting/alerts.yml" in err
    assert main(["rules", "--root", str(root)]) == 0
    assert "grpo_group_zero_std_ratio > 0.7\n" in (root / "prometheus/rules/rewardscope-alerts.yml").read_text()
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
    assert 'grpo_kl{run_id="r7"} > 0.5' in text
    assert yaml.safe_load((tmp_path / "rule.yml").read_text())["metadata"]["labels"]["release"] == "prom"
    capsys.readouterr()
    assert main(["rules", "--root", str(tmp_path), "--overrides", str(tmp_path / "missing.yml")]) == 2
    assert "missing.yml" in capsys.readouterr().err
    assert main(["rules", "--root", str(tmp_path), "--operator-label", "release"]) == 2
