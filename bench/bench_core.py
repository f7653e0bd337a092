"""Benchmark of the monitor's core: record_step latency, memory over long runs, bytes on disk, /metrics render time.

Prints one JSON document. Figures, not assertions: tests never time anything.

    python bench/bench_core.py              # the full grid and 1M-step memory runs (~10 minutes on 2 cores)
    python bench/bench_core.py --quick      # a smaller grid and 100k steps, for a smoke check

Each record_step runs as in a real run: the run store writing and flushing every
step, /metrics served on 127.0.0.1 (a free port), the default alert pack evaluated
in-process and the default detectors on. ``tracker`` times the old API's
RewardMetricsTracker.track_step on the old system's own inputs (no run directory, no
server), to compare with that system's 110 µs p50.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from prometheus_client import generate_latest

from rewardscope import RewardFunctionSpec, RewardMonitor
from rewardscope.metrics.functions import LEGACY_REWARD_FUNCTIONS

GROUP_SIZE = 8


def reward_functions(count: int) -> list[RewardFunctionSpec]:
    """The four legacy functions, then more of the same shapes up to ``count``."""
    specs = list(LEGACY_REWARD_FUNCTIONS)
    for i in range(len(specs), count):
        base = LEGACY_REWARD_FUNCTIONS[i % 4]
        specs.append(RewardFunctionSpec(f"{base.name}_{i}", 1.0, base.min_value, base.max_value))
    return specs[:count]


def batches(specs, n: int, count: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """A few pre-generated realistic batches (discrete rewards, as the legacy functions give)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        out.append({s.name: rng.choice(np.linspace(s.min_value, s.max_value, 5), size=n) for s in specs})
    return out


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def latency(n: int, f: int, steps: int) -> dict:
    specs = reward_functions(f)
    data = batches(specs, n, 8)
    with tempfile.TemporaryDirectory() as tmp:
        monitor = RewardMonitor("bench", specs, group_size=GROUP_SIZE, run_dir=tmp, prometheus_port=0, alerts=True)
        try:
            for step in range(20):  # warm-up
                monitor.record_step(step, data[step % 8])
            times = np.empty(steps)
            for i in range(steps):
                batch = data[i % 8]
                started = time.perf_counter()
                monitor.record_step(20 + i, batch)
                times[i] = time.perf_counter() - started
        finally:
            monitor.close()
    return {"samples": n, "functions": f, "steps": steps,
            "p50_us": round(float(np.percentile(times, 50)) * 1e6, 1), "p99_us": round(float(np.percentile(times, 99)) * 1e6, 1)}


def tracker(n: int = 1024, f: int = 4, steps: int = 3000) -> dict:
    from rewardscope import RewardMetricsTracker

    specs = reward_functions(f)
    data = batches(specs, n, 8)
    old = RewardMetricsTracker([s.name for s in specs], group_size=GROUP_SIZE)
    for step in range(20):
        old.track_step(step, data[step % 8])
    times = np.empty(steps)
    for i in range(steps):
        started = time.perf_counter()
        old.track_step(20 + i, data[i % 8])
        times[i] = time.perf_counter() - started
    old.close()
    return {"api": "RewardMetricsTracker.track_step", "samples": n, "functions": f, "steps": steps,
            "p50_us": round(float(np.percentile(times, 50)) * 1e6, 1), "p99_us": round(float(np.percentile(times, 99)) * 1e6, 1)}


def statistics(n: int, f: int, steps: int) -> dict:
    """compute_reward_statistics alone, by the compiled pass (metrics/kernel.py) and by the numpy path."""
    from rewardscope.metrics import kernel
    from rewardscope.metrics.step import FunctionTable, compute_reward_statistics

    specs = reward_functions(f)
    matrices = [np.stack([b[s.name] for s in specs]) for b in batches(specs, n, 8)]
    result: dict = {"samples": n, "functions": f, "steps": steps}
    for path in ("compiled", "numpy"):
        if path == "compiled" and not kernel.available():
            result["compiled_p50_us"] = None  # numba not installed
            continue
        table = FunctionTable.build(specs, compiled=path == "compiled")
        times = np.empty(steps)
        for i in range(steps):
            started = time.perf_counter()
            compute_reward_statistics(matrices[i % 8], table, GROUP_SIZE)
            times[i] = time.perf_counter() - started
        result[f"{path}_p50_us"] = round(float(np.percentile(times, 50)) * 1e6, 1)
    return result


def memory(total_steps: int, distributions: bool, n: int = 64, f: int = 4) -> dict:
    specs = reward_functions(f)
    data = batches(specs, n, 8)
    checkpoints = [c for c in (1_000, 10_000, 100_000, 1_000_000) if c <= total_steps]
    rss = {}
    with tempfile.TemporaryDirectory() as tmp:
        monitor = RewardMonitor("mem", specs, group_size=GROUP_SIZE, run_dir=tmp, prometheus_port=0, log_distributions=distributions)
        try:
            for step in range(1, total_steps + 1):
                monitor.record_step(step, data[step % 8], kl=0.01, policy_entropy=1.0, eval_accuracy=0.5 if step % 50 == 0 else None)
                if step in checkpoints:
                    rss[str(step)] = round(rss_mb(), 2)
        finally:
            monitor.close()
    growth = rss[str(checkpoints[-1])] - rss["10000"] if "10000" in rss and len(checkpoints) > 2 else None
    return {"distributions": distributions, "samples": n, "functions": f, "rss_mb_after_steps": rss,
            "growth_mb_from_10k": None if growth is None else round(growth, 2)}


def disk(distributions: bool, kind: str = "discrete", n: int = 1024, f: int = 4, steps: int = 2000) -> dict:
    specs = reward_functions(f)
    data = batches(specs, n, 8)
    if kind == "continuous":  # the worst case for compression
        rng = np.random.default_rng(1)
        data = [{s.name: rng.uniform(s.min_value, s.max_value, size=n) for s in specs} for _ in range(8)]
    with tempfile.TemporaryDirectory() as tmp:
        with RewardMonitor("disk", specs, group_size=GROUP_SIZE, run_dir=tmp, log_distributions=distributions) as monitor:
            for step in range(1, steps + 1):
                monitor.record_step(step, data[step % 8], kl=0.01, policy_entropy=1.0, advantages=np.zeros(n),
                                    completion_lengths=np.full(n, 100), max_completion_length=256, grad_norm=1.0, loss=0.1,
                                    learning_rate=1e-6, clip_ratio=0.0)
        run = Path(tmp) / "disk"
        steps_bytes = (run / "steps.jsonl").stat().st_size
        dist_bytes = (run / "rewards.f16z").stat().st_size if distributions else 0
    result = {"distributions": distributions, "samples": n, "functions": f, "steps": steps, "rewards": kind,
              "steps_jsonl_bytes_per_step": round(steps_bytes / steps, 1)}
    if distributions:
        result["distribution_bytes_per_reward_value"] = round(dist_bytes / (steps * n * f), 4)
    return result


def render(f: int, n: int = 1024, renders: int = 300) -> dict:
    specs = reward_functions(f)
    data = batches(specs, n, 8)
    with RewardMonitor("render", specs, group_size=GROUP_SIZE, run_dir=None, prometheus_port=None) as monitor:
        for step in range(1, 51):
            monitor.record_step(step, data[step % 8], kl=0.01, policy_entropy=1.0, completion_lengths=np.full(n, 100))
        times = np.empty(renders)
        for i in range(renders):
            started = time.perf_counter()
            body = generate_latest(monitor.registry)
            times[i] = time.perf_counter() - started
    return {"functions": f, "p50_ms": round(float(np.percentile(times, 50)) * 1e3, 3),
            "p99_ms": round(float(np.percentile(times, 99)) * 1e3, 3), "bytes": len(body)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller grid, 100k-step memory runs")
    parser.add_argument("--part", choices=("latency", "statistics", "tracker", "memory", "disk", "render"), action="append",
                        help="run only these parts (repeatable; default: all)")
    args = parser.parse_args()
    parts = set(args.part or ("latency", "statistics", "tracker", "memory", "disk", "render"))
    sizes = (64, 256, 1024, 4096, 65536)
    grid = []
    for f in (4, 16) if "latency" in parts else ():
        for n in sizes:
            steps = 300 if n >= 65536 else 1000 if n >= 4096 else 3000
            if args.quick:
                steps = max(steps // 10, 50)
            grid.append(latency(n, f, steps))
            print(f"latency N={n} F={f}: {grid[-1]}", file=sys.stderr)
    memory_steps = 100_000 if args.quick else 1_000_000
    memory_runs = [memory(memory_steps, False), memory(memory_steps, True)] if "memory" in parts else []
    for m in memory_runs:
        print(f"memory: {m}", file=sys.stderr)
    result = {
        "machine": {"python": platform.python_version(), "numpy": np.__version__, "cpus": os.cpu_count(),
                    "processor": platform.processor() or platform.machine()},
        "record_step_latency": grid,
        "reward_statistics": [statistics(n, f, 300 if n >= 65536 else 3000)
                              for f in (4, 16) for n in (1024, 65536)] if "statistics" in parts else [],
        "old_api_tracker": [tracker()] if "tracker" in parts else [],
        "memory": memory_runs,
        "disk": [disk(False), disk(True), disk(True, "continuous")] if "disk" in parts else [],
        "render_metrics": [render(4), render(16)] if "render" in parts else [],
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
