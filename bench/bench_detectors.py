"""Cost per step of the online detectors at N = 1,024 samples (128 prompts x G = 8), F = 4 functions.

Prepares the StepMetrics of a simulated run once (through a RewardMonitor without detectors),
then times each detector's per-step work alone (``observe_batch`` + ``update``) over the same
steps, and the whole default list. Prints microseconds per step (median of 5 repeats).

Usage::

    PYTHONPATH=. python bench/bench_detectors.py            # 400 steps
    PYTHONPATH=. python bench/bench_detectors.py --steps 1000
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from rewardscope import RewardMonitor
from rewardscope.analysis import default_detectors
from rewardscope.simulation.scenarios import iter_plan, plan_run


def prepared_steps(steps: int) -> tuple[list, list, float]:
    """(StepMetrics, (combined, lengths, G)) of each step of a simulated run with 128 prompts x 8, and the
    microseconds per step record_step took without detectors (for scale: the machine's speed varies)."""
    plan = plan_run("kl_blowup", steps, seed=0, prompts=128, group_size=8)
    metrics, batches = [], []
    recording = 0.0
    with RewardMonitor("bench", plan.reward_functions, group_size=8, run_dir=None, detectors=[],
                       max_completion_length=plan.max_completion_length) as monitor:
        for sim in iter_plan(plan):
            started = time.perf_counter()
            m = monitor.record_step(sim.step, **sim.kwargs)
            recording += time.perf_counter() - started
            rewards = np.stack([sim.kwargs["rewards_by_function"][f.name] for f in plan.reward_functions])
            metrics.append(m)
            batches.append((rewards.sum(axis=0), sim.kwargs["completion_lengths"].astype(np.float64), 8))
    return metrics, batches, recording / steps * 1e6


def time_detectors(make, metrics, batches, repeats: int = 5) -> float:
    """Median over repeats of the microseconds per step spent in fresh detectors from ``make()``."""
    from rewardscope.simulation.scenarios import REWARD_FUNCTIONS

    results = []
    for _ in range(repeats):
        detectors = make()
        for d in detectors:
            if hasattr(d, "bind"):
                d.bind(REWARD_FUNCTIONS)
        started = time.perf_counter()
        for m, batch in zip(metrics, batches):
            for d in detectors:
                if hasattr(d, "observe_batch"):
                    d.observe_batch(*batch)
                d.update(m)
        results.append((time.perf_counter() - started) / len(metrics) * 1e6)
    return statistics.median(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    args = parser.parse_args()
    metrics, batches, record_us = prepared_steps(args.steps)
    print(f"detectors' cost per step, N=1024 (128 x G=8), F=4, {args.steps} steps, median of 5 runs")
    print(f"  (for scale: record_step without detectors, no sinks: {record_us:.1f} us/step on this machine now)")
    for index, detector in enumerate(default_detectors()):
        cost = time_detectors(lambda i=index: [default_detectors()[i]], metrics, batches)
        print(f"  {type(detector).__name__:<28} {cost:7.1f} us/step")
    print(f"  {'all (default_detectors())':<28} {time_detectors(default_detectors, metrics, batches):7.1f} us/step")


if __name__ == "__main__":
    main()
