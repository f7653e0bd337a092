"""Seconds per GRPO step: our trainer against TRL's GRPOTrainer, and the monitor's share.

One run each, same tiny model (built once, loaded by path), same problems, same group
size, batch, lengths, LoRA, KL weight, learning rate and loss ("sequence" = TRL's
"grpo"), both on one CPU thread. Step times exclude model loading and the first
``--skip`` steps (warm-up of allocators and caches). Prints one JSON object.

Targets: ours / TRL <= 1.0; RewardMonitor.record_step <= 1% of our step time.

    python bench/bench_trainer.py --steps 30
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run_ours(args: argparse.Namespace, model_path: str, workdir: Path) -> dict:
    from rewardscope.exporter.runstore import read_steps
    from rewardscope.trainer import TrainConfig, train

    config = TrainConfig(
        model_id=model_path,
        device="cpu",
        threads=args.threads,
        seed=args.seed,
        num_steps=args.steps,
        batch_size=args.prompts,
        num_generations=args.generations,
        max_generation_steps=args.max_completion_length,
        lora_rank=args.lora_rank,
        lora_alpha=2.0 * args.lora_rank,
        beta=args.beta,
        learning_rate=args.learning_rate,
        loss_type="sequence",
        eval_every=0,
        save_interval=0,
        monitoring_dir=str(workdir / "monitoring"),
        checkpoint_dir=str(workdir / "checkpoints"),
        run_name="bench-ours",
        prometheus=True,
        prometheus_port=0,
        enable_alerts=True,
        progress=False,
    )
    started = time.perf_counter()
    result = train(config)
    total = time.perf_counter() - started
    steps = result.step_seconds[args.skip :]
    monitor = result.monitor_seconds[args.skip :]
    lengths = [row["grpo_completion_length_mean_tokens"] for row in read_steps(result.run_directory)]
    return {
        "seconds_per_step": statistics.mean(steps),
        "seconds_per_step_median": statistics.median(steps),
        "monitor_seconds_per_step": statistics.mean(monitor),
        "monitor_share_of_step": sum(monitor) / sum(steps),
        "completion_length_mean": statistics.mean(lengths),
        "reward_mean_last": result.reward_mean[-1],
        "wall_seconds_including_load": total,
    }


def run_trl(args: argparse.Namespace, model_path: str, workdir: Path) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from rewardscope.trainer.data import chat_messages, load_problems, split_problems
    from rewardscope.trainer.rewards import check_answer, check_numbers, format_approx, format_exact

    torch.set_num_threads(args.threads)
    problems = load_problems("generated", 2000, args.seed, 9)
    train_split, _ = split_problems(problems, 0.9, args.seed)
    dataset = Dataset.from_list([{"prompt": chat_messages(p.question), "answer": p.answer} for p in train_split])
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.lengths: list[float] = []
            self._start = 0.0

        def on_step_begin(self, *a, **k):
            self._start = time.perf_counter()

        def on_step_end(self, *a, **k):
            self.times.append(time.perf_counter() - self._start)

        def on_log(self, args, state, control, logs=None, **k):
            if logs and "completions/mean_length" in logs:
                self.lengths.append(logs["completions/mean_length"])

    timer = StepTimer()
    os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(workdir / "tb"))
    config = GRPOConfig(
        output_dir=str(workdir / "trl"),
        use_cpu=True,
        bf16=False,
        seed=args.seed,
        max_steps=args.steps,
        per_device_train_batch_size=args.prompts * args.generations,  # counts completions
        num_generations=args.generations,
        max_completion_length=args.max_completion_length,
        temperature=1.0,
        beta=args.beta,
        epsilon=0.2,
        loss_type="grpo",
        scale_rewards="group",
        learning_rate=args.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=math.ceil(0.1 * args.steps),
        adam_beta2=0.99,
        weight_decay=0.0,
        max_grad_norm=1.0,
        num_iterations=1,
        gradient_accumulation_steps=1,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        log_completions=False,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[format_exact, format_approx, check_answer, check_numbers],
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=LoraConfig(
            r=args.lora_rank, lora_alpha=2.0 * args.lora_rank, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"
        ),
        callbacks=[timer],
    )
    # With tqdm off, transformers prints every log dict to stdout; keep stdout for the JSON.
    trainer.remove_callback(PrinterCallback)
    torch.set_num_threads(args.threads)
    trainer.train()
    steps = timer.times[args.skip :]
    return {
        "seconds_per_step": statistics.mean(steps),
        "seconds_per_step_median": statistics.median(steps),
        "completion_length_mean": statistics.mean(timer.lengths) if timer.lengths else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--skip", type=int, default=3, help="first steps left out of the timings")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--max-completion-length", type=int, default=32)
    parser.add_argument("--lora-rank", type=int, default=16)
    parser.add_argument("--beta", type=float, default=0.04)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=("ours", "trl"), help="run one side only")
    args = parser.parse_args()

    import torch
    import transformers

    from rewardscope.trainer.models import ensure_tiny_model

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as tmp:
        workdir = Path(tmp)
        model_path = str(ensure_tiny_model())
        report: dict = {
            "setup": {
                "model": "tiny (built by rewardscope, loaded by path)",
                "prompts_per_step": args.prompts,
                "generations": args.generations,
                "completions_per_step": args.prompts * args.generations,
                "max_completion_length": args.max_completion_length,
                "lora_rank": args.lora_rank,
                "beta": args.beta,
                "steps": args.steps,
                "timed_steps": args.steps - args.skip,
                "threads": args.threads,
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                "torch": torch.__version__,
                "transformers": transformers.__version__,
            }
        }
        if args.only in (None, "ours"):
            report["ours"] = run_ours(args, model_path, workdir)
        if args.only in (None, "trl"):
            import trl

            report["setup"]["trl"] = trl.__version__
            report["trl"] = run_trl(args, model_path, workdir)
        if "ours" in report and "trl" in report:
            report["ratio_ours_over_trl"] = report["ours"]["seconds_per_step"] / report["trl"]["seconds_per_step"]
        if "ours" in report:
            report["monitor_share_of_step"] = report["ours"]["monitor_share_of_step"]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
