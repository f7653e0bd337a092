"""The run store on bad values and damaged files: non-finite values, corrupt and out-of-order lines,
the fast column reader against the JSON reader, repair from the tail, the run-directory lock."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rewardscope import RewardFunctionSpec, RewardMonitor
from rewardscope.alerting.events import AlertEvent, AlertState
from rewardscope.exporter.jsonl import ReadStats
from rewardscope.exporter.runstore import RunStoreError, RunStoreSink, read_alerts, read_steps, read_summary
from rewardscope.exporter.runstore_columns import read_step_columns
from rewardscope.metrics.layout import StepLayout, StepMetrics
from rewardscope.report import summarize

SPECS = [RewardFunctionSpec("a", 1.0, 0.0, 1.0), RewardFunctionSpec("b", 1.0, -1.0, 1.0)]
LAYOUT = StepLayout(("a", "b"))
REPO = Path(__file__).resolve().parents[2]


def open_sink(root, **kwargs) -> RunStoreSink:
    return RunStoreSink(root, "run", LAYOUT, manifest_extra={"reward_functions": [{"name": "a"}, {"name": "b"}]}, **kwargs)


def write_two_steps_with_distributions(root) -> RunStoreSink:
    """Steps 1 and 2, each with its distributions record, through a sink that is then closed."""
    sink = open_sink(root, log_distributions=True)
    for step in (1, 2):
        metrics = step_row(step)
        sink.write_step(StepMetrics(step, metrics.timestamp, LAYOUT, metrics.row, np.ones((2, 3))))
    sink.close({})
    return sink


def step_row(step: int, reward_mean: float = 0.5) -> StepMetrics:
    row = LAYOUT.new_row()
    row[0], row[1] = step, 1_700_000_000.0 + step
    row[LAYOUT.index("grpo_reward_mean")] = reward_mean
    row[LAYOUT.index("grpo_reward_fn_mean", "a")] = step / 10
    return StepMetrics(step, row[1], LAYOUT, row)


def write_steps(root, steps, **kwargs) -> Path:
    sink = open_sink(root, **kwargs)
    for step in steps:
        sink.write_step(step_row(step))
    sink.close({})
    return sink.directory


# --------------------------------------------------------------------------- non-finite values
def test_infinite_values_are_stored_as_null_counted_and_logged_once_per_column(tmp_path, caplog):
    sink = open_sink(tmp_path)
    with caplog.at_level(logging.WARNING, logger="rewardscope"):
        for step, value in [(1, np.inf), (2, -np.inf), (3, 0.25)]:
            sink.write_step(step_row(step, reward_mean=value))
    sink.close({"steps_recorded": 3})
    lines = (sink.directory / "steps.jsonl").read_text().splitlines()
    rows = [json.loads(line, parse_constant=lambda token: pytest.fail(f"{token} is not JSON")) for line in lines]
    column = LAYOUT.index("grpo_reward_mean")
    assert [row[column] for row in rows] == [None, None, 0.25]
    assert read_summary(sink.directory)["nonfinite_values"] == {"grpo_reward_mean": 2}
    assert len([r for r in caplog.records if "grpo_reward_mean is infinite" in r.getMessage()]) == 1


def test_overflowing_rewards_leave_a_readable_run(tmp_path):
    """The issue's case, rewards of 1e308: whether the monitor skips the step or stores statistics that overflowed
    (as null), every line stays JSON and the run stays readable, summarisable and reopenable."""
    with RewardMonitor("run", SPECS, group_size=2, run_dir=tmp_path, prometheus_port=None) as monitor:
        monitor.record_step(1, {"a": [1e308, 1e308, -1e308, 1e308], "b": [0.0, 0.5, 1.0, 0.5]})
        monitor.record_step(2, {"a": [0.0, 1.0, 0.0, 1.0], "b": [0.0, 0.5, 1.0, 0.5]})
    text = (tmp_path / "run" / "steps.jsonl").read_text()
    assert "inf" not in text and "nan" not in text
    stats = ReadStats()
    assert [s["grpo_step"] for s in read_steps(tmp_path / "run", stats=stats)][-1] == 2
    assert stats.problems() == {}
    assert summarize(tmp_path / "run")["last_step"] == 2
    with RewardMonitor("run", SPECS, group_size=2, run_dir=tmp_path, prometheus_port=None) as monitor:
        assert monitor.last_step == 2


def test_nonfinite_alert_values_and_config_become_null_and_are_counted(tmp_path):
    sink = open_sink(tmp_path, log_distributions=False)
    sink.write_alerts([AlertEvent("X", AlertState.FIRING, "warning", 1, 1.0, {"run_id": "run"}, np.float32("inf"))])
    sink.close({"latest": {"grpo_kl": float("-inf")}})
    (event,) = read_alerts(sink.directory)
    assert event["value"] is None
    summary = read_summary(sink.directory)
    assert summary["latest"]["grpo_kl"] is None
    assert summary["nonfinite_values"] == {"alerts.jsonl:value": 1, "summary.json:latest.grpo_kl": 1}


def test_bare_infinities_of_an_older_writer_are_read_as_absent_and_counted(tmp_path):
    directory = write_steps(tmp_path, [1, 2, 3])
    path = directory / "steps.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace("0.5", "inf", 1)  # what "%.6g" made of an overflowed mean
    path.write_text("".join(lines))
    stats = ReadStats()
    steps = list(read_steps(directory, stats=stats))
    assert [s["grpo_step"] for s in steps] == [1, 2, 3]
    assert "grpo_reward_mean" not in steps[1] and steps[2]["grpo_reward_mean"] == 0.5
    assert stats.nonfinite_values == 1 and stats.corrupt_lines == 0
    column_stats = ReadStats()
    (block,) = read_step_columns(directory, ["grpo_step", "grpo_reward_mean"], column_stats)
    assert block[:, 0].tolist() == [1, 2, 3] and np.isnan(block[1, 1])
    assert column_stats.nonfinite_values == 1


# --------------------------------------------------------------------------- damaged lines
def test_a_corrupt_middle_line_costs_that_line_only(tmp_path, caplog):
    directory = write_steps(tmp_path, range(1, 6))
    path = directory / "steps.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2][:20] + b"\x00\x00garbage" + lines[2][30:]
    path.write_bytes(b"".join(lines))
    stats = ReadStats()
    with caplog.at_level(logging.WARNING, logger="rewardscope"):
        assert [s["grpo_step"] for s in read_steps(directory, stats=stats)] == [1, 2, 4, 5]
    assert (stats.corrupt_lines, stats.rows, stats.lines) == (1, 4, 5)
    assert any(f"{path}:3: skipped a line" in r.getMessage() for r in caplog.records)
    summary = summarize(directory)
    assert (summary["steps_recorded"], summary["read_problems"]) == (4, {"corrupt_lines": 1})


def test_steps_that_go_backwards_are_skipped_and_counted(tmp_path):
    directory = write_steps(tmp_path, [1, 2, 3])
    path = directory / "steps.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([lines[0], lines[1], lines[2], lines[1], lines[0], lines[2]]))
    with open(path, "ab") as f:
        f.write(b"".join(line.replace(b"[3,", b"[4,", 1) for line in lines[2:]))
    stats = ReadStats()
    assert [s["grpo_step"] for s in read_steps(directory, stats=stats)] == [1, 2, 3, 4]
    assert stats.non_monotonic_steps == 3
    assert summarize(directory)["read_problems"] == {"non_monotonic_steps": 3}


def test_the_column_reader_keeps_exactly_the_steps_read_steps_keeps(tmp_path):
    """Small blocks, some clean (numpy's C reader), some with damaged lines (the JSON reader): same rows, same counts."""
    directory = write_steps(tmp_path, range(1, 201))
    path = directory / "steps.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    lines[10] = b"not json\n"
    lines[50] = lines[50][:-5] + b"\n"           # a short line
    lines[90] = lines[89]                         # a repeated step
    lines[150] = lines[150].replace(b",", b",,", 1)  # one value too many
    lines.append(b"[201,1700000201.0,")          # torn final line
    path.write_bytes(b"".join(lines))
    columns = ["grpo_step", "grpo_reward_mean", "grpo_reward_fn_mean{a}", "grpo_kl", "not_a_column"]
    expected_stats = ReadStats()
    expected = [[s.get(c, np.nan) for c in columns] for s in read_steps(directory, stats=expected_stats)]
    stats = ReadStats()
    blocks = list(read_step_columns(directory, columns, stats, block_bytes=2000))
    assert len(blocks) > 10
    got = np.concatenate(blocks)
    np.testing.assert_array_equal(got, np.array(expected, dtype=float))
    assert stats.problems() == expected_stats.problems() == {"corrupt_lines": 3, "non_monotonic_steps": 1, "torn_final_line": 1}
    assert stats.rows == expected_stats.rows == 196


# --------------------------------------------------------------------------- repair on reopen
def bytes_read_by_this_process() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc/self/io to count bytes read")
def test_reopen_and_resume_read_only_the_tail(tmp_path):
    directory = write_steps(tmp_path, range(1, 31))
    path = directory / "steps.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    template = lines[0][len(b"[1"):]
    with open(path, "wb") as f:  # 100,000 steps, about 20 MB
        f.write(b"".join(b"[%d" % step + template for step in range(1, 100_001)))
    size = path.stat().st_size
    before = bytes_read_by_this_process()
    sink = open_sink(tmp_path)
    assert sink.last_step == 100_000
    sink.close({})
    sink = open_sink(tmp_path, resume_after_step=99_000)
    assert sink.last_step == 99_000
    sink.close({})
    assert bytes_read_by_this_process() - before < size / 20
    assert path.read_bytes().endswith(b"[99000" + template)


def test_resume_drops_a_damaged_tail_and_keeps_distributions_in_step(tmp_path):
    sink = open_sink(tmp_path, log_distributions=True)
    for step in range(1, 6):
        metrics = step_row(step)
        sink.write_step(StepMetrics(step, metrics.timestamp, LAYOUT, metrics.row, np.full((2, 4), step / 10)))
    sink.close({})
    with open(sink.directory / "steps.jsonl", "ab") as f:
        f.write(b"garbage\n[9,1.0,")
    sink = open_sink(tmp_path, resume_after_step=3, log_distributions=True)
    assert sink.last_step == 3
    sink.close({})
    from rewardscope.exporter.runstore import read_distributions

    assert [s["grpo_step"] for s in read_steps(sink.directory)] == [1, 2, 3]
    assert [step for step, _ in read_distributions(sink.directory)] == [1, 2, 3]


def test_an_orphan_distributions_record_is_cut_on_reopen(tmp_path):
    """A writer killed between a step's record and its line leaves a record with no line: reopening cuts it."""
    sink = write_two_steps_with_distributions(tmp_path)
    path = sink.directory / "rewards.f16z"
    whole = path.read_bytes()
    step_2_record = whole[len(whole) // 2:]
    with open(path, "ab") as f:  # step 3's record, whose line was never written
        f.write((3).to_bytes(8, "little") + step_2_record[8:])
    sink = open_sink(tmp_path, log_distributions=True)
    sink.close({})
    assert path.read_bytes() == whole


# --------------------------------------------------------------------------- the lock
def test_a_second_writer_in_the_same_process_is_refused_at_once(tmp_path):
    first = RewardMonitor("run", SPECS, run_dir=tmp_path, prometheus_port=None)
    with pytest.raises(RunStoreError, match=rf"already being written by this process \(pid {os.getpid()}\)"):
        RewardMonitor("run", SPECS, run_dir=tmp_path, prometheus_port=None)
    first.close()
    with RewardMonitor("run", SPECS, run_dir=tmp_path, prometheus_port=None) as again:  # released on close
        again.record_step(1, {"a": [0.0, 1.0], "b": [0.0, 1.0]})


def test_a_lock_file_left_by_a_dead_process_does_not_block(tmp_path):
    directory = write_steps(tmp_path, [1])
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    (directory / ".lock").write_text(json.dumps({"pid": int(dead.stdout), "host": "elsewhere", "since": 0}))
    sink = open_sink(tmp_path)
    assert json.loads((directory / ".lock").read_text())["pid"] == os.getpid()
    sink.close({})


# --------------------------------------------------------------------------- `rewardscope summary` on what is not a run
def summary_cli(target) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "rewardscope.cli", "summary", str(target)], check=False, capture_output=True,
                          text=True, env=env, timeout=120)


def test_summary_of_things_that_are_not_runs_is_one_line_and_exit_code_2(tmp_path):
    (tmp_path / "empty").mkdir()
    failed_start = tmp_path / "failed"
    sink = RunStoreSink(tmp_path, "failed", LAYOUT, manifest_extra={})  # started, then the process died: no step, no summary
    sink._lock.release()
    cases = {REPO / "README.md": "is not a rewardscope run directory (it is a file)",
             tmp_path / "missing": "missing does not exist",
             tmp_path / "empty": "is not a rewardscope run directory (no manifest.json)",
             failed_start: "holds no recorded step and no summary.json: the run failed to start"}
    for target, message in cases.items():
        result = summary_cli(target)
        assert (result.returncode, result.stdout) == (2, ""), target
        assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


def test_reopening_keeps_the_records_of_a_session_that_logged_distributions_before_one_that_did_not(tmp_path):
    from rewardscope.exporter.runstore import read_distributions

    sink = write_two_steps_with_distributions(tmp_path)
    whole = (sink.directory / "rewards.f16z").read_bytes()
    with open(sink.directory / "rewards.f16z", "ab") as f:
        f.write(b"\x03\x00")  # a torn record header
    write_steps(tmp_path, [3, 4])  # no distributions: the last step has no record, the repair walks from the start
    open_sink(tmp_path, log_distributions=True).close({})
    assert [step for step, _ in read_distributions(sink.directory)] == [1, 2]
    assert (sink.directory / "rewards.f16z").read_bytes() == whole


def test_reopening_cuts_the_alerts_of_steps_not_stored_and_resuming_those_of_the_dropped_steps(tmp_path):
    from rewardscope.exporter.record import StepRecord

    def with_alert(step: int) -> StepRecord:
        metrics = step_row(step)
        event = AlertEvent("KLHigh", AlertState.FIRING, "warning", step, metrics.timestamp, {"run_id": "run"})
        return StepRecord(step, metrics.timestamp, LAYOUT, metrics.row, events=[event])

    sink = open_sink(tmp_path)
    for step in (1, 2, 3, 4):
        sink.write_step(with_alert(step))
    sink.close({})
    orphan = AlertEvent("KLHigh", AlertState.RESOLVED, "warning", 5, 0.0, {"run_id": "run"})
    with open(sink.directory / "alerts.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(orphan.to_json()) + "\n")  # step 5's transition; the writer died before step 5's line
    open_sink(tmp_path).close({})
    assert [e["step"] for e in read_alerts(sink.directory)] == [1, 2, 3, 4]
    open_sink(tmp_path, resume_after_step=2).close({})  # steps 3 and 4 will be recorded again, and alert again
    assert [e["step"] for e in read_alerts(sink.directory)] == [1, 2]
    assert [s["grpo_step"] for s in read_steps(sink.directory)] == [1, 2]
