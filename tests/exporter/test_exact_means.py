"""Counters that never decrease, and exact windowed means from PromQL, negative rewards included, against a real Prometheus."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from support import free_port, require_binary, stop_process

from rewardscope import RewardFunctionSpec, RewardMonitor

SPECS = [RewardFunctionSpec("format_exact", 1.0, 0.0, 3.0), RewardFunctionSpec("check_answer", 1.0, -1.0, 3.0)]


def batches(steps: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        yield {"format_exact": rng.choice([0.0, 1.5, 3.0], size=16), "check_answer": rng.choice([-1.0, -1.0, 0.0, 3.0], size=16)}


def counters(monitor: RewardMonitor) -> dict[tuple[str, str], float]:
    from prometheus_client import generate_latest

    values = {}
    for family in text_string_to_metric_families(generate_latest(monitor.registry).decode()):
        for s in family.samples:
            if s.name.endswith(("_total", "_bucket", "_count", "_sum")):
                values[(s.name, ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())))] = s.value
    return values


def test_every_counter_only_grows_over_a_run_with_negative_rewards():
    with RewardMonitor("mono", SPECS, group_size=4, run_dir=None) as monitor:
        previous: dict = {}
        for step, rewards in enumerate(batches(60), 1):
            monitor.record_step(step, rewards, completion_lengths=np.full(16, 10), tokens=100)
            current = counters(monitor)
            decreased = {k: (previous[k], v) for k, v in current.items() if k in previous and v < previous[k]}
            assert not decreased, decreased
            previous = current
    assert ("grpo_reward_fn_value_sum", "reward_fn=check_answer,run_id=mono") not in previous  # can be negative: no _sum
    assert previous[("grpo_reward_fn_negative_sum_total", "reward_fn=check_answer,run_id=mono")] > 0


def _query(port: int, expr: str, at: float | None = None) -> list[dict]:
    params = {"query": expr, **({} if at is None else {"time": repr(at)})}
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())["data"]["result"]


def _wait(condition, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except OSError:  # Prometheus still starting
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_the_windowed_mean_from_promql_equals_the_mean_of_the_recorded_rewards(tmp_path):
    binary = require_binary("prometheus")
    monitor = RewardMonitor("means", SPECS, group_size=4, run_dir=None, prometheus_port=0)
    config = {"global": {"scrape_interval": "200ms", "scrape_timeout": "200ms"},
              "scrape_configs": [{"job_name": "rewardscope", "static_configs": [{"targets": [f"127.0.0.1:{monitor.prometheus_port}"]}]}]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = subprocess.Popen([binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
                                f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(lambda: _query(port, 'grpo_steps_total{run_id="means"}'), "the first scrape, before any step")
        recorded = []
        for step, rewards in enumerate(batches(40), 1):
            monitor.record_step(step, rewards)
            recorded.append(rewards["check_answer"])
            time.sleep(0.05)  # several scrapes during the run, each of a different number of steps
        _wait(lambda: [r for r in _query(port, 'grpo_steps_total{run_id="means"}') if r["value"][1] == "40"], "the last step scraped")
        at = float(_query(port, 'timestamp(grpo_steps_total{run_id="means"})')[0]["value"][1])
        fn = 'run_id="means", reward_fn="check_answer"'
        mean = (f"(increase(grpo_reward_fn_positive_sum_total{{{fn}}}[1h]) - increase(grpo_reward_fn_negative_sum_total{{{fn}}}[1h]))"
                f" / ignoring(le) increase(grpo_reward_fn_value_bucket{{{fn}, le=\"+Inf\"}}[1h])")
        (result,) = _query(port, mean, at)
        assert float(result["value"][1]) == pytest.approx(float(np.concatenate(recorded).mean()), rel=1e-9)
        (resets,) = _query(port, f"resets(grpo_reward_fn_negative_sum_total{{{fn}}}[1h]) + resets(grpo_reward_fn_positive_sum_total{{{fn}}}[1h])", at)
        assert resets["value"][1] == "0"
    finally:
        stop_process(process)
        monitor.close()
