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

The completion texts TRL hands to the reward functions go with each step
(``record_step(prompts=, completions=)``), so an alert that fires keeps the completions
behind it (evidence.jsonl). ``RewardScopeCallback(monitor, probes=ProbeRecorder(...))``
also stores greedy answers to fixed probe prompts every K steps (probes.jsonl), and
``RewardMonitor(..., provenance=collect_provenance(args.to_dict()))`` records versions,
git commit and hardware in the manifest; ``rewardscope report`` shows all three.

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
    from ..metrics.functions import RewardFunctionSpec

    weights = list(weights) if weights is not None else [1.0] * len(reward_funcs)
    return [
        RewardFunctionSpec(f.__name__, float(w), getattr(f, "min_value", None), getattr(f, "max_value", None))
        for f, w in zip(reward_funcs, weights)
    ]


class RewardScopeCallback(TrainerCallback):
    """Feeds TRL GRPOTrainer's per-sample rewards and logged values into a RewardMonitor."""

    def __init__(self, monitor: Any, close_on_train_end: bool = False, probes: Any = None, probe_max_new_tokens: int = 64):
        self.monitor = monitor
        self.close_on_train_end = close_on_train_end
        self.probes = probes  # a rewardscope.trainer.probes.ProbeRecorder, or None
        self.probe_max_new_tokens = probe_max_new_tokens
        self._texts: list[tuple[list[str], list[str]]] = []  # (prompts, completions) of each scoring call
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
            if first:
                self._texts.append(([_as_text(p) for p in kwargs.get("prompts") or []],
                                    [_as_text(c) for c in kwargs.get("completions") or []]))
            return scores

        return wrapped

    # ------------------------------------------------------------------ TrainerCallback
    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        logs = logs or {}
        if not self._names or not self._rewards[self._names[0]] or "loss" not in logs:
            return
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
        prompts = [p for chunk, _ in self._texts for p in chunk]
        completions = [c for _, chunk in self._texts for c in chunk]
        self._texts.clear()
        self.monitor.record_step(
            int(state.global_step),
            rewards,
            advantages=trl_advantages(rewards, self._names, args),
            completion_lengths=lengths,
            max_completion_length=getattr(args, "max_completion_length", None),
            tokens=tokens,
            prompts=prompts or None,
            completions=completions or None,
            **values,
        )
        self.recorded_steps.append(int(state.global_step))

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # Rewards scored during evaluation are not training samples.
        for chunks in self._rewards.values():
            chunks.clear()
        self._lengths.clear()
        self._texts.clear()

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, processing_class: Any = None,
                    **kwargs: Any) -> None:
        if self.probes is not None and model is not None and processing_class is not None:
            from rewardscope.trainer.probes import hf_greedy_answers

            self.probes.record_if_due(int(state.global_step),
                                      lambda prompts: hf_greedy_answers(model, processing_class, prompts, self.probe_max_new_tokens))

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
