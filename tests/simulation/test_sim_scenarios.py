"""The pure simulator: determinism, reward value sets, computed advantages, schedules, the scenario table."""

import math

import numpy as np
import pytest

from rewardscope.metrics.catalogue import Scope, metric
from rewardscope.metrics.functions import LEGACY_REWARD_FUNCTIONS
from rewardscope.simulation import SCENARIOS, Scenario, plan_run, simulate_step, simulate_steps
from rewardscope.simulation.scenarios import EVAL_PROBLEMS, PEAK_LEARNING_RATE

FUNCTIONS = [f.name for f in LEGACY_REWARD_FUNCTIONS]


def same_kwargs(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for key in a:
        x, y = a[key], b[key]
        if key == "rewards_by_function":
            if x.keys() != y.keys() or not all(np.array_equal(x[k], y[k], equal_nan=True) for k in x):
                return False
        elif isinstance(x, np.ndarray):
            if not np.array_equal(x, y):
                return False
        elif x != y:
            return False
    return True


def test_same_seed_same_run_and_another_seed_another_run():
    first = list(simulate_steps("kl_blowup", 30, seed=7))
    again = list(simulate_steps("kl_blowup", 30, seed=7))
    other = list(simulate_steps("kl_blowup", 30, seed=8))
    assert [s.step for s in first] == list(range(1, 31))
    assert all(same_kwargs(a.kwargs, b.kwargs) for a, b in zip(first, again))
    assert not any(same_kwargs(a.kwargs, b.kwargs) for a, b in zip(first, other))


FAILURES = [s for s in Scenario if SCENARIOS[s].effects]


@pytest.mark.parametrize("name", FAILURES)
def test_a_scenario_is_healthy_before_its_onset_and_not_after(name):
    healthy = plan_run("healthy", 40, seed=3, onset=15)
    failing = plan_run(name, 40, seed=3, onset=15)
    for step in range(1, 15):
        assert simulate_step(failing, step).severity == 0.0
        assert same_kwargs(simulate_step(failing, step).kwargs, simulate_step(healthy, step).kwargs), step
    # From the onset on, the failure changes what the trainer would pass.
    assert simulate_step(failing, 15).severity == pytest.approx(1 / failing.ramp)
    assert not any(same_kwargs(simulate_step(failing, s).kwargs, simulate_step(healthy, s).kwargs) for s in range(15, 18))


def test_stalled_run_ends_before_its_onset():
    plan = plan_run("stalled", 50, onset=12)
    assert plan.last_step == 11
    assert [s.step for s in simulate_steps("stalled", 50, onset=12)] == list(range(1, 12))
    assert list(simulate_steps("stalled", 50, onset=1)) == []
    assert SCENARIOS[Scenario.STALLED].stops_recording
    assert [s for s, info in SCENARIOS.items() if info.stops_recording] == [Scenario.STALLED]


def test_defaults_onset_at_40_percent_and_ramp():
    plan = plan_run("reward_hacking", 100)
    assert (plan.onset, plan.ramp, plan.prompts, plan.group_size, plan.samples) == (40, 30, 16, 8, 128)
    assert plan_run("healthy", 1000).ramp == 50
    assert plan_run("healthy", 10).ramp == 5
    assert [plan.severity(s) for s in (39, 40, 54, 69, 100)] == [0.0, 1 / 30, 0.5, 1.0, 1.0]
    assert plan_run("healthy", 100).severity(90) == 0.0


def test_rewards_take_the_legacy_functions_values():
    allowed = {"format_exact": {0.0, 3.0}, "format_approx": {x / 2 for x in range(-5, 6)},
               "check_answer": {-1.0, 0.25, 0.5, 1.5, 3.0}, "check_numbers": {0.0, 1.5}}
    seen = {name: set() for name in FUNCTIONS}
    for sim in simulate_steps("kl_blowup", 60, seed=1, prompts=8, group_size=4):
        rewards = sim.kwargs["rewards_by_function"]
        assert list(rewards) == FUNCTIONS
        for name, values in rewards.items():
            assert values.shape == (32,)
            seen[name] |= set(values.tolist())
    for name in FUNCTIONS:
        assert seen[name] <= allowed[name], name
    assert seen["check_answer"] == allowed["check_answer"]  # every grade occurs in 60 steps
    assert seen["format_approx"] >= {-1.5, 0.5, 2.5}


def test_advantages_are_group_normalised_from_the_combined_reward():
    for sim in simulate_steps("nonfinite_rewards", 30, seed=2, onset=10, group_size=4):
        rewards = sim.kwargs["rewards_by_function"]
        combined = sum(np.where(np.isfinite(r), r, 0.0) for r in rewards.values()).reshape(-1, 4)
        expected = (combined - combined.mean(axis=1, keepdims=True)) / (combined.std(axis=1, ddof=1, keepdims=True) + 1e-4)
        np.testing.assert_allclose(sim.kwargs["advantages"], expected.reshape(-1), rtol=0, atol=1e-12)


def test_truncated_completions_lose_their_format_and_answer_rewards():
    truncated_seen = 0
    for sim in simulate_steps("length_explosion", 60, seed=4, onset=20):
        k = sim.kwargs
        lengths, limit = k["completion_lengths"], k["max_completion_length"]
        assert lengths.max() <= limit and lengths.min() >= 8
        cut = lengths == limit
        truncated_seen += int(cut.sum())
        assert (k["rewards_by_function"]["format_exact"][cut] == 0.0).all()
        assert (k["rewards_by_function"]["check_answer"][cut] == -1.0).all()
        assert (k["rewards_by_function"]["format_approx"][cut] <= 1.5).all()  # two of five checks always fail
        assert k["tokens"] > lengths.sum()  # prompt tokens are counted too
    assert truncated_seen > 1000


def test_learning_rate_warms_up_then_follows_a_cosine_to_zero():
    lrs = {s.step: s.kwargs["learning_rate"] for s in simulate_steps("healthy", 100)}
    assert [lrs[s] for s in (1, 2, 5)] == [PEAK_LEARNING_RATE / 5, 2 * PEAK_LEARNING_RATE / 5, PEAK_LEARNING_RATE]
    assert lrs[100] == pytest.approx(0.0, abs=1e-20)
    assert lrs[int(5 + 95 / 2 + 0.5)] == pytest.approx(PEAK_LEARNING_RATE * 0.5 * (1 + math.cos(math.pi * 48 / 95)))
    assert all(lrs[s] >= lrs[s + 1] for s in range(5, 100))


def test_eval_accuracy_every_k_steps_in_units_of_the_eval_set():
    sims = list(simulate_steps("healthy", 40, eval_every=8))
    measured = {s.step: s.kwargs["eval_accuracy"] for s in sims if s.kwargs["eval_accuracy"] is not None}
    assert list(measured) == [8, 16, 24, 32, 40]
    for value in measured.values():
        assert 0.0 <= value <= 1.0 and value * EVAL_PROBLEMS == pytest.approx(round(value * EVAL_PROBLEMS), abs=1e-9)


@pytest.mark.parametrize("kwargs, message", [
    (dict(scenario_name="nope", steps=10), "unknown scenario 'nope'"),
    (dict(scenario_name="healthy", steps=0), "steps must be an integer >= 1"),
    (dict(scenario_name="healthy", steps=10, onset=11), "onset 11 is after the last step 10"),
    (dict(scenario_name="healthy", steps=10, onset=0), "onset must be an integer >= 1"),
    (dict(scenario_name="healthy", steps=10, group_size=1), "group_size must be an integer >= 2"),
    (dict(scenario_name="healthy", steps=10, prompts=2.5), "prompts must be an integer >= 1"),
    (dict(scenario_name="healthy", steps=10, seed=-1), "seed must be an integer >= 0"),
])
def test_bad_arguments_get_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        plan_run(**kwargs)


def test_the_scenario_table_covers_every_scenario_with_catalogue_metrics():
    assert list(SCENARIOS) == list(Scenario)
    for info in SCENARIOS.values():
        assert info.description and info.onset
        for signal in info.signals:
            spec = metric(signal.metric)  # KeyError for a name outside the catalogue
            assert signal.direction in ("up", "down", "stops")
            assert (signal.reward_fn is not None) == (spec.scope is Scope.FUNCTION)
            assert signal.reward_fn is None or signal.reward_fn in FUNCTIONS
    healthy = [s for s in Scenario if not SCENARIOS[s].is_failure]
    assert healthy == [Scenario.HEALTHY, Scenario.HEALTHY_FAST, Scenario.HEALTHY_SLOW, Scenario.HEALTHY_PLATEAU]
    assert all(SCENARIOS[s].signals == () for s in healthy)
    assert all(SCENARIOS[s].signals for s in Scenario if s not in healthy)


@pytest.mark.parametrize("name", FAILURES)
@pytest.mark.parametrize("shape", ["abrupt", "smooth"])
def test_every_onset_shape_is_healthy_before_the_onset(name, shape):
    healthy = plan_run("healthy", 30, seed=5, onset=10, prompts=4, group_size=4, functions=3)
    failing = plan_run(name, 30, seed=5, onset=10, prompts=4, group_size=4, functions=3, shape=shape)
    for step in range(1, 10):
        assert same_kwargs(simulate_step(failing, step).kwargs, simulate_step(healthy, step).kwargs), step
    assert simulate_step(failing, 12).severity > 0.0


def test_onset_shapes_and_strength_give_the_documented_severity():
    linear = plan_run("kl_blowup", 100, onset=40, ramp=10)
    abrupt = plan_run("kl_blowup", 100, onset=40, ramp=10, shape="abrupt")
    smooth = plan_run("kl_blowup", 100, onset=40, ramp=10, shape="smooth", strength=0.5)
    assert [linear.severity(s) for s in (39, 40, 44, 49, 60)] == [0.0, 0.1, 0.5, 1.0, 1.0]
    assert [abrupt.severity(s) for s in (39, 40, 44)] == [0.0, 1.0, 1.0]
    # smoothstep 3x^2 - 2x^3 at x = 0.1 and 0.5, times the strength 0.5
    assert smooth.severity(40) == pytest.approx(0.5 * (0.03 - 0.002))
    assert smooth.severity(44) == pytest.approx(0.25)
    # a compound failure's second part starts one ramp later
    compound = plan_run("hacking_then_collapse", 100, onset=40, ramp=10)
    assert (compound.severity(49, 1), compound.severity(50, 1), compound.severity(54, 1)) == (0.0, 0.1, 0.5)


def test_the_number_of_functions_and_the_sizes_shape_the_batch():
    plan = plan_run("healthy", 5, prompts=3, group_size=5, functions=2)
    sim = simulate_step(plan, 1)
    assert [f.name for f in plan.reward_functions] == ["format_approx", "check_answer"]
    assert sorted(sim.kwargs["rewards_by_function"]) == ["check_answer", "format_approx"]
    assert all(v.shape == (15,) for v in sim.kwargs["rewards_by_function"].values())
    assert sim.kwargs["advantages"].shape == (15,)
    three = plan_run("healthy", 5, functions=3)
    assert [f.name for f in three.reward_functions] == ["format_exact", "format_approx", "check_answer"]


def test_noise_scales_the_random_perturbations_only():
    quiet = plan_run("healthy", 50, seed=2, noise=0.01)
    loud = plan_run("healthy", 50, seed=2, noise=3.0)
    kl_q = [simulate_step(quiet, s).kwargs["kl"] for s in range(20, 40)]
    kl_l = [simulate_step(loud, s).kwargs["kl"] for s in range(20, 40)]
    assert np.std(np.diff(np.log(kl_q))) * 50 < np.std(np.diff(np.log(kl_l)))


def test_healthy_paces_differ_in_how_fast_format_is_learned():
    def share(name, step, fn="format_exact", value=3.0):
        sim = simulate_step(plan_run(name, 100, seed=1, prompts=64), step)
        return float(np.mean(sim.kwargs["rewards_by_function"][fn] == value))

    assert share("healthy_fast", 30) > share("healthy", 30) + 0.2 > share("healthy_slow", 30) + 0.3
    # A plateauing learner learned format but stops before correctness: fewer exact answers at the end.
    assert share("healthy_plateau", 100, "check_answer", 3.0) < share("healthy", 100, "check_answer", 3.0) - 0.15


@pytest.mark.parametrize("kwargs, message", [
    (dict(shape="square"), "shape must be one of linear, abrupt, smooth"),
    (dict(strength=0), "strength must be a positive number"),
    (dict(noise=float("nan")), "noise must be a positive number"),
    (dict(functions=1), "functions must be an integer >= 2"),
    (dict(functions=5), "functions must be at most 4"),
])
def test_bad_variations_get_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        plan_run("reward_hacking", 10, **kwargs)
