"""Run under torchrun by test_trl_ranks.py: TRL's GRPOTrainer on every rank with rewardscope.integrations.trl.attach.

    torchrun --nproc_per_node 2 tests/distributed/worker_trl.py TINY_MODEL_PATH OUT_DIR

Reward functions of every kind TRL accepts: plain, async, functools.partial, a callable
instance without __name__, and a reward model given by its id (a local path). Rank 0 saves
TRL's logs (logs.json) and the names TRL gave the functions (names.json).
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
from pathlib import Path

import torch
from datasets import Dataset
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PrinterCallback,
    TrainerCallback,
)
from trl import GRPOConfig, GRPOTrainer

from rewardscope.integrations.trl import attach
from rewardscope.trainer.data import chat_messages, generate_problems
from rewardscope.trainer.rewards import check_answer, format_exact


async def async_length(completions, **kwargs):
    await asyncio.sleep(0)
    return [min(len(str(c)) / 100.0, 1.0) for c in completions]


def scaled(completions, scale, **kwargs):
    return [scale * (len(str(c)) % 3) for c in completions]


class Coin:
    """A callable instance (no __name__): TRL names it by its class."""

    def __call__(self, completions, **kwargs):
        return [float(len(str(c)) % 2) for c in completions]


class Logs(TrainerCallback):
    def __init__(self) -> None:
        self.logs: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.logs.append({"step": state.global_step, **logs})


def main() -> None:
    tiny, out = sys.argv[1], Path(sys.argv[2])
    torch.set_num_threads(1)
    problems = generate_problems(64, seed=0)
    dataset = Dataset.from_list([{"prompt": chat_messages(p.question), "answer": p.answer} for p in problems])
    args = GRPOConfig(output_dir=str(out / "trl"), use_cpu=True, bf16=False, max_steps=4, per_device_train_batch_size=6,
                      num_generations=4, max_completion_length=12, beta=0.0, learning_rate=1e-3, logging_steps=1,
                      reward_weights=[1.0, 1.0, 0.0, 0.0, 1.0, 0.0],
                      save_strategy="no", report_to="none", disable_tqdm=True, seed=0)
    reward_funcs = [format_exact, check_answer, async_length, functools.partial(scaled, scale=0.5), Coin(), tiny]
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny), reward_funcs=reward_funcs, args=args,
                          train_dataset=dataset, processing_class=tokenizer,
                          reward_processing_classes=[None] * 5 + [tokenizer])
    logs = Logs()
    trainer.add_callback(logs)
    trainer.remove_callback(PrinterCallback)
    callback = attach(trainer, run_id="trl-mp", run_dir=out / "runs", prometheus_port=None, log_distributions=True, detectors=[])
    trainer.train()
    if trainer.accelerator.is_main_process:
        (out / "logs.json").write_text(json.dumps(logs.logs))
        (out / "names.json").write_text(json.dumps({"trl": list(trainer.reward_func_names), "recorded": callback.recorded_steps,
                                                    "mismatches": callback.zero_std_mismatches,
                                                    "trl_values": callback.trl_values,
                                                    # TRL's own per-sample rewards of the last step, in its global order (private).
                                                    "trl_last_rewards": {n: list(trainer._logs["rewards"][n])
                                                                         for n in trainer.reward_func_names}}))


if __name__ == "__main__":
    main()
