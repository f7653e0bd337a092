"""Benchmark of a fleet: series per run, and 50 simulated runs scraped by one Prometheus.

Prints one JSON document. Figures, not assertions.

    python bench/bench_fleet.py                    # series budget, then 50 runs for 3 minutes
    python bench/bench_fleet.py --runs 10 --minutes 1

1. Series budget: a monitor with F reward functions (the four legacy shapes, repeated) records
   a few steps with every optional input, its /metrics is counted (one series per sample line),
   for F = 1, 2, 4, 8, 16; a least-squares line gives series = a + b x F.
2. Fleet: N RewardMonitors in this process, each serving a healthy simulated run at 1 step/s on
   127.0.0.1; Debian's Prometheus 2.42 scrapes them every 5 s with the repository's rules, and
   scrapes itself. After the run time: head series (prometheus_tsdb_head_series), Prometheus's
   resident memory (VmRSS), and for every query of the run-comparison dashboard, the time of the
   range query Grafana sends for all runs over the last 5 minutes at a 15 s step (median of 5);
   the slowest query is the figure. The same for the recording rule that replaces the exact mean.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "tests"), str(ROOT / "tests" / "alerting")]

from alerting_servers import start_prometheus  # noqa: E402
from bench_core import reward_functions  # noqa: E402

from rewardscope import LEGACY_REWARD_FUNCTIONS, RewardMonitor  # noqa: E402
from rewardscope.dashboards.definitions import COMPARE  # noqa: E402
from rewardscope.simulation.scenarios import plan_run, simulate_steps  # noqa: E402


def series_of_run(functions: int) -> int:
    """Sample lines of /metrics for a run with ``functions`` reward functions after steps with every input."""
    specs = reward_functions(functions)
    monitor = RewardMonitor("budget", specs, group_size=4, run_dir=None, registry=CollectorRegistry(), max_completion_length=64)
    rng = np.random.default_rng(0)
    for step in range(1, 36):  # past the longest trend window (30 steps): the slopes are exported too
        rewards = {s.name: rng.uniform(s.min_value, s.max_value, 16) for s in specs}
        monitor.record_step(step, rewards, kl=0.1, policy_entropy=1.0, advantages=rng.normal(size=16),
                            completion_lengths=rng.integers(1, 65, 16), max_completion_length=64,
                            grad_norm=1.0, loss=0.5, learning_rate=1e-5, clip_ratio=0.1, tokens=1000, eval_accuracy=0.5)
    text = generate_latest(monitor.registry).decode()
    monitor.close()
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def series_budget() -> dict:
    counts = {f: series_of_run(f) for f in (1, 2, 4, 8, 16)}
    slope, intercept = np.polyfit(list(counts), list(counts.values()), 1)
    return {"series_by_reward_functions": counts, "fit": f"series = {intercept:.0f} + {slope:.1f} x F"}


def api(base: str, path: str, **params: str) -> dict:
    with urllib.request.urlopen(f"{base}{path}?{urllib.parse.urlencode(params)}", timeout=60) as response:
        return json.loads(response.read())


def timed_range_query(base: str, expr: str, repeats: int = 5) -> float:
    end = time.time()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        api(base, "/api/v1/query_range", query=expr, start=str(end - 300), end=str(end), step="15")
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def grafana_query(expr: str) -> str:
    """What Grafana sends for every run: $__rate_interval = 4 x 5 s scrape, all runs selected."""
    return expr.replace("$__rate_interval", "20s").replace("$job", "rewardscope").replace("$run_id", ".*")


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def fleet(runs: int, minutes: float, directory: Path) -> dict:
    monitors = []
    for i in range(runs):
        plan = plan_run("healthy", 100000, seed=i)
        monitors.append(RewardMonitor(f"fleet-{i:02d}", LEGACY_REWARD_FUNCTIONS, group_size=plan.group_size, run_dir=None,
                                      registry=CollectorRegistry(), prometheus_port=0,
                                      max_completion_length=plan.max_completion_length))
    stop = threading.Event()

    def drive(monitor: RewardMonitor, seed: int) -> None:
        for sim in simulate_steps("healthy", 100000, seed=seed):
            if stop.wait(1.0):
                return
            monitor.record_step(sim.step, **sim.kwargs)

    threads = [threading.Thread(target=drive, args=(m, i), daemon=True) for i, m in enumerate(monitors)]
    prometheus = start_prometheus(directory, [f"127.0.0.1:{m.prometheus_port}" for m in monitors],
                                  ROOT / "prometheus" / "rules", interval="5s")
    try:
        for thread in threads:
            thread.start()
        time.sleep(minutes * 60)
        pid = prometheus.process.pid
        with urllib.request.urlopen(prometheus.url + "/metrics", timeout=10) as response:
            own = response.read().decode()
        head = next(float(line.split()[-1]) for line in own.splitlines() if line.startswith("prometheus_tsdb_head_series "))
        counted = api(prometheus.url, "/api/v1/query", query='count({job="rewardscope"})')["data"]["result"]
        run_series = float(counted[0]["value"][1])
        queries = {}
        for panel in COMPARE.panels():
            for target in panel.targets:
                queries[f"{panel.title}: {target.expr}"] = timed_range_query(prometheus.url, grafana_query(target.expr))
        slowest = max(queries, key=queries.get)
        recorded = timed_range_query(prometheus.url, "run:grpo_reward_exact_mean:rate1m")
        raw_exact = timed_range_query(prometheus.url, grafana_query(
            '(sum by (run_id) (rate(grpo_reward_positive_sum_total{job="rewardscope"}[$__rate_interval])) - sum by (run_id) '
            '(rate(grpo_reward_negative_sum_total{job="rewardscope"}[$__rate_interval]))) / sum by (run_id) '
            '(rate(grpo_reward_value_bucket{job="rewardscope",le="+Inf"}[$__rate_interval]))'))
        return {"runs": runs, "minutes": minutes, "scrape_interval_s": 5, "series_of_the_runs": run_series,
                "prometheus_head_series": head, "prometheus_rss_mb": round(resident_mb(pid), 1),
                "compare_dashboard_slowest_query": {"panel_query": slowest, "median_s": round(queries[slowest], 4)},
                "compare_dashboard_queries_median_s": round(statistics.median(queries.values()), 4),
                "exact_mean_all_runs_raw_s": round(raw_exact, 4), "exact_mean_all_runs_recorded_s": round(recorded, 4)}
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)
        prometheus.stop()
        for monitor in monitors:
            monitor.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--dir", default="/tmp/rewardscope-bench-fleet", help="Prometheus data directory (removed first)")
    args = parser.parse_args()
    import shutil

    shutil.rmtree(args.dir, ignore_errors=True)
    result = {"series_budget": series_budget(), "fleet": fleet(args.runs, args.minutes, Path(args.dir))}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
