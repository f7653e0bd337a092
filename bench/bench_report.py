"""Benchmark of `rewardscope report`: time and file size for runs of 1,000, 10,000 and 100,000 steps.

Prints one JSON document. Figures, not assertions: tests never time anything.

    python bench/bench_report.py                    # 1k, 10k, 100k steps
    python bench/bench_report.py --steps 1000       # one size

The runs: 1,000 steps of the simulated ``reward_hacking`` scenario (four reward functions,
128 completions per step, G = 8, distributions logged, in-process alerts with evidence) are
recorded through RewardMonitor once; longer runs repeat those steps with new step numbers and
timestamps (rows, distribution records and alert events alike), since recording 100,000
simulated steps through the monitor would take most of the benchmark. Each report is built by
``python -m rewardscope.cli report`` in a fresh process, so the time includes Python's start
and the imports (what a user waits for), and its peak memory is that process's max RSS. The same report is then built again inside the
benchmark's process, timing its two phases apart: reading the run (``load_run``: steps,
``rewardscope summary``'s pass, distributions, alerts, evidence) and building the page
(charts, downsampling, Bokeh serialisation).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

from rewardscope import LEGACY_REWARD_FUNCTIONS, RewardMonitor
from rewardscope.exporter.runstore import (
    DISTRIBUTIONS_FILE,
    read_alerts,
    read_distributions,
)
from rewardscope.simulation.scenarios import simulate_steps

BASE_STEPS = 1000
REPO = Path(__file__).resolve().parents[1]


def record_base(root: Path) -> Path:
    with RewardMonitor("base", LEGACY_REWARD_FUNCTIONS, group_size=8, run_dir=root, alerts=True, log_distributions=True,
                       detectors=[]) as monitor:
        for sim in simulate_steps("reward_hacking", BASE_STEPS):
            n = len(next(iter(sim.kwargs["rewards_by_function"].values())))
            monitor.record_step(sim.step, **sim.kwargs, completions=[f"completion {i} " * 20 for i in range(n)],
                                prompts=[f"prompt {i // 8}" for i in range(n)])
    return root / "base"


def extend(base: Path, target: Path, steps: int) -> None:
    """``target``: the base run's steps repeated to ``steps`` steps (see the module docstring)."""
    target.mkdir(parents=True)
    manifest = json.loads((base / "manifest.json").read_text())
    manifest["run_id"] = target.name
    (target / "manifest.json").write_text(json.dumps(manifest))
    rows = [json.loads(line) for line in (base / "steps.jsonl").read_text().splitlines()]
    with open(target / "steps.jsonl", "w") as f:
        for k in range(steps):
            row = rows[k % len(rows)]
            f.write(json.dumps([k + 1, row[1] + (k // len(rows)) * 1000.0] + row[2:]) + "\n")
    records = list(read_distributions(base))
    with open(target / DISTRIBUTIONS_FILE, "wb") as f:
        for k in range(steps):
            _, rewards = records[k % len(records)]
            payload = zlib.compress(rewards.astype("<f2").tobytes(), 1)
            f.write(struct.pack("<qIII", k + 1, rewards.shape[0], rewards.shape[1], len(payload)) + payload)
    with open(target / "alerts.jsonl", "w") as f:
        for repeat in range(steps // len(rows)):
            f.writelines(json.dumps({**event, "step": event["step"] + repeat * len(rows)}) + "\n" for event in read_alerts(base))
    (target / "evidence.jsonl").write_bytes((base / "evidence.jsonl").read_bytes())


def measure(run_dir: Path, output: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "rewardscope.cli", "report", str(run_dir), "-o", str(output)], env=env,
                          capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(done.stderr)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the largest report process so far
    from rewardscope.htmlreport.page import render_report
    from rewardscope.htmlreport.runs import load_run

    started = time.perf_counter()
    run = load_run(run_dir)
    loaded = time.perf_counter()
    render_report([run])
    rendered = time.perf_counter()
    return {"report_seconds": round(seconds, 2), "in_process_load_seconds": round(loaded - started, 2),
            "in_process_render_seconds": round(rendered - loaded, 2), "report_bytes": output.stat().st_size,
            "report_mb": round(output.stat().st_size / 1e6, 2), "peak_rss_mb_so_far": round(peak_kib / 1024, 1),
            "run_dir_mb": round(sum(p.stat().st_size for p in run_dir.iterdir()) / 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    args = parser.parse_args()
    results = {"python": platform.python_version(), "cpus": os.cpu_count(), "runs": {}}
    with tempfile.TemporaryDirectory(prefix="rs-bench-report-") as tmp:
        root = Path(tmp)
        base = record_base(root / "runs")
        for steps in sorted(args.steps):
            run_dir = base if steps == BASE_STEPS else root / "runs" / f"steps-{steps}"
            if steps != BASE_STEPS:
                extend(base, run_dir, steps)
            results["runs"][steps] = measure(run_dir, root / f"report-{steps}.html")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
