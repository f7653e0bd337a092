"""The online detectors' statistics on hand-computed inputs, their hold rules, and their O(1) building blocks."""

import math

import numpy as np
import pytest
from scipy import stats

from rewardscope import RewardFunctionSpec, RewardMonitor
from rewardscope.analysis import (
    FunctionDominanceDetector,
    KLAccelerationDetector,
    LengthExploitationDetector,
    ZeroSpreadTakeoverDetector,
    default_detectors,
)
from rewardscope.analysis.online import Cusum, HeldVerdict, MultiTrend, SlidingTrend
from rewardscope.metrics.layout import StepLayout, StepMetrics

LAYOUT = StepLayout(("a", "b", "c"))


def step(k, **values):
    """StepMetrics of step k with the given run-level values and per-function ``spread=[...]``."""
    row = LAYOUT.new_row()
    for name, value in values.items():
        if name == "spread":
            row[LAYOUT.function_slots["grpo_reward_fn_group_std_mean"]] = value
        else:
            row[LAYOUT.index(name)] = value
    return StepMetrics(k, 0.0, LAYOUT, row)


# --------------------------------------------------------------------------- building blocks
def test_sliding_trend_matches_linregress_as_the_window_slides():
    rng = np.random.default_rng(0)
    y = 0.05 * np.arange(60) + rng.normal(0, 0.1, 60)
    trend = SlidingTrend(15)
    for i in range(60):
        trend.add(float(i), float(y[i]))
        if i >= 2:
            lo = max(0, i - 14)
            fit = stats.linregress(np.arange(lo, i + 1), y[lo:i + 1])
            assert trend.slope == pytest.approx(fit.slope, rel=1e-9, abs=1e-12)
            assert trend.t == pytest.approx(fit.slope / fit.stderr, rel=1e-7)
            assert trend.fitted(i) == pytest.approx(fit.intercept + fit.slope * i)
    assert trend.rising(0.01) and not trend.falling(0.01)


def test_sliding_trend_exact_lines_and_dropped_points():
    trend = SlidingTrend(5)
    for x, y in [(1, 2.0), (2, 4.0), (3, 6.0)]:
        trend.add(x, y)
    assert trend.slope == 2.0 and trend.t == math.inf
    trend.drop_before(3)
    assert trend.n == 1 and trend.t == 0.0 and trend.fitted(10) == 6.0


def test_multi_trend_equals_one_sliding_trend_per_column():
    rng = np.random.default_rng(1)
    data = rng.normal(size=(50, 3)) + np.arange(50)[:, None] * np.array([0.05, -0.05, 0.0])
    multi, singles = MultiTrend(12, 3), [SlidingTrend(12) for _ in range(3)]
    for i, row in enumerate(data):
        multi.add(float(i), row)
        for single, value in zip(singles, row):
            single.add(float(i), float(value))
        if i >= 2:
            assert multi.t() == pytest.approx([s.t for s in singles], rel=1e-7)
            assert multi.fitted(i + 5.0) == pytest.approx([s.fitted(i + 5.0) for s in singles])
    assert multi.oldest_x == 38.0


def test_cusum_accumulates_the_excess_over_k_and_is_capped():
    cusum = Cusum(k=0.5, h=2.0)
    assert [cusum.add(z) for z in (1.0, 1.5, 1.0)] == [False, False, True]  # S = 0.5, 1.5, 2.0
    assert cusum.evidence == 1.0
    assert cusum.add(10.0) and cusum.s == 4.0  # capped at 2h
    assert not cusum.add(-10.0) and cusum.s == 0.0


def test_held_verdict_needs_confirmation_and_recovery():
    verdict = HeldVerdict(confirm=2)
    trace = [verdict.update(k, triggered, recovered) for k, (triggered, recovered) in enumerate(
        [(True, False), (False, False), (True, False), (True, False), (False, False), (False, True), (False, False)])]
    assert trace == [False, False, False, True, True, False, False]
    # recovery is ignored while the trigger still holds
    verdict = HeldVerdict()
    assert verdict.update(1, True, False) and verdict.update(2, True, True) and not verdict.update(3, False, True)


# --------------------------------------------------------------------------- function dominance
def test_dominance_share_is_the_top_weighted_squared_spread_share():
    detector = FunctionDominanceDetector()
    detector.bind([RewardFunctionSpec("a", 1.0), RewardFunctionSpec("b", 2.0), RewardFunctionSpec("c", 0.0)])
    detector.update(step(1, spread=[3.0, 0.5, 10.0]))  # c has weight 0: (1*3)^2 = 9 vs (2*0.5)^2 = 1
    assert detector.share == pytest.approx(0.9)
    assert detector.cusum.s == pytest.approx(0.0)  # 0.9 - k (0.9) = 0


def test_dominance_fires_after_the_cusum_passes_h_and_holds_until_it_drains():
    detector = FunctionDominanceDetector(k=0.9, h=0.5)
    detector.bind([RewardFunctionSpec(n) for n in "abc"])
    flags = [detector.update(step(k, spread=[3.0, 0.3, 0.3]))["grpo_function_dominance_suspected"] for k in range(1, 8)]
    share = 9.0 / 9.18  # 0.98039...: S grows by 0.08039 a step and reaches 0.5 on step 7 (6 x 0.0804 = 0.482)
    assert detector.share == pytest.approx(share)
    assert flags == [0.0] * 6 + [1.0]
    # Balanced spreads (share 1/3) drain 0.567 a step: S = 0.563 -> 0 at once; the verdict clears on that step.
    out = detector.update(step(8, spread=[1.0, 1.0, 1.0]))
    assert out == {"grpo_function_dominance_evidence_ratio": 0.0, "grpo_function_dominance_suspected": 0.0}


def test_dominance_is_not_counted_when_the_other_functions_are_solved():
    detector = FunctionDominanceDetector()
    detector.bind([RewardFunctionSpec(n) for n in "abc"])
    row = {"spread": [3.0, 0.0, 0.0]}
    solved = LAYOUT.function_slots["grpo_reward_fn_group_all_max_ratio"]
    metrics = step(1, **row)
    metrics.row[solved] = [0.1, 0.9, 0.6]  # b and c at their maximum in most groups: nothing left to learn
    detector.update(metrics)
    assert detector.share is None
    metrics = step(2, **row)
    metrics.row[solved] = [0.1, 0.9, 0.4]  # c is not solved: a stalls it
    detector.update(metrics)
    assert detector.share == 1.0


def test_dominance_needs_two_weighted_functions_with_spread():
    detector = FunctionDominanceDetector()
    detector.bind([RewardFunctionSpec("a"), RewardFunctionSpec("b", 0.0), RewardFunctionSpec("c", 0.0)])
    detector.update(step(1, spread=[1.0, 1.0, 1.0]))
    assert detector.share is None
    detector.bind([RewardFunctionSpec(n) for n in "abc"])
    detector.update(step(2, spread=[0.0, 0.0, 0.0]))
    assert detector.share is None


# --------------------------------------------------------------------------- length exploitation
def test_length_correlation_is_pooled_within_groups_with_distinct_lengths_as_dof():
    detector = LengthExploitationDetector()
    rewards = np.array([1, 2, 3, 4, 0, 0, 1, 1.0])
    lengths = np.array([10, 20, 30, 40, 5, 5, 6, 7.0])
    detector.observe_batch(rewards, lengths, 4)
    # Centred on group means: group 1 sum(r*l) = 50, sum(r^2) = 5, sum(l^2) = 500;
    # group 2 (length mean 5.75) sum(r*l) = 1.5, sum(r^2) = 1, sum(l^2) = 2.75.
    r = 51.5 / math.sqrt(6.0 * 502.75)
    # Distinct lengths: 4 + 3 = 7, less one mean per group (2) and 3: 2 degrees of freedom.
    assert detector.z == pytest.approx(math.atanh(r) * math.sqrt(2))


def test_length_exploitation_cusum_fires_and_drains():
    detector = LengthExploitationDetector()  # k = 0.5, h = 8
    detector.z = 4.5
    flags = [detector.update(step(k))["grpo_length_exploitation_suspected"] for k in (1, 2)]
    assert flags == [0.0, 1.0] and detector.cusum.s == 8.0
    for k in range(3, 20):
        detector.z = 0.0  # 0.5 drained a step: 8 -> 0 in 16 steps
        flag = detector.update(step(k))["grpo_length_exploitation_suspected"]
        assert flag == (1.0 if k < 18 else 0.0), k


def test_length_exploitation_without_lengths_or_with_nan_rewards():
    detector = LengthExploitationDetector()
    detector.observe_batch(np.ones(8), None, 4)
    assert detector.z is None
    detector.observe_batch(np.array([1, 2, 3, 4, np.nan, 0, 1, 1.0]), np.array([10, 20, 30, 40, 5, 5, 6, 7.0]), 4)
    # the group holding the NaN is left out: group 1 alone is an exact line (r -> clipped), 3 - 3 = 0 dof
    assert detector.z is None


# --------------------------------------------------------------------------- KL acceleration
def test_kl_acceleration_z_and_projection_by_hand():
    detector = KLAccelerationDetector(block=2, noise_half_life=1.0, level=0.3, horizon=4)
    logs = [0.0, 0.1, 0.0, 0.1, 0.5, 0.6]
    for k, y in enumerate(logs, 1):
        out = detector.update(step(k, grpo_kl=math.exp(y)))
    # Noise: half squared first differences 0.005, 0.005, 0.005, 0.08, 0.005, EWMA with decay 0.5 -> 0.02375.
    assert detector.noise_variance == pytest.approx(0.02375)
    # Second difference of block means of log KL: 0.55 - 2 * 0.05 + 0.05 = 0.5; se = sqrt(6 * 0.02375 / 2).
    assert detector.z == pytest.approx(0.5 / math.sqrt(0.07125))
    m1 = m2 = (1 + math.exp(0.1)) / 2
    m3 = (math.exp(0.5) + math.exp(0.6)) / 2
    slope, curvature = (3 * m3 - 4 * m2 + m1) / 4, (m3 - 2 * m2 + m1) / 4
    assert detector.projected == pytest.approx(m3 + slope * 4 + 0.5 * curvature * 16)
    z_critical = stats.norm.isf(0.001)
    assert out["grpo_kl_acceleration_evidence_ratio"] == pytest.approx(min(detector.z / z_critical, 1.0))
    assert out["grpo_kl_acceleration_suspected"] == 0.0  # z 1.87 < 3.09


def test_kl_acceleration_holds_until_kl_falls_below_its_level_at_firing():
    # A long noise half-life keeps the noise estimate at the quiet start's level (the blow-up is not noise).
    detector = KLAccelerationDetector(block=2, noise_half_life=1000.0, horizon=4, confirm=2)
    flags = []
    kls = [0.01, 0.011, 0.01, 0.011, 0.01, 0.011, 0.05, 0.2, 0.6, 1.5, 3.0, 3.1, 2.9, 3.0, 0.01, 0.01]
    for k, kl in enumerate(kls, 1):
        flags.append(detector.update(step(k, grpo_kl=kl))["grpo_kl_acceleration_suspected"])
    # Evidence 1 on steps 8 and 9 (z 16.8 and 13.6 over 3.09; the parabola 4 steps ahead at 0.70 and 2.19, over 0.3):
    # fired on step 9, the second in a row, with the latest block mean (0.2 + 0.6) / 2 = 0.4. Held on the plateau
    # at 3 while z turns negative; cleared on step 16, the first whose block mean (0.01) is below 0.4.
    assert flags == [0.0] * 8 + [1.0] * 7 + [0.0]


# --------------------------------------------------------------------------- zero-spread takeover
def test_zero_spread_takeover_needs_a_significant_rise_heading_past_the_level():
    detector = ZeroSpreadTakeoverDetector(window=3, horizon=30, confirm=1)
    out = [detector.update(step(k, grpo_group_zero_std_ratio=v)) for k, v in enumerate([0.1, 0.2, 0.3], 1)]
    # An exact line (t = inf) at 0.3 rising 0.1 a step: 30 steps ahead it is at 3.3, over 0.75.
    assert out[-1] == {"grpo_zero_spread_takeover_evidence_ratio": 1.0, "grpo_zero_spread_takeover_suspected": 1.0}
    slow = ZeroSpreadTakeoverDetector(window=3, horizon=30, confirm=1)
    for k, v in enumerate([0.100, 0.101, 0.102], 1):
        last = slow.update(step(k, grpo_group_zero_std_ratio=v))
    # Significant but slow: 30 steps ahead the line is at 0.132, 0.176 of the way to 0.75.
    assert last["grpo_zero_spread_takeover_evidence_ratio"] == pytest.approx(0.132 / 0.75)
    assert last["grpo_zero_spread_takeover_suspected"] == 0.0


def test_zero_spread_takeover_holds_on_a_plateau_and_clears_when_the_share_recedes():
    detector = ZeroSpreadTakeoverDetector(window=3, horizon=30, confirm=1)
    shares = [0.1, 0.2, 0.3, 0.9, 0.9, 0.9, 0.9, 0.9, 0.2, 0.1, 0.1]
    flags = [detector.update(step(k, grpo_group_zero_std_ratio=v))["grpo_zero_spread_takeover_suspected"]
             for k, v in enumerate(shares, 1)]
    # Fired at step 3 (fitted 0.3, window start 0.1): recovered once the fitted share is below 0.2, which the
    # line through 0.9, 0.2, 0.1 is at step 10 (fitted 0.0); through 0.9, 0.9, 0.2 it is still at 0.32 (step 9).
    assert flags == [0.0, 0.0] + [1.0] * 7 + [0.0, 0.0]


# --------------------------------------------------------------------------- through a monitor
def test_default_detectors_set_their_gauges_through_a_monitor():
    specs = [RewardFunctionSpec("a"), RewardFunctionSpec("b")]
    with RewardMonitor("run", specs, group_size=4, run_dir=None) as monitor:
        for k in range(1, 25):
            m = monitor.record_step(k, {"a": np.arange(8.0) * k, "b": np.ones(8)}, completion_lengths=np.arange(8) + 10,
                                    kl=0.01 * k)
    names = ["grpo_reward_hacking_suspected", "grpo_function_dominance_suspected", "grpo_length_exploitation_suspected",
             "grpo_kl_acceleration_suspected", "grpo_zero_spread_takeover_suspected"]
    assert all(m.value(n) in (0.0, 1.0) for n in names)
    # a's rewards rise with length inside every group: length exploitation; b has no spread: a dominates.
    assert m.value("grpo_length_exploitation_suspected") == 1.0
    assert m.value("grpo_function_dominance_suspected") == 1.0
    assert len(default_detectors()) == 5 and default_detectors()[0] is not default_detectors()[0]


def test_a_hacked_run_keeps_the_hacking_alert_firing_to_the_end():
    # The run: the alert used to fire at step 110 and resolve at 113 while format sat at its maximum.
    from rewardscope.alerting.events import AlertState
    from rewardscope.simulation.scenarios import iter_plan, plan_run

    plan = plan_run("reward_hacking", 200, seed=0)
    with RewardMonitor("hacked", plan.reward_functions, group_size=plan.group_size, run_dir=None, alerts=True,
                       max_completion_length=plan.max_completion_length) as monitor:
        for sim in iter_plan(plan):
            m = monitor.record_step(sim.step, **sim.kwargs)
        events = [e for e in monitor.recent_alerts if e.alertname == "GRPORewardHackingSuspected"]
    assert [e.state for e in events] == [AlertState.FIRING]
    assert plan.onset < events[0].step <= plan.onset + 30
    assert m.value("grpo_reward_fn_group_all_max_ratio", "format_exact") > 0.95  # the proxy has saturated...
    assert m.value("grpo_reward_hacking_suspected") == 1.0  # ...and the verdict holds
