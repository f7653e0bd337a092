"""`rewardscope summary`: summarize() on real run stores, closed, killed mid-way and torn; render; the CLI."""

import argparse
import itertools
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


# --------------------------------------------------------------------------- a large file read in parts
def summaries_by_workers(directory, **kwargs):
    return [summarize(directory, workers=w, **kwargs) for w in (1, 2, 3)]


def assert_same_summary(parts, one):
    assert {k: v for k, v in parts.items() if k != "metrics"} == {k: v for k, v in one.items() if k != "metrics"}
    assert parts["metrics"].keys() == one["metrics"].keys()
    for name, stats in one["metrics"].items():
        for key, value in stats.items():  # sums added in another order: equal to rounding
            got = parts["metrics"][name][key]
            assert got == value if value is None else got == pytest.approx(value, rel=1e-12, abs=1e-15), (name, key)


def test_parts_of_a_clean_file_are_merged_and_match_one_pass(tmp_path):
    directory = record(tmp_path, "clean", scenario="entropy_collapse", steps=80)
    one, two, three = summaries_by_workers(directory, window=5)
    assert one["read_problems"] == {} and one["steps_recorded"] == 80
    assert_same_summary(two, one)
    assert_same_summary(three, one)
    assert read_in_parts(directory) is not None  # the parts were merged, not read again


def read_in_parts(directory, workers=3):
    from rewardscope.report import _scan_in_parts

    return _scan_in_parts(directory, ["grpo_step", "grpo_last_step_timestamp_seconds", "grpo_reward_mean"], 5, workers)


def test_a_damaged_file_is_read_again_in_one_pass(tmp_path, caplog):
    import logging

    directory = record(tmp_path, "damaged", scenario="reward_hacking", steps=60)
    path = directory / "steps.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    # step 5 again near the end (a step that goes backwards, in the last part) and a corrupt line in the first part
    path.write_bytes(b"".join(lines[:3] + [b"not json\n"] + lines[3:55] + [lines[4]] + lines[55:]))
    with caplog.at_level(logging.WARNING, logger="rewardscope"):
        one, two, three = summaries_by_workers(directory, window=7)
    assert one["steps_recorded"] == 60 and one["read_problems"] == {"corrupt_lines": 1, "non_monotonic_steps": 1}
    assert two == one and three == one
    assert read_in_parts(directory) is None
    # every warning names the line in the whole file, as the one pass does
    assert {r.getMessage().split(": skipped")[0] for r in caplog.records if "skipped a line" in r.getMessage()} == {
        f"{path}:4", f"{path}:57"}


def test_a_torn_final_line_read_in_parts(tmp_path, caplog):
    import logging

    directory = record(tmp_path, "torn-parts", scenario="healthy", steps=40, close=False)
    path = directory / "steps.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]) + lines[-1][:25])  # 39 whole lines, then half of the 40th
    with caplog.at_level(logging.WARNING, logger="rewardscope"):
        one, two = summarize(directory, workers=1), summarize(directory, workers=2)
    assert one["torn_final_line"] is True and one["steps_recorded"] == 39
    assert_same_summary(two, one)
    torn = [r.getMessage() for r in caplog.records if "torn final line" in r.getMessage()]
    assert torn == [f"{path}:40: skipped a torn final line (an interrupted writer)"] * 2


def test_line_ranges_start_at_lines_and_cover_the_file(tmp_path):
    from rewardscope.exporter.runstore_columns import line_ranges

    path = tmp_path / "f.jsonl"
    path.write_bytes(b"a\n" + b"x" * 200_000 + b"\nbb\nccc\n")
    data = path.read_bytes()
    for parts in (1, 2, 3, 8, 50):
        ranges = line_ranges(path, parts)
        assert ranges[0][0] == 0 and ranges[-1][1] == len(data)
        assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
        assert all(data[start - 1:start] == b"\n" for start, _ in ranges[1:])
    assert len(line_ranges(path, 50)) <= 4  # never more parts than lines


def test_parts_are_read_by_spawned_processes_while_other_threads_run(tmp_path):
    import threading

    directory = record(tmp_path, "threads", scenario="healthy", steps=50)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)  # as the trainer's /metrics server: fork would be unsafe
    other.start()
    try:
        assert read_in_parts(directory, workers=2) is not None
        assert_same_summary(summarize(directory, workers=2), summarize(directory, workers=1))
    finally:
        stop.set()
        other.join()
