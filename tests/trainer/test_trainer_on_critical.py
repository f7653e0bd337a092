"""``--on-critical stop``: a critical alert saves a checkpoint, stops the run cleanly and records why in the run store.

The critical alert is real: a reward function that stops differing between completions after its second call
leaves the combined reward without spread, and GRPOWeakRewardSignal (critical, std < 1e-9 on 3 consecutive steps)
fires on step 5 (steps 3, 4, 5): onset step 3, last good step 2.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from rewardscope import RewardFunctionSpec, RewardMonitor
from rewardscope.alerting.engine import AlertEngine
from rewardscope.trainer.stopping import STOP_FILE, critical_firing, read_stop_record, stop_record

CALLS = {"n": 0}


def flat_after_two(prompts, completions, **kwargs):
    """Alternates 0/1 over the completions on its first two calls, then gives every completion 1."""
    CALLS["n"] += 1
    if CALLS["n"] <= 2:
        return [float(i % 2) for i in range(len(completions))]
    return [1.0] * len(completions)


EXPECTED = {"alert": "GRPOWeakRewardSignal", "severity": "critical", "fired_step": 5, "onset_step": 3, "last_good_step": 2}


def test_stop_record_names_the_alert_its_onset_and_the_last_good_step(tmp_path):
    # A per-run override makes KL > 0.05 critical-worthy: kl_blowup (critical, for_steps 3) at a low threshold.
    engine = AlertEngine.default(overrides={"alerts": {"kl_blowup": {"threshold": 0.05}}})
    with RewardMonitor("r", [RewardFunctionSpec("a")], group_size=2, run_dir=tmp_path, alerts=engine) as monitor:
        fired = []
        for step, kl in enumerate([0.01, 0.02, 0.06, 0.07, 0.08, 0.09], start=10):
            monitor.record_step(step, {"a": np.array([0.0, 1.0])}, kl=kl)
            event = critical_firing(monitor)
            if event is not None:
                fired.append(stop_record(event, monitor))
    # KL passes 0.05 at step 12; the third step in a row (14) fires; nothing fires again while it stays firing.
    assert len(fired) == 1
    record = fired[0]
    assert (record.alert, record.severity, record.fired_step, record.onset_step, record.last_good_step) == (
        "GRPOKLTooHigh", "critical", 14, 12, 11)
    assert record.labels == {"run_id": "r"}


def test_no_stop_record_without_a_critical_alert(tmp_path):
    with RewardMonitor("r", [RewardFunctionSpec("a")], group_size=2, run_dir=tmp_path, alerts=True) as monitor:
        monitor.record_step(1, {"a": np.array([0.0, 1.0])}, kl=0.5)  # KL warning only
        assert critical_firing(monitor) is None
    assert read_stop_record(tmp_path / "r") is None


@pytest.mark.slow
def test_our_trainer_stops_on_a_critical_alert_with_a_checkpoint_and_a_record(make_config):
    from rewardscope.exporter.runstore import read_steps
    from rewardscope.trainer import train
    from rewardscope.trainer.checkpoints import read_trainer_state

    CALLS["n"] = 0
    config = make_config(num_steps=8, enable_alerts=True, on_critical="stop",
                         reward_fn=["test_trainer_on_critical:flat_after_two"])
    result = train(config)
    assert result.interrupted and result.last_step == 5
    run_dir = result.run_directory
    record = read_stop_record(run_dir)
    assert {k: record[k] for k in EXPECTED} == EXPECTED
    assert record["checkpoint"] == str(result.last_checkpoint)
    assert read_trainer_state(result.last_checkpoint)["step"] == 5
    assert [row["grpo_step"] for row in read_steps(run_dir)] == [1, 2, 3, 4, 5]


@pytest.mark.slow
def test_alerts_only_by_default(make_config):
    from rewardscope.trainer import train

    CALLS["n"] = 0
    result = train(make_config(num_steps=6, enable_alerts=True, reward_fn=["test_trainer_on_critical:flat_after_two"]))
    assert not result.interrupted and result.last_step == 6
    assert not (result.run_directory / STOP_FILE).exists()


def test_on_critical_stop_needs_the_in_process_alerts(make_config):
    from rewardscope.trainer.config import ConfigError, validate_config

    with pytest.raises(ConfigError, match="on-critical stop needs the in-process alerts"):
        validate_config(make_config(on_critical="stop", enable_alerts=False))


@pytest.mark.slow
def test_trl_stops_on_a_critical_alert_through_trainer_control(tiny_path, tmp_path):
    pytest.importorskip("trl", reason="TRL is a dev dependency (pip install rewardscope[trl])")
    from trl_support import train_tiny_trl

    from rewardscope.integrations.trl import RewardScopeCallback, reward_specs

    CALLS["n"] = 0
    monitor = RewardMonitor("trl-stop", reward_specs([flat_after_two]), group_size=4, run_dir=tmp_path, alerts=True)
    callback = RewardScopeCallback(monitor, on_critical="stop")
    trainer = train_tiny_trl(tiny_path, tmp_path / "out", callback, [flat_after_two], lora=False, max_steps=8,
                             max_completion_length=8, beta=0.0, learning_rate=1e-4)
    monitor.close()

    assert callback.recorded_steps == [1, 2, 3, 4, 5] and trainer.state.global_step == 5
    record = json.loads((tmp_path / "trl-stop" / STOP_FILE).read_text())
    assert {k: record[k] for k in EXPECTED} == EXPECTED
    assert record["checkpoint"] == str(tmp_path / "out" / "checkpoint-5")
    assert (tmp_path / "out" / "checkpoint-5").is_dir()
