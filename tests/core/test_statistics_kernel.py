"""The compiled reductions (metrics/kernel.py) against the numpy path they replace: same counts, same values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewardscope.metrics import kernel
from rewardscope.metrics.functions import RewardFunctionSpec
from rewardscope.metrics.step import FunctionTable, compute_reward_statistics

pytestmark = pytest.mark.skipif(not kernel.available(), reason="numba is not installed: the numpy path is the only one")

SPEC_SETS = [
    (RewardFunctionSpec("a", 1.0, 0.0, 1.0), RewardFunctionSpec("b", 0.5, -1.0, 2.0), RewardFunctionSpec("c", 2.0, 0.0, 3.0)),
    (RewardFunctionSpec("free", 1.0, None, None), RewardFunctionSpec("b", 1.0, -1.0, 1.0)),  # default edges: a grid lookup
    (RewardFunctionSpec("a", 1.0, 0.0, 1.0),),
    (RewardFunctionSpec("low_only", 1.0, 0.0, None), RewardFunctionSpec("unweighted", 0.0, None, 5.0)),
    (RewardFunctionSpec("odd", 1.0, 0.0, 0.7),),  # edges 0.035 apart: linear
]


def both(rewards: np.ndarray, specs, group_size: int):
    compiled = compute_reward_statistics(rewards, FunctionTable.build(specs, compiled=True), group_size)
    reference = compute_reward_statistics(rewards, FunctionTable.build(specs, compiled=False), group_size)
    return compiled, reference


def assert_same(compiled, reference) -> None:
    # Counts and ratios of counts are exact; sums and variances agree to rounding (other summation orders).
    np.testing.assert_array_equal(compiled.bucket_counts, reference.bucket_counts)
    np.testing.assert_array_equal(compiled.bucket_totals, reference.bucket_totals)
    scale = max(1.0, float(np.abs(reference.combined).max()) if reference.combined.size else 1.0)
    np.testing.assert_allclose(compiled.positive_sums, reference.positive_sums, rtol=1e-12, atol=1e-9 * scale)
    np.testing.assert_allclose(compiled.negative_sums, reference.negative_sums, rtol=1e-12, atol=1e-9 * scale)
    assert compiled.run.keys() == reference.run.keys()
    for name, value in reference.run.items():
        assert compiled.run[name] == pytest.approx(value, rel=1e-9, abs=1e-12 * scale**2, nan_ok=True), name
    for name, values in reference.per_function.items():
        np.testing.assert_allclose(compiled.per_function[name], values, rtol=1e-9, atol=1e-12 * scale**2, err_msg=name)
    for name in ("grpo_reward_fn_group_zero_std_ratio", "grpo_reward_fn_group_all_max_ratio",
                 "grpo_reward_fn_group_all_min_ratio", "grpo_reward_fn_min", "grpo_reward_fn_max"):
        np.testing.assert_array_equal(compiled.per_function[name], reference.per_function[name], err_msg=name)


@settings(max_examples=300, deadline=None)
@given(spec_index=st.integers(0, len(SPEC_SETS) - 1), group_size=st.sampled_from([1, 2, 3, 4, 8, 16]),
       groups=st.integers(1, 24), kind=st.sampled_from(["discrete", "normal", "on_edges", "constant_groups", "wide"]),
       seed=st.integers(0, 2**32 - 1))
def test_compiled_reductions_equal_the_numpy_path(spec_index, group_size, groups, kind, seed):
    specs = SPEC_SETS[spec_index]
    rng = np.random.default_rng(seed)
    shape = (len(specs), group_size * groups)
    if kind == "discrete":
        rewards = rng.choice([-1.0, 0.0, 0.2, 0.25, 0.5, 1.0, 3.0], size=shape)
    elif kind == "normal":
        rewards = rng.normal(0.3, 1.5, size=shape)
    elif kind == "on_edges":  # every value on or next to a bucket bound of the default and declared edges
        bounds = np.concatenate([np.linspace(-1, 3, 41), [-10, -5, -0.1, 0.1, 5, 10]])
        rewards = rng.choice(bounds, size=shape) + rng.choice([0.0, 1e-12, -1e-12], size=shape)
    elif kind == "constant_groups":
        rewards = np.repeat(rng.choice([0.0, 0.1, 1.0, 2.5], size=(len(specs), groups)), group_size, axis=1)
    else:
        rewards = rng.normal(0.0, 1e6, size=shape)
    assert_same(*both(rewards, specs, group_size))


def test_a_large_offset_with_a_tiny_spread_keeps_its_variance():
    rewards = 1e6 + np.array([[0.0, 1e-4, 2e-4, 3e-4, 0.0, 0.0, 1e-4, 1e-4]])
    compiled, reference = both(rewards, SPEC_SETS[1][:1], 4)
    assert compiled.run["grpo_reward_variance"] == pytest.approx(np.var(rewards), rel=1e-6)
    assert reference.run["grpo_reward_variance"] == pytest.approx(np.var(rewards), rel=1e-6)


def test_groups_of_equal_values_have_exactly_zero_spread():
    rewards = np.array([[0.1, 0.1, 0.1, 0.7, 0.7, 0.7]])
    compiled, _ = both(rewards, SPEC_SETS[2], 3)
    assert compiled.per_function["grpo_reward_fn_group_zero_std_ratio"].tolist() == [1.0]
    assert compiled.per_function["grpo_reward_fn_group_std_mean"].tolist() == [0.0]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_reward_takes_the_masking_path_on_both(bad):
    rewards = np.array([[0.0, 1.0, bad, 1.0], [1.0, 1.0, 0.0, 0.0]])
    specs = SPEC_SETS[1]
    compiled, reference = both(rewards, specs, 2)
    assert compiled.run["grpo_reward_nonfinite_samples"] == reference.run["grpo_reward_nonfinite_samples"] == 1.0
    assert_same(compiled, reference)


def test_finite_rewards_whose_sum_overflows_are_refused_on_both():
    from rewardscope.metrics.step import StepInputError

    rewards = np.array([[1.7e308, 1.7e308]])
    for compiled in (True, False):
        with pytest.raises(StepInputError, match="overflow"):
            compute_reward_statistics(rewards, FunctionTable.build(SPEC_SETS[1][:1], compiled=compiled), 1)


def test_reduce_rows_by_hand():
    stacked = np.array([[0.0, 1.0, 1.0, 1.0], [2.0, 4.0, 3.0, 3.0]])
    out = kernel.reduce_rows(stacked, 2, np.array([1.0, np.nan]), np.array([0.0, np.nan]), None)
    assert out is not None and out.bucket_counts is None
    assert out.sums.tolist() == [3.0, 12.0]
    assert out.variances.tolist() == [0.1875, 0.5]
    assert out.mins.tolist() == [0.0, 2.0] and out.maxs.tolist() == [1.0, 4.0]
    assert out.positive_sums.tolist() == [3.0, 12.0]
    assert out.group_counts.tolist() == [[1, 1], [1, 0], [0, 0]]  # equal: (1, 1), (3, 3); all >= 1: (1, 1); none <= 0
    assert out.group_std_sums.tolist() == [0.5, 1.0] and out.group_variance_sums.tolist() == [0.25, 1.0]
    assert kernel.reduce_rows(np.array([[0.0, np.nan]]), 1, np.array([np.nan]), np.array([np.nan]), None) is None


def test_a_numba_that_fails_to_import_leaves_the_numpy_path_with_one_warning(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    broken = tmp_path / "numba"
    broken.mkdir()
    (broken / "__init__.py").write_text("raise ImportError('this numba does not support this numpy')\n")
    script = (
        "import logging, numpy as np\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        "from rewardscope import RewardMonitor\n"
        "from rewardscope.metrics import kernel\n"
        "m = RewardMonitor('r', ['a', 'b'], group_size=2, run_dir=None)\n"
        "record = m.record_step(1, {'a': [0.0, 1.0, 1.0, 1.0], 'b': [1.0, 1.0, 0.0, 0.0]})\n"
        "m.record_step(2, {'a': [0.0, 1.0, 1.0, 1.0], 'b': [1.0, 1.0, 0.0, 0.0]})\n"
        "print(kernel.available(), record.value('grpo_group_zero_std_ratio'))\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": f"{tmp_path}:{root}", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "0.5"]
    assert done.stderr.count("compiled statistics pass is unavailable (ImportError: this numba does not support") == 1
