"""Each scenario's failure shows in the monitor's computed metrics from its onset, and not before.

Every scenario runs 100 steps (onset 40, ramp 30: full strength from step 69) through a
real RewardMonitor writing a run store; the assertions read the StepMetrics it returned
and the run store it wrote.
"""

import numpy as np
import pytest

from rewardscope import LEGACY_REWARD_FUNCTIONS, RewardMonitor
from rewardscope.exporter.runstore import read_steps, read_summary
from rewardscope.simulation import SCENARIOS, Scenario, iter_plan, plan_run

STEPS, ONSET, FULL = 100, 40, 69


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """scenario -> (StepMetrics list, run directory), from one seeded run each."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for scenario in Scenario:
        plan = plan_run(scenario, STEPS, seed=11)
        assert (plan.onset, plan.ramp) == (ONSET, 30)
        monitor = RewardMonitor(scenario.value, LEGACY_REWARD_FUNCTIONS, group_size=plan.group_size, run_dir=root,
                                prometheus_port=None, max_completion_length=plan.max_completion_length)
        with monitor:
            metrics = [monitor.record_step(sim.step, **sim.kwargs) for sim in iter_plan(plan)]
        assert all(m is not None for m in metrics)
        out[scenario] = (metrics, monitor.run_directory)
    return out


def series(run, name, reward_fn=None, steps=range(1, STEPS + 1)):
    """Values of a metric at the given steps (None where absent)."""
    metrics, _ = run
    by_step = {m.step: m for m in metrics}
    return [by_step[s].value(name, reward_fn) for s in steps if s in by_step]


BEFORE = range(1, ONSET)
AFTER = range(FULL, STEPS + 1)


def median(values):
    return float(np.median([v for v in values if v is not None]))


def mean(values):
    present = [v for v in values if v is not None]
    return sum(present) / len(present)


@pytest.mark.parametrize("scenario", [s for s in Scenario if SCENARIOS[s].is_failure])
def test_metrics_before_the_onset_equal_the_healthy_run(runs, scenario):
    healthy, _ = runs[Scenario.HEALTHY]
    failing, _ = runs[scenario]
    timestamp = healthy[0].layout.index("grpo_last_step_timestamp_seconds")
    for h, f in zip(healthy[:ONSET - 1], failing[:ONSET - 1]):
        assert h.step == f.step
        assert np.array_equal(np.delete(h.row, timestamp), np.delete(f.row, timestamp), equal_nan=True), h.step


def test_healthy_run_improves_format_first_then_correctness(runs):
    run = runs[Scenario.HEALTHY]
    reward = series(run, "grpo_reward_mean")
    assert mean(reward[-20:]) > mean(reward[:20]) + 3.0
    evals = [v for v in series(run, "grpo_eval_accuracy_ratio") if v is not None]
    assert len(evals) == 10 and evals[-1] > evals[0] + 0.3
    # Share of the whole run's gain (first 20 steps -> last 20) already made by mid-run (steps 41-60):
    # format is mostly learned by then, correctness mostly after.
    def gain_by_mid_run(values):
        first, mid, last = mean(values[:20]), mean(values[40:60]), mean(values[80:])
        return (mid - first) / (last - first)

    assert gain_by_mid_run(series(run, "grpo_reward_fn_mean", "format_exact")) > 0.8
    assert gain_by_mid_run(series(run, "grpo_reward_fn_mean", "check_answer")) < 0.75
    kl = series(run, "grpo_kl")
    assert max(kl) < 0.1 and mean(kl[-10:]) > 5 * mean(kl[:10])
    entropy = series(run, "grpo_policy_entropy")
    assert 0.5 < mean(entropy[-10:]) < mean(entropy[:10]) - 0.2
    assert mean(series(run, "grpo_completion_truncated_ratio")) < 0.02
    zero = series(run, "grpo_group_zero_std_ratio")
    assert mean(zero[:20]) < 0.05 and 0.05 < mean(zero[-20:]) < 0.5  # late groups sometimes all agree


def test_reward_hacking_saturates_format_while_correctness_falls(runs):
    run = runs[Scenario.REWARD_HACKING]
    for fn in ("format_exact", "format_approx"):
        assert mean(series(run, "grpo_reward_fn_group_all_max_ratio", fn, BEFORE)) < 0.5
        assert mean(series(run, "grpo_reward_fn_group_all_max_ratio", fn, AFTER)) > 0.95
    assert mean(series(run, "grpo_reward_fn_mean", "format_exact", AFTER)) > 2.95
    healthy = runs[Scenario.HEALTHY]
    for fn in ("check_answer", "check_numbers"):
        assert mean(series(run, "grpo_reward_fn_mean", fn, AFTER)) < mean(series(run, "grpo_reward_fn_mean", fn, range(30, 40)))
        assert mean(series(run, "grpo_reward_fn_mean", fn, AFTER)) < mean(series(healthy, "grpo_reward_fn_mean", fn, AFTER)) - 0.5
    evals = series(run, "grpo_eval_accuracy_ratio", steps=range(10, 101, 10))
    healthy_evals = series(healthy, "grpo_eval_accuracy_ratio", steps=range(10, 101, 10))
    assert max(evals[6:]) < evals[3]  # evals[3] is step 40, the onset
    assert evals[-1] < healthy_evals[-1] - 0.4


def test_entropy_collapse_removes_within_group_spread(runs):
    run = runs[Scenario.ENTROPY_COLLAPSE]
    assert min(series(run, "grpo_policy_entropy", steps=BEFORE)) > 0.6
    assert max(series(run, "grpo_policy_entropy", steps=AFTER)) < 0.05
    assert series(run, "grpo_group_zero_std_ratio", steps=AFTER) == [1.0] * len(AFTER)
    assert series(run, "grpo_group_reward_std_mean", steps=AFTER) == [0.0] * len(AFTER)
    assert series(run, "grpo_advantage_std", steps=AFTER) == [0.0] * len(AFTER)
    assert series(run, "grpo_reward_signal_to_noise", steps=AFTER) == [0.0] * len(AFTER)
    assert max(series(run, "grpo_group_zero_std_ratio", steps=BEFORE)) <= 0.25


def test_kl_blowup_passes_one_and_grad_norm_spikes(runs):
    run = runs[Scenario.KL_BLOWUP]
    assert max(series(run, "grpo_kl", steps=BEFORE)) < 0.05
    kl_after = series(run, "grpo_kl", steps=AFTER)
    assert min(kl_after) > 1.0 and max(kl_after) > 2.5
    assert max(series(run, "grpo_grad_norm", steps=AFTER)) > 20 * median(series(run, "grpo_grad_norm", steps=BEFORE))
    assert min(series(run, "grpo_clip_ratio", steps=AFTER)) > 0.2 > max(series(run, "grpo_clip_ratio", steps=BEFORE))
    assert mean(series(run, "grpo_reward_mean", steps=AFTER)) < mean(series(run, "grpo_reward_mean", steps=range(30, 40))) - 1.5


def test_zero_variance_groups_leave_no_signal_with_normal_entropy(runs):
    run = runs[Scenario.ZERO_VARIANCE_GROUPS]
    assert mean(series(run, "grpo_group_zero_std_ratio", steps=BEFORE)) < 0.1
    assert mean(series(run, "grpo_group_zero_std_ratio", steps=AFTER)) > 0.8
    assert mean(series(run, "grpo_advantage_std", steps=AFTER)) < 0.3 < min(series(run, "grpo_advantage_std", steps=BEFORE))
    assert median(series(run, "grpo_grad_norm", steps=AFTER)) < 0.5 * median(series(run, "grpo_grad_norm", steps=BEFORE))
    assert min(series(run, "grpo_policy_entropy", steps=AFTER)) > 0.5  # unlike entropy_collapse


def test_length_explosion_truncates_most_completions(runs):
    run = runs[Scenario.LENGTH_EXPLOSION]
    assert max(series(run, "grpo_completion_truncated_ratio", steps=BEFORE)) < 0.05
    assert min(series(run, "grpo_completion_truncated_ratio", steps=AFTER)) > 0.8
    assert mean(series(run, "grpo_completion_truncated_ratio", steps=AFTER)) > 0.95
    assert min(series(run, "grpo_completion_length_mean_tokens", steps=AFTER)) > 480  # the limit is 512
    assert mean(series(run, "grpo_reward_fn_mean", "format_exact", AFTER)) < 0.5


def test_nonfinite_rewards_are_counted_from_the_onset(runs):
    run = runs[Scenario.NONFINITE_REWARDS]
    for fn, other in (("check_answer", "format_exact"), ("check_numbers", "format_approx")):
        assert series(run, "grpo_reward_fn_nonfinite_samples", fn, BEFORE) == [0.0] * len(BEFORE)
        after = series(run, "grpo_reward_fn_nonfinite_samples", fn, range(ONSET, STEPS + 1))
        assert sum(1 for v in after if v > 0) >= 0.9 * len(after)
        assert series(run, "grpo_reward_fn_nonfinite_samples", other) == [0.0] * STEPS
    assert series(run, "grpo_reward_nonfinite_samples", steps=BEFORE) == [0.0] * len(BEFORE)
    assert min(series(run, "grpo_reward_nonfinite_samples", steps=AFTER)) > 10
    # The run store and the closing summary count the same non-finite rewards.
    _, directory = run
    stored = sum(row.get("grpo_reward_fn_nonfinite_samples{check_answer}", 0) for row in read_steps(directory))
    assert stored == sum(series(run, "grpo_reward_fn_nonfinite_samples", "check_answer")) > 100
    assert read_summary(directory)["nonfinite_rewards"]["check_answer"] == stored


def test_stalled_run_stops_recording_at_its_onset(runs):
    metrics, directory = runs[Scenario.STALLED]
    assert [m.step for m in metrics] == list(range(1, ONSET))
    assert [row["grpo_step"] for row in read_steps(directory)] == list(range(1, ONSET))
    assert read_summary(directory)["last_step"] == ONSET - 1
