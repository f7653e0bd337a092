"""TRL's GRPOTrainer feeding RewardMonitor through rewardscope.integrations.trl."""

from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="the trainer needs torch (rewardscope[train])")

from rewardscope.trainer.data import chat_messages, generate_problems
from rewardscope.trainer.rewards import check_answer, check_numbers, format_approx, format_exact

pytestmark = pytest.mark.slow  # real servers or training runs

def test_trl_grpo_trainer_feeds_the_monitor_every_step(tiny_path, tmp_path):
    pytest.importorskip("trl", reason="TRL is a dev dependency (pip install rewardscope[trl])")
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from rewardscope import RewardMonitor
    from rewardscope.exporter.runstore import read_steps
    from rewardscope.integrations.trl import RewardScopeCallback, reward_specs

    torch.set_num_threads(1)
    functions = [format_exact, format_approx, check_answer, check_numbers]
    problems = generate_problems(64, seed=0)
    dataset = Dataset.from_list([{"prompt": chat_messages(p.question), "answer": p.answer} for p in problems])

    class Logs(TrainerCallback):
        def __init__(self):
            self.logs = []

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.logs.append(dict(logs))

    logs = Logs()
    monitor = RewardMonitor("trl-run", reward_specs(functions), group_size=4, run_dir=tmp_path, prometheus_port=None)
    callback = RewardScopeCallback(monitor)
    args = GRPOConfig(
        output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, max_steps=3, per_device_train_batch_size=8,
        num_generations=4, max_completion_length=16, beta=0.04, learning_rate=1e-3, logging_steps=1,
        save_strategy="no", report_to="none", disable_tqdm=True, seed=0,
    )
    trainer = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(str(tiny_path)),
        reward_funcs=callback.wrap(functions),
        args=args,
        train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(str(tiny_path)),
        peft_config=LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"),
        callbacks=[callback, logs],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train()
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
