"""Damaged run files: a corrupt middle line, a corrupt last line, a torn alerts file; then the run is reopened and goes on."""

import json

import numpy as np

from rewardscope import RewardFunctionSpec, RewardMonitor
from rewardscope.alerting.events import AlertEvent, AlertState
from rewardscope.exporter.jsonl import ReadStats
from rewardscope.exporter.runstore import read_alerts, read_steps
from rewardscope.report import render, summarize

SPECS = [RewardFunctionSpec("a", 1.0, 0.0, 1.0), RewardFunctionSpec("b", 1.0, -1.0, 1.0)]


def record(root, steps):
    with RewardMonitor("run", SPECS, group_size=2, run_dir=root, prometheus_port=None) as monitor:
        for step in steps:
            monitor.record_step(step, {"a": np.array([0.0, 1.0, 1.0, step % 2]), "b": np.full(4, -0.25)})
    return root / "run"


def test_a_corrupt_middle_line_costs_one_step_and_the_run_goes_on(tmp_path):
    directory = record(tmp_path, range(1, 11))
    path = directory / "steps.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    lines[4] = b"\x00" * (len(lines[4]) - 1) + b"\n"  # a block of zeros, as a crashed filesystem may leave
    path.write_bytes(b"".join(lines))
    record(tmp_path, [11, 12])
    stats = ReadStats()
    assert [s["grpo_step"] for s in read_steps(directory, stats=stats)] == [1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12]
    assert stats.problems() == {"corrupt_lines": 1}
    summary = summarize(directory)
    assert (summary["steps_recorded"], summary["last_step"], summary["read_problems"]) == (11, 12, {"corrupt_lines": 1})
    assert "read problems:       corrupt lines 1" in render(summary)


def test_a_corrupt_last_line_is_skipped_and_the_next_writer_continues_after_the_last_whole_step(tmp_path):
    directory = record(tmp_path, [1, 2, 3])
    with open(directory / "steps.jsonl", "ab") as f:
        f.write(b'[4,"not a step"]\n')
    with RewardMonitor("run", SPECS, group_size=2, run_dir=tmp_path, prometheus_port=None) as monitor:
        assert monitor.last_step == 3
        monitor.record_step(4, {"a": np.zeros(4), "b": np.zeros(4)})
    stats = ReadStats()
    assert [s["grpo_step"] for s in read_steps(directory, stats=stats)] == [1, 2, 3, 4]
    assert stats.corrupt_lines == 1


def test_a_torn_alerts_file_is_cut_on_reopen_and_the_next_alert_is_whole(tmp_path):
    directory = record(tmp_path, [1])
    first = AlertEvent("KLHigh", AlertState.FIRING, "warning", 1, 1.0, {"run_id": "run"}, 0.9)
    second = AlertEvent("KLHigh", AlertState.RESOLVED, "warning", 2, 2.0, {"run_id": "run"}, 0.1)
    with RewardMonitor("run", SPECS, group_size=2, run_dir=tmp_path, prometheus_port=None) as monitor:
        monitor.store.write_alerts([first])
    with open(directory / "alerts.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(second.to_json())[:25])  # killed mid-line
    with RewardMonitor("run", SPECS, group_size=2, run_dir=tmp_path, prometheus_port=None) as monitor:
        monitor.store.write_alerts([second])
    stats = ReadStats()
    events = read_alerts(directory, stats=stats)
    assert [(e["state"], e["step"]) for e in events] == [("firing", 1), ("resolved", 2)]
    assert stats.problems() == {}
    assert summarize(directory)["alerts"]["firing_at_end"] == []
