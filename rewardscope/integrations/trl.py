"""Monitor TRL's GRPOTrainer with RewardMonitor, on one process or many.

TRL logs only batch means of each reward function (``rewards/<f>/mean``), while the
monitor needs every completion's reward with the group structure. ``attach`` adds the
monitor to an existing GRPOTrainer in one call:

- it wraps the trainer's reward functions in place (``trainer.reward_funcs``) so that
  every call also hands its per-sample scores and the completion lengths to the callback:
  plain, async and ``functools.partial`` functions, callables without ``__name__``, and
  reward models (an ``nn.Module``, or a model id that TRL loaded into one: a forward hook
  reads its scores); each is named as TRL names it in its logs (``trainer.reward_func_names``);
- it registers a ``RewardScopeCallback``: at each of TRL's logging steps the callback records
  one monitor step from the captured rewards and TRL's logged values (kl, entropy, clip
  ratio, grad norm, loss, learning rate, tokens), and keeps what TRL logs that the monitor
  has no metric for (``trl_values``: frac_reward_zero_std, reward_std, completions/clipped_ratio,
  clip_ratio/low_*/high_*, step_time), cross-checking TRL's ``frac_reward_zero_std`` with
  the monitor's ``grpo_group_zero_std_ratio`` (a warning when they differ).

Several processes (``accelerate launch --num_processes N`` or torchrun): TRL calls each
reward function per process on that process's completions, a contiguous slice of the
global batch in process order, and one prompt's group may start on one process and end on
the next. Every process records its slice; the monitor gathers them to rank 0 in rank
order, which is TRL's global order, so groups are whole (rewardscope/distributed.py; the
gatherer is told that groups span ranks). This needs one generation batch per logged step:
``logging_steps=1`` (checked by ``attach``). TRL's logged scalars are already global: only
rank 0 passes them. Rank 0 serves /metrics and writes the run store.

Advantages are recomputed from the captured rewards with TRL's formula (weighted sum,
group mean, divided by the group or batch std unless ``scale_rewards="none"``).

Usage::

    from trl import GRPOTrainer
    from rewardscope.integrations.trl import attach

    trainer = GRPOTrainer(model, reward_funcs=[correct, formatted], args=args, train_dataset=dataset)
    attach(trainer, run_id="trl-run", prometheus_port=0)   # RewardMonitor arguments; closed when training ends
    trainer.train()

``RewardScopeCallback(monitor, on_critical="stop")`` acts on a verdict: when a critical alert
fires (the monitor needs ``alerts=True``), it asks the Trainer (``TrainerControl``) to save a
checkpoint and stop after the step, and records the alert and the last step before its onset
in the run directory's ``stopped.json`` (rewardscope.trainer.stopping). The default only alerts.
Single process only: with several processes every rank would have to take the same decision.

The completion texts TRL hands to the reward functions go with each step
(``record_step(prompts=, completions=)``; one process only), so an alert that fires keeps the
completions behind it (evidence.jsonl). ``RewardScopeCallback(monitor, probes=ProbeRecorder(...))``
also stores greedy answers to fixed probe prompts every K steps (probes.jsonl), and
``RewardMonitor(..., provenance=collect_provenance(args.to_dict()))`` records versions,
git commit and hardware in the manifest; ``rewardscope report`` shows all three.

Set ``logging_steps=1`` for one monitor step per optimiser step: with a larger value (one
process only) each monitor step holds every completion scored since the previous log. With
``num_iterations > 1`` TRL reuses one batch of completions for several optimiser steps;
only the steps that scored new completions are recorded.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from transformers import TrainerCallback

log = logging.getLogger("rewardscope")

_TRL_SCALARS = {
    "kl": "kl",
    "policy_entropy": "entropy",
    "clip_ratio": "clip_ratio/region_mean",
    "grad_norm": "grad_norm",
    "loss": "loss",
    "learning_rate": "learning_rate",
}
# What TRL logs that the monitor has no input for: kept on the callback (``trl_values``).
TRL_EXTRA_KEYS = ("frac_reward_zero_std", "reward_std", "completions/clipped_ratio", "clip_ratio/low_mean", "clip_ratio/low_min",
                  "clip_ratio/high_mean", "clip_ratio/high_max", "step_time")


def trl_name(fn: Any) -> str:
    """The name TRL gives a reward function in its logs: a reward model's config name, else the
    callable's ``__name__`` (a partial unwrapped), else its class name."""
    config = getattr(fn, "config", None)
    if config is not None and hasattr(fn, "forward"):
        return str(getattr(config, "_name_or_path", "") or type(fn).__name__).split("/")[-1]
    while isinstance(fn, functools.partial):
        fn = fn.func
    return getattr(fn, "__name__", type(fn).__name__)


def reward_specs(reward_funcs: Sequence[Any], weights: Sequence[float] | None = None,
                 names: Sequence[str] | None = None) -> list[Any]:
    """``RewardFunctionSpec`` for each function: its TRL name, the TRL weight, and the
    range declared by ``min_value`` / ``max_value`` attributes when present."""
    from ..metrics.functions import RewardFunctionSpec

    weights = list(weights) if weights is not None else [1.0] * len(reward_funcs)
    names = list(names) if names is not None else [trl_name(f) for f in reward_funcs]
    return [
        RewardFunctionSpec(name, float(w), getattr(f, "min_value", None), getattr(f, "max_value", None))
        for f, w, name in zip(reward_funcs, weights, names)
    ]


def _is_async(fn: Any) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    # A callable instance carries its async on the class's __call__.
    return inspect.iscoroutinefunction(fn) or (callable(fn) and inspect.iscoroutinefunction(type(fn).__call__))


class RewardScopeCallback(TrainerCallback):
    """Feeds TRL GRPOTrainer's per-sample rewards and logged values into a RewardMonitor."""

    def __init__(self, monitor: Any, close_on_train_end: bool = False, probes: Any = None, probe_max_new_tokens: int = 64,
                 on_critical: str = "alert"):
        if on_critical not in ("alert", "stop"):
            raise ValueError(f"on_critical must be 'alert' or 'stop', got {on_critical!r}")
        self.monitor = monitor
        self.close_on_train_end = close_on_train_end
        self.on_critical = on_critical
        self.stop_record: Any = None  # rewardscope.trainer.stopping.StopRecord once a critical alert stopped the run
        self.probes = probes  # a rewardscope.trainer.probes.ProbeRecorder, or None
        self.probe_max_new_tokens = probe_max_new_tokens
        self._texts: list[tuple[list[str], list[str]]] = []  # (prompts, completions) of each scoring call
        self._names: list[str] = []
        self._rewards: dict[str, list[np.ndarray]] = {}
        self._lengths: list[np.ndarray] = []
        self._last_num_tokens: float | None = None
        self._warned: set[str] = set()
        self.recorded_steps: list[int] = []
        self.trl_values: dict[str, float] = {}  # the latest values of TRL_EXTRA_KEYS that TRL logged
        self.zero_std_mismatches = 0  # logged steps where TRL's frac_reward_zero_std differs from ours

    # ------------------------------------------------------------------ wrapping
    def wrap(self, reward_funcs: Sequence[Any], names: Sequence[str] | None = None) -> list[Any]:
        """Wrapped reward functions to pass to GRPOTrainer instead of the originals (``attach`` does this in place)."""
        self._names = list(names) if names is not None else [trl_name(f) for f in reward_funcs]
        self._rewards = {name: [] for name in self._names}
        first_callable = next((i for i, f in enumerate(reward_funcs) if not hasattr(f, "register_forward_hook")), None)
        return [self._wrap_one(f, name, lengths=i == first_callable) for i, (f, name) in enumerate(zip(reward_funcs, self._names))]

    def _capture(self, name: str, scores: Any, kwargs: dict[str, Any], first: bool) -> None:
        """Keep one call's scores; the first callable also keeps the completion lengths and texts."""
        self._rewards[name].append(np.array([math.nan if s is None else float(s) for s in scores], dtype=np.float64))
        if not first:
            return
        ids = kwargs.get("completion_ids")
        if ids is not None:
            self._lengths.append(np.array([len(i) for i in ids], dtype=np.float64))
        self._texts.append(([_as_text(p) for p in kwargs.get("prompts") or []],
                            [_as_text(c) for c in kwargs.get("completions") or []]))

    def _wrap_one(self, fn: Any, name: str, lengths: bool) -> Any:
        if hasattr(fn, "register_forward_hook"):  # a reward model: TRL reads logits[:, 0] of its forward
            def hook(module: Any, args: Any, output: Any) -> None:
                self._capture(name, output.logits[:, 0].detach().float().cpu().tolist(), {}, False)

            fn.register_forward_hook(hook)
            return fn
        if _is_async(fn):
            async def wrapped_async(*args: Any, **kwargs: Any) -> Any:
                scores = await fn(*args, **kwargs)
                self._capture(name, scores, kwargs, lengths)
                return scores

            wrapper: Callable[..., Any] = wrapped_async
        else:
            def wrapped(*args: Any, **kwargs: Any) -> Any:
                scores = fn(*args, **kwargs)
                self._capture(name, scores, kwargs, lengths)
                return scores

            wrapper = wrapped
        # Keep the function's name (TRL names functions by it), also for partials and callables without one.
        functools.update_wrapper(wrapper, fn)
        wrapper.__name__ = name
        return wrapper

    # ------------------------------------------------------------------ TrainerCallback
    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.error("rewardscope: %s", message)
            warnings.warn(f"rewardscope: {message}", RuntimeWarning, stacklevel=3)

    def _take_captured(self) -> tuple[dict[str, np.ndarray], np.ndarray | None, list[str], list[str], int]:
        """The rewards, lengths and texts captured since the last log (then cleared), and the number of scoring calls."""
        chunks = len(self._rewards[self._names[0]])
        rewards = {name: np.concatenate(parts) if parts else np.empty(0) for name, parts in self._rewards.items()}
        lengths = np.concatenate(self._lengths) if self._lengths else None
        prompts = [p for chunk, _ in self._texts for p in chunk]
        completions = [c for _, chunk in self._texts for c in chunk]
        self._clear()
        return rewards, lengths, prompts, completions, chunks

    def _clear(self) -> None:
        for parts in self._rewards.values():
            parts.clear()
        self._lengths.clear()
        self._texts.clear()

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> Any:
        logs = logs or {}
        if "loss" not in logs:
            return None
        if not self._names:
            self._warn_once("unwrapped", "RewardScopeCallback has no wrapped reward functions, so nothing is recorded: "
                            "use rewardscope.integrations.trl.attach(trainer) (or pass callback.wrap(reward_funcs) to GRPOTrainer)")
            return None
        self.trl_values.update({k: float(logs[k]) for k in TRL_EXTRA_KEYS if _finite(logs.get(k)) is not None})
        gatherer = getattr(self.monitor, "gatherer", None)
        if gatherer is None and not self._rewards[self._names[0]]:
            return None  # no new completions since the last log (num_iterations > 1)
        rewards, lengths, prompts, completions, chunks = self._take_captured()
        if gatherer is not None and chunks > 1:
            # Rank-major concatenation of several generation batches is not TRL's global order.
            self._warn_once("chunks", f"{chunks} generation batches between two logs on several processes; "
                            "set logging_steps=1 (those completions are not recorded)")
            rewards = {name: np.empty(0) for name in rewards}
            lengths = None
        n = next(iter(rewards.values())).size
        if lengths is not None and lengths.size != n:
            lengths = None
        if gatherer is not None or len(prompts) != n or len(completions) != n:
            prompts = completions = []  # texts are not gathered across processes
        # On several processes TRL's logged values are already global: rank 0 alone passes them.
        writer = gatherer is None or gatherer.is_writer
        values = {arg: _finite(logs.get(key)) if writer else None for arg, key in _TRL_SCALARS.items()}
        tokens = None
        num_tokens = _finite(logs.get("num_tokens"))
        if num_tokens is not None and writer:
            tokens = int(num_tokens - (self._last_num_tokens or 0.0))
            self._last_num_tokens = num_tokens
        metrics = self.monitor.record_step(
            int(state.global_step), rewards,
            advantages=trl_advantages(rewards, self._names, args) if gatherer is None else None,
            completion_lengths=lengths,
            max_completion_length=getattr(args, "max_completion_length", None),
            tokens=tokens,
            prompts=prompts or None,
            completions=completions or None,
            **values,
        )
        if metrics is not None or not writer:
            self.recorded_steps.append(int(state.global_step))
        if metrics is not None:
            self._cross_check(metrics, logs, args)
        if self.on_critical == "stop" and gatherer is None:
            return self._stop_on_critical(args, state, control)
        return None

    def _stop_on_critical(self, args: Any, state: Any, control: Any) -> Any:
        """On a critical alert: save a checkpoint, stop after this step, record why in the run store."""
        from rewardscope.trainer.stopping import critical_firing, stop_record, write_stop_record

        event = critical_firing(self.monitor)
        if event is None or self.stop_record is not None:
            return None
        self.stop_record = stop_record(event, self.monitor)
        checkpoint = f"{args.output_dir}/checkpoint-{state.global_step}"  # where the Trainer saves on should_save
        write_stop_record(self.monitor.run_directory, self.stop_record, checkpoint)
        control.should_save = True
        control.should_training_stop = True
        return control

    def _cross_check(self, metrics: Any, logs: dict[str, float], args: Any) -> None:
        """TRL's frac_reward_zero_std against ours: equal in TRL's group (default) and "none" scaling."""
        theirs = _finite(logs.get("frac_reward_zero_std"))
        ours = metrics.value("grpo_group_zero_std_ratio")
        same_definition = getattr(args, "scale_rewards", "group") in (True, "group", "none", False) and \
            getattr(args, "multi_objective_aggregation", "sum_then_normalize") == "sum_then_normalize"
        if theirs is None or ours is None or not same_definition or abs(theirs - ours) <= 1e-6:
            return
        self.zero_std_mismatches += 1
        self._warn_once("zero_std", f"TRL's frac_reward_zero_std {theirs:.4g} differs from grpo_group_zero_std_ratio {ours:.4g} "
                        f"at step {metrics.step}: are the groups whole and in TRL's order?")

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # Rewards scored during evaluation are not training samples.
        self._clear()

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, processing_class: Any = None,
                    **kwargs: Any) -> None:
        if self.probes is not None and model is not None and processing_class is not None:
            from rewardscope.trainer.probes import hf_greedy_answers

            self.probes.record_if_due(int(state.global_step),
                                      lambda prompts: hf_greedy_answers(model, processing_class, prompts, self.probe_max_new_tokens))

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.close_on_train_end:
            self.monitor.close()


def attach(trainer: Any, monitor: Any = None, *, run_id: str | None = None, **monitor_kwargs: Any) -> RewardScopeCallback:
    """Add rewardscope to an existing TRL GRPOTrainer: wrap its reward functions in place and register the callback.

    Without ``monitor``, a RewardMonitor is built from the trainer (its reward function names and
    weights, ``num_generations``, ``max_completion_length``) with ``monitor_kwargs``, and closed
    when training ends. Returns the callback (``callback.monitor`` is the monitor).
    """
    from ..monitor import RewardMonitor

    args = trainer.args
    names = list(trainer.reward_func_names)
    weights = trainer.reward_weights.tolist() if getattr(trainer, "reward_weights", None) is not None else None
    world = int(getattr(getattr(trainer, "accelerator", None), "num_processes", 1) or 1)
    if world > 1 and int(getattr(args, "logging_steps", 1) or 1) != 1:
        raise ValueError(f"rewardscope on {world} processes records one generation batch per logged step: "
                         f"set logging_steps=1 (it is {args.logging_steps})")
    if monitor is None:
        monitor_kwargs.setdefault("group_size", int(args.num_generations))
        monitor_kwargs.setdefault("max_completion_length", getattr(args, "max_completion_length", None))
        monitor_kwargs.setdefault("run_info", {"trainer": "trl"})
        monitor = RewardMonitor(run_id or str(getattr(args, "run_name", None) or "trl-run").replace("/", "-"),
                                reward_specs(trainer.reward_funcs, weights, names), **monitor_kwargs)
        callback = RewardScopeCallback(monitor, close_on_train_end=True)
    else:
        callback = RewardScopeCallback(monitor)
    if getattr(monitor, "gatherer", None) is not None:
        monitor.gatherer.groups_span_ranks = True  # TRL's slices are contiguous in its global order
    trainer.reward_funcs[:] = callback.wrap(trainer.reward_funcs, names)
    trainer.add_callback(callback)
    return callback


def trl_advantages(rewards: dict[str, np.ndarray], names: Sequence[str], args: Any) -> np.ndarray | None:
    """TRL's advantages ("sum_then_normalize") recomputed from the per-function rewards;
    None for aggregations this does not reproduce."""
    if getattr(args, "multi_objective_aggregation", "sum_then_normalize") != "sum_then_normalize":
        return None
    g = int(getattr(args, "num_generations", 0) or 0)
    matrix = np.stack([rewards[n] for n in names])
    if g < 2 or matrix.shape[1] % g:
        return None
    weights = np.asarray(getattr(args, "reward_weights", None) or [1.0] * len(names), dtype=np.float64)
    total = np.nansum(matrix * weights[:, None], axis=0)
    grouped = total.reshape(-1, g)
    centred = (grouped - grouped.mean(axis=1, keepdims=True)).reshape(-1)
    scale = getattr(args, "scale_rewards", "group")
    if scale in (True, "group"):
        centred = centred / (np.repeat(grouped.std(axis=1, ddof=1), g) + 1e-4)
    elif scale == "batch":
        centred = centred / (total.std(ddof=1) + 1e-4)
    return centred


def _as_text(item: Any) -> str:
    """A prompt or completion as text: conversational ones (lists of messages) give their last message's content."""
    if isinstance(item, list) and item and isinstance(item[-1], dict):
        return str(item[-1].get("content", ""))
    return str(item)


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
