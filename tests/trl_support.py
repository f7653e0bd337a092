"""One short TRL GRPOTrainer run on the project's tiny model, for the tests of the TRL integration
(importable as `trl_support`: pytest's pythonpath includes tests/). Callers skip first when torch or TRL is missing."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def train_tiny_trl(model_path: Path, output_dir: Path, callback: Any, functions: Sequence[Callable], *,
                   extra_callbacks: Sequence[Any] = (), lora: bool = True, **config: Any) -> Any:
    """Train TRL's GRPOTrainer on 64 generated arithmetic problems with ``callback`` wrapping ``functions`` as a user
    would; ``config`` overrides GRPOConfig's settings below. Returns the trainer after ``train()``."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    from rewardscope.trainer.data import chat_messages, generate_problems

    torch.set_num_threads(1)
    dataset = Dataset.from_list([{"prompt": chat_messages(p.question), "answer": p.answer}
                                 for p in generate_problems(64, seed=0)])
    settings = {"max_steps": 3, "per_device_train_batch_size": 8, "num_generations": 4, "max_completion_length": 16,
                "beta": 0.04, "learning_rate": 1e-3, **config}
    args = GRPOConfig(output_dir=str(output_dir), use_cpu=True, bf16=False, logging_steps=1, save_strategy="no",
                      report_to="none", disable_tqdm=True, seed=0, **settings)
    trainer = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(str(model_path)),
        reward_funcs=callback.wrap(functions),
        args=args,
        train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(str(model_path)),
        peft_config=LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM") if lora else None,
        callbacks=[callback, *extra_callbacks],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return trainer
