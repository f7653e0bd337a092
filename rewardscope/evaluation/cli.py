"""``rewardscope evaluate``: measure every alert on many simulated runs and print the detection table.

Runs every failure scenario and the four healthy paces (``--seeds`` runs each, over the grid
of variations of rewardscope.evaluation.grid), in-process and in ``--jobs`` processes, each
through a real RewardMonitor with the default alert pack and online detectors, and prints
the detection table and the false-alarm table (rewardscope.evaluation.table) as Markdown.
``--grid small`` with few seeds and steps is the quick check the tests run.

Usage::

    rewardscope evaluate                                   # the full grid, 24 seeds, a few minutes on 2 cores
    rewardscope evaluate --grid small --seeds 2 --steps 90 --onset 30 --healthy-steps 200 --jobs 1
    rewardscope evaluate --scenario kl_blowup --scenario healthy --out table.md
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from pathlib import Path

from ..simulation.scenarios import Scenario
from .grid import FULL_GRID, HEALTHY, MEANT, SMALL_GRID, runs
from .runner import RunRecord, run_one
from .table import detection_rows, false_alarm_rows, render

GRIDS = {"full": FULL_GRID, "small": SMALL_GRID}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    scenarios = [s.value for s in tuple(MEANT) + HEALTHY]
    parser.add_argument("--grid", choices=sorted(GRIDS), default="full", help="variations to run (default full: 12)")
    parser.add_argument("--seeds", type=int, default=24, help="runs per scenario, cycling through the grid (default 24)")
    parser.add_argument("--steps", type=int, default=150, help="steps of a failure run (default 150)")
    parser.add_argument("--onset", type=int, default=50, help="onset step of a failure run (default 50)")
    parser.add_argument("--healthy-steps", type=int, default=1000, help="steps of a healthy run (default 1000)")
    parser.add_argument("--scenario", action="append", choices=scenarios, help="only these scenarios (repeatable)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--out", help="also write the tables to this Markdown file")


def evaluate(specs: list, jobs: int) -> list[RunRecord]:
    """Run every spec; in ``jobs`` processes when more than one."""
    if jobs <= 1:
        return [run_one(spec) for spec in specs]
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        return pool.map(run_one, specs, chunksize=4)


def run(args: argparse.Namespace) -> int:
    if args.seeds < 1 or args.jobs < 1 or args.steps < 2 or not 1 <= args.onset < args.steps or args.healthy_steps < 2:
        print("rewardscope evaluate: error: need --seeds >= 1, --jobs >= 1, 1 <= --onset < --steps and --healthy-steps >= 2",
              file=sys.stderr)
        return 2
    chosen = tuple(Scenario(s) for s in args.scenario) if args.scenario else None
    specs = list(runs(GRIDS[args.grid], seeds=args.seeds, steps=args.steps, onset=args.onset,
                      healthy_steps=args.healthy_steps, scenarios=chosen))
    started = time.monotonic()
    print(f"rewardscope evaluate: {len(specs)} runs ({args.grid} grid, {args.seeds} seeds per scenario, {args.jobs} jobs)",
          file=sys.stderr, flush=True)
    records = evaluate(specs, args.jobs)
    table = render(detection_rows(records), false_alarm_rows(records))
    steps = sum(r.steps_recorded for r in records)
    footer = (f"\n{len(records)} runs, {steps} steps, {time.monotonic() - started:.0f} s; failure runs: {args.steps} steps, "
              f"onset {args.onset}; healthy runs: {args.healthy_steps} steps; grid {args.grid}, {args.seeds} seeds per scenario.")
    print(table + footer)
    if args.out:
        Path(args.out).write_text(table + "\n" + footer.strip() + "\n", encoding="utf-8")
    return 0
