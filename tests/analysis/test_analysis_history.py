"""StepHistory builders: the old per-step reward dicts, run-store steps and run directories give the same table."""

import math

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from rewardscope import RewardFunctionSpec, RewardMonitor
from rewardscope.analysis.history import history_from_rewards, history_from_steps, load_history, load_run
from rewardscope.exporter.runstore import read_steps

SPECS = [RewardFunctionSpec("a", 1.0, 0.0, 1.0), RewardFunctionSpec("b", 2.0, -1.0, 1.0)]


def test_arrays_go_through_the_step_statistics():
    history = load_history([{"a": [0.0, 1.0], "b": [1.0, 1.0]}, {"a": [1.0, 1.0], "b": [-1.0, 0.0]}], reward_functions=SPECS)
    assert history.steps.tolist() == [0, 1]
    # combined = a + 2 b: step 0 -> [2, 3], step 1 -> [-1, 1]
    assert history.column("grpo_reward_mean").tolist() == [2.5, 0.0]
    assert history.column("grpo_reward_std").tolist() == [0.5, 1.0]
    assert history.column("grpo_reward_fn_std", "a").tolist() == [0.5, 0.0]
    # contributions: |1 * 1| vs |2 * 2| at step 0, |1 * 2| vs |2 * -1| at step 1
    assert history.column("grpo_reward_fn_contribution_ratio", "a").tolist() == [0.2, 0.5]
    assert history.column("grpo_group_size").tolist() == [1.0, 1.0]
    assert history.samples.tolist() == [2.0, 2.0]


def test_means_give_function_means_contributions_and_the_combined_mean():
    history = load_history([{"a": 1.0, "b": -3.0}], steps=[7], reward_functions=SPECS)
    assert history.steps.tolist() == [7]
    assert history.column("grpo_reward_fn_mean", "b").tolist() == [-3.0]
    assert history.column("grpo_reward_fn_contribution_ratio", "a").tolist() == [1 / 7]
    assert history.column("grpo_reward_mean").tolist() == [-5.0]
    assert not history.has("grpo_reward_std")
    assert math.isnan(history.samples[0])


def test_a_missing_function_or_none_is_absent_that_step():
    history = history_from_rewards([{"a": 1.0, "b": 0.5}, {"a": 2.0}, {"a": None, "b": 1.0}], ["a", "b"])
    assert np.isnan(history.column("grpo_reward_fn_mean", "b")).tolist() == [False, True, False]
    assert np.isnan(history.column("grpo_reward_fn_mean", "a")).tolist() == [False, False, True]
    assert np.isnan(history.column("grpo_reward_mean")).tolist() == [False, True, True]


def test_run_directory_and_run_store_steps_give_the_recorded_values(tmp_path):
    with RewardMonitor("run", SPECS, group_size=2, run_dir=tmp_path, registry=CollectorRegistry()) as monitor:
        recorded = [monitor.record_step(step, {"a": [0.0, 1.0, 1.0, 1.0], "b": [0.5, -0.5, 0.0, 0.25 * step]})
                    for step in (3, 5)]
    history = load_run(tmp_path / "run")
    assert history.steps.tolist() == [3, 5]
    assert [(s.name, s.weight, s.min_value, s.max_value) for s in history.functions] == [("a", 1.0, 0.0, 1.0), ("b", 2.0, -1.0, 1.0)]
    for name in ("grpo_reward_mean", "grpo_reward_std", "grpo_reward_signal_to_noise", "grpo_group_reward_std_mean"):
        assert history.column(name).tolist() == pytest.approx([m.value(name) for m in recorded], rel=1e-6)
    assert history.samples.tolist() == [4.0, 4.0]
    same = load_history(list(read_steps(tmp_path / "run")), reward_functions=SPECS)
    assert same.column("grpo_reward_fn_mean", "b").tolist() == history.column("grpo_reward_fn_mean", "b").tolist()


def test_run_store_steps_name_their_functions():
    history = history_from_steps([{"grpo_step": 1, "grpo_reward_mean": 0.5, "grpo_reward_fn_mean{x}": 0.5}])
    assert history.function_names == ("x",)
    assert history.column("grpo_reward_fn_mean", "x").tolist() == [0.5]


@pytest.mark.parametrize("source, message", [
    ([{"a": [1.0, 2.0], "b": 1.0}], "mixes per-sample arrays and means"),
    ([{"a": 1.0, "c": 1.0}], "unknown reward function"),
    ([{"a": [1.0, 2.0], "b": [1.0]}], "different lengths"),
    ([{"a": ["x"], "b": [1.0]}], "not numbers"),
    ([], "empty history"),
    ([{"grpo_step": 1, "grpo_no_such_metric": 1.0}], "not in the rewardscope catalogue"),
    ([{"grpo_reward_mean": 1.0}], "has no grpo_step"),
    ({"a": 1.0}, "list of per-step dicts"),
])
def test_bad_histories_get_clear_errors(source, message):
    with pytest.raises((ValueError, KeyError), match=message):
        load_history(source, ["a", "b"])


def test_step_numbers_must_increase_and_match_the_history():
    with pytest.raises(ValueError, match="strictly increasing"):
        load_history([{"a": 1.0}, {"a": 2.0}], steps=[2, 2])
    with pytest.raises(ValueError, match="2 step numbers for 1 steps"):
        load_history([{"a": 1.0}], steps=[1, 2])


def test_an_odd_batch_for_the_group_size_names_the_step():
    with pytest.raises(ValueError, match="step 0: batch of 3 completions"):
        load_history([{"a": [1.0, 0.0, 1.0]}], group_size=2)
