"""A fleet on one machine: a node Prometheus scrapes several runs and remote-writes to a central one.

Real Prometheus 2.42 twice on 127.0.0.1: the central one runs with `--web.enable-remote-write-receiver`,
scrapes nothing and evaluates the repository's rules (alerts and recording rules); the node one
scrapes three simulated runs every second with the repository's rewardscope job and `remote_write`s
everything to the central one. Every dashboard panel query, for every run, must then return data
from the central Prometheus, and so must the recording rules.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry
from support import free_port, require_binary

from rewardscope import LEGACY_REWARD_FUNCTIONS, RewardMonitor
from rewardscope.dashboards.definitions import DASHBOARDS
from rewardscope.simulation.scenarios import plan_run, simulate_steps

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "alerting"))  # the alerting tests' server helpers
from alerting_servers import ROOT, Server, prometheus_config

pytestmark = pytest.mark.slow

RUNS = ("fleet-a", "fleet-b", "fleet-c")
RATE_INTERVAL = "4s"  # Grafana's $__rate_interval at a 1 s scrape interval
FUNCTIONS = [spec.name for spec in LEGACY_REWARD_FUNCTIONS]


def start(directory: Path, config: str, *extra: str) -> Server:
    binary = require_binary("prometheus")
    directory.mkdir(parents=True)
    (directory / "prometheus.yml").write_text(config)
    port = free_port()
    return Server(directory.name, [binary, f"--config.file={directory / 'prometheus.yml'}", f"--storage.tsdb.path={directory / 'data'}",
                                   f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn", *extra],
                  f"http://127.0.0.1:{port}", directory / "prometheus.log")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fleet")
    stop = threading.Event()
    monitors, servers, threads = [], [], []
    try:
        for run_id in RUNS:
            plan = plan_run("healthy", 600, seed=len(monitors), eval_every=2)
            monitors.append(RewardMonitor(run_id, LEGACY_REWARD_FUNCTIONS, group_size=plan.group_size, run_dir=None,
                                          registry=CollectorRegistry(), prometheus_port=0, alerts=True,
                                          max_completion_length=plan.max_completion_length))
        central = yaml.safe_load(prometheus_config([], ROOT / "prometheus" / "rules", None))
        central["scrape_configs"] = []  # it only receives
        servers.append(start(tmp / "central", yaml.safe_dump(central), "--web.enable-remote-write-receiver"))
        node = yaml.safe_load(prometheus_config([f"127.0.0.1:{m.prometheus_port}" for m in monitors], tmp / "no-rules", None))
        node.pop("rule_files")
        node["global"]["external_labels"] = {"prometheus_node": "node-1"}
        node["remote_write"] = [{"url": f"{servers[0].url}/api/v1/write",
                                 "queue_config": {"batch_send_deadline": "1s", "max_samples_per_send": 2000}}]
        servers.append(start(tmp / "node", yaml.safe_dump(node)))

        def step(monitor: RewardMonitor, seed: int) -> None:
            for sim in simulate_steps("healthy", 600, seed=seed, eval_every=2):
                if stop.wait(0.1):
                    return
                monitor.record_step(sim.step, **sim.kwargs)

        for seed, monitor in enumerate(monitors):
            threads.append(threading.Thread(target=step, args=(monitor, seed), daemon=True))
            threads[-1].start()
        central_server = servers[0]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # several scrapes of every run have arrived centrally
            result = central_server.get("/api/v1/query", query='count_over_time(grpo_steps_total{job="rewardscope"}[1m]) >= 8')
            if len(result["data"]["result"]) == len(RUNS):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"the central Prometheus did not receive the runs:\n{servers[1].log_tail()}")
        yield central_server
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        for server in reversed(servers):
            server.stop()
        for monitor in monitors:
            monitor.close()


def substitute(expr: str, run_id: str, reward_fn: str = ".*") -> str:
    return (expr.replace("$__rate_interval", RATE_INTERVAL).replace("$job", "rewardscope").replace("$run_id", run_id)
            .replace("$reward_fn", reward_fn))


def test_every_dashboard_query_returns_data_for_every_run_from_the_central_prometheus(fleet):
    empty, not_finite = [], []
    for board in DASHBOARDS:
        for panel in board.panels():
            if panel.may_be_empty:
                continue
            repeats = FUNCTIONS if panel.repeat == "reward_fn" else [".*"]
            for run_id in RUNS:
                for value in repeats:
                    for target in panel.targets:
                        query = substitute(target.expr, run_id, value)
                        result = fleet.get("/api/v1/query", query=query)["data"]["result"]
                        if not result:
                            empty.append(f"{board.uid} / {panel.title} [{run_id}]: {query}")
                        not_finite += [f"{panel.title}: {r['value'][1]}" for r in result if not math.isfinite(float(r["value"][1]))]
    assert empty == [], "panels without data in the central Prometheus:\n" + "\n".join(empty)
    assert not_finite == []


def test_the_central_prometheus_evaluates_the_recording_rules_for_every_run(fleet):
    time.sleep(6)  # a rule evaluation (5 s) after the first minute of data
    for record in ("run:grpo_reward_exact_mean:rate1m", "run_fn:grpo_reward_fn_exact_mean:rate1m", "run:grpo_steps:rate1m",
                   "run:grpo_step_duration_seconds:p50_rate1m"):
        result = fleet.get("/api/v1/query", query=record)["data"]["result"]
        assert {r["metric"]["run_id"] for r in result} == set(RUNS), record
        assert all(math.isfinite(float(r["value"][1])) for r in result), (record, result)
    # Series written remotely keep the node's external label, so a central Prometheus tells nodes apart.
    nodes = fleet.get("/api/v1/query", query='count by (prometheus_node) (grpo_step{job="rewardscope"})')["data"]["result"]
    assert [(r["metric"]["prometheus_node"], r["value"][1]) for r in nodes] == [("node-1", "3")]
