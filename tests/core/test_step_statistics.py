"""Exact per-step statistics against values computed by hand."""

import math

import numpy as np
import pytest

from rewardscope.metrics.functions import RewardFunctionSpec
from rewardscope.metrics.step import StepInputError, compute_reward_statistics

SPECS = (RewardFunctionSpec("a", 1.0, 0.0, 1.0), RewardFunctionSpec("b", 0.5, -2.0, 2.0))
# combined = a + 0.5 b = [2, 1, 1, 0]; groups of 2: [2, 1] and [1, 0]
A = [1.0, 0.0, 1.0, 1.0]
B = [2.0, 2.0, 0.0, -2.0]


def stats(a=A, b=B, group_size=2, specs=SPECS):
    return compute_reward_statistics(np.array([a, b], dtype=float), specs, group_size)


def fn(result, name):
    return result.per_function[name].tolist()


def test_combined_reward_statistics():
    r = stats().run
    assert r["grpo_reward_mean"] == 1.0
    assert r["grpo_reward_variance"] == 0.5
    assert r["grpo_reward_std"] == pytest.approx(math.sqrt(0.5), abs=1e-15)
    assert (r["grpo_reward_min"], r["grpo_reward_max"], r["grpo_reward_sum_of_batch"]) == (0.0, 2.0, 4.0)
    assert r["grpo_reward_nonfinite_samples"] == 0.0


def test_group_signals_of_combined_reward():
    r = stats().run
    # within-group variances 0.25 and 0.25; total variance 0.5 -> SNR = sqrt(0.25 / 0.5)
    assert r["grpo_reward_signal_to_noise"] == pytest.approx(math.sqrt(0.5), abs=1e-15)
    assert r["grpo_group_zero_std_ratio"] == 0.0
    assert r["grpo_group_reward_std_mean"] == 0.5


def test_per_function_statistics():
    s = stats()
    assert fn(s, "grpo_reward_fn_mean") == [0.75, 0.5]
    assert fn(s, "grpo_reward_fn_std") == pytest.approx([math.sqrt(0.1875), math.sqrt(2.75)], abs=1e-15)
    assert fn(s, "grpo_reward_fn_min") == [0.0, -2.0]
    assert fn(s, "grpo_reward_fn_max") == [1.0, 2.0]
    # |1 * 3| and |0.5 * 2| of the absolute weighted mass 4
    assert fn(s, "grpo_reward_fn_contribution_ratio") == [0.75, 0.25]
    assert fn(s, "grpo_reward_fn_nonfinite_samples") == [0.0, 0.0]


def test_per_function_group_signals():
    s = stats()
    # a: groups [1, 0], [1, 1]; b: groups [2, 2], [0, -2]
    assert fn(s, "grpo_reward_fn_group_zero_std_ratio") == [0.5, 0.5]
    assert fn(s, "grpo_reward_fn_group_std_mean") == [0.25, 0.5]
    assert fn(s, "grpo_reward_fn_group_all_max_ratio") == [0.5, 0.5]
    assert fn(s, "grpo_reward_fn_group_all_min_ratio") == [0.0, 0.0]


def test_entropy_ratio_by_hand():
    # combined range [-1, 2] in 10 bins of 0.3: 0 -> bin 3, 1 and 1 -> bin 6, 2 -> bin 9
    p = np.array([0.25, 0.5, 0.25])
    miller_madow = -(p * np.log(p)).sum() + (3 - 1) / (2 * 4)
    assert stats().run["grpo_reward_entropy_ratio"] == pytest.approx(miller_madow / math.log(10), abs=1e-12)


def test_entropy_does_not_grow_with_batch_size():
    rng = np.random.default_rng(7)
    spec = (RewardFunctionSpec("r", 1.0, 0.0, 3.0),)
    values = {n: rng.choice([0.0, 1.5, 3.0], size=n, p=[0.5, 0.3, 0.2]) for n in (64, 1024, 65536)}
    entropies = [compute_reward_statistics(v[None, :], spec, 1).run["grpo_reward_entropy_ratio"] for v in values.values()]
    assert max(entropies) - min(entropies) < 0.03
    p = np.array([0.5, 0.3, 0.2])
    assert entropies[-1] == pytest.approx(-(p * np.log(p)).sum() / math.log(10), abs=0.01)


def test_entropy_without_declared_range_uses_batch_span():
    spec = (RewardFunctionSpec("r"),)
    constant = compute_reward_statistics(np.full((1, 8), 5.0), spec, 1).run
    assert constant["grpo_reward_entropy_ratio"] == 0.0
    spread = compute_reward_statistics(np.array([[0.0, 10.0] * 4]), spec, 1).run
    # two bins half full each: ln 2 + (2 - 1) / 16
    assert spread["grpo_reward_entropy_ratio"] == pytest.approx((math.log(2) + 1 / 16) / math.log(10), abs=1e-12)


def test_signal_to_noise_invariant_to_sign_offset_and_scale():
    rng = np.random.default_rng(3)
    rewards = rng.normal(size=(1, 64))
    spec = (RewardFunctionSpec("r"),)
    base = compute_reward_statistics(rewards, spec, 8).run["grpo_reward_signal_to_noise"]
    moved = compute_reward_statistics(-3.0 * rewards + 100.0, spec, 8).run["grpo_reward_signal_to_noise"]
    assert 0.0 < base < 1.0
    assert moved == pytest.approx(base, rel=1e-9)


def test_signal_to_noise_absent_without_groups_or_spread():
    spec = (RewardFunctionSpec("r"),)
    assert "grpo_reward_signal_to_noise" not in compute_reward_statistics(np.array([[0.0, 1.0]]), spec, 1).run
    assert "grpo_reward_signal_to_noise" not in compute_reward_statistics(np.ones((1, 4)), spec, 2).run
    # spread only between prompts: nothing GRPO can learn from
    between = compute_reward_statistics(np.array([[0.0, 0.0, 1.0, 1.0]]), spec, 2).run
    assert between["grpo_reward_signal_to_noise"] == 0.0
    assert between["grpo_group_zero_std_ratio"] == 1.0


def test_contribution_is_sign_safe():
    specs = (RewardFunctionSpec("neg"), RewardFunctionSpec("pos"))
    s = compute_reward_statistics(np.array([[-1.0, -1.0], [1.0, 1.0]]), specs, 1)
    assert s.per_function["grpo_reward_fn_contribution_ratio"].tolist() == [0.5, 0.5]
    zeros = compute_reward_statistics(np.zeros((2, 2)), specs, 1)
    assert zeros.per_function["grpo_reward_fn_contribution_ratio"].tolist() == [0.0, 0.0]


def test_weight_zero_function_is_tracked_but_not_combined():
    specs = (RewardFunctionSpec("proxy", 1.0), RewardFunctionSpec("gold", 0.0))
    s = compute_reward_statistics(np.array([[1.0, 3.0], [100.0, 100.0]]), specs, 1)
    assert s.run["grpo_reward_mean"] == 2.0
    assert s.per_function["grpo_reward_fn_mean"].tolist() == [2.0, 100.0]
    assert s.per_function["grpo_reward_fn_contribution_ratio"].tolist() == [1.0, 0.0]


def test_saturation_absent_without_declared_bounds():
    specs = (RewardFunctionSpec("free"),)
    s = compute_reward_statistics(np.ones((1, 4)), specs, 2)
    assert np.isnan(s.per_function["grpo_reward_fn_group_all_max_ratio"]).all()
    assert np.isnan(s.per_function["grpo_reward_fn_group_all_min_ratio"]).all()


def test_nonfinite_rewards_are_excluded_and_counted():
    s = stats(a=[1.0, np.nan, 1.0, 1.0], b=[2.0, 2.0, np.inf, -2.0])
    assert fn(s, "grpo_reward_fn_nonfinite_samples") == [1.0, 1.0]
    assert fn(s, "grpo_reward_fn_mean") == [1.0, pytest.approx(2 / 3)]
    # completions 1 and 2 are excluded from the combined reward; combined = [2, nan, nan, 0]
    assert s.run["grpo_reward_nonfinite_samples"] == 2.0
    assert s.run["grpo_reward_mean"] == 1.0
    # both groups hold a non-finite completion: no group signal for the combined reward
    assert "grpo_group_zero_std_ratio" not in s.run
    # a: group [1, nan] dropped, [1, 1] kept; b: [2, 2] kept, [inf, -2] dropped
    assert fn(s, "grpo_reward_fn_group_zero_std_ratio") == [1.0, 1.0]
    assert s.bucket_totals.tolist() == [3, 3, 2]


def test_all_nonfinite_function_leaves_statistics_undefined():
    s = stats(a=[np.nan] * 4)
    assert np.isnan(s.per_function["grpo_reward_fn_mean"][0])
    assert s.per_function["grpo_reward_fn_mean"][1] == 0.5
    assert "grpo_reward_mean" not in s.run
    assert s.run["grpo_reward_nonfinite_samples"] == 4.0


def test_variance_keeps_its_digits_with_a_large_offset():
    rewards = np.array([[1e8 + 1.0, 1e8 - 1.0, 1e8 + 1.0, 1e8 - 1.0]])
    s = compute_reward_statistics(rewards, (RewardFunctionSpec("r"),), 2)
    assert s.run["grpo_reward_variance"] == 1.0
    assert s.run["grpo_group_reward_std_mean"] == 1.0


@pytest.mark.parametrize("n, g, reason", [(0, 1, "empty_batch"), (6, 4, "group_size_mismatch"), (4, 0, "group_size_mismatch")])
def test_unusable_batches_raise_with_a_reason(n, g, reason):
    with pytest.raises(StepInputError) as error:
        compute_reward_statistics(np.zeros((2, n)), SPECS, g)
    assert error.value.reason == reason
