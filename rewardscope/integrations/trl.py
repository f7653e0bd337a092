"""Monitor TRL's GRPOTrainer with RewardMonitor.

TRL logs only batch means of each reward function (``rewards/<f>/mean``), while the
monitor needs every completion's reward with the group structure. So this adapter has
two parts that work together:

- ``RewardScopeCallback.wrap(reward_funcs)`` wraps each reward function (keeping its
  name, which TRL uses in its logs) so that every call also hands its per-sample scores
  and the completion lengths to the callback;
- the callback itself, a ``transformers.TrainerCallback``: at each of TRL's logging
  steps it records one monitor step from the captured per-sample rewards and TRL's logged
  values (kl, entropy, clip ratio, grad norm, loss, learning rate, tokens).

Advantages are recomputed from the captured rewards with TRL's formula (weighted sum,
group mean, divided by the group or batch std unless ``scale_rewards="none"``).

Usage::

    from rewardscope import RewardMonitor
    from rewardscope.integrations.trl import RewardScopeCallback, reward_specs

    monitor = RewardMonitor("trl-run", reward_specs(reward_funcs, args.reward_weights),
                            group_size=args.num_generations, prometheus_port=0)
    callback = RewardScopeCallback(monitor)
    trainer = GRPOTrainer(model, reward_funcs=callback.wrap(reward_funcs), args=args,
                          train_dataset=dataset, callbacks=[callback])
    trainer.train()
    monitor.close()

``RewardScopeCallback(monitor, on_critical="stop")`` acts on a verdict: when a critical alert
fires (the monitor needs ``alerts=True``), it asks the Trainer (``TrainerControl``) to save a
checkpoint and stop after the step, and records the alert and the last step before its onset
in the run directory's ``stopped.json`` (rewardscope.trainer.stopping). The default only alerts.

Set ``logging_steps=1`` for one monitor step per optimiser step: with a larger value
each monitor step holds every completion scored since the previous log. With
``num_iterations > 1`` TRL reuses one batch of completions for several optimiser steps;
only the steps that scored new completions are recorded. Rewards are
captured in the process that computes them: run single-process (with several
processes, groups can span processes and each process only sees its share).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Sequence

import numpy as np
from transformers import TrainerCallback

_TRL_SCALARS = {
    "kl": "kl",
    "policy_entropy": "entropy",
    "clip_ratio": "clip_ratio/region_mean",
    "grad_norm": "grad_norm",
    "loss": "loss",
    "learning_rate": "learning_rate",
}


def reward_specs(reward_funcs: Sequence[Callable[..., Any]], weights: Sequence[float] | None = None) -> list[Any]:
    """``RewardFunctionSpec`` for each function: its ``__name__``, the TRL weight, and the
    range declared by ``min_value`` / ``max_value`` attributes when present."""
    from rewardscope import RewardFunctionSpec

    weights = list(weights) if weights is not None else [1.0] * len(reward_funcs)
    return [
        RewardFunctionSpec(f.__name__, float(w), getattr(f, "min_value", None), getattr(f, "max_value", None))
        for f, w in zip(reward_funcs, weights)
    ]


class RewardScopeCallback(TrainerCallback):
    """Feeds TRL GRPOTrainer's per-sample rewards and logged values into a RewardMonitor."""

    def __init__(self, monitor: Any, close_on_train_end: bool = False, on_critical: str = "alert"):
        if on_critical not in ("alert", "stop"):
            raise ValueError(f"on_critical must be 'alert' or 'stop', got {on_critical!r}")
        self.monitor = monitor
        self.close_on_train_end = close_on_train_end
        self.on_critical = on_critical
        self.stop_record: Any = None  # rewardscope.trainer.stopping.StopRecord once a critical alert stopped the run
        self._names: list[str] = []
        self._rewards: dict[str, list[np.ndarray]] = {}
        self._lengths: list[np.ndarray] = []
        self._last_num_tokens: float | None = None
        self.recorded_steps: list[int] = []

    def wrap(self, reward_funcs: Sequence[Callable[..., Any]]) -> list[Callable[..., Any]]:
        """Wrapped reward functions to pass to GRPOTrainer instead of the originals."""
        self._names = [f.__name__ for f in reward_funcs]
        self._rewards = {name: [] for name in self._names}
        return [self._wrap_one(f, first=i == 0) for i, f in enumerate(reward_funcs)]

    def _wrap_one(self, fn: Callable[..., Any], first: bool) -> Callable[..., Any]:
        name = fn.__name__

        @functools.wraps(fn)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            scores = fn(*args, **kwargs)
            self._rewards[name].append(np.array([math.nan if s is None else float(s) for s in scores], dtype=np.float64))
            ids = kwargs.get("completion_ids")
            if first and ids is not None:
                self._lengths.append(np.array([len(i) for i in ids], dtype=np.float64))
            return scores

        return wrapped

    # ------------------------------------------------------------------ TrainerCallback
    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> Any:
        logs = logs or {}
        if not self._names or not self._rewards[self._names[0]] or "loss" not in logs:
            return None
        rewards = {name: np.concatenate(chunks) for name, chunks in self._rewards.items()}
        lengths = np.concatenate(self._lengths) if self._lengths else None
        for chunks in self._rewards.values():
            chunks.clear()
        self._lengths.clear()
        values = {arg: _finite(logs.get(key)) for arg, key in _TRL_SCALARS.items()}
        num_tokens = _finite(logs.get("num_tokens"))
        tokens = None
        if num_tokens is not None:
            tokens = int(num_tokens - (self._last_num_tokens or 0.0))
            self._last_num_tokens = num_tokens
        if lengths is not None and lengths.size != next(iter(rewards.values())).size:
            lengths = None
        self.monitor.record_step(
            int(state.global_step),
            rewards,
            advantages=trl_advantages(rewards, self._names, args),
            completion_lengths=lengths,
            max_completion_length=getattr(args, "max_completion_length", None),
            tokens=tokens,
            **values,
        )
        self.recorded_steps.append(int(state.global_step))
        if self.on_critical == "stop":
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

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # Rewards scored during evaluation are not training samples.
        for chunks in self._rewards.values():
            chunks.clear()
        self._lengths.clear()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.close_on_train_end:
            self.monitor.close()


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


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
