"""RewardMetricsTracker: the old API on RewardMonitor, exact values, bounded memory, the old flaws fixed."""

import json
import math
import tracemalloc

import numpy as np
import pytest

from rewardscope import StepInputError
from rewardscope.compat import RewardMetricsTracker
from rewardscope.exporter.runstore import read_steps


def readme_step(tracker, step=42):
    return tracker.track_step(
        step=step,
        rewards_by_function={"func1": np.array([1.0, 2.0, 1.5]), "func2": np.array([0.5, 0.7, 0.6])},
        kl_divergence=0.05, policy_entropy=2.3, batch_size=3, num_generations=1)


def test_the_seed_readme_example_works_with_exact_values():
    with RewardMetricsTracker(reward_function_names=["func1", "func2"], window_size=100, track_distributions=True) as tracker:
        m = readme_step(tracker)
    # combined rewards 1.5, 2.7, 2.1
    assert m.step == 42 and m.batch_size == 3 and m.num_generations == 1
    assert m.mean_reward == pytest.approx(2.1, rel=1e-15)
    assert m.variance == pytest.approx(0.24, rel=1e-12) and m.std_reward == pytest.approx(math.sqrt(0.24), rel=1e-12)
    assert (m.min_reward, m.max_reward) == (1.5, 2.7)
    assert m.total_reward == pytest.approx(6.3, rel=1e-15)
    assert m.function_rewards == {"func1": 1.5, "func2": pytest.approx(0.6, rel=1e-15)}
    assert m.function_stds["func1"] == pytest.approx(math.sqrt(1 / 6), rel=1e-12)
    assert m.contributions == {"func1": pytest.approx(100 * 4.5 / 6.3), "func2": pytest.approx(100 * 1.8 / 6.3)}
    assert (m.kl_divergence, m.policy_entropy) == (0.05, 2.3)
    assert m.signal_to_noise is None  # one completion per prompt: GRPO has no within-group signal
    assert m.advantage_mean is None
    assert m.reward_distribution["func2"].tolist() == [0.5, 0.7, 0.6]


def test_groups_give_the_grpo_signal_to_noise_and_advantages():
    with RewardMetricsTracker(["a"]) as tracker:
        m = tracker.track_step(1, {"a": [0.0, 1.0, 1.0, 1.0]}, num_generations=2, advantages=[-1.0, 1.0, 0.0, 0.0])
    # within-group variances .25 and 0 -> mean .125; total variance .1875
    assert m.signal_to_noise == pytest.approx(math.sqrt(0.125 / 0.1875), rel=1e-12)
    assert (m.advantage_mean, m.advantage_std) == (0.0, pytest.approx(math.sqrt(0.5)))
    assert m.num_generations == 2


def test_total_is_sized_from_the_data_not_from_the_arguments():
    with RewardMetricsTracker(["a", "b"]) as tracker:
        m = tracker.track_step(1, {"a": [1.0, 1.0, 1.0, 1.0, 1.0], "b": [0.0] * 5}, batch_size=2, num_generations=1)
    assert m.batch_size == 5 and m.total_reward == 5.0


def test_none_values_are_tolerated():
    with RewardMetricsTracker(["a", "b"]) as tracker:
        m = tracker.track_step(1, {"a": [1.0, None, 3.0], "b": None}, kl_divergence=None, policy_entropy=None)
        assert m.function_rewards == {"a": 2.0, "b": None}
        assert m.mean_reward is None and m.kl_divergence is None  # every completion misses b's reward
        assert tracker.get_summary()["nonfinite_rewards"] == {"a": 1.0, "b": 3.0}
        m = tracker.track_step(2, {"a": [1.0, 2.0], "b": [1.0, 1.0]}, num_generations=None)
        assert m.mean_reward == 2.5


def test_memory_is_bounded_by_the_window():
    with RewardMetricsTracker(["a"], window_size=5, track_distributions=True) as tracker:
        for step in range(1, 51):
            tracker.track_step(step, {"a": np.full(8, float(step))})
        exported = tracker.export_to_dict()
        summary = tracker.get_summary()
    assert [m["step"] for m in exported["recent_metrics"]] == [46, 47, 48, 49, 50]
    assert summary["total_steps"] == 50 and summary["window_steps"] == 5 and summary["total_samples"] == 400.0
    assert summary["metrics"]["mean_reward"] == {"mean": 48.0, "std": pytest.approx(math.sqrt(2.0)), "min": 46.0,
                                                 "max": 50.0, "latest": 50.0}
    json.dumps(exported, allow_nan=False)


def test_memory_does_not_grow_with_steps():
    tracker = RewardMetricsTracker(["a"], window_size=5, track_distributions=True)
    rewards = np.linspace(0.0, 1.0, 4096)  # 32 KB per step: keeping it per step would show at once

    def track(steps):
        for step in steps:
            tracker.track_step(step, {"a": rewards})

    track(range(1, 51))
    tracemalloc.start()
    try:
        track(range(51, 101))  # what one step keeps until the next (the monitor's last record) is in both snapshots
        before = tracemalloc.take_snapshot()
        track(range(101, 301))
        growth = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
    finally:
        tracemalloc.stop()
        tracker.close()
    assert growth < 64 * 1024


def test_window_statistics_trends_and_moving_averages():
    with RewardMetricsTracker(["a", "b"], window_size=10) as tracker:
        for step, value in zip((2, 4, 6, 8), (1.0, 2.0, 4.0, 5.0)):
            tracker.track_step(step, {"a": [value, value], "b": [0.0, 1.0]}, kl_divergence=0.01 * step)
        assert tracker.get_moving_average("mean_reward", window=2) == pytest.approx(5.0)  # (4.5 + 5.5) / 2
        assert tracker.get_moving_average("a", window=3) == pytest.approx(11 / 3)
        trends = tracker.get_recent_trends(num_steps=3)
        # a over steps 4, 6, 8 is 2, 4, 5: least-squares slope 6 / 8 per step
        assert trends["a"] == {"slope": pytest.approx(0.75), "start": 2.0, "end": 5.0, "change": 3.0}
        assert trends["kl_divergence"]["slope"] == pytest.approx(0.01)
        assert "b" in trends and trends["b"]["slope"] == pytest.approx(0.0, abs=1e-12)
        stats = tracker.get_function_statistics("b")
        assert stats == {"mean": 0.5, "std": 0.0, "min": 0.5, "max": 0.5, "latest": 0.5, "mean_std": 0.5,
                         "mean_contribution": pytest.approx(100 * (1 / 3 + 1 / 5 + 1 / 9 + 1 / 11) / 4)}
        with pytest.raises(KeyError, match="unknown reward function 'c'"):
            tracker.get_function_statistics("c")
        with pytest.raises(KeyError, match="unknown metric 'nope'"):
            tracker.get_moving_average("nope")


def test_bad_steps_raise_clear_errors():
    with RewardMetricsTracker(["a"]) as tracker:
        tracker.track_step(5, {"a": [1.0]})
        with pytest.raises(StepInputError, match="not after the last recorded step 5"):
            tracker.track_step(5, {"a": [1.0]})
        with pytest.raises(StepInputError, match="not a whole number of groups"):
            tracker.track_step(6, {"a": [1.0, 2.0, 3.0]}, num_generations=2)
        with pytest.raises(ValueError, match="every function's rewards are None"):
            tracker.track_step(7, {"a": None})


def test_a_run_directory_keeps_the_whole_history(tmp_path):
    with RewardMetricsTracker(["a"], window_size=2, run_dir=tmp_path, run_id="legacy") as tracker:
        for step in range(1, 6):
            tracker.track_step(step, {"a": [float(step), 0.0]})
    assert [s["grpo_reward_mean"] for s in read_steps(tmp_path / "legacy")] == [0.5, 1.0, 1.5, 2.0, 2.5]


def test_the_window_keeps_no_batch_arrays():
    with RewardMetricsTracker(["a", "b"], window_size=3) as tracker:
        for step in range(1, 6):
            tracker.track_step(step, {"a": np.zeros(8), "b": np.ones(8)}, advantages=np.zeros(8))
        kept = [m.step_metrics for m in tracker._recent]
    assert [m.step for m in kept] == [3, 4, 5]
    assert all(type(m).__name__ == "StepMetrics" and m.rewards is None for m in kept)  # not the StepRecord with its arrays
