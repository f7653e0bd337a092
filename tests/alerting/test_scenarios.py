"""Every scenario of `rewardscope simulate` fires the alert meant for it, in-process, within a stated number
of steps of its onset; the healthy run fires none. The table is in docs/runbooks.md ("Scenario table").

Runs of 100 steps (onset at step 40, failure at full strength 30 steps later), seeds 0-7, through a real
RewardMonitor with the default pack (RewardMonitor(alerts=True)). Run with -s to see the measured delays.
"""

import pytest

from rewardscope import LEGACY_REWARD_FUNCTIONS, RewardMonitor
from rewardscope.alerting.events import AlertState
from rewardscope.simulation.scenarios import Scenario, plan_run, simulate_steps

STEPS = 100
SEEDS = range(8)

# scenario -> [(alertname, severity, reward_fn or None, at most this many steps after the onset)]
MEANT = {
    Scenario.REWARD_HACKING: [("GRPORewardFunctionFalling", "warning", "check_answer", 40)],
    Scenario.ENTROPY_COLLAPSE: [("GRPOPolicyEntropyCollapse", "warning", None, 15), ("GRPOPolicyEntropyCollapse", "critical", None, 35)],
    Scenario.KL_BLOWUP: [("GRPOKLTooHigh", "warning", None, 15), ("GRPOKLTooHigh", "critical", None, 30)],
    Scenario.ZERO_VARIANCE_GROUPS: [("GRPONoLearningSignal", "warning", None, 45)],
    Scenario.LENGTH_EXPLOSION: [("GRPOCompletionsTruncated", "warning", None, 20)],
    Scenario.NONFINITE_REWARDS: [("GRPONonFiniteRewards", "error", "check_answer", 1), ("GRPONonFiniteRewards", "error", "check_numbers", 1)],
}


def first_firings(scenario, seed, detectors=()):
    """{(alertname, severity, reward_fn): first firing step} of one simulated run, and its plan."""
    plan = plan_run(scenario, STEPS, seed=seed)
    first = {}
    with RewardMonitor(f"{scenario.value}-{seed}", LEGACY_REWARD_FUNCTIONS, group_size=plan.group_size, run_dir=None,
                       max_completion_length=plan.max_completion_length, alerts=True, detectors=list(detectors)) as monitor:
        for sim in simulate_steps(scenario, STEPS, seed=seed):
            monitor.record_step(sim.step, **sim.kwargs)
            for event in monitor.recent_alerts:
                if event.state is AlertState.FIRING:
                    first.setdefault((event.alertname, event.severity, event.labels.get("reward_fn")), event.step)
    return first, plan


@pytest.mark.parametrize("scenario", list(MEANT), ids=lambda s: s.value)
def test_failure_scenarios_fire_their_alert_soon_after_onset(scenario):
    delays = {key: [] for key in MEANT[scenario]}
    for seed in SEEDS:
        first, plan = first_firings(scenario, seed)
        early = {k: s for k, s in first.items() if s < plan.onset}
        assert not early, f"seed {seed}: fired before the onset (step {plan.onset}) while the run is still healthy: {early}"
        for alertname, severity, fn, bound in MEANT[scenario]:
            step = first.get((alertname, severity, fn))
            assert step is not None, f"seed {seed}: {alertname}/{severity}/{fn} never fired; fired: {sorted(first)}"
            delays[(alertname, severity, fn, bound)].append(step - plan.onset)
            assert step - plan.onset <= bound, f"seed {seed}: {alertname}/{severity} fired {step - plan.onset} steps after onset"
    for (alertname, severity, fn, bound), got in delays.items():
        print(f"{scenario.value}: {alertname}/{severity}{'/' + fn if fn else ''} fired {min(got)}-{max(got)} steps "
              f"after onset (bound {bound})")


@pytest.mark.parametrize("scenario", [Scenario.HEALTHY, Scenario.STALLED], ids=lambda s: s.value)
def test_healthy_and_stalled_runs_fire_nothing_in_process(scenario):
    # A stalled run records no step from its onset on: only Prometheus can see it (GRPORunStalled, end-to-end test).
    for seed in SEEDS:
        first, _ = first_firings(scenario, seed)
        assert first == {}, f"seed {seed}: {first}"


def test_reward_hacking_detector_sets_the_gauge_the_rule_reads():
    hacking = pytest.importorskip("rewardscope.analysis.hacking", reason="the reward-hacking detector has not landed")
    for seed in range(4):
        first, plan = first_firings(Scenario.REWARD_HACKING, seed,
                                    [hacking.RewardHackingDetector(gold_function="check_answer", gold_weight=1.0)])
        step = first.get(("GRPORewardHackingSuspected", "critical", None))
        assert step is not None and plan.onset <= step <= plan.onset + 30, (seed, first)
        print(f"reward_hacking + RewardHackingDetector: GRPORewardHackingSuspected fired {step - plan.onset} steps after onset")
    healthy, _ = first_firings(Scenario.HEALTHY, 0, [hacking.RewardHackingDetector(gold_function="check_answer", gold_weight=1.0)])
    assert healthy == {}
