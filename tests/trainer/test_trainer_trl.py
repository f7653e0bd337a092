"""TRL's GRPOTrainer feeding RewardMonitor through rewardscope.integrations.trl."""

from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="the trainer needs torch (rewardscope[train])")

from rewardscope.trainer.rewards import check_answer, check_numbers, format_approx, format_exact

pytestmark = pytest.mark.slow  # real servers or training runs

def test_trl_grpo_trainer_feeds_the_monitor_every_step(tiny_path, tmp_path):
    pytest.importorskip("trl", reason="TRL is a dev dependency (pip install rewardscope[trl])")
    from transformers import TrainerCallback
    from trl_support import train_tiny_trl

    from rewardscope import RewardMonitor
    from rewardscope.exporter.runstore import read_steps
    from rewardscope.integrations.trl import RewardScopeCallback, reward_specs

    functions = [format_exact, format_approx, check_answer, check_numbers]

    class Logs(TrainerCallback):
        def __init__(self):
            self.logs = []

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.logs.append(dict(logs))

    logs = Logs()
    monitor = RewardMonitor("trl-run", reward_specs(functions), group_size=4, run_dir=tmp_path, prometheus_port=None)
    callback = RewardScopeCallback(monitor)
    train_tiny_trl(tiny_path, tmp_path / "out", callback, functions, extra_callbacks=[logs])
    monitor.close()

    rows = list(read_steps(tmp_path / "trl-run"))
    assert [int(r["grpo_step"]) for r in rows] == [1, 2, 3] == callback.recorded_steps
    assert len(logs.logs) == 3
    for row, log in zip(rows, logs.logs):
        for fn in ("format_exact", "format_approx", "check_answer", "check_numbers"):
            assert row[f"grpo_reward_fn_mean{{{fn}}}"] == pytest.approx(log[f"rewards/{fn}/mean"], abs=1e-4), fn
        assert row["grpo_reward_mean"] == pytest.approx(log["reward"], abs=1e-4)
        assert row["grpo_kl"] == pytest.approx(log["kl"], abs=1e-6)
        assert row["grpo_policy_entropy"] == pytest.approx(log["entropy"], abs=1e-4)
        assert row["grpo_completion_length_mean_tokens"] == pytest.approx(log["completions/mean_length"], abs=1e-3)
        assert row["grpo_advantage_mean"] == pytest.approx(0.0, abs=1e-5)
        assert row["grpo_learning_rate"] == pytest.approx(log["learning_rate"])
        assert row["grpo_group_size"] == 4
