"""The GRPO training loop, monitored every step.

One step:

1. draw ``batch_size`` prompts and sample ``num_generations`` (G) completions for each,
   ordered group by group;
2. score every completion with every reward function; the weighted sum of the functions
   with a non-zero weight is the reward, normalised within each group into advantages;
3. with ``beta > 0``, score the completions under the reference policy (the model with
   its LoRA adapter disabled);
4. ``num_iterations`` optimisation passes over the batch, each one optimiser step made of
   ``gradient_accumulation_steps`` micro-batches: clipped surrogate + beta * k3 KL,
   aggregated per ``loss_type``, gradients clipped, warm-up then cosine learning rate;
5. ``RewardMonitor.record_step`` with the per-function per-sample rewards, KL, policy
   entropy, advantages, clip ratio, grad norm, loss, learning rate, completion lengths,
   tokens, and (every ``eval_every`` steps) greedy accuracy on the eval split;
6. a checkpoint every ``save_interval`` steps, then the callbacks.

KL and entropy are token means over the batch's completion tokens under the policy
that sampled them (before this step's update); clip ratio, loss and grad norm are
means over the optimisation passes.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import errno
import itertools
import logging
import math
import random
import shutil
import socket
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rewardscope.trainer import checkpoints, ddp
from rewardscope.trainer.config import ConfigError, TrainConfig, resolve_config
from rewardscope.trainer.data import Problem, PromptSampler, chat_messages, load_problems, split_problems
from rewardscope.trainer.generation import (
    Rollout,
    completion_logprobs,
    decode_completions,
    encode_prompts,
    sample_completions,
)
from rewardscope.trainer.models import apply_lora, eos_token_ids, load_model_and_tokenizer
from rewardscope.trainer.objective import group_advantages, grpo_token_loss, loss_weights
from rewardscope.trainer.probes import trainer_probes
from rewardscope.trainer.rewards import RewardFunction, is_correct, resolve_reward_functions
from rewardscope.trainer.stopping import CriticalStop

log = logging.getLogger("rewardscope.trainer")


class StopTraining(Exception):
    """Raise from a callback to end the run after the current step; a checkpoint of
    that step is saved so ``--resume`` continues from it."""


@dataclass
class StepEvent:
    """What a callback sees after each step."""

    step: int
    num_steps: int
    metrics: Any  # rewardscope.StepMetrics (None on ranks other than 0 of a multi-process run)
    monitor: Any  # rewardscope.RewardMonitor
    step_seconds: float
    monitor_seconds: float
    completions: list[str]


@dataclass
class TrainResult:
    """The outcome of ``train``: where the run went and a few per-step figures."""

    run_id: str
    run_directory: Path | None
    checkpoint_dir: Path
    first_step: int
    last_step: int
    num_steps: int
    interrupted: bool
    last_checkpoint: Path | None
    prometheus_port: int | None
    config: TrainConfig
    reward_mean: list[float] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)
    monitor_seconds: list[float] = field(default_factory=list)
    eval_accuracy: dict[int, float] = field(default_factory=dict)
    final_metrics: dict[str, float] = field(default_factory=dict)
    # None when alerts were not evaluated (--no-enable-alerts); "alertname/severity" -> times fired.
    alerts_fired: dict[str, float] | None = None
    alerts_firing: list[str] = field(default_factory=list)  # alerts still firing at the end, one line each

    @property
    def steps_completed(self) -> int:
        return self.last_step - self.first_step + 1 if self.last_step >= self.first_step else 0


def warmup_cosine(total_steps: int, warmup_fraction: float) -> Callable[[int], float]:
    """Learning-rate multiplier: linear warm-up over ceil(fraction * total) optimiser
    steps, then cosine decay to 0 at the last step. The first step already has a
    non-zero rate (1 / warm-up steps)."""
    warmup = math.ceil(warmup_fraction * total_steps)

    def factor(index: int) -> float:
        if index < warmup:
            return (index + 1) / warmup
        span = max(total_steps - warmup, 1)
        progress = min((index - warmup) / span, 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def _set_threads(threads: int | None) -> None:
    if threads is None:
        return
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # only settable before the first parallel work; intra-op threads matter most
        torch.set_num_interop_threads(threads)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _micro_batches(total: int, count: int) -> list[slice]:
    bounds = np.linspace(0, total, count + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds) if b > a]


def _mirror_sinks(config: TrainConfig) -> list[Any]:
    """The W&B and TensorBoard mirrors the config asks for."""
    sinks: list[Any] = []
    try:
        if config.tensorboard:
            from rewardscope.exporter.tensorboard_sink import TensorBoardSink

            log_dir = Path(config.tensorboard_dir) / config.run_name
            sinks.append(TensorBoardSink(log_dir, log_distributions=config.log_distributions))
        if config.wandb:
            from rewardscope.exporter.wandb_sink import WandbSink

            sinks.append(WandbSink(config.wandb_project, run_name=config.run_name, config=config.to_dict(),
                                   log_distributions=config.log_distributions))
    except ImportError as exc:
        raise ConfigError(str(exc)) from exc
    return sinks


def _make_monitor(config: TrainConfig, functions: Sequence[RewardFunction], resume_after_step: int | None,
                  is_main: bool = True) -> Any:
    from ..metrics.functions import RewardFunctionSpec
    from ..monitor import RewardMonitor
    from ..provenance import collect_provenance

    specs = [RewardFunctionSpec(f.name, f.weight, f.min_value, f.max_value) for f in functions]
    kwargs = dict(
        # Only rank 0 writes: the other ranks' monitors keep no sinks, so they open no W&B run either.
        extra_sinks=_mirror_sinks(config) if is_main else [],
        group_size=config.num_generations,
        run_dir=config.monitoring_dir,
        prometheus_port=config.prometheus_port if config.prometheus else None,
        prometheus_host=config.prometheus_host,
        linger_seconds=config.prometheus_linger,
        web_config_file=config.web_config_file,
        print_alerts=True,
        alert_printer=_write_above_progress_bar,
        log_distributions=config.log_distributions,
        run_info={"model": str(config.model_id), "trainer": "rewardscope", "device": str(config.device), "loss_type": config.loss_type},
        config=config.to_dict(),
        max_completion_length=config.max_generation_steps,
        on_bad_input="raise",
        resume_after_step=resume_after_step,
        provenance=collect_provenance({k: v for k, v in config.to_dict().items() if k != "resume"}),
    )
    run_directory = Path(config.monitoring_dir) / config.run_name
    existed = run_directory.exists()
    try:
        return RewardMonitor(config.run_name, specs, alerts=config.enable_alerts, **kwargs)
    except BaseException as exc:
        if not existed:  # a run that never started leaves no directory behind for `summary` to misread
            shutil.rmtree(run_directory, ignore_errors=True)
        # The /metrics server could not bind (the monitor says so in its message); a
        # settings problem for the user, not a crash.
        if isinstance(exc, OSError) and config.prometheus and exc.errno in (None, errno.EADDRINUSE, errno.EACCES) \
                and "/metrics" in str(exc):
            raise ConfigError(f"{exc} {_PORT_HINT}") from exc
        raise


_PORT_HINT = "(--prometheus-port 0 picks a free port; --no-prometheus turns it off)"


def check_metrics_port(config: TrainConfig) -> None:
    """Fail fast, before the model loads, when /metrics cannot bind its port.

    Binds and closes a socket as the /metrics server will (SO_REUSEADDR); port 0 always
    binds. The server binds again later, so a port taken in between still fails there.
    """
    if not config.prometheus or not config.prometheus_port:
        return
    host, port = config.prometheus_host, config.prometheus_port
    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:  # socket.gaierror (an unknown host) included
        raise ConfigError(f"cannot serve /metrics on {host}:{port}: {exc.strerror or exc} {_PORT_HINT}") from None


def alerts_still_firing(monitor: Any) -> list[str]:
    """One line per in-process alert instance firing now, e.g. ``GRPOKLTooHigh (warning)``."""
    firing = getattr(monitor.alert_engine, "firing", None)
    if firing is None:
        return []
    lines = []
    for rule, reward_fn in firing():
        lines.append(f"{rule.alert} ({rule.severity}" + (f", reward_fn={reward_fn})" if reward_fn else ")"))
    return sorted(lines)


def enable_checkpointing(model: Any) -> None:
    """Recompute activations in backward (non-reentrant, which works with frozen inputs);
    transformers 5 renamed gradient to activation checkpointing."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


class GRPOTrainer:
    """Holds the model, optimiser, data and monitor of one run; ``train`` drives it."""

    def __init__(self, config: TrainConfig, context: ddp.DistributedContext | None = None):
        self.config = config
        self.context = context or ddp.DistributedContext()
        self.device = torch.device(config.device)
        self.functions = resolve_reward_functions(config.reward_fn)
        problems = load_problems(config.dataset, config.num_problems, config.seed, config.max_operand or 9)
        self.train_problems, self.eval_problems = split_problems(problems, config.train_fraction, config.seed)
        self.eval_problems = self.eval_problems[: config.eval_samples]
        self.sampler = PromptSampler(len(self.train_problems), config.seed)
        # Each rank samples its own completions; rank 0's stream is the single-process one.
        self.sampling_generator = torch.Generator(device=self.device).manual_seed(config.seed + self.context.rank)

        dtype = torch.bfloat16 if config.bf16 else torch.float32
        model, self.tokenizer = load_model_and_tokenizer(config.model_id, self.device, dtype, config.cache_dir)
        if config.gradient_checkpointing:
            enable_checkpointing(model)
        self.reference = None
        if config.use_lora:
            model = apply_lora(model, config.lora_rank, config.lora_alpha, config.lora_dropout)
            if config.gradient_checkpointing:
                model.enable_input_require_grads()
        elif config.beta > 0:
            # Without an adapter to switch off, the reference must be a frozen copy.
            self.reference = copy.deepcopy(model).eval()
            self.reference.requires_grad_(False)
        self.model = model
        # The training forward goes through DDP on several ranks (gradients averaged); sampling,
        # reference scoring and checkpoints use the bare model.
        self.train_model = self.context.wrap(model)
        self.eos_ids = eos_token_ids(model, self.tokenizer)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            self.params, lr=config.learning_rate, betas=(0.9, 0.99), weight_decay=config.weight_decay
        )
        total_updates = config.num_steps * config.num_iterations
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, warmup_cosine(total_updates, config.warmup_fraction))
        self._prompt_cache: dict[str, str] = {}

    # ----------------------------------------------------------------- prompts and rewards
    def render_prompt(self, question: str) -> str:
        prompt = self._prompt_cache.get(question)
        if prompt is None:
            prompt = self.tokenizer.apply_chat_template(chat_messages(question), tokenize=False, add_generation_prompt=True)
            if len(self._prompt_cache) < 100_000:
                self._prompt_cache[question] = prompt
        return prompt

    def rollout(self, problems: Sequence[Problem], repeat: int, greedy: bool = False) -> tuple[Rollout, list[str], list[str]]:
        """Sample ``repeat`` completions per problem (rows grouped per problem)."""
        prompts = [self.render_prompt(p.question) for p in problems]
        ids, mask = encode_prompts(self.tokenizer, prompts, self.config.max_prompt_length, self.device)
        if repeat > 1:
            ids, mask = ids.repeat_interleave(repeat, dim=0), mask.repeat_interleave(repeat, dim=0)
        self.model.eval()
        result = sample_completions(
            self.model,
            ids,
            mask,
            self.config.max_generation_steps,
            self.eos_ids,
            self.tokenizer.pad_token_id,
            temperature=self.config.temperature,
            greedy=greedy,
            generator=self.sampling_generator,
        )
        texts = decode_completions(self.tokenizer, result)
        return result, texts, [p for p in prompts for _ in range(repeat)]

    def score(self, problems: Sequence[Problem], prompts: list[str], texts: list[str]) -> dict[str, np.ndarray]:
        """Every reward function's scores, in completion order."""
        g = len(texts) // len(problems)
        answers = [p.answer for p in problems for _ in range(g)]
        questions = [p.question for p in problems for _ in range(g)]
        return {
            f.name: np.asarray(f(prompts, texts, answer=answers, question=questions), dtype=np.float64)
            for f in self.functions
        }

    def total_reward(self, rewards: dict[str, np.ndarray]) -> np.ndarray:
        """Weighted sum of the functions with non-zero weight; a non-finite score counts 0
        here (the monitor counts it as non-finite)."""
        total = np.zeros_like(next(iter(rewards.values())))
        for f in self.functions:
            if f.weight:
                total += f.weight * np.nan_to_num(rewards[f.name], nan=0.0, posinf=0.0, neginf=0.0)
        return total

    # ----------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self) -> float | None:
        """Greedy accuracy on the eval split (exact or normalised answer match)."""
        if not self.eval_problems:
            return None
        correct = 0
        chunk = 64
        for start in range(0, len(self.eval_problems), chunk):
            problems = self.eval_problems[start : start + chunk]
            _, texts, _ = self.rollout(problems, 1, greedy=True)
            correct += sum(is_correct(t, p.answer) for t, p in zip(texts, problems))
        return correct / len(self.eval_problems)

    # ----------------------------------------------------------------- optimisation
    def _reference_logprobs(self, batch: Rollout) -> torch.Tensor:
        with torch.no_grad():
            if self.reference is not None:
                logps, _ = completion_logprobs(self.reference, batch, self.config.temperature)
            else:
                with self.model.disable_adapter():
                    logps, _ = completion_logprobs(self.model, batch, self.config.temperature)
        return logps

    def optimise(self, rollout: Rollout, advantages: torch.Tensor) -> dict[str, float]:
        """The optimisation passes of one step; returns the step's training figures."""
        config = self.config
        parts = _micro_batches(rollout.completion_ids.size(0), config.gradient_accumulation_steps)
        mask = rollout.completion_mask
        total_rows = mask.size(0)
        total_tokens = float(mask.sum())
        self.model.train()
        with_kl = config.beta > 0
        ref = [self._reference_logprobs(rollout.select(p)) for p in parts] if with_kl else [None] * len(parts)
        old: list[torch.Tensor | None] = [None] * len(parts)
        if config.num_iterations > 1:
            # The policy that sampled, scored by the training forward, fixed for all passes.
            with torch.no_grad():
                old = [completion_logprobs(self.model, rollout.select(p), config.temperature)[0] for p in parts]

        kl_sum = entropy_sum = 0.0
        losses, clip_ratios, grad_norms = [], [], []
        learning_rate = self.scheduler.get_last_lr()[0]
        for iteration in range(config.num_iterations):
            loss_total = clipped_tokens = 0.0
            for index, part in enumerate(parts):
                batch = rollout.select(part)
                # Under DDP the gradients are averaged over ranks once, at the last micro-batch.
                sync = ExitStack()
                if self.train_model is not self.model and index < len(parts) - 1:
                    sync.enter_context(self.train_model.no_sync())
                with sync:
                    logps, entropy = completion_logprobs(self.train_model, batch, config.temperature, with_entropy=iteration == 0)
                    old_logps = old[index] if old[index] is not None else logps.detach()
                    per_token, clipped, kl = grpo_token_loss(logps, old_logps, ref[index], advantages[part], config.epsilon, config.beta)
                    weights = loss_weights(batch.completion_mask, config.loss_type, config.max_generation_steps, total_rows, total_tokens)
                    loss = (per_token * weights).sum()
                    loss.backward()
                loss_total += float(loss.detach())
                m = batch.completion_mask.to(per_token.dtype)
                clipped_tokens += float((clipped.to(m.dtype) * m).sum())
                if iteration == 0:
                    entropy_sum += float((entropy * m).sum())
                    if kl is not None:
                        kl_sum += float((kl.detach() * m).sum())
            clip_to = config.max_grad_norm if config.max_grad_norm > 0 else float("inf")
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, clip_to))
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            losses.append(loss_total)
            clip_ratios.append(clipped_tokens / max(total_tokens, 1.0))
            grad_norms.append(grad_norm)
        tokens = max(total_tokens, 1.0)
        return {
            "loss": float(np.mean(losses)),
            "clip_ratio": float(np.mean(clip_ratios)),
            "grad_norm": float(np.mean(grad_norms)),
            "learning_rate": float(learning_rate),
            "kl": kl_sum / tokens if with_kl else None,
            "policy_entropy": entropy_sum / tokens,
        }

    # ----------------------------------------------------------------- state
    def trainer_state(self, sampler_state: dict[str, Any], rng: dict[str, Any]) -> dict[str, Any]:
        return {
            "run_id": self.config.run_name,
            "config": self.config.to_dict(),
            "sampler": sampler_state,
            "rng": rng,
        }

    def save(self, step: int, sampler_state: dict[str, Any], rng: dict[str, Any]) -> Path | None:
        """Write a checkpoint (rank 0 only: the weights are the same on every rank after DDP's all-reduce)."""
        if not self.context.is_main:
            return None
        return checkpoints.save_checkpoint(
            self.config.checkpoint_dir,
            step,
            self.model,
            self.optimizer,
            self.scheduler,
            self.trainer_state(sampler_state, rng),
            self.config.max_checkpoints,
            save_adapter=self.config.use_lora,
        )

    def restore(self, path: Path, state: dict[str, Any]) -> None:
        checkpoints.load_trainable_weights(path, self.model)
        checkpoints.restore_training_state(path, state, self.optimizer, self.scheduler, self.sampler, self.sampling_generator)


# Settings a resumed run must share with the checkpoint: they shape the model, the data
# order or the meaning of a step.
_RESUME_MUST_MATCH = (
    "model_id", "use_lora", "lora_rank", "lora_alpha", "batch_size", "num_generations", "dataset",
    "num_problems", "max_operand", "train_fraction", "seed", "reward_fn", "num_iterations",
)


def _resume_config(config: TrainConfig) -> tuple[TrainConfig, Path | None, dict[str, Any] | None]:
    """For ``--resume``: the checkpoint, its state, and the config with the run id and
    checkpoint directory of the run being continued."""
    if config.resume is None:
        return config, None, None
    checkpoint_dir = config.checkpoint_dir
    if checkpoint_dir is None and config.run_name is not None:
        checkpoint_dir = str(Path("checkpoints") / config.run_name)
    path = checkpoints.find_checkpoint(config.resume, checkpoint_dir)
    state = checkpoints.read_trainer_state(path)
    saved = state.get("config", {})
    if config.run_name is not None and config.run_name != state["run_id"]:
        raise ConfigError(f"--run-name {config.run_name!r} differs from the checkpoint's run {state['run_id']!r}")
    changed = [k for k in _RESUME_MUST_MATCH if getattr(config, k) is not None and k in saved and saved[k] != getattr(config, k)]
    if changed:
        details = ", ".join(f"{k}: checkpoint {saved[k]!r} vs now {getattr(config, k)!r}" for k in changed)
        raise ConfigError(f"cannot resume {path} with different settings ({details})")
    # Unset settings are taken from the checkpoint, so that a resume with only --resume
    # continues the same run (same step count, model, lengths).
    inherited = {k: saved[k] for k in ("model_id", "num_steps", "learning_rate", "max_prompt_length", "max_generation_steps",
                                       "max_operand", "checkpoint_dir") if getattr(config, k) is None and k in saved}
    config = dataclasses.replace(config, run_name=state["run_id"], **inherited)
    return config, path, state


def train(config: TrainConfig, callbacks: Sequence[Callable[[StepEvent], None]] = ()) -> TrainResult:
    """Run GRPO as ``config`` says, feeding ``RewardMonitor`` every step.

    ``callbacks`` are called after every step with a ``StepEvent``; raising
    ``StopTraining`` from one ends the run cleanly (a checkpoint of that step is saved).
    Ctrl-C does the same. Any other exception propagates; the last periodic checkpoint
    then is where ``--resume`` continues, and the run store drops the steps after it.
    """
    config, resume_path, resume_state = _resume_config(config)
    config = resolve_config(config, torch.cuda.is_available())
    context = ddp.start(config.device)
    try:
        return _train(config, context, resume_path, resume_state, callbacks)
    finally:
        context.stop()


def _train(config: TrainConfig, context: ddp.DistributedContext, resume_path: Path | None, resume_state: dict[str, Any] | None,
           callbacks: Sequence[Callable[[StepEvent], None]]) -> TrainResult:
    start_step = _check_start(config, context, resume_state)
    trainer = GRPOTrainer(config, context)
    if resume_path is not None:
        trainer.restore(resume_path, resume_state)
        if context.rank:  # the checkpoint holds rank 0's sampling stream; the others continue from a fresh seed
            trainer.sampling_generator.manual_seed(config.seed + context.rank + 7919 * start_step)
    result = TrainResult(run_id=config.run_name, run_directory=None, checkpoint_dir=Path(config.checkpoint_dir),
                         first_step=start_step + 1, last_step=start_step, num_steps=config.num_steps, interrupted=False,
                         last_checkpoint=resume_path, prometheus_port=None, config=config)
    if config.on_critical == "stop":  # --on-critical stop: a critical alert ends the run (rewardscope.trainer.stopping)
        callbacks = [*callbacks, CriticalStop(config.checkpoint_dir)]
    monitor = _make_monitor(config, trainer.functions, resume_after_step=start_step if resume_state else None,
                            is_main=context.is_main)
    result.run_directory = monitor.run_directory
    result.prometheus_port = monitor.prometheus_port
    with ExitStack() as stack:
        stack.callback(monitor.close)
        progress = stack.enter_context(_progress_bar(config, start_step, enabled=context.is_main))
        _loop(config, context, trainer, monitor, progress, result, callbacks, resumed=resume_state is not None)
        _report_end(monitor, result)
    return result


def _check_start(config: TrainConfig, context: ddp.DistributedContext, resume_state: dict[str, Any] | None) -> int:
    """The step the run starts after; ConfigError for a run that cannot start (before the model is loaded)."""
    if config.batch_size < context.world_size:
        raise ConfigError(f"--batch-size {config.batch_size} gives some of the {context.world_size} ranks no prompt; "
                          "use at least one prompt per rank")
    if config.on_critical == "stop" and context.world_size > 1:
        # Only rank 0 evaluates alerts; every rank would have to stop at the same step.
        raise ConfigError("--on-critical stop runs on one process for now; use --on-critical alert with several ranks")
    _set_threads(config.threads)
    _seed_everything(config.seed)
    start_step = int(resume_state["step"]) if resume_state else 0
    if start_step >= config.num_steps:
        raise ConfigError(f"the checkpoint is at step {start_step}; raise --num-steps above it to continue")
    store = Path(config.monitoring_dir) / config.run_name / "steps.jsonl"
    if resume_state is None and store.is_file() and store.stat().st_size > 0:
        raise ConfigError(f"run {config.run_name!r} already has steps in {store.parent}; use --resume or another --run-name")
    if context.is_main:  # only rank 0 serves /metrics
        check_metrics_port(config)
    return start_step


@dataclass
class _LoopState:
    """Where the loop is: what a checkpoint of the last completed step must hold, even when an
    interrupt lands in the middle of the next step (then ``updating`` says the weights moved)."""

    boundary: tuple[Any, Any]
    saved_step: int
    updating: bool = False


def _loop(config: TrainConfig, context: ddp.DistributedContext, trainer: GRPOTrainer, monitor: Any, progress: Any,
          result: TrainResult, callbacks: Sequence[Callable[[StepEvent], None]], resumed: bool) -> None:
    """Every step from result.last_step + 1 on; a stop or Ctrl-C saves the last whole step."""
    probes = trainer_probes(trainer, monitor.run_directory, result.last_step if resumed else None)
    state = _LoopState((trainer.sampler.state_dict(), checkpoints.rng_state(trainer.sampling_generator)), result.last_step)
    try:
        for step in range(result.last_step + 1, config.num_steps + 1):
            event, figures = _step(config, context, trainer, monitor, step, state)
            result.last_step = step
            state.boundary = (trainer.sampler.state_dict(), checkpoints.rng_state(trainer.sampling_generator))
            reward_mean = None if event.metrics is None else event.metrics.value("grpo_reward_mean")  # None on ranks != 0
            result.reward_mean.append(float("nan") if reward_mean is None else reward_mean)
            result.step_seconds.append(event.step_seconds)
            result.monitor_seconds.append(event.monitor_seconds)
            if probes is not None:  # greedy: leaves the sampling state (boundary) as it is
                probes.record_if_due(step, lambda _: trainer.rollout(trainer.eval_problems[: config.probe_count], 1, greedy=True)[1])
            if figures["eval_accuracy"] is not None:
                result.eval_accuracy[step] = figures["eval_accuracy"]
            if config.save_interval and (step % config.save_interval == 0 or step == config.num_steps):
                result.last_checkpoint = trainer.save(step, *state.boundary)
                state.saved_step = step
            progress.set_postfix(_postfix(reward_mean, figures["kl"], event.step_seconds), refresh=False)
            progress.update(1)
            for callback in callbacks:
                callback(event)
    except (StopTraining, KeyboardInterrupt) as stop:
        result.interrupted = True
        if not state.updating and result.last_step > state.saved_step:
            result.last_checkpoint = trainer.save(result.last_step, *state.boundary)
        if isinstance(stop, KeyboardInterrupt):
            log.warning("interrupted at step %d; resume with --resume %s", result.last_step, config.checkpoint_dir)


def _step(config: TrainConfig, context: ddp.DistributedContext, trainer: GRPOTrainer, monitor: Any, step: int,
          state: _LoopState) -> tuple[StepEvent, dict[str, Any]]:
    """One GRPO step, recorded: rollout, rewards, advantages, the update, evaluation when due, record_step."""
    state.updating = False
    started = time.perf_counter()
    # Every rank draws the same global batch and keeps its share: whole groups, in rank order.
    problems = context.local_prompts([trainer.train_problems[i] for i in trainer.sampler.next_indices(config.batch_size)])
    rollout, texts, prompts = trainer.rollout(problems, config.num_generations)
    rewards = trainer.score(problems, prompts, texts)
    total = trainer.total_reward(rewards)
    advantages = group_advantages(
        torch.as_tensor(total, dtype=torch.float32), config.num_generations, scale=config.scale_rewards
    ).to(trainer.device)
    state.updating = True
    figures: dict[str, Any] = dict(trainer.optimise(rollout, advantages))
    figures["eval_accuracy"] = None
    if config.eval_every and (step % config.eval_every == 0 or step == config.num_steps) and context.is_main:
        figures["eval_accuracy"] = trainer.evaluate()
    monitor_started = time.perf_counter()
    metrics = monitor.record_step(
        step, rewards, kl=figures["kl"], policy_entropy=figures["policy_entropy"], advantages=advantages.cpu().numpy(),
        completion_lengths=rollout.completion_lengths.cpu().numpy(), max_completion_length=config.max_generation_steps,
        clip_ratio=figures["clip_ratio"], grad_norm=figures["grad_norm"], loss=figures["loss"],
        learning_rate=figures["learning_rate"], eval_accuracy=figures["eval_accuracy"],
        tokens=int(rollout.prompt_mask.sum() + rollout.completion_mask.sum()), prompts=prompts, completions=texts)
    finished = time.perf_counter()
    state.updating = False
    event = StepEvent(step, config.num_steps, metrics, monitor, finished - started, finished - monitor_started, texts)
    return event, figures


def _report_end(monitor: Any, result: TrainResult) -> None:
    latest = monitor.latest
    if latest is not None:
        result.final_metrics = latest.as_dict()
    if monitor.alert_engine is not None:
        result.alerts_fired = dict(monitor.summary()["alerts_fired"])
        result.alerts_firing = alerts_still_firing(monitor)


def _postfix(reward: float | None, kl: float | None, seconds: float) -> dict[str, str]:
    return {
        "reward": "-" if reward is None else f"{reward:.3f}",
        "kl": "-" if kl is None else f"{kl:.4f}",
        "step_s": f"{seconds:.2f}",
    }


def _write_above_progress_bar(line: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(line)


def _progress_bar(config: TrainConfig, start_step: int, enabled: bool = True) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=config.num_steps,
        initial=start_step,
        desc=f"GRPO {config.run_name}",
        unit="step",
        disable=not (config.progress and enabled),
        dynamic_ncols=True,
    )
