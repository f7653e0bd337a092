"""End to end on 127.0.0.1: `rewardscope simulate` -> real Prometheus scrape -> rule fires -> real
Alertmanager -> a local HTTP sink that receives the Slack message; the healthy run sends nothing.

Prometheus scrapes and evaluates every second and the rules are compiled from the default pack with
`for: 1s` (and a 3 s stall threshold), Alertmanager waits 1 s before a group's first message: the
repository's configs with only addresses, paths and those timings rewritten (alerting_servers.py).
The latency from the failure's onset to the Slack message is printed (run with -s); it is not asserted.
"""

import re
import subprocess
import sys
import time

import pytest
from alerting_servers import SlackSink, start_alertmanager, start_prometheus, stop_process
from support import free_port

from rewardscope.alerting.compiler import compile_groups, rules_yaml
from rewardscope.alerting.pack import load_overrides, load_pack
from rewardscope.exporter.runstore import read_steps
from rewardscope.simulation.scenarios import plan_run

pytestmark = pytest.mark.slow  # real servers or training runs

TIMEOUT = 60.0  # generous: the measured latency is a few seconds


class Stack:
    """Sink, Alertmanager and Prometheus scraping one simulate process on ``port``."""

    def __init__(self, tmp_path, port):
        self.sink = SlackSink()
        self.servers = []
        try:
            self.alertmanager = start_alertmanager(tmp_path / "alertmanager", self.sink.webhook_file(tmp_path))
            self.servers.append(self.alertmanager)
            overrides = {"alerts": {**{r.id: {"for": "1s"} for r in load_pack().rules if r.in_process}, "run_stalled": {"threshold": 3, "for": "1s"}}}
            rules = tmp_path / "rules"
            rules.mkdir()
            (rules / "rewardscope-alerts.yml").write_text(
                rules_yaml(compile_groups(load_pack(), [load_overrides(overrides)]), source="alerting/alerts.yml + test for-durations"))
            self.prometheus = start_prometheus(tmp_path / "prometheus", [f"127.0.0.1:{port}"], rules,
                                               alertmanager=self.alertmanager.url.removeprefix("http://"))
            self.servers.append(self.prometheus)
        except BaseException:
            self.stop()
            raise

    def stop(self):
        for server in reversed(self.servers):
            server.stop()
        self.sink.stop()


@pytest.fixture
def stack_factory(tmp_path):
    made = []

    def make(port):
        made.append(Stack(tmp_path, port))
        return made[-1]

    yield make
    for stack in made:
        stack.stop()


@pytest.fixture
def simulate(tmp_path):
    """Start `rewardscope simulate` as a process; stopped (SIGTERM closes the run cleanly) at teardown."""
    processes = []

    def start(scenario, run_id, port, steps, rate, linger):
        log = open(tmp_path / f"{run_id}.log", "wb")
        process = subprocess.Popen([sys.executable, "-m", "rewardscope.cli", "simulate", "--scenario", scenario,
                                    "--steps", str(steps), "--rate", str(rate), "--port", str(port), "--host", "127.0.0.1",
                                    "--run-dir", str(tmp_path / "runs"), "--run-id", run_id, "--linger", str(linger)],
                                   stdout=log, stderr=subprocess.STDOUT)
        processes.append((process, log))
        return process

    yield start
    for process, log in processes:
        stop_process(process)
        log.close()


def attachment(payload):
    return payload["attachments"][0]


def step_times(run_dir):
    return {int(s["grpo_step"]): s for s in read_steps(run_dir)}


def kl_message_pattern(run_id, threshold, severity):
    return re.compile(
        rf"\*KL (too high|blow-up) in run {run_id}: [0-9.]+ nats/token > {re.escape(threshold)}\*\n"
        r"[^\n]+\n"
        rf"• Run: `{run_id}`\n"
        rf"• Value: [0-9.]+  • Threshold: {re.escape(threshold)}  • Severity: {severity}\n"
        rf"<http://localhost:3000/d/rewardscope-overview\?var-run_id={run_id}\|Dashboard>  "
        r"• <https://github.com/rewardscope/rewardscope/blob/main/docs/runbooks.md#grpokltoohigh\|Runbook>\n"
        rf"• Charts and the completions behind it: `rewardscope report monitoring_data/{run_id} -o report.html`\n")


def test_kl_blowup_reaches_slack_with_the_run_and_the_alert(tmp_path, stack_factory, simulate, capsys):
    port = free_port()
    stack = stack_factory(port)
    run_id, steps, rate = "e2e-kl", 60, 5
    simulate("kl_blowup", run_id, port, steps, rate, linger=30)
    titles = {severity: f"[FIRING:1] GRPOKLTooHigh in run {run_id} ({severity})" for severity in ("warning", "critical")}
    critical = stack.sink.wait_for(lambda p: attachment(p)["title"] == titles["critical"], TIMEOUT)
    assert critical is not None, f"no critical Slack message; received {stack.sink.received()}\n{stack.prometheus.log_tail()}"
    # The warning (KL > 0.3) comes first, unless KL > 1 followed so fast that the critical alert
    # inhibited it before Alertmanager's group_wait was over: either way the critical one arrives.
    kl_messages = [(t, p) for t, p in stack.sink.received() if attachment(p)["title"] in titles.values()]
    for _, payload in kl_messages:
        message = attachment(payload)
        severity = "critical" if message["title"] == titles["critical"] else "warning"
        channel, threshold, color = {"critical": ("#grpo-alerts-critical", "1", "danger"), "warning": ("#grpo-alerts", "0.3", "warning")}[severity]
        assert (payload["channel"], payload["username"], message["color"]) == (channel, "rewardscope", color)
        assert message["title_link"] == f"http://localhost:3000/d/rewardscope-overview?var-run_id={run_id}"
        assert kl_message_pattern(run_id, threshold, severity).fullmatch(message["text"]), message["text"]

    # The critical alert inhibits the warning of the same alert and run.
    alerts = stack.alertmanager.get("/api/v2/alerts", filter=f'run_id="{run_id}"')
    warning_alert = [a for a in alerts if a["labels"]["alertname"] == "GRPOKLTooHigh" and a["labels"]["severity"] == "warning"]
    assert warning_alert and warning_alert[0]["status"]["inhibitedBy"], alerts

    recorded = step_times(tmp_path / "runs" / run_id)
    onset = plan_run("kl_blowup", steps).onset
    crossed = min(s for s, row in recorded.items() if row.get("grpo_kl", 0) > 0.3)
    crossed_critical = min(s for s, row in recorded.items() if row.get("grpo_kl", 0) > 1.0)
    timestamp = lambda step: recorded[step]["grpo_last_step_timestamp_seconds"]  # noqa: E731
    first = kl_messages[0][0]
    with capsys.disabled():
        print(f"\n[latency] kl_blowup at {rate} steps/s, scrape/eval 1 s, for 1s, group_wait 1s: "
              f"onset (step {onset}) -> first Slack message {first - timestamp(onset):.1f} s; "
              f"KL > 0.3 (step {crossed}) -> first message {first - timestamp(crossed):.1f} s; "
              f"KL > 1 (step {crossed_critical}) -> critical message {critical[0] - timestamp(crossed_critical):.1f} s; "
              f"messages: {[attachment(p)['title'] for _, p in kl_messages]}")


def test_stalled_run_reaches_slack(tmp_path, stack_factory, simulate, capsys):
    port = free_port()
    stack = stack_factory(port)
    run_id = "e2e-stalled"
    simulate("stalled", run_id, port, steps=30, rate=10, linger=60)
    got = stack.sink.wait_for(lambda p: attachment(p)["title"] == f"[FIRING:1] GRPORunStalled in run {run_id} (error)", TIMEOUT)
    assert got is not None, f"no Slack message; received {stack.sink.received()}\n{stack.prometheus.log_tail()}"
    assert got[1]["channel"] == "#grpo-alerts-critical"
    assert re.match(rf"\*Run {run_id} stalled: no step for [0-9.]+ s\*\n", attachment(got[1])["text"])
    recorded = step_times(tmp_path / "runs" / run_id)
    last = max(recorded)
    with capsys.disabled():
        print(f"\n[latency] stalled: last step {last} -> Slack {got[0] - recorded[last]['grpo_last_step_timestamp_seconds']:.1f} s "
              f"(stall threshold 3 s, for 1s)")


def test_healthy_run_sends_nothing(tmp_path, stack_factory, simulate):
    port = free_port()
    stack = stack_factory(port)
    process = simulate("healthy", "e2e-healthy", port, steps=60, rate=10, linger=4)
    assert process.wait(timeout=TIMEOUT) == 0
    time.sleep(3.0)  # evaluations of the last scrapes, and Alertmanager's group_wait
    firing = stack.prometheus.get("/api/v1/query", query='ALERTS{run_id="e2e-healthy"}')["data"]["result"]
    assert firing == [] and stack.sink.received() == []
    scraped = stack.prometheus.get("/api/v1/query", query='max_over_time(grpo_step{run_id="e2e-healthy"}[5m])')["data"]["result"]
    assert scraped and float(scraped[0]["value"][1]) >= 50  # Prometheus did watch the run


def test_a_hacked_run_reaches_slack_and_stays_firing(tmp_path, stack_factory, simulate, capsys):
    # The held verdict keeps grpo_reward_hacking_suspected at 1 while the hack goes on (the flag used to be on for
    # about a second, and never reached Slack), so the alert fires once and is still firing when the run ends.
    port = free_port()
    stack = stack_factory(port)
    run_id, steps, rate = "e2e-hack", 120, 10
    process = simulate("reward_hacking", run_id, port, steps, rate, linger=10)
    title = f"[FIRING:1] GRPORewardHackingSuspected in run {run_id} (critical)"
    got = stack.sink.wait_for(lambda p: attachment(p)["title"] == title, TIMEOUT)
    assert got is not None, f"no Slack message; received {stack.sink.received()}\n{stack.prometheus.log_tail()}"

    def query(expr):
        return stack.prometheus.get("/api/v1/query", query=expr)["data"]["result"]

    # While the finished run lingers on /metrics: its last step was scraped, and the alert is still firing.
    deadline = time.monotonic() + TIMEOUT
    while not any(float(r["value"][1]) == steps for r in query(f'grpo_step{{run_id="{run_id}"}}')):
        assert time.monotonic() < deadline, "the last step was never scraped"
        time.sleep(0.2)
    time.sleep(1.5)  # one more rule evaluation
    firing = query(f'ALERTS{{run_id="{run_id}",alertname="GRPORewardHackingSuspected"}}')
    assert [r["metric"]["alertstate"] for r in firing] == ["firing"]
    resolved = [p for _, p in stack.sink.received() if "RESOLVED" in attachment(p)["title"] and "Hacking" in attachment(p)["title"]]
    assert resolved == []
    assert process.wait(timeout=TIMEOUT) == 0
    recorded = step_times(tmp_path / "runs" / run_id)
    flagged = [s for s, row in sorted(recorded.items()) if row.get("grpo_reward_hacking_suspected") == 1.0]
    assert flagged == list(range(flagged[0], steps + 1))  # held from its first step to the last
    with capsys.disabled():
        onset = plan_run("reward_hacking", steps).onset
        print(f"\n[latency] reward_hacking at {rate} steps/s: flagged at step {flagged[0]} (onset {onset}), "
              f"Slack {got[0] - recorded[flagged[0]]['grpo_last_step_timestamp_seconds']:.1f} s later, held to step {steps}")
