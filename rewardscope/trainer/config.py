"""Training configuration: one dataclass, the flags derived from it, YAML config files.

Each field of ``TrainConfig`` is one command-line flag (``num_steps`` is
``--num-steps``) and one key of a ``--config`` YAML file (``num-steps`` or
``num_steps``). Precedence: a flag given on the command line, then the file, then the
default. Fields left at None are resolved by ``resolve_config`` from the device and the
model: the tiny model on a CPU gets settings that finish in a couple of minutes, hub
models get settings for a GPU.

This module does not import torch, so building the CLI stays fast.
"""

from __future__ import annotations

import dataclasses
import difflib
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from rewardscope.trainer.errors import ConfigError
from rewardscope.trainer.rewards import DEFAULT_REWARD_FNS

TINY_MODEL_ID = "tiny"
DEFAULT_GPU_MODEL_ID = "google/gemma-3-1b-it"


def _opt(default: Any, help: str, kind: Callable[[str], Any] | None = None, choices: tuple[str, ...] | None = None, **extra: Any) -> Any:
    metadata = {"help": help, "kind": kind, "choices": choices, **extra}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: list(default) if isinstance(default, list) else dict(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    """Every setting of a GRPO run. None means "choose from the device and model"."""

    # Model and hardware
    model_id: str | None = _opt(None, "hub id, local path, or 'tiny' (default: tiny without a GPU, google/gemma-3-1b-it with one)", str)
    device: str = _opt("auto", "where to train", str, ("auto", "cpu", "cuda"))
    seed: int = _opt(0, "seed of data order, sampling and initialisation", int)
    threads: int | None = _opt(None, "torch CPU threads (default: 1 on CPU, torch's choice on GPU)", int)
    bf16: bool | None = _opt(None, "bfloat16 weights and compute (default: on with CUDA)", bool)
    gradient_checkpointing: bool | None = _opt(None, "recompute activations in backward (default: on with CUDA)", bool)
    cache_dir: str | None = _opt(None, "where the tiny model is cached (default: $REWARDSCOPE_CACHE or ~/.cache/rewardscope)", str)
    # LoRA
    use_lora: bool = _opt(True, "train a LoRA adapter (the base model with the adapter disabled is the reference)", bool)
    lora_rank: int = _opt(16, "LoRA rank", int)
    lora_alpha: float = _opt(32.0, "LoRA alpha", float)
    lora_dropout: float = _opt(0.0, "LoRA dropout", float)
    # GRPO
    num_steps: int | None = _opt(None, "training steps", int)
    learning_rate: float | None = _opt(None, "peak learning rate (default: 2e-3 for tiny with LoRA, 2e-5 otherwise)", float)
    batch_size: int = _opt(4, "prompts per step; each gets --num-generations completions", int)
    num_generations: int = _opt(8, "completions per prompt (the group size G)", int)
    beta: float = _opt(0.04, "weight of the k3 KL penalty to the reference policy (0 = none)", float)
    epsilon: float = _opt(0.2, "clipping range of the policy ratio", float)
    temperature: float = _opt(1.0, "sampling temperature", float)
    max_prompt_length: int | None = _opt(None, "prompt tokens kept, from the end (default: 256)", int)
    max_generation_steps: int | None = _opt(None, "maximum completion tokens (default: 32 for tiny, 256 otherwise)", int)
    loss_type: str = _opt("sequence", "loss aggregation: per-sequence mean (GRPO), token mean, or Dr. GRPO's constant", str, ("sequence", "token", "dr_grpo"))
    scale_rewards: bool = _opt(True, "divide advantages by the group's reward std (--no-scale-rewards: Dr. GRPO)", bool)
    num_iterations: int = _opt(1, "optimisation passes over each batch of completions", int)
    gradient_accumulation_steps: int | None = _opt(None, "micro-batches per optimiser step: same update, less memory (default: 1 for tiny, 4 otherwise)", int)
    weight_decay: float = _opt(0.0, "AdamW weight decay", float)
    max_grad_norm: float = _opt(1.0, "gradient clipping norm (0 = no clipping)", float)
    warmup_fraction: float = _opt(0.1, "fraction of optimiser steps of linear warm-up before the cosine decay", float)
    # Data and rewards
    dataset: str = _opt("generated", "'generated' (built-in arithmetic problems), 'gsm8k' (openai/gsm8k, needs network) or a JSONL file", str)
    num_problems: int = _opt(2000, "problems made by the generator", int)
    max_operand: int | None = _opt(None, "largest operand of generated problems (default: 9 for tiny, 99 otherwise)", int)
    train_fraction: float = _opt(0.9, "share of problems used for training; the rest is the eval split", float)
    reward_fn: list[str] = _opt(
        list(DEFAULT_REWARD_FNS),
        "reward function: a built-in name or module:function, with =weight (0 = monitor-only); repeat for several; replaces the default four",
        str,
        repeat=True,
    )
    # Evaluation
    eval_every: int = _opt(10, "evaluate greedy accuracy on the eval split every N steps (0 = never)", int)
    eval_samples: int = _opt(64, "eval problems per evaluation", int)
    probe_every: int = _opt(0, "every N steps store greedy answers to the probe prompts for `rewardscope report` (0 = never)", int)
    probe_count: int = _opt(4, "probe prompts, the first eval problems", int)
    # Checkpoints
    checkpoint_dir: str | None = _opt(None, "checkpoint directory (default: checkpoints/<run name>)", str)
    save_interval: int = _opt(25, "save a checkpoint every N steps (0 = only when interrupted)", int)
    max_checkpoints: int = _opt(3, "checkpoints kept, newest first", int)
    resume: str | None = _opt(None, "resume from a checkpoint directory, a directory of checkpoints, or (flag alone) the latest in --checkpoint-dir", str, nargs="?", const="latest")
    # Monitoring
    run_name: str | None = _opt(None, "run id in the monitor and run store (default: grpo-<model>-<time>)", str)
    monitoring_dir: str = _opt("monitoring_data", "root of the run store", str)
    enable_alerts: bool = _opt(True, "evaluate the default alerts in-process and print the ones that fire", bool)
    on_critical: str = _opt("alert", "what a critical alert does: alert (print it) or stop (save a checkpoint, stop cleanly, "
                            "record the alert and the last good step in the run store's stopped.json)", str, ("alert", "stop"))
    log_distributions: bool = _opt(False, "store per-step reward distributions", bool)
    prometheus: bool = _opt(True, "serve /metrics for Prometheus (--no-prometheus to turn off)", bool)
    prometheus_port: int = _opt(19464, "port of /metrics (0 = any free port)", int)
    prometheus_host: str = _opt("127.0.0.1", "address /metrics listens on (0.0.0.0 in a container, so Prometheus can reach it)", str)
    prometheus_linger: float = _opt(15.0, "seconds /metrics keeps serving after the run ends, so Prometheus sees grpo_run_ended 1 "
                                    "and does not take a finished run for a dead one (0 = stop at once)", float)
    web_config_file: str | None = _opt(None, "TLS and basic auth for /metrics: a web config file in the Prometheus exporter-toolkit "
                                       "format (tls_server_config, basic_auth_users with bcrypt hashes)", str)
    progress: bool = _opt(True, "show a progress bar", bool)
    # Mirrors (optional packages; a failing mirror is counted, training goes on)
    wandb: bool = _opt(False, "mirror every step to Weights & Biases (needs wandb; WANDB_MODE=offline works without network)", bool)
    wandb_project: str = _opt("rewardscope", "W&B project of the mirrored run", str)
    tensorboard: bool = _opt(False, "mirror every step to TensorBoard event files (needs tensorboard)", bool)
    tensorboard_dir: str = _opt("runs/tensorboard", "TensorBoard log root; the run writes <dir>/<run name>", str)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-able dict (for the run manifest and checkpoints)."""
        return dataclasses.asdict(self)


def flag_name(name: str) -> str:
    """``num_steps`` -> ``--num-steps``."""
    return "--" + name.replace("_", "-")


def option_fields() -> list[dataclasses.Field]:
    """The fields of ``TrainConfig`` in declaration order (one flag each)."""
    return list(fields(TrainConfig))


def _coerce(f: dataclasses.Field, value: Any, where: str) -> Any:
    kind = f.metadata["kind"]
    key = f.name.replace("_", "-")
    if value is None:
        if f.default is None:
            return None
        raise ConfigError(f"{where}: {key} cannot be null")
    if f.metadata.get("repeat"):
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(i, str) for i in items):
            raise ConfigError(f"{where}: {key} must be a string or a list of strings")
        return list(items)
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key} must be true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {key} must be an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise ConfigError(f"{where}: {key} must be a string, got {value!r}")
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{where}: {key} must be one of {', '.join(choices)}, got {value!r}")
    return value


def config_from_mapping(values: dict[str, Any], where: str = "config") -> dict[str, Any]:
    """Validate a mapping of flag-named keys (dashes or underscores) into field values."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of option names to values")
    by_name = {f.name: f for f in option_fields()}
    result: dict[str, Any] = {}
    for raw_key, value in values.items():
        name = str(raw_key).replace("-", "_")
        if name not in by_name:
            known = [n.replace("_", "-") for n in by_name]
            close = difflib.get_close_matches(str(raw_key).replace("_", "-"), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown option {raw_key!r}{hint}; keys are the train flags without '--'")
        result[name] = _coerce(by_name[name], value, where)
    return result


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Field values from a YAML file whose keys are the flags (``num-steps: 40``)."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if values is None:
        return {}
    return config_from_mapping(values, str(path))


def build_config(file_values: dict[str, Any], cli_values: dict[str, Any]) -> TrainConfig:
    """Defaults, overridden by the file, overridden by flags given on the command line
    (``cli_values`` holds only those)."""
    merged = {**file_values, **cli_values}
    config = TrainConfig(**merged)
    validate_config(config)
    return config


def validate_config(config: TrainConfig) -> None:
    """Reject values no run could use, with the flag named in the message."""
    checks = [
        (config.batch_size >= 1, "batch-size must be >= 1"),
        (config.num_generations >= 2, "num-generations must be >= 2 (advantages compare completions within a group)"),
        (config.num_steps is None or config.num_steps >= 1, "num-steps must be >= 1"),
        (config.learning_rate is None or config.learning_rate >= 0, "learning-rate must be >= 0"),
        (config.beta >= 0, "beta must be >= 0"),
        (config.epsilon > 0, "epsilon must be > 0"),
        (config.temperature > 0, "temperature must be > 0"),
        (config.max_generation_steps is None or config.max_generation_steps >= 1, "max-generation-steps must be >= 1"),
        (config.max_prompt_length is None or config.max_prompt_length >= 1, "max-prompt-length must be >= 1"),
        (config.num_iterations >= 1, "num-iterations must be >= 1"),
        (config.gradient_accumulation_steps is None or config.gradient_accumulation_steps >= 1, "gradient-accumulation-steps must be >= 1"),
        (config.gradient_accumulation_steps is None or config.gradient_accumulation_steps <= config.batch_size * config.num_generations,
         "gradient-accumulation-steps cannot exceed the completions per step"),
        (0.0 <= config.warmup_fraction < 1.0, "warmup-fraction must be in [0, 1)"),
        (config.max_grad_norm >= 0, "max-grad-norm must be >= 0"),
        (0.0 < config.train_fraction <= 1.0, "train-fraction must be in (0, 1]"),
        (config.eval_every >= 0 and config.eval_samples >= 1, "eval-every must be >= 0 and eval-samples >= 1"),
        (config.probe_every >= 0 and config.probe_count >= 1, "probe-every must be >= 0 and probe-count >= 1"),
        (config.save_interval >= 0 and config.max_checkpoints >= 1, "save-interval must be >= 0 and max-checkpoints >= 1"),
        (config.lora_rank >= 1, "lora-rank must be >= 1"),
        (0 <= config.prometheus_port <= 65535, "prometheus-port must be in 0..65535"),
        (config.prometheus_linger >= 0, "prometheus-linger must be 0 or more seconds"),
        (config.threads is None or config.threads >= 1, "threads must be >= 1"),
        (config.num_problems >= 2, "num-problems must be >= 2"),
        (config.max_operand is None or config.max_operand >= 1, "max-operand must be >= 1"),
        (bool(config.reward_fn), "at least one reward-fn is needed"),
        (config.on_critical in ("alert", "stop"), "on-critical must be alert or stop"),
        (config.on_critical != "stop" or config.enable_alerts, "on-critical stop needs the in-process alerts (--enable-alerts)"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def resolve_config(config: TrainConfig, cuda_available: bool) -> TrainConfig:
    """A copy with every None filled in from the device and the model.

    Raises ConfigError for ``--device cuda`` without CUDA.
    """
    device = config.device
    if device == "auto":
        device = "cuda" if cuda_available else "cpu"
    if device == "cuda" and not cuda_available:
        raise ConfigError("--device cuda was asked for but torch sees no CUDA device")
    model_id = config.model_id or (DEFAULT_GPU_MODEL_ID if device == "cuda" else TINY_MODEL_ID)
    tiny = model_id == TINY_MODEL_ID
    on_gpu = device == "cuda"
    if tiny:
        learning_rate = 2e-3 if config.use_lora else 5e-4
    else:
        learning_rate = 2e-5 if config.use_lora else 1e-6
    resolved = dataclasses.replace(
        config,
        device=device,
        model_id=model_id,
        threads=config.threads if config.threads is not None else (None if on_gpu else 1),
        bf16=config.bf16 if config.bf16 is not None else on_gpu,
        gradient_checkpointing=config.gradient_checkpointing if config.gradient_checkpointing is not None else on_gpu,
        num_steps=config.num_steps if config.num_steps is not None else 200,
        learning_rate=config.learning_rate if config.learning_rate is not None else learning_rate,
        max_prompt_length=config.max_prompt_length if config.max_prompt_length is not None else 256,
        max_generation_steps=config.max_generation_steps if config.max_generation_steps is not None else (32 if tiny else 256),
        max_operand=config.max_operand if config.max_operand is not None else (9 if tiny else 99),
        # Large vocabularies make the (completions, length, vocab) logits the biggest
        # tensor of a step: micro-batches of 8 completions keep it to a few GB.
        gradient_accumulation_steps=config.gradient_accumulation_steps
        if config.gradient_accumulation_steps is not None
        else (1 if tiny else max(1, min(4, config.batch_size * config.num_generations // 8))),
        run_name=config.run_name or default_run_name(model_id),
    )
    if resolved.checkpoint_dir is None:
        resolved = dataclasses.replace(resolved, checkpoint_dir=str(Path("checkpoints") / resolved.run_name))
    if resolved.bf16 and not on_gpu:
        # Allowed (it runs the GPU code path on a laptop) but rarely what anyone wants.
        warnings.warn("--bf16 on CPU: slower than float32 here and less precise", stacklevel=2)
    return resolved


def default_run_name(model_id: str) -> str:
    """``grpo-<last path part of the model id>-<UTC time>``."""
    short = Path(model_id.rstrip("/")).name or "model"
    return f"grpo-{short}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
