"""Quality score: each dimension on histories whose answer is known by hand, scale and batch-size invariance."""

import math

import numpy as np
import pytest

from rewardscope import RewardFunctionSpec
from rewardscope.analysis.history import load_history
from rewardscope.analysis.quality import WEIGHTS, assess_quality, consistency, coverage, discriminability, stability

UNIT = [RewardFunctionSpec("a", 1.0, 0.0, 1.0)]


def history(batches, specs=UNIT, group_size=1):
    names = [s.name for s in specs]
    return load_history([{n: np.asarray(b, dtype=float) for n in names[:1]} | {n: np.zeros(len(b)) for n in names[1:]}
                         for b in batches], reward_functions=specs, group_size=group_size)


# Four steps, G = 2, N = 4, a in [0, 1]:
#   step 0: [0, 1, 0, 1]  mu .5   sigma^2 .25    groups std .5, .5   SNR^2 1
#   step 1: [0, 1, 1, 1]  mu .75  sigma^2 .1875  groups std .5, 0    SNR^2 .125/.1875 = 2/3
#   step 2: [1, 1, 1, 1]  mu 1    sigma^2 0      groups std 0, 0     SNR absent
#   step 3: [0, 0, 1, 1]  mu .5   sigma^2 .25    groups std 0, 0     SNR^2 0
HAND = [[0, 1, 0, 1], [0, 1, 1, 1], [1, 1, 1, 1], [0, 0, 1, 1]]


def test_consistency_by_hand():
    # v_t = sigma^2 (1 - SNR^2 (1 - 1/G)) G / N = sigma^2 (1 - SNR^2 / 2) / 2  ->  1/16, 1/16, 0, 1/8
    # terms (dmu^2 - v_t - v_t-1): 1/16 - 1/8, 1/16 - 1/16, 1/4 - 1/8  -> mean 1/48, J = 1/96
    # S = mean sigma^2 = 11/64; consistency = S / (S + J) = 33/35
    assert consistency(history(HAND, group_size=2)) == pytest.approx(33 / 35, rel=1e-12)


def test_an_erratic_mean_is_inconsistent():
    # mu alternates .5 and 3.5 with sigma .5 (G = 1, N = 2): v = 1/8, J = (9 - 1/4) / 2 = 35/8, S = 1/4.
    erratic = history([[0, 1], [3, 4]] * 5, specs=[RewardFunctionSpec("a")])
    assert consistency(erratic) == pytest.approx((1 / 4) / (1 / 4 + 35 / 8), rel=1e-12)
    steady = history([[0, 1]] * 10, specs=[RewardFunctionSpec("a")])
    assert consistency(steady) == 1.0


def test_discriminability_by_hand():
    # mean within-group std .5, .25, 0, 0 over half the declared range (.5)
    assert discriminability(history(HAND, group_size=2)) == pytest.approx(0.1875 / 0.5, rel=1e-12)
    # G = 1 uses the batch std: .5, sqrt(.1875), 0, .5
    assert discriminability(history(HAND)) == pytest.approx((1.0 + math.sqrt(0.1875)) / 4 / 0.5, rel=1e-12)


def test_groups_split_between_the_ends_are_fully_discriminating():
    assert discriminability(history([[0, 1, 1, 0]] * 3, group_size=2)) == 1.0


def test_discriminability_uses_the_observed_span_without_a_declared_range():
    # span over the history 0..4 -> half range 2; batch stds .5 and 1
    assert discriminability(history([[0, 1], [2, 4]], specs=[RewardFunctionSpec("a")])) == pytest.approx(0.75 / 2)


def test_stability_is_the_quietest_quarter_over_the_loudest():
    # sigma 1 for four steps, then .5: quarters' RMS std 1, 1, .5, .5
    assert stability(history([[0, 2]] * 4 + [[0, 1]] * 4, specs=[RewardFunctionSpec("a")])) == 0.5
    assert stability(history(HAND)) == 0.0  # step 2 has no spread at all
    assert stability(history([[0, 1]])) is None


def test_coverage_is_the_mean_entropy_ratio():
    def entropy(counts):
        n = sum(counts)
        h = -sum(c / n * math.log(c / n) for c in counts if c) + (sum(1 for c in counts if c) - 1) / (2 * n)
        return h / math.log(10)

    expected = (entropy([2, 2]) + entropy([1, 3]) + 0.0 + entropy([2, 2])) / 4
    assert coverage(history(HAND)) == pytest.approx(expected, rel=1e-12)


def test_the_score_weights_the_four_dimensions():
    report = assess_quality(history(HAND, group_size=2))
    dims = report.dimension_scores
    assert report.quality_score == pytest.approx(100 * sum(WEIGHTS[k] * dims[k] for k in WEIGHTS), rel=1e-12)
    assert dims["consistency"] == pytest.approx(33 / 35) and dims["stability"] == 0.0
    assert report.steps_analyzed == 4
    assert any(issue.startswith("Low stability (0.00)") for issue in report.issues)


def test_a_constant_reward_scores_low_on_discriminability():
    report = assess_quality(history([[2.0] * 8] * 6, specs=[RewardFunctionSpec("a", 1.0, 0.0, 3.0)], group_size=4))
    assert report.discriminability_score == 0.0
    assert report.stability_score == 0.0 and report.coverage_score == 0.0 and report.consistency_score == 1.0
    assert report.quality_score == 25.0
    assert any(issue.startswith("Low discriminability") for issue in report.issues)
    assert any("100% of prompt groups" in issue for issue in report.issues)
    assert any("'a' gave every completion" in issue for issue in report.issues)


def test_scores_are_scale_free():
    base = history(HAND, group_size=2)
    scaled = load_history([{"a": 10.0 * np.array(b) - 3.0} for b in HAND],
                          reward_functions=[RewardFunctionSpec("a", 1.0, -3.0, 7.0)], group_size=2)
    for name, value in assess_quality(base).dimension_scores.items():
        assert assess_quality(scaled).dimension_scores[name] == pytest.approx(value, rel=1e-9), name


def synthetic_run(batch_size: int, steps: int = 200, group_size: int = 8, seed: int = 0):
    """Healthy GRPO-like run: per-prompt difficulty, Bernoulli correctness and format, slowly improving."""
    rng = np.random.default_rng(seed)
    groups = batch_size // group_size
    batches = []
    for t in range(steps):
        p = np.clip(rng.beta(2, 2, size=groups) + 0.001 * t, 0, 1)
        correct = (rng.random((groups, group_size)) < p[:, None]).astype(float).ravel()
        formatted = 0.5 * (rng.random(batch_size) < 0.8)
        batches.append({"correct": correct, "format": formatted})
    specs = [RewardFunctionSpec("correct", 1.0, 0.0, 1.0), RewardFunctionSpec("format", 1.0, 0.0, 0.5)]
    return load_history(batches, reward_functions=specs, group_size=group_size)


def test_results_do_not_depend_on_batch_size_for_the_same_distribution():
    small, large = assess_quality(synthetic_run(64)), assess_quality(synthetic_run(1024))
    for name in WEIGHTS:
        assert small.dimension_scores[name] == pytest.approx(large.dimension_scores[name], abs=0.03), name
    assert small.quality_score == pytest.approx(large.quality_score, abs=1.5)
    assert large.quality_score > 60 and not any("consistency" in i or "discriminability" in i for i in large.issues)


def test_a_history_of_means_alone_is_a_clear_error():
    with pytest.raises(ValueError, match="spread of the rewards"):
        assess_quality(load_history([{"a": 1.0}, {"a": 2.0}]))


def test_missing_dimensions_are_named_and_the_rest_reweighted():
    report = assess_quality(history([[0, 1]]))  # one step: no consistency, no stability
    assert report.consistency_score is None and report.stability_score is None
    expected = 100 * (0.35 * report.discriminability_score + 0.15 * report.coverage_score) / 0.5
    assert report.quality_score == pytest.approx(expected, rel=1e-12)
    assert "Not enough data for consistency, stability; the score weights the other dimensions." in report.issues
