"""A write that fails (disk full, I/O error) leaves the run store exactly as before, and a retry records the step once.

Two ways: an OSError injected into os.write (runs everywhere), and a real full disk, a 64 KiB
tmpfs, where the test runs as root and may mount one (skipped with the reason otherwise).
"""

import errno
import os
import subprocess

import numpy as np
import pytest

from rewardscope import RewardFunctionSpec, RewardMonitor
from rewardscope.alerting.events import AlertEvent, AlertState
from rewardscope.exporter.jsonl import ReadStats
from rewardscope.exporter.record import StepRecord
from rewardscope.exporter.runstore import RunStoreError, RunStoreSink, read_alerts, read_distributions, read_steps
from rewardscope.metrics.layout import StepLayout

SPECS = [RewardFunctionSpec("a", 1.0, 0.0, 1.0), RewardFunctionSpec("b", 1.0, -1.0, 1.0)]
LAYOUT = StepLayout(("a", "b"))


def step_metrics(step: int, samples: int = 64) -> StepRecord:
    """A step with a distributions record and one alert transition: three files to append to."""
    row = LAYOUT.new_row()
    row[0], row[1] = step, 1_700_000_000.0 + step
    row[LAYOUT.index("grpo_reward_mean")] = step / 100
    rewards = np.random.default_rng(step).random((2, samples))
    event = AlertEvent("KLHigh", AlertState.FIRING if step % 2 else AlertState.RESOLVED, "warning", step, row[1], {"run_id": "run"})
    return StepRecord(step, row[1], LAYOUT, row, rewards, events=[event])


def snapshot(directory) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in ("steps.jsonl", "alerts.jsonl", "rewards.f16z")}


class FailingWrite:
    """os.write that writes the first half of the call's bytes, then fails on call number ``fail_on`` with ENOSPC."""

    def __init__(self, fail_on: int) -> None:
        self.real = os.write
        self.calls = 0
        self.fail_on = fail_on

    def __call__(self, fd: int, data) -> int:
        self.calls += 1
        if self.calls == self.fail_on:
            self.real(fd, bytes(data[:len(data) // 2]))  # a partial write reached the file before the error
            raise OSError(errno.ENOSPC, "No space left on device (injected)")
        return self.real(fd, data)


@pytest.mark.parametrize("fail_on, failing_file", [(1, "the distributions record"), (2, "the alert lines"), (3, "the step line")])
def test_an_injected_write_error_leaves_the_files_as_before_and_a_retry_records_the_step_once(
        tmp_path, monkeypatch, fail_on, failing_file):
    sink = RunStoreSink(tmp_path, "run", LAYOUT, manifest_extra={}, log_distributions=True)
    for step in (1, 2, 3):
        sink.write_step(step_metrics(step))
    before = snapshot(sink.directory)
    failing = FailingWrite(fail_on)
    monkeypatch.setattr(os, "write", failing)
    with pytest.raises(RunStoreError, match=r"step 4 was not written .*No space left on device"):
        sink.write_step(step_metrics(4))
    monkeypatch.undo()
    assert failing.calls == fail_on, failing_file
    assert snapshot(sink.directory) == before and sink.last_step == 3
    sink.write_step(step_metrics(4))  # the retry
    sink.write_step(step_metrics(5))
    sink.close({})
    stats = ReadStats()
    assert [s["grpo_step"] for s in read_steps(sink.directory, stats=stats)] == [1, 2, 3, 4, 5]
    assert stats.problems() == {}
    assert [step for step, _ in read_distributions(sink.directory)] == [1, 2, 3, 4, 5]
    assert [event["step"] for event in read_alerts(sink.directory)] == [1, 2, 3, 4, 5]


def test_a_failed_alert_write_leaves_alerts_jsonl_as_before(tmp_path, monkeypatch):
    sink = RunStoreSink(tmp_path, "run", LAYOUT, manifest_extra={})
    events = [AlertEvent("X", AlertState.FIRING, "warning", 1, 1.0, {"run_id": "run"}, 2.0)]
    monkeypatch.setattr(os, "write", FailingWrite(1))
    with pytest.raises(RunStoreError, match="alert events were not written"):
        sink.write_alerts(events)
    monkeypatch.undo()
    assert (sink.directory / "alerts.jsonl").read_bytes() == b""
    sink.write_alerts(events)
    sink.close({})
    assert (sink.directory / "alerts.jsonl").read_text().count("\n") == 1


def test_a_monitor_retrying_a_step_after_a_failed_write_records_it_once(tmp_path, monkeypatch):
    rewards = {"a": np.array([0.0, 1.0, 1.0, 0.0]), "b": np.array([0.5, 0.5, -0.5, 0.5])}
    with RewardMonitor("run", SPECS, group_size=2, run_dir=tmp_path, prometheus_port=None) as monitor:
        monitor.record_step(1, rewards)
        monkeypatch.setattr(os, "write", FailingWrite(1))
        with pytest.raises(RunStoreError):
            monitor.record_step(2, rewards)
        monkeypatch.undo()
        monitor.record_step(2, rewards)
        monitor.record_step(3, rewards)
    assert [s["grpo_step"] for s in read_steps(tmp_path / "run")] == [1, 2, 3]


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KiB tmpfs mounted on tmp_path/disk (root only); unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a 64 KiB tmpfs needs root; the injected-OSError tests cover the same path")
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)], check=False,
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip() or result.returncode})")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], check=True)  # lazy: a file left open by a failed test


@pytest.mark.slow
def test_a_full_disk_leaves_whole_steps_and_the_failed_step_is_recorded_once_after_space_is_freed(tiny_disk):
    ballast = tiny_disk / "ballast"
    ballast.write_bytes(b"\0" * 16384)  # freed later to make room again
    sink = RunStoreSink(tiny_disk, "run", LAYOUT, manifest_extra={}, log_distributions=True)
    step, failures = 0, 0
    while failures == 0:
        before = snapshot(sink.directory)
        try:
            sink.write_step(step_metrics(step + 1, samples=256))
            step += 1
        except RunStoreError as error:
            assert isinstance(error.__cause__, OSError) and error.__cause__.errno == errno.ENOSPC
            failures += 1
    assert step > 5 and sink.last_step == step
    assert snapshot(sink.directory) == before  # the failed step left nothing behind
    ballast.unlink()
    sink.write_step(step_metrics(step + 1, samples=256))  # the retry, now that there is room
    sink.close({})
    stats = ReadStats()
    assert [s["grpo_step"] for s in read_steps(sink.directory, stats=stats)] == list(range(1, step + 2))
    assert stats.problems() == {}
    assert [s for s, _ in read_distributions(sink.directory)] == list(range(1, step + 2))
