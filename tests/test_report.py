"""`rewardscope summary`: summarize() on real run stores, closed, killed mid-way and torn; render; the CLI."""

import argparse
import json
import time

import pytest

from rewardscope import LEGACY_REWARD_FUNCTIONS, RewardMonitor
from rewardscope.alerting.events import AlertEvent, AlertState
from rewardscope.exporter.runstore import read_steps
from rewardscope.report import render, run, summarize
from rewardscope.simulation import iter_plan, plan_run


def record(root, run_id, scenario="nonfinite_rewards", steps=30, close=True):
    plan = plan_run(scenario, steps, seed=2, onset=min(10, steps), prompts=4, group_size=4)
    monitor = RewardMonitor(run_id, LEGACY_REWARD_FUNCTIONS, group_size=4, run_dir=root, prometheus_port=None,
                            max_completion_length=plan.max_completion_length, config={"simulation": {"scenario": scenario}})
    for sim in iter_plan(plan):
        monitor.record_step(sim.step, **sim.kwargs)
    monitor.record_step(3, **sim.kwargs)  # a step that goes backwards: skipped and counted
    if close:
        monitor.close()
    else:  # a killed process: files flushed, nothing closed
        monitor.store._steps.close()
    return root / run_id


def window_mean(rows, column):
    values = [row[column] for row in rows if column in row]
    return sum(values) / len(values)


def test_summary_of_a_closed_run(tmp_path):
    directory = record(tmp_path, "closed")
    rows = list(read_steps(directory))
    s = summarize(directory, window=5)
    assert (s["run_id"], s["steps_recorded"], s["first_step"], s["last_step"], s["closed"]) == ("closed", 30, 1, 30, True)
    assert s["torn_final_line"] is False
    assert s["duration_seconds"] == rows[-1]["grpo_last_step_timestamp_seconds"] - rows[0]["grpo_last_step_timestamp_seconds"]
    assert s["window_steps"] == 5
    reward = s["metrics"]["grpo_reward_mean"]
    assert reward["first_window"] == pytest.approx(window_mean(rows[:5], "grpo_reward_mean"), rel=1e-12)
    assert reward["last_window"] == pytest.approx(window_mean(rows[-5:], "grpo_reward_mean"), rel=1e-12)
    assert reward["mean"] == pytest.approx(window_mean(rows, "grpo_reward_mean"), rel=1e-12)
    assert reward["min"] == min(r["grpo_reward_mean"] for r in rows) and reward["max"] == max(r["grpo_reward_mean"] for r in rows)
    kl = s["metrics"]["grpo_kl"]
    assert (kl["first"], kl["last"], kl["steps"]) == (rows[0]["grpo_kl"], rows[-1]["grpo_kl"], 30)
    contribution = s["metrics"]["grpo_reward_fn_contribution_ratio{format_exact}"]
    assert contribution["mean"] == pytest.approx(window_mean(rows, "grpo_reward_fn_contribution_ratio{format_exact}"), rel=1e-12)
    assert s["metrics"]["grpo_eval_accuracy_ratio"]["steps"] == 3
    expected_nonfinite = {fn.name: int(sum(r[f"grpo_reward_fn_nonfinite_samples{{{fn.name}}}"] for r in rows))
                          for fn in LEGACY_REWARD_FUNCTIONS}
    assert s["nonfinite_rewards"] == expected_nonfinite
    assert expected_nonfinite["check_answer"] > 0 and expected_nonfinite["format_exact"] == 0
    assert s["skipped_steps"] == {"step_not_increasing": 1.0}
    assert s["alerts"] == {"transitions": 0, "fired": {}, "firing_at_end": []}

    text = render(s)
    assert "steps:               30 recorded, 1..30" in text
    assert "status:              closed (summary.json written)" in text
    assert f"non-finite:          check_answer {expected_nonfinite['check_answer']}, check_numbers " in text
    assert "skipped steps:       step_not_increasing 1" in text
    assert "alerts fired:        none" in text
    assert "simulation:          scenario nonfinite_rewards" in text


def test_short_runs_use_half_the_steps_per_window(tmp_path):
    s = summarize(record(tmp_path, "short", steps=7), window=20)
    assert s["window_steps"] == 3


def test_summary_of_a_killed_run_with_a_torn_final_line(tmp_path):
    directory = record(tmp_path, "killed", close=False)
    with open(directory / "steps.jsonl", "a", encoding="utf-8") as f:
        f.write('[31,1700000000.000,0.5,')  # the process died mid-line
    s = summarize(directory)
    assert (s["steps_recorded"], s["last_step"], s["closed"], s["torn_final_line"]) == (30, 30, False, True)
    assert s["skipped_steps"] is None
    text = render(s)
    assert "not closed: no summary.json (killed, or still running); torn final line skipped" in text
    assert "skipped steps:       unknown (no summary.json)" in text


def test_alerts_fired_and_still_firing(tmp_path):
    directory = record(tmp_path, "alerts", scenario="healthy", steps=5)
    events = [AlertEvent("KLHigh", AlertState.FIRING, "warning", 2, time.time(), {"run_id": "alerts"}),
              AlertEvent("KLHigh", AlertState.RESOLVED, "warning", 3, time.time(), {"run_id": "alerts"}),
              AlertEvent("KLHigh", AlertState.FIRING, "warning", 4, time.time(), {"run_id": "alerts"}),
              AlertEvent("FnSaturated", AlertState.FIRING, "critical", 5, time.time(), {"run_id": "alerts", "reward_fn": "format_exact"})]
    with open(directory / "alerts.jsonl", "a", encoding="utf-8") as f:
        for event in events:
            f.write(json.dumps(event.to_json()) + "\n")
        f.write('{"alertname": "Torn')
    s = summarize(directory)
    assert s["alerts"]["transitions"] == 4
    assert s["alerts"]["fired"] == {"KLHigh/warning": 2, "FnSaturated/critical": 1}
    assert s["alerts"]["firing_at_end"] == [
        {"alertname": "KLHigh", "severity": "warning", "labels": {"run_id": "alerts"}, "since_step": 4},
        {"alertname": "FnSaturated", "severity": "critical", "labels": {"run_id": "alerts", "reward_fn": "format_exact"},
         "since_step": 5}]
    text = render(s)
    assert "alerts fired:        FnSaturated/critical x1, KLHigh/warning x2" in text
    assert "still firing: FnSaturated (critical) {reward_fn=format_exact} since step 5" in text


def test_cli_prints_json_and_rejects_a_non_run_directory(tmp_path, capsys):
    directory = record(tmp_path, "cli", steps=4)
    assert run(argparse.Namespace(run_dir=str(directory), json=True, window=20)) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["run_id"], data["steps_recorded"]) == ("cli", 4)
    assert run(argparse.Namespace(run_dir=str(directory), json=False, window=20)) == 0
    assert capsys.readouterr().out.startswith(f"run cli  ({directory})")
    assert run(argparse.Namespace(run_dir=str(tmp_path / "nope"), json=False, window=20)) == 2
    assert "nope does not exist (expected a run directory" in capsys.readouterr().err
    assert run(argparse.Namespace(run_dir=str(directory), json=False, window=0)) == 2
    assert "window must be at least 1 step" in capsys.readouterr().err


def test_an_empty_run_summarises(tmp_path):
    RewardMonitor("empty", LEGACY_REWARD_FUNCTIONS, group_size=4, run_dir=tmp_path).close()
    s = summarize(tmp_path / "empty")
    assert (s["steps_recorded"], s["first_step"], s["metrics"], s["window_steps"]) == (0, None, {}, 0)
    assert "steps:               none recorded" in render(s)
