import json

import numpy as np
import pytest

from rewardscope import RewardFunctionSpec, RewardMonitor
from rewardscope.exporter.runstore import RunStoreError, read_alerts, read_distributions, read_manifest, read_steps, read_summary

SPECS = [RewardFunctionSpec("a", 1.0, 0.0, 1.0), RewardFunctionSpec("b", 1.0, -1.0, 1.0)]


def record(monitor, steps, n=8):
    for step in steps:
        monitor.record_step(step, {"a": np.linspace(0, 1, n), "b": np.full(n, -0.5)}, kl=0.25 if step % 2 else None)


def test_one_line_per_step_with_exact_values(tmp_path):
    with RewardMonitor("run", SPECS, group_size=4, run_dir=tmp_path, config={"lr": 0.1}) as m:
        record(m, [1, 2, 3])
    manifest = read_manifest(tmp_path / "run")
    assert manifest["run_id"] == "run" and manifest["group_size"] == 4 and manifest["config"] == {"lr": 0.1}
    assert [f["name"] for f in manifest["reward_functions"]] == ["a", "b"]
    steps = list(read_steps(tmp_path / "run"))
    assert [s["grpo_step"] for s in steps] == [1, 2, 3]
    assert steps[0]["grpo_reward_fn_mean{a}"] == 0.5
    assert steps[0]["grpo_reward_fn_mean{b}"] == -0.5
    assert steps[0]["grpo_reward_mean"] == pytest.approx(0.0, abs=1e-6)
    assert steps[0]["grpo_kl"] == 0.25 and "grpo_kl" not in steps[1]  # absent, stored as null
    raw = (tmp_path / "run" / "steps.jsonl").read_text().splitlines()
    assert len(raw) == 3 and all("NaN" not in line and "nan" not in line for line in raw)
    json.loads(raw[1])  # strict JSON
    summary = read_summary(tmp_path / "run")
    assert summary["steps_recorded"] == 3 and summary["last_step"] == 3


def test_torn_last_line_is_skipped_and_cut_on_restart(tmp_path):
    with RewardMonitor("run", SPECS, group_size=4, run_dir=tmp_path) as m:
        record(m, [1, 2])
    path = tmp_path / "run" / "steps.jsonl"
    with open(path, "a") as f:
        f.write('[3,1700000000.0,4,0.1')  # a writer killed mid-line
    assert [s["grpo_step"] for s in read_steps(tmp_path / "run")] == [1, 2]
    with RewardMonitor("run", SPECS, group_size=4, run_dir=tmp_path) as m:
        assert m.last_step == 2
        record(m, [3, 4])
    assert [s["grpo_step"] for s in read_steps(tmp_path / "run")] == [1, 2, 3, 4]
    assert len(read_manifest(tmp_path / "run")["restarts"]) == 1


def test_restart_rejects_steps_already_recorded(tmp_path):
    with RewardMonitor("run", SPECS, group_size=4, run_dir=tmp_path) as m:
        record(m, [1, 2])
    with RewardMonitor("run", SPECS, group_size=4, run_dir=tmp_path) as m:
        assert m.record_step(2, {"a": np.zeros(4), "b": np.zeros(4)}) is None
    assert [s["grpo_step"] for s in read_steps(tmp_path / "run")] == [1, 2]


def test_resume_after_step_drops_later_steps(tmp_path):
    with RewardMonitor("run", SPECS, group_size=4, run_dir=tmp_path, log_distributions=True) as m:
        record(m, [1, 2, 3, 4])
    with RewardMonitor("run", SPECS, group_size=4, run_dir=tmp_path, resume_after_step=2, log_distributions=True) as m:
        record(m, [3, 4, 5])
    assert [s["grpo_step"] for s in read_steps(tmp_path / "run")] == [1, 2, 3, 4, 5]
    assert [step for step, _ in read_distributions(tmp_path / "run")] == [1, 2, 3, 4, 5]


def test_other_reward_functions_in_the_same_directory_is_a_clear_error(tmp_path):
    with RewardMonitor("run", SPECS, group_size=4, run_dir=tmp_path) as m:
        record(m, [1])
    with pytest.raises(RunStoreError, match="other columns"):
        RewardMonitor("run", [RewardFunctionSpec("c")], run_dir=tmp_path)


def test_distributions_take_two_bytes_per_value_and_read_back(tmp_path):
    n = 1024
    with RewardMonitor("run", SPECS, group_size=8, run_dir=tmp_path, log_distributions=True) as m:
        for step in range(1, 11):
            m.record_step(step, {"a": np.linspace(0, 1, n), "b": np.full(n, 0.25 * (step % 3))})
    size = (tmp_path / "run" / "rewards.f16z").stat().st_size
    assert size <= 2 * 10 * 2 * n  # at most 2 bytes per reward value, header included
    records = list(read_distributions(tmp_path / "run"))
    assert [s for s, _ in records] == list(range(1, 11))
    assert records[4][1].shape == (2, n)
    assert np.allclose(records[4][1][0], np.linspace(0, 1, n), atol=5e-4)
    assert records[4][1][1][0] == 0.5


def test_torn_distribution_record_is_skipped(tmp_path):
    with RewardMonitor("run", SPECS, group_size=4, run_dir=tmp_path, log_distributions=True) as m:
        record(m, [1, 2])
    path = tmp_path / "run" / "rewards.f16z"
    path.write_bytes(path.read_bytes()[:-3])
    assert [s for s, _ in read_distributions(tmp_path / "run")] == [1]


def test_alerts_are_appended_as_json(tmp_path):
    from rewardscope.alerting.events import AlertEvent, AlertState

    with RewardMonitor("run", SPECS, group_size=4, run_dir=tmp_path) as m:
        m.store.write_alerts([AlertEvent("X", AlertState.FIRING, "warning", 3, 1.0, {"run_id": "run"}, float("nan"))])
    (event,) = read_alerts(tmp_path / "run")
    assert event["alertname"] == "X" and event["state"] == "firing" and event["value"] is None


def test_not_a_run_directory(tmp_path):
    with pytest.raises(RunStoreError, match="not a rewardscope run directory"):
        list(read_steps(tmp_path))
