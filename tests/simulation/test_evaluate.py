"""``rewardscope evaluate``: the table's arithmetic on hand-made timelines, and a small grid end to end."""

import pytest

from rewardscope.cli import main
from rewardscope.evaluation.grid import FULL_GRID, MEANT, SEED_RULE, RunSpec, runs
from rewardscope.evaluation.runner import AlertTimeline, RunRecord, SeedHackingRule
from rewardscope.evaluation.table import ANY, detection_rows, false_alarm_rows
from rewardscope.metrics.layout import StepLayout, StepMetrics
from rewardscope.simulation.scenarios import Scenario


def test_timeline_first_held_and_firings():
    timeline = AlertTimeline([3, 12, 13, 14, 17, 18], last_step=20)
    assert timeline.first_at_or_after(10) == 12 and timeline.fired_before(10)
    assert timeline.held_share(12) == pytest.approx(5 / 9)  # 12, 13, 14, 17, 18 of steps 12..20
    assert timeline.firings() == 3 and timeline.firings(12) == 2


def record(scenario, timelines, onset=10, steps=20, ramp=5, seed=0):
    return RunRecord(RunSpec(scenario, FULL_GRID[0], seed, steps, onset), ramp, steps,
                     {alert: AlertTimeline(s, steps) for alert, s in timelines.items()})


def test_detection_rows_count_delay_hold_flapping_and_early_firings():
    hack = "GRPORewardHackingSuspected/critical"
    records = [record(Scenario.REWARD_HACKING, {hack: list(range(14, 21))}),  # delay 4, held 7/7
               record(Scenario.REWARD_HACKING, {hack: [12, 13, 16, 17, 18, 19, 20]}, seed=1),  # delay 2, flapped
               record(Scenario.REWARD_HACKING, {hack: [5]}, seed=2)]  # fired before the onset only: a miss
    rows = {r.alert: r for r in detection_rows(records)}
    row = rows[hack]
    assert (row.runs, row.detected, row.median_delay, row.worst_delay) == (3, pytest.approx(2 / 3), 3, 4)
    assert row.held == pytest.approx((1.0 + 7 / 9) / 2)
    assert row.flapping == pytest.approx(0.5) and row.early == pytest.approx(1 / 3)
    assert row.missed == {"base": 1}
    assert rows[SEED_RULE].detected == 0.0 and rows[ANY].detected == pytest.approx(2 / 3)


def test_a_compound_failure_measures_its_second_part_from_one_ramp_later():
    collapse = "GRPOPolicyEntropyCollapse/critical"
    rows = {r.alert: r for r in detection_rows([record(Scenario.HACKING_THEN_COLLAPSE, {collapse: [18, 19, 20]}, ramp=5)])}
    assert rows[collapse].median_delay == 3  # onset 10 + one ramp of 5 = 15


def test_false_alarms_per_healthy_run_and_per_1000_steps():
    records = [record(Scenario.HEALTHY, {"GRPOKLTooHigh/warning": [5, 6, 9]}, steps=1000),
               record(Scenario.HEALTHY_SLOW, {}, steps=1000)]
    rows = {r.alert: r for r in false_alarm_rows(records)}
    kl = rows["GRPOKLTooHigh/warning"]
    assert (kl.runs, kl.runs_with_alarm, kl.per_1000_steps) == (2, 0.5, 1.0)  # 2 firings in 2,000 steps
    assert kl.by_pace == {"healthy": 1.0, "healthy_slow": 0.0}
    assert rows["GRPOFunctionDominance/warning"].runs_with_alarm == 0.0  # every meant alert is listed


def test_seed_rule_is_reward_up_and_accuracy_not_up():
    layout = StepLayout(("a",))
    rule = SeedHackingRule(window=10, min_evals=3)
    flags = []
    for k in range(1, 11):
        row = layout.new_row()
        row[layout.index("grpo_reward_mean")] = 0.1 * k
        if k % 3 == 0:
            row[layout.index("grpo_eval_accuracy_ratio")] = 0.5  # flat accuracy: "performance doesn't increase"
        flags.append(rule.update(StepMetrics(k, 0.0, layout, row)))
    assert flags == [False] * 8 + [True] * 2  # from the third evaluation (step 9)


def test_runs_cycle_the_grid_and_healthy_runs_only_use_variations_that_change_them():
    specs = list(runs(FULL_GRID, seeds=13, steps=100, onset=40, healthy_steps=500))
    hacking = [s for s in specs if s.scenario is Scenario.REWARD_HACKING]
    assert [s.variation.name for s in hacking[:2]] == ["base", "abrupt onset"] and hacking[12].variation.name == "base"
    healthy = [s for s in specs if s.scenario is Scenario.HEALTHY]
    assert len(healthy) == 13 and all(s.steps == 500 for s in healthy)
    assert {s.variation.name for s in healthy} == {"base", "noise x2", "batch 8x8", "batch 32x4", "group 16",
                                                    "2 functions", "3 functions"}
    assert len(specs) == 13 * (len(MEANT) + 4)


def test_small_grid_detects_every_failure_and_no_alert_fires_on_healthy_runs(capsys, tmp_path):
    out = tmp_path / "table.md"
    rc = main(["evaluate", "--grid", "small", "--seeds", "2", "--steps", "90", "--onset", "30", "--healthy-steps", "200",
               "--jobs", "1", "--out", str(out)])
    assert rc == 0
    table = capsys.readouterr().out
    assert out.read_text().split("\n\n")[0] in table
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| ")]
    any_rows = {r[0].strip("| "): r for r in rows if r[1] == ANY}
    assert sorted(any_rows) == sorted(s.value for s in MEANT)
    assert all(r[3] == "100%" for r in any_rows.values()), any_rows
    healthy = {r[0].strip("| "): r for r in rows if len(r) == 8 and r[0].startswith("| GRPO")}
    assert healthy and all(r[2] == "0%" for r in healthy.values()), healthy
