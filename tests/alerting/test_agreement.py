"""The same scenario gives the same alerts in both evaluators.

Every scenario of the simulator (but `stalled`, which records nothing after its onset) is fed, at the
same time, into its own RewardMonitor that evaluates the default pack in-process and serves its real
/metrics; a real Prometheus scrapes them all and evaluates the rules compiled from the same pack. At
the end, the alerts that fired in Prometheus (ALERTS{alertstate="firing"}) must be exactly the alerts
the in-process engines fired, by (alertname, severity, run_id, reward_fn).

To compare like with like, Prometheus must evaluate every step exactly once: the test feeds the
monitors in lockstep with it (record a step in every monitor, wait until a rule evaluation has seen it
in every run, then record the next step), with a 200 ms scrape and a 500 ms evaluation interval. A
recording rule in the same group as the alerts (`test:grpo_step`) shows which step each evaluation
saw; the test checks the evaluations saw 1, 2, ..., N, each once. A rule's `for_steps: n` then equals `for: (n - 1) x 500ms` (the first
evaluation that sees the condition counts as one step), so only `for` is overridden for Prometheus;
thresholds, windows and for_steps are the pack's. Trend rules compare the same number in both: the
slope the monitor publishes.
"""

import time

import pytest
from alerting_servers import firing_alerts, start_prometheus
from prometheus_client import CollectorRegistry

from rewardscope import LEGACY_REWARD_FUNCTIONS, RewardMonitor
from rewardscope.alerting.compiler import STEP_GROUP, compile_groups, rules_yaml
from rewardscope.alerting.events import AlertState
from rewardscope.alerting.pack import load_overrides, load_pack
from rewardscope.simulation.scenarios import SCENARIOS as SCENARIO_TABLE
from rewardscope.simulation.scenarios import Scenario, plan_run, simulate_steps

pytestmark = pytest.mark.slow  # real servers or training runs

STEPS = 60  # onset at step 24, full strength 18 steps later
EVALUATION_MS = 500
# Every failure the engine can see (not `stalled`), and one healthy run (the healthy paces add nothing here).
SCENARIOS = [s for s in Scenario if s is Scenario.HEALTHY or (s is not Scenario.STALLED and SCENARIO_TABLE[s].is_failure)]


@pytest.fixture
def monitors():
    made = {}
    try:
        for scenario in SCENARIOS:
            plan = plan_run(scenario, STEPS, seed=1)
            made[scenario] = RewardMonitor(f"agree-{scenario.value}", LEGACY_REWARD_FUNCTIONS, group_size=plan.group_size,
                                           run_dir=None, registry=CollectorRegistry(), prometheus_port=0,
                                           max_completion_length=plan.max_completion_length, alerts=True)
        yield made
    finally:
        for monitor in made.values():
            monitor.close()


@pytest.fixture
def prometheus(tmp_path, monitors):
    pack = load_pack()
    for_in_time = {"alerts": {r.id: {"for": f"{(r.for_steps - 1) * EVALUATION_MS}ms"} for r in pack.rules if r.in_process}}
    groups = compile_groups(pack, [load_overrides(for_in_time)])
    (steps_group,) = [g for g in groups if g["name"] == STEP_GROUP]
    steps_group["rules"] += [{"record": "test:grpo_step", "expr": "grpo_step"},
                             {"record": "test:evaluation_time", "expr": "vector(time())"}]
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "rewardscope-alerts.yml").write_text(rules_yaml(groups, source="alerting/alerts.yml + test for-durations"))
    server = start_prometheus(tmp_path / "prometheus", [f"127.0.0.1:{m.prometheus_port}" for m in monitors.values()], rules,
                              interval="200ms", evaluation_interval=f"{EVALUATION_MS}ms")
    yield server
    server.stop()


def query(prometheus, expr: str, **params) -> list[dict]:
    return prometheus.get("/api/v1/query", query=expr, **params)["data"]["result"]


def latest_values(prometheus, expr: str) -> list[int]:
    """The latest value of every series of ``expr``, as sorted integers."""
    return sorted(int(float(r["value"][1])) for r in query(prometheus, expr))


def wait_until(condition, what, prometheus, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{prometheus.log_tail()}")
        time.sleep(0.01)


def test_in_process_and_prometheus_fire_the_same_alerts(monitors, prometheus):
    runs = {scenario: simulate_steps(scenario, STEPS, seed=1) for scenario in monitors}
    # Prometheus starts scraping new targets up to a few seconds after it is ready.
    wait_until(lambda: latest_values(prometheus, 'up{job="rewardscope"}') == [1] * len(monitors), "every monitor scraped", prometheus)
    # Start right after an evaluation, so that the scrapes of step 1 are all done before the next one.
    evaluated = lambda: [r["value"][1] for r in query(prometheus, "test:evaluation_time")]  # noqa: E731
    wait_until(evaluated, "the first rule evaluation", prometheus)
    first = evaluated()
    wait_until(lambda: evaluated() != first, "the next rule evaluation", prometheus)
    for _ in range(STEPS):
        for scenario, steps in runs.items():
            sim = next(steps)
            monitors[scenario].record_step(sim.step, **sim.kwargs)
        # The first rule evaluation that sees this step in every run records it in test:grpo_step.
        wait_until(lambda: latest_values(prometheus, 'test:grpo_step{run_id=~"agree-.*"}') == [sim.step] * len(monitors),
                   f"a rule evaluation of step {sim.step}", prometheus)
    # Everything below is read as of that evaluation of the last step: later evaluations see it again.
    end = max(float(r["value"][1]) for r in query(prometheus, 'timestamp(test:grpo_step{run_id=~"agree-.*"})'))
    seen = query(prometheus, 'test:grpo_step{run_id=~"agree-.*"}[10m]', time=repr(end))
    for series in seen:
        steps = [int(float(v)) for _, v in series["values"]]
        assert steps == list(range(1, STEPS + 1)), f"{series['metric']['run_id']}: evaluations saw steps {steps}"
    assert len(seen) == len(monitors)

    in_process = set()
    for monitor in monitors.values():
        for event in monitor.recent_alerts:
            if event.state is AlertState.FIRING:
                in_process.add((event.alertname, event.severity, monitor.run_id, event.labels.get("reward_fn", "")))
    in_prometheus = firing_alerts(prometheus, 'run_id=~"agree-.*"', at=end)
    print("\n" + "\n".join(sorted("  ".join(a) for a in in_process)))
    assert in_prometheus == in_process
    assert {run for _, _, run, _ in in_process} == {f"agree-{s.value}" for s in SCENARIOS if s is not Scenario.HEALTHY}
