"""Benchmark of the run store on a long run: summary, reopen, resume and read times on a 1M-step store.

Prints one JSON document. Figures, not assertions: tests never time anything.

    python bench/bench_runstore.py                   # 1M steps, F = 4 (~420 MB in a temp dir, ~1 minute)
    python bench/bench_runstore.py --steps 100000    # a smaller store, for a smoke check

The store is built fast: a 300-step simulated run (the `healthy` scenario, the four
legacy reward functions, G = 8) is recorded through RewardMonitor, and its step
lines, renumbered, are repeated up to the requested length, written straight into
``steps.jsonl`` in the sink's own format.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import TypeVar

from rewardscope import RewardMonitor
from rewardscope.exporter.jsonl import ReadStats
from rewardscope.exporter.runstore import RunStoreSink, read_steps
from rewardscope.exporter.runstore_columns import read_step_columns
from rewardscope.metrics.functions import LEGACY_REWARD_FUNCTIONS
from rewardscope.metrics.layout import StepLayout
from rewardscope.simulation import iter_plan, plan_run

RUN_ID = "bench"
T = TypeVar("T")
TEMPLATE_STEPS = 300


def build_store(root: Path, steps: int) -> Path:
    """A run directory of ``steps`` realistic step lines; returns its path."""
    plan = plan_run("healthy", TEMPLATE_STEPS, seed=0, prompts=16, group_size=8)
    with RewardMonitor(RUN_ID, LEGACY_REWARD_FUNCTIONS, group_size=8, run_dir=root, alerts=False,
                       max_completion_length=plan.max_completion_length) as monitor:
        for sim in iter_plan(plan):
            monitor.record_step(sim.step, **sim.kwargs)
    directory = root / RUN_ID
    lines = (directory / "steps.jsonl").read_bytes().splitlines(keepends=True)
    # Everything after the step and timestamp, reused with new step numbers and times.
    tails = [line[line.index(b",", line.index(b",") + 1):] for line in lines]
    start = time.time() - steps
    with open(directory / "steps.jsonl", "wb") as f:
        for first in range(1, steps + 1, 100_000):
            last = min(steps, first + 99_999)
            f.write(b"".join(b"[%d,%.3f" % (step, start + step) + tails[step % len(tails)] for step in range(first, last + 1)))
    (directory / "summary.json").unlink()
    return directory


def timed(function: Callable[[], T]) -> tuple[float, T]:
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def reopen(root: Path, resume_after_step: int | None = None) -> float:
    """Seconds to open the run again as its writer (repair from the tail), the lock released after."""
    layout = StepLayout(tuple(spec.name for spec in LEGACY_REWARD_FUNCTIONS))
    seconds, sink = timed(lambda: RunStoreSink(root, RUN_ID, layout, manifest_extra={}, resume_after_step=resume_after_step))
    sink.close({})
    (root / RUN_ID / "summary.json").unlink()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--read-steps", type=int, default=200_000, help="steps read through read_steps (default 200k)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-runstore-") as tmp:
        root = Path(tmp)
        build_seconds, directory = timed(lambda: build_store(root, args.steps))
        size = (directory / "steps.jsonl").stat().st_size
        print(f"built {args.steps} steps, {size / 1e6:.0f} MB in {build_seconds:.1f} s", file=sys.stderr)

        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        cli = subprocess.run([sys.executable, "-m", "rewardscope.cli", "summary", str(directory)], env=env,
                             capture_output=True, text=True, check=True)
        summary_cli = time.perf_counter() - started
        cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        # On a shared machine the wall time includes waiting for a core; the CPU time does not.
        summary_cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
        assert f"{args.steps} recorded" in cli.stdout, cli.stdout

        columns = ["grpo_step", "grpo_reward_mean", "grpo_kl"]
        stats = ReadStats()
        columns_seconds, rows = timed(lambda: sum(len(block) for block in read_step_columns(directory, columns, stats)))
        n_read = min(args.read_steps, args.steps)
        read_seconds, _ = timed(lambda: sum(1 for _ in islice(read_steps(directory), n_read)))

        reopen_seconds = reopen(root)
        resume_seconds = reopen(root, resume_after_step=args.steps - 1000)
        result = {
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
            "steps": args.steps, "reward_functions": len(LEGACY_REWARD_FUNCTIONS),
            "steps_jsonl_bytes": size,
            "summary_cli_seconds": round(summary_cli, 2),
            "summary_cli_cpu_seconds": round(summary_cpu, 2),
            "reopen_seconds": round(reopen_seconds, 4),
            "resume_drop_last_1000_steps_seconds": round(resume_seconds, 4),
            "read_steps_per_second": round(n_read / read_seconds),
            "read_step_columns_3_columns_per_second": round(rows / columns_seconds),
            "read_problems": stats.problems(),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
