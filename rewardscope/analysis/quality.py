"""Reward quality score: four dimensions of a run's reward signal, weighted into 0..100.

The dimensions and weights are those of the system we replace (consistency 25%,
discriminability 35%, stability 25%, coverage 15%); each is now defined from the
per-step statistics of the combined reward so that it is scale-free (the same for
rewards multiplied by any positive constant or shifted by any offset) and
comparable across batch sizes (an estimate of a property of the reward
distribution, not of the batch). Each dimension is a number in 0..1, or None when
the history lacks what it needs; the score is 100 times the weighted mean of the
dimensions that are present.

Notation, per step t: mu_t the batch mean of the combined reward, sigma_t its
population standard deviation, N_t the completions with a finite combined reward,
G_t the group size, s_t the GRPO signal-to-noise (grpo_reward_signal_to_noise,
within-group share of the standard deviation).

- **consistency**: does the reward level move smoothly, or jump between steps more
  than sampling explains? ``S / (S + J)`` with ``S = mean_t sigma_t^2`` and the excess
  jitter ``J = max(0, 1/2 mean_t[(mu_t - mu_{t-1})^2 - v_t - v_{t-1}])``, where
  ``v_t = sigma_t^2 (1 - s_t^2 (1 - 1/G_t)) G_t / N_t`` is the sampling variance of a
  batch mean of N_t completions drawn as N_t/G_t prompts with G_t completions each.
  1 = the batch mean moves no more than sampling noise plus a smooth trend; 0.5 =
  its unexplained step-to-step movement is as large as the within-batch spread.
  Subtracting v makes it independent of the batch size; when N is unknown nothing
  is subtracted.
- **discriminability**: how far apart the rewards of completions of the same prompt
  are. Mean over steps of the mean within-group standard deviation
  (grpo_group_reward_std_mean; with G = 1 the batch standard deviation) divided by
  half the combined reward range, the largest standard deviation any distribution on
  that range can have. The range is the declared one, else the span observed over
  the history. 1 = every group splits evenly between the range's ends, 0 = every
  completion of a prompt gets the same reward (no GRPO learning signal).
- **stability**: does the spread of the reward stay where it was? The steps are cut
  into four consecutive quarters (fewer with fewer than four steps); with
  ``R_k = sqrt(mean of sigma_t^2 over quarter k)``, stability is ``min R_k / max R_k``.
  1 = the same spread throughout, 0.5 = one quarter has half the spread of another,
  0 = the spread collapsed to nothing in some quarter, or the reward never varies.
- **coverage**: how evenly the rewards of a step spread over the combined reward
  range: the mean over steps of grpo_reward_entropy_ratio (normalised, bias-corrected
  entropy over 10 bins of the declared range, or of the batch's own span when no
  range is declared). 0 = one value, 1 = spread evenly over the range.

Usage::

    import numpy as np
    from rewardscope.analysis.history import load_history
    from rewardscope.analysis.quality import assess_quality
    history = load_history([{"a": np.array([0.0, 1.0, 0.0, 1.0])}] * 8, group_size=2)
    report = assess_quality(history)
    report.discriminability_score, report.stability_score   # 1.0 1.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..metrics.functions import combined_range
from .history import StepHistory

WEIGHTS: dict[str, float] = {"consistency": 0.25, "discriminability": 0.35, "stability": 0.25, "coverage": 0.15}
STABILITY_BLOCKS = 4
WEAK = 0.5  # a dimension below this is reported as an issue
ZERO_SPREAD_GROUPS_ISSUE = 0.5  # share of prompt groups with no spread reported as an issue

_RECOMMENDATIONS = {
    "consistency": "The batch-mean reward jumps between steps more than sampling explains: look for non-deterministic "
                   "or stateful reward functions, data-order effects, or a learning rate that is too high.",
    "discriminability": "Completions of the same prompt get nearly the same reward: give partial credit, raise the group "
                        "size G or the sampling temperature, or use prompts of a difficulty the policy sometimes solves.",
    "stability": "The spread of the reward changed a lot over the run (collapse or blow-up): check policy entropy and KL, "
                 "and consider a lower learning rate or a stronger KL penalty.",
    "coverage": "The rewards use little of their range: check the declared range and whether the partial-credit levels are "
                "ever reached.",
}


@dataclass(frozen=True)
class QualityReport:
    """Quality score (0..100), the four dimension scores (0..1, None when not computable), issues, recommendations."""

    quality_score: float
    consistency_score: float | None
    discriminability_score: float | None
    stability_score: float | None
    coverage_score: float | None
    issues: list[str] = field(default_factory=list)
    recommendations: list[str] = field(default_factory=list)
    steps_analyzed: int = 0

    @property
    def dimension_scores(self) -> dict[str, float | None]:
        return {name: getattr(self, f"{name}_score") for name in WEIGHTS}

    def to_dict(self) -> dict:
        return {"quality_score": self.quality_score, **{f"{k}_score": v for k, v in self.dimension_scores.items()},
                "issues": list(self.issues), "recommendations": list(self.recommendations),
                "steps_analyzed": self.steps_analyzed}


def _mean_and_spread(history: StepHistory) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of steps with both mean and std, and those columns."""
    mu = history.column("grpo_reward_mean")
    sigma = history.column("grpo_reward_std")
    present = np.flatnonzero(~(np.isnan(mu) | np.isnan(sigma)))
    return present, mu[present], sigma[present]


def _group_sizes(history: StepHistory) -> np.ndarray:
    g = history.column("grpo_group_size")
    return np.where(np.isnan(g), 1.0, g)


def consistency(history: StepHistory) -> float | None:
    """S / (S + J): see the module docstring. None below two steps with a mean and a spread."""
    present, mu, sigma = _mean_and_spread(history)
    if present.size < 2:
        return None
    g = _group_sizes(history)[present]
    snr = history.column("grpo_reward_signal_to_noise")[present]
    n = history.samples[present]
    # Without a defined SNR (G = 1, or no spread) the batch is treated as independent completions.
    share = np.where(np.isnan(snr), 1.0, snr) ** 2
    v = sigma ** 2 * (1.0 - share * (1.0 - 1.0 / g)) * g / n
    v = np.where(np.isnan(v), 0.0, v)  # unknown N: subtract nothing
    jitter = max(0.0, 0.5 * float(np.mean(np.diff(mu) ** 2 - v[1:] - v[:-1])))
    spread = float(np.mean(sigma ** 2))
    if spread + jitter == 0.0:
        return 1.0
    return spread / (spread + jitter)


def _half_range(history: StepHistory) -> float | None:
    declared = combined_range(history.functions)
    if declared is not None:
        return (declared[1] - declared[0]) / 2.0
    high, low = history.column("grpo_reward_max"), history.column("grpo_reward_min")
    if np.isnan(high).all() or np.isnan(low).all():
        return None
    return (float(np.nanmax(high)) - float(np.nanmin(low))) / 2.0


def discriminability(history: StepHistory) -> float | None:
    """Mean within-group std over half the combined range: see the module docstring."""
    half = _half_range(history)
    spread = np.where(_group_sizes(history) > 1, history.column("grpo_group_reward_std_mean"), history.column("grpo_reward_std"))
    spread = spread[~np.isnan(spread)]
    if half is None or spread.size == 0:
        return None
    if half == 0.0:
        return 0.0
    return min(1.0, float(np.mean(spread)) / half)


def stability(history: StepHistory) -> float | None:
    """min / max of the quarters' RMS standard deviation: see the module docstring."""
    sigma = history.column("grpo_reward_std")
    sigma = sigma[~np.isnan(sigma)]
    if sigma.size < 2:
        return None
    rms = np.array([math.sqrt(float(np.mean(block ** 2))) for block in np.array_split(sigma, min(STABILITY_BLOCKS, sigma.size))])
    if rms.max() == 0.0:
        return 0.0
    return float(rms.min() / rms.max())


def coverage(history: StepHistory) -> float | None:
    """Mean normalised entropy of the combined reward over steps: see the module docstring."""
    entropy = history.column("grpo_reward_entropy_ratio")
    return None if np.isnan(entropy).all() else float(np.nanmean(entropy))


def _issues(history: StepHistory, scores: dict[str, float | None]) -> tuple[list[str], list[str]]:
    issues: list[str] = []
    recommendations: list[str] = []
    descriptions = {
        "consistency": "the batch-mean reward jumps between steps more than sampling noise explains",
        "discriminability": "completions of the same prompt get nearly the same reward",
        "stability": "the spread of the reward changed strongly over the run",
        "coverage": "rewards occupy little of their range",
    }
    for name, score in scores.items():
        if score is not None and score < WEAK:
            issues.append(f"Low {name} ({score:.2f}): {descriptions[name]}.")
            recommendations.append(_RECOMMENDATIONS[name])
    zero = history.column("grpo_group_zero_std_ratio")[_group_sizes(history) > 1]
    if zero.size and not np.isnan(zero).all() and float(np.nanmean(zero)) > ZERO_SPREAD_GROUPS_ISSUE:
        issues.append(f"On average {100 * float(np.nanmean(zero)):.0f}% of prompt groups had all completions rewarded "
                      "equally: those groups give GRPO no learning signal.")
        if _RECOMMENDATIONS["discriminability"] not in recommendations:
            recommendations.append(_RECOMMENDATIONS["discriminability"])
    for fn in history.function_names:
        std = history.column("grpo_reward_fn_std", fn)
        if not np.isnan(std).all() and float(np.nanmax(std)) == 0.0:
            issues.append(f"Reward function {fn!r} gave every completion of a step the same reward in every step: "
                          "it separates no completions.")
            recommendations.append(f"Check that {fn!r} can tell good completions from bad ones, or give it weight 0 "
                                   "and watch it as a monitor-only reward.")
    nonfinite = history.column("grpo_reward_nonfinite_samples")
    if not np.isnan(nonfinite).all() and float(np.nansum(nonfinite)) > 0:
        issues.append(f"{int(np.nansum(nonfinite))} completions had a non-finite (NaN or infinite) reward and were left "
                      "out of every statistic.")
        recommendations.append("Make the reward functions return finite numbers for every completion.")
    return issues, recommendations


def assess_quality(history: StepHistory) -> QualityReport:
    """Score a run's reward signal; ValueError when no dimension can be computed (a history of means only)."""
    scores = {"consistency": consistency(history), "discriminability": discriminability(history),
              "stability": stability(history), "coverage": coverage(history)}
    present = {k: v for k, v in scores.items() if v is not None}
    if not present:
        raise ValueError("the quality score needs the spread of the rewards in each step: pass per-sample reward arrays "
                         "or run-store steps, not per-step means only")
    score = 100.0 * sum(WEIGHTS[k] * v for k, v in present.items()) / sum(WEIGHTS[k] for k in present)
    issues, recommendations = _issues(history, scores)
    missing = sorted(set(scores) - set(present))
    if missing:
        issues.append(f"Not enough data for {', '.join(missing)}; the score weights the other dimensions.")
    return QualityReport(score, scores["consistency"], scores["discriminability"], scores["stability"], scores["coverage"],
                         issues, recommendations, len(history))
