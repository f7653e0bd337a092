"""Function importance: how much each reward function weighs in, and whether it moves the combined reward.

For each reward function of a history:

- ``contribution``: its share, in percent, of the absolute weighted reward mass
  (grpo_reward_fn_contribution_ratio), averaged over steps. Shares sum to 100 over
  the functions and stay meaningful for negative and zero totals.
- ``correlation``: Pearson correlation over steps between the function's batch mean
  and the combined reward's batch mean (None below 3 steps or without movement).
  A weight-0 ("gold") function correlating negatively with the combined reward is a
  sign of reward hacking.
- ``variance_share``: its share, in percent, of the within-batch variance of the
  weighted functions, ``w_f^2 sigma_f^2 / sum_g w_g^2 sigma_g^2``, averaged over
  steps with any spread (covariances between functions are left out). Which
  function separates the completions of a batch. None for a history of means.
- ``mean_reward``: its batch mean averaged over steps; ``weight``: its weight.

Usage::

    import numpy as np
    from rewardscope.analysis.history import load_history
    from rewardscope.analysis.importance import function_importance
    history = load_history([{"a": np.array([0.0, 2.0]), "b": np.array([1.0, 1.0])}])
    function_importance(history)["a"]["contribution"]      # 50.0
    function_importance(history)["a"]["variance_share"]    # 100.0
"""

from __future__ import annotations

import numpy as np

from .history import StepHistory
from .trends import pearson


def _mean_or_none(values: np.ndarray) -> float | None:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else None


def function_importance(history: StepHistory) -> dict[str, dict[str, float | None]]:
    """Importance figures of every reward function: see the module docstring."""
    names = history.function_names
    weights = np.array([spec.weight for spec in history.functions])
    combined = history.column("grpo_reward_mean")
    weighted_var = np.stack([(w * history.column("grpo_reward_fn_std", fn)) ** 2 for w, fn in zip(weights, names)])
    total_var = weighted_var.sum(axis=0)  # NaN for steps missing a function's std
    with np.errstate(invalid="ignore", divide="ignore"):
        var_share = np.where(total_var > 0, weighted_var / total_var, np.nan)
    result: dict[str, dict[str, float | None]] = {}
    for row, (fn, weight) in enumerate(zip(names, weights)):
        contribution = _mean_or_none(history.column("grpo_reward_fn_contribution_ratio", fn))
        share = _mean_or_none(var_share[row])
        result[fn] = {
            "contribution": None if contribution is None else 100.0 * contribution,
            "correlation": pearson(history.column("grpo_reward_fn_mean", fn), combined),
            "variance_share": None if share is None else 100.0 * share,
            "mean_reward": _mean_or_none(history.column("grpo_reward_fn_mean", fn)),
            "weight": float(weight),
        }
    return result
