"""Pure statistics of the training-dynamics inputs a trainer passes with a step.

Scalars (KL, policy entropy, clip ratio, grad norm, loss, learning rate, eval
accuracy) are taken as they are; arrays (advantages, completion lengths) are
reduced here. A value that is None is simply absent from the step. A scalar that
is not finite is dropped from the step and reported back so the monitor can count
and log it: it never reaches a statistic.

Usage::

    from rewardscope.metrics.training import compute_training_statistics
    values, rejected = compute_training_statistics(kl=0.02, completion_lengths=[10, 32], max_completion_length=32)
    values["grpo_completion_truncated_ratio"]   # 0.5
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .step import StepInputError

SCALAR_INPUTS: dict[str, str] = {
    "kl": "grpo_kl",
    "policy_entropy": "grpo_policy_entropy",
    "clip_ratio": "grpo_clip_ratio",
    "grad_norm": "grpo_grad_norm",
    "loss": "grpo_loss",
    "learning_rate": "grpo_learning_rate",
    "eval_accuracy": "grpo_eval_accuracy_ratio",
}


def _as_float(name: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise StepInputError("not_numeric", f"{name} must be a number, got {type(value).__name__}: {value!r}") from None


def _as_array(name: str, value: Any, n_samples: int | None) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise StepInputError("not_numeric", f"{name} must be an array of numbers") from None
    if n_samples is not None and array.size != n_samples:
        raise StepInputError("length_mismatch", f"{name} has {array.size} values but the batch has {n_samples} completions")
    return array


def compute_training_statistics(*, n_samples: int | None = None, advantages: Any = None, completion_lengths: Any = None,
                                max_completion_length: int | None = None, **scalars: Any
                                ) -> tuple[dict[str, float], dict[str, np.ndarray | None], list[str]]:
    """Return (values by catalogue name, arrays kept for histograms, names of rejected non-finite inputs)."""
    values: dict[str, float] = {}
    rejected: list[str] = []
    for argument, value in scalars.items():
        if argument not in SCALAR_INPUTS:
            raise TypeError(f"unknown training input {argument!r}; known: {sorted(SCALAR_INPUTS)}")
        if value is None:
            continue
        number = _as_float(argument, value)
        if math.isfinite(number):
            values[SCALAR_INPUTS[argument]] = number
        else:
            rejected.append(argument)

    arrays: dict[str, np.ndarray | None] = {"completion_lengths": None}
    if advantages is not None:
        adv = _as_array("advantages", advantages, n_samples)
        finite = adv[np.isfinite(adv)]
        if finite.size < adv.size:
            rejected.append("advantages")
        if finite.size:
            values["grpo_advantage_mean"] = float(finite.mean())
            values["grpo_advantage_std"] = float(finite.std())
    if completion_lengths is not None:
        lengths = _as_array("completion_lengths", completion_lengths, n_samples)
        finite = lengths[np.isfinite(lengths) & (lengths >= 0)]
        if finite.size < lengths.size:
            rejected.append("completion_lengths")
        if finite.size:
            values["grpo_completion_length_mean_tokens"] = float(finite.mean())
            arrays["completion_lengths"] = finite
            if max_completion_length is not None:
                values["grpo_completion_truncated_ratio"] = float((finite >= max_completion_length).mean())
    return values, arrays, rejected
