"""End to end at the repository's production timings, on 127.0.0.1: monitors -> real Prometheus
(scrape and evaluation 5 s, the checked-in rules) -> real Alertmanager (the checked-in routes, group_wait
10 s / 5 s for critical) -> Slack-format HTTP sinks.

One stack serves every test of this module, and every run starts at once when the stack starts, each with
its own run_id, so the whole module takes about as long as its longest run plus the waits after it:

- agreement: every scenario but `stalled` at 1 and at 10 steps/s; Prometheus must fire exactly the alerts
  the in-process engines fired, by (alertname, severity, run_id, reward_fn);
- e2e-nan: a healthy run at 10 steps/s with one NaN reward at one step, between two scrapes;
- e2e-kl: a KL blow-up at 5 steps/s, 200 steps (40 s), that ends while KL still fires;
- e2e-hack: the reward-hacking verdict on for two steps (1 s at 2 steps/s), between scrapes;
- e2e-healthy: a healthy run that finishes and closes;
- e2e-killed: a `rewardscope simulate` process killed with SIGKILL.

Two sinks: `slack-warning` posts to one, the other receivers to the other. The delay from the onset
of each failure to its Slack message is printed (run with -s); it is not asserted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import pytest
from alerting_servers import ROOT, SlackSink, firing_alerts, start_alertmanager, start_prometheus
from prometheus_client import CollectorRegistry
from support import free_port, stop_process

from rewardscope import LEGACY_REWARD_FUNCTIONS, RewardMonitor
from rewardscope.alerting.events import AlertState
from rewardscope.simulation.scenarios import Scenario, plan_run, simulate_steps

pytestmark = pytest.mark.slow

AGREEMENT_RATES = (1, 10)
AGREEMENT_STEPS = 60
# Every failure the simulator has (a stalled run records nothing to compare), and one healthy run.
AGREEMENT_SCENARIOS = [s for s in Scenario if s is not Scenario.STALLED and not s.value.startswith("healthy_")]
LINGER = 15.0  # seconds /metrics keeps serving after close(): three scrapes see grpo_run_ended 1
TIMEOUT = 150.0


class OneStepVerdict:
    """A detector that sets the reward-hacking flag on ``steps`` only: the short verdict of the issue."""

    def __init__(self, steps: set[int]) -> None:
        self.steps = steps

    def update(self, metrics) -> dict[str, float]:
        return {"grpo_reward_hacking_suspected": 1.0 if metrics.step in self.steps else 0.0}


def with_nan(steps, step: int, reward_fn: str):
    """The simulated steps, with one NaN reward for ``reward_fn`` at ``step``."""
    for sim in steps:
        if sim.step == step:
            rewards = dict(sim.kwargs["rewards_by_function"])
            values = rewards[reward_fn].astype(float)  # a copy
            values[0] = float("nan")
            rewards[reward_fn] = values
            sim.kwargs["rewards_by_function"] = rewards
        yield sim


@dataclass
class Run:
    """One in-process run: a monitor driven in its own thread."""

    run_id: str
    scenario: Scenario
    steps: int
    rate: float
    monitor: RewardMonitor
    end: bool = False  # close (with linger) after the last step, else stay open until the module ends
    detector_steps: set[int] = field(default_factory=set)
    nan_step: int | None = None
    step_times: dict[int, float] = field(default_factory=dict)
    finished: threading.Event = field(default_factory=threading.Event)
    ended_at: float | None = None
    error: BaseException | None = None

    def sim_steps(self):
        steps = simulate_steps(self.scenario, self.steps, seed=1)
        return with_nan(steps, self.nan_step, "check_answer") if self.nan_step is not None else steps

    def run(self) -> None:
        try:
            for sim in self.sim_steps():
                self.monitor.record_step(sim.step, **sim.kwargs)
                self.step_times[sim.step] = time.time()
                time.sleep(1.0 / self.rate)
            self.ended_at = time.time()
            if self.end:
                self.monitor.close()  # grpo_run_ended 1, and /metrics lingers LINGER seconds
        except BaseException as error:  # reported by the test that reads this run
            self.error = error
        finally:
            self.finished.set()

    def wait(self, timeout: float = TIMEOUT) -> None:
        assert self.finished.wait(timeout), f"{self.run_id} did not finish"
        assert self.error is None, f"{self.run_id}: {self.error!r}"


def make_run(run_id: str, scenario: Scenario, steps: int, rate: float, *, end: bool = False, detector_steps=(), nan_step=None) -> Run:
    plan = plan_run(scenario, steps, seed=1)
    detectors = [OneStepVerdict(set(detector_steps))] if detector_steps else None
    monitor = RewardMonitor(run_id, LEGACY_REWARD_FUNCTIONS, group_size=plan.group_size, run_dir=None, registry=CollectorRegistry(),
                            prometheus_port=0, max_completion_length=plan.max_completion_length, alerts=True, detectors=detectors,
                            linger_seconds=LINGER if end else 0.0)
    return Run(run_id, scenario, steps, rate, monitor, end=end, detector_steps=set(detector_steps), nan_step=nan_step)


class Stack:
    """The shared stack and every run of the module, started together."""

    def __init__(self, directory) -> None:
        self.sink, self.warning_sink = SlackSink(), SlackSink()
        self.runs: dict[str, Run] = {}
        self.servers = []
        self.killed: subprocess.Popen | None = None
        secrets = directory / "secrets"
        self.sink.webhook_files(secrets, ("slack-critical", "slack-info", "slack-demo"))
        self.warning_sink.webhook_files(secrets, ("slack-warning",))
        for rate in AGREEMENT_RATES:
            for scenario in AGREEMENT_SCENARIOS:
                self.add(make_run(f"agree{rate}-{scenario.value}", scenario, AGREEMENT_STEPS, rate))
        self.add(make_run("e2e-nan", Scenario.HEALTHY, 80, 10, nan_step=30))
        self.add(make_run("e2e-kl", Scenario.KL_BLOWUP, 200, 5, end=True))
        self.add(make_run("e2e-hack", Scenario.HEALTHY, 80, 2, detector_steps={40, 41}))
        self.add(make_run("e2e-healthy", Scenario.HEALTHY, 150, 10, end=True))
        self.killed_port = free_port()
        targets = [f"127.0.0.1:{r.monitor.prometheus_port}" for r in self.runs.values()] + [f"127.0.0.1:{self.killed_port}"]
        self.log = open(directory / "killed.log", "wb")  # noqa: SIM115 - the subprocess writes it; stop() closes it
        self.alertmanager = start_alertmanager(directory / "alertmanager", secrets, wait=None)
        self.servers.append(self.alertmanager)
        self.prometheus = start_prometheus(directory / "prometheus", targets, ROOT / "prometheus" / "rules",
                                           alertmanager=self.alertmanager.url.removeprefix("http://"), interval="5s")
        self.servers.append(self.prometheus)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.killed = subprocess.Popen([sys.executable, "-m", "rewardscope.cli", "simulate", "--scenario", "healthy", "--steps", "100000",
                                        "--rate", "10", "--port", str(self.killed_port), "--host", "127.0.0.1", "--run-id", "e2e-killed",
                                        "--run-dir", str(directory / "runs")], stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.killed_at: float | None = None
        # As in a real job, the exporter is scraped before training starts: an alert that starts and
        # ends before a run's first scrape is invisible to Prometheus (docs/runbooks.md).
        wait_for(lambda: len(query(self, 'up{job="rewardscope"} == 1')) >= len(self.runs), 60, "every run scraped once")
        for run in self.runs.values():
            threading.Thread(target=run.run, daemon=True).start()
        self.kill_error: BaseException | None = None
        threading.Thread(target=self._kill, daemon=True).start()

    def _kill(self) -> None:
        try:
            self.kill_after_scrapes()
        except BaseException as error:  # reported by the test of the killed run
            self.kill_error = error

    def add(self, run: Run) -> None:
        self.runs[run.run_id] = run

    def kill_after_scrapes(self) -> None:
        """SIGKILL the simulate process once Prometheus has scraped its run state (in a thread at start)."""
        if self.killed_at is None:
            up = f'max_over_time(up{{instance="127.0.0.1:{self.killed_port}"}}[1m]) == 1'
            wait_for(lambda: query(self, up), 60, "killed run scraped")
            wait_for(lambda: query(self, 'grpo_run_ended{run_id="e2e-killed"} == 0'), 60, "killed run's run state scraped")
            self.killed.send_signal(signal.SIGKILL)
            self.killed.wait()
            self.killed_at = time.time()

    def messages(self, run_id: str, sink: SlackSink | None = None) -> list[tuple[float, dict]]:
        sinks = [sink] if sink else [self.sink, self.warning_sink]
        return sorted(((t, p) for s in sinks for t, p in s.received() if p["attachments"][0]["title"].split(" in run ")[-1].split(" ")[0] == run_id),
                      key=lambda m: m[0])

    def stop(self) -> None:
        if self.killed is not None:
            stop_process(self.killed)
        self.log.close()
        for run in self.runs.values():
            run.finished.wait(TIMEOUT)
            run.monitor.close()
        for server in reversed(self.servers):
            server.stop()
        self.sink.stop()
        self.warning_sink.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    made = Stack(tmp_path_factory.mktemp("e2e"))
    yield made
    made.stop()


def query(stack: Stack, expr: str) -> list[dict]:
    return stack.prometheus.get("/api/v1/query", query=expr)["data"]["result"]


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def title(payload: dict) -> str:
    return payload["attachments"][0]["title"]


def wait_message(stack: Stack, run_id: str, prefix: str, timeout: float = TIMEOUT) -> tuple[float, dict]:
    def found():
        return next(((t, p) for t, p in stack.messages(run_id) if title(p).startswith(prefix)), None)

    try:
        return wait_for(found, timeout, f"{prefix!r} for {run_id}")
    except AssertionError:
        raise AssertionError(f"no Slack message {prefix!r} for {run_id}; got {[title(p) for _, p in stack.messages(run_id)]}\n"
                             f"{stack.prometheus.log_tail()}\n{stack.alertmanager.log_tail()}") from None


def report(line: str, capsys) -> None:
    with capsys.disabled():
        print(f"\n[e2e] {line}")


def test_nan_between_scrapes_alerts(stack, capsys):
    run = stack.runs["e2e-nan"]
    arrival, payload = wait_message(stack, "e2e-nan", "[FIRING:1] GRPONonFiniteRewards in run e2e-nan (error)")
    text = payload["attachments"][0]["text"]
    assert "• Reward function: `check_answer`" in text and payload["_path"] == "/services/slack-critical"
    report(f"NaN at one step (0.1 s, between 5 s scrapes) -> Slack {arrival - run.step_times[30]:.1f} s", capsys)


def test_kl_blowup_at_5_steps_per_second_in_a_40_s_run_pages(stack, capsys):
    run = stack.runs["e2e-kl"]
    arrival, payload = wait_message(stack, "e2e-kl", "[FIRING:1] GRPOKLTooHigh in run e2e-kl (critical)")
    assert payload["_path"] == "/services/slack-critical"
    assert "*KL blow-up in run e2e-kl:" in payload["attachments"][0]["text"]
    fired = min(e.step for e in run.monitor.recent_alerts if e.alertname == "GRPOKLTooHigh" and e.severity == "critical")
    report(f"KL critical at 5 steps/s: in-process fire (step {fired}) -> Slack {arrival - run.step_times[fired]:.1f} s; "
           f"the run lasted {run.steps / run.rate:.0f} s", capsys)


def test_a_run_that_ends_while_an_alert_fires_is_shown_as_ended_not_recovered(stack, capsys):
    run = stack.runs["e2e-kl"]
    run.wait()
    assert ("kl_blowup", None) in [(r.id, fn) for r, fn in run.monitor._state_engine.firing()]  # firing at the last step
    arrival, payload = wait_message(stack, "e2e-kl", "[FIRING:1] GRPORunEndedWhileFiring in run e2e-kl (critical)")
    text = payload["attachments"][0]["text"]
    assert "*Run e2e-kl ENDED while GRPOKLTooHigh was firing: not a recovery*" in text
    # keep_firing_for (30 s) + group_interval (1 m) have passed: a resolution would have been sent by now.
    time.sleep(max(0.0, run.ended_at + LINGER + 100 - time.time()))
    titles = [title(p) for _, p in stack.messages("e2e-kl")]
    assert not [t for t in titles if t.startswith("[RESOLVED] GRPOKLTooHigh")], titles
    assert not [t for t in titles if "GRPOExporterDown" in t], titles
    report(f"KL run ended at {run.ended_at:.0f}: ended notice after {arrival - run.ended_at:.1f} s; messages {titles}", capsys)


def test_a_hacking_verdict_between_scrapes_pages(stack, capsys):
    run = stack.runs["e2e-hack"]
    arrival, payload = wait_message(stack, "e2e-hack", "[FIRING:1] GRPORewardHackingSuspected in run e2e-hack (critical)")
    assert payload["_path"] == "/services/slack-critical"
    report(f"hacking verdict on for 1 s (steps 40-41 at 2 steps/s) -> Slack {arrival - run.step_times[40]:.1f} s", capsys)


def test_a_finished_healthy_run_never_pages(stack):
    run = stack.runs["e2e-healthy"]
    run.wait()
    # ExporterDown's for (30 s) and the group_wait after the target disappeared have passed.
    time.sleep(max(0.0, run.ended_at + LINGER + 60 - time.time()))
    assert stack.messages("e2e-healthy") == []
    assert query(stack, 'ALERTS{run_id="e2e-healthy"}') == []
    assert query(stack, 'max_over_time(grpo_run_ended{run_id="e2e-healthy"}[10m]) == 1'), "Prometheus never saw the clean end"


def test_a_killed_run_pages_exporter_down_with_its_run_id(stack, capsys):
    wait_for(lambda: stack.killed_at or stack.kill_error, 120, "the kill")
    assert stack.kill_error is None, repr(stack.kill_error)
    killed_at = stack.killed_at
    arrival, payload = wait_message(stack, "e2e-killed", "[FIRING:1] GRPOExporterDown in run e2e-killed (error)")
    assert payload["_path"] == "/services/slack-critical"
    assert payload["attachments"][0]["title_link"].endswith("var-run_id=e2e-killed")
    report(f"kill -9 -> ExporterDown in Slack after {arrival - killed_at:.1f} s (floor 5 scrape + 30 for + 5 eval + 5 group_wait)", capsys)


def test_two_receivers_reach_two_different_webhook_sinks(stack):
    wait_message(stack, "agree1-zero_variance_groups", "[FIRING:1] GRPOWeakRewardSignal in run agree1-zero_variance_groups (warning)")
    warnings = stack.messages("agree1-zero_variance_groups", stack.warning_sink)
    assert warnings and all(p["_path"] == "/services/slack-warning" for _, p in warnings)
    assert not stack.messages("agree1-zero_variance_groups", stack.sink)
    criticals = stack.messages("e2e-kl", stack.sink)
    assert criticals and all(p["_path"] == "/services/slack-critical" for _, p in criticals)
    assert not [p for _, p in stack.messages("e2e-kl", stack.warning_sink) if "(critical)" in title(p)]


@pytest.mark.parametrize("rate", AGREEMENT_RATES)
def test_in_process_and_prometheus_fire_the_same_alerts_at_real_step_rates(stack, rate):
    runs = [r for r in stack.runs.values() if r.run_id.startswith(f"agree{rate}-")]
    for run in runs:
        run.wait()
    # Two scrapes and an evaluation after the last step of every run.
    time.sleep(max(0.0, max(r.ended_at for r in runs) + 12 - time.time()))
    in_process = {(e.alertname, e.severity, r.run_id, e.labels.get("reward_fn", ""))
                  for r in runs for e in r.monitor.recent_alerts if e.state is AlertState.FIRING}
    in_prometheus = firing_alerts(stack.prometheus, f'run_id=~"agree{rate}-.*"', lookback="10m")
    assert in_prometheus == in_process
    assert {run for _, _, run, _ in in_process} == {f"agree{rate}-{s.value}" for s in AGREEMENT_SCENARIOS if s is not Scenario.HEALTHY}
