"""Write prometheus/tests/steps.yml: promtool unit tests of every compiled step rule (threshold, trend).

Each step rule reads the monitor's verdict (grpo_alert_active, grpo_alert_activations_total) and
shows a value. Per rule, four runs scraped every 5 s:

- r-fire: the instance turns active at 5 s -> fires at 5 s (not at 0 s), with exact labels and annotations;
- r-flicker: never seen active, but its activations counter rose between two scrapes -> fires at 10 s;
- r-ended: active, then grpo_run_ended 1 at 10 s -> still firing at 35 s (keep_firing_for 30s), gone at 45 s;
- r-ok: never active -> never fires.

The expected annotations are rendered here from the pack's texts with Python's str.format, and
promtool renders them from the compiled Go templates: a template or label mistake fails.

Usage (from the checkout root, after `rewardscope rules`)::

    python prometheus/tests/generate_steps.py && promtool test rules prometheus/tests/*.yml
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from rewardscope.alerting.pack import load_pack  # noqa: E402
from rewardscope.alerting.rules import Rule  # noqa: E402

JOB = 'job="rewardscope"'


def _series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ",".join([JOB] + [f'{k}="{v}"' for k, v in labels.items()])
    return {"series": f"{name}{{{inner}}}", "values": values}


def _crossing_value(rule: Rule) -> float:
    low, high = rule.bounds()
    return float(high) * 2 + 1 if high is not None else float(low) - abs(float(low)) - 1  # type: ignore[arg-type]


def _value_series(rule: Rule, run: dict[str, str], value: float) -> dict[str, str]:
    if rule.kind == "trend":
        return _series("grpo_metric_slope_per_step", {**run, "metric": rule.metric, "window_steps": str(rule.window_steps)},
                       f"{value:g}x20")
    if rule.counter is not None:
        return _series(rule.counter, run, f"0+{value:g}x20")
    return _series(rule.metric, run, f"{value:g}x20")  # type: ignore[arg-type]


def _expected(rule: Rule, pack, run: dict[str, str], value: float) -> dict:
    labels = {"severity": rule.severity, "job": "rewardscope", **run}
    if rule.kind == "trend":
        labels.update(metric=rule.metric, window_steps=str(rule.window_steps))
    dashboard = pack.settings.dashboard_link(run["run_id"])
    annotations = {"summary": rule.render(rule.summary, run, value), "description": rule.render(rule.description, run, value),
                   "value": f"{value:.4g}", "threshold": rule.threshold_text(), "runbook_url": pack.settings.runbook_link(rule),
                   "dashboard": dashboard}
    return {"exp_labels": labels, "exp_annotations": annotations}


def rule_test(rule: Rule, pack) -> dict:
    fn = {"reward_fn": "check_answer"} if rule.per_function else {}
    value = _crossing_value(rule)
    state = {"alert_id": rule.id, "alert": rule.alert, "severity": rule.severity, **({"reward_fn": "check_answer"} if fn else {})}
    series = []
    runs = {"r-fire": ("0 1x20", "0 1x20", "0x20"), "r-flicker": ("0x20", "0 0 1x18", "0x20"),
            "r-ended": ("0 1x20", "0 1x20", "0 0 1x18"), "r-ok": ("0x20", "0x20", "0x20")}
    for run_id, (active, activations, ended) in runs.items():
        run = {"run_id": run_id, **fn}
        series += [_value_series(rule, run, value), _series("grpo_alert_active", {"run_id": run_id, **state}, active),
                   _series("grpo_alert_activations_total", {"run_id": run_id, **state}, activations),
                   _series("grpo_run_ended", {"run_id": run_id}, ended)]
    # An event rule shows the counter's increase over the last minute: 12 increments of `value` by 65 s.
    shown = value * 12 if rule.counter is not None else value

    def expect(*run_ids: str) -> list[dict]:
        return [_expected(rule, pack, {"run_id": r, **fn}, shown) for r in run_ids]

    checks = [(0, []), (5, ["r-fire", "r-ended"]), (35, ["r-fire", "r-flicker", "r-ended"]), (45, ["r-fire", "r-flicker"])]
    if rule.counter is not None:  # the increase is exact once a whole minute of samples exists
        checks = [(0, []), (65, ["r-fire", "r-flicker"])]
    return {"name": f"{rule.id}: reads the in-process verdict, a flicker between scrapes, and a run's end",
            "interval": "5s", "input_series": series,
            "alert_rule_test": [{"eval_time": f"{t}s", "alertname": rule.alert,
                                 "exp_alerts": [a for a in expect(*runs_at) if a["exp_labels"]["severity"] == rule.severity]}
                                for t, runs_at in checks]}


def main() -> None:
    pack = load_pack(ROOT / "alerting" / "alerts.yml")
    step_rules = [r for r in pack.rules if r.enabled and r.in_process]
    # Two rules may share an alert name (warning and critical): each test feeds one rule's series only.
    tests = [rule_test(rule, pack) for rule in step_rules]
    header = ("# Generated by prometheus/tests/generate_steps.py from alerting/alerts.yml: promtool unit tests of every\n"
              "# step rule (see the script's docstring). Run `python prometheus/tests/generate_steps.py` after editing the pack.\n")
    body = yaml.safe_dump({"rule_files": ["../rules/rewardscope-alerts.yml"], "evaluation_interval": "5s", "tests": tests},
                          sort_keys=False, width=1000, allow_unicode=True)
    (ROOT / "prometheus" / "tests" / "steps.yml").write_text(header + body, encoding="utf-8")


if __name__ == "__main__":
    main()
