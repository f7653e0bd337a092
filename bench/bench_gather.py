"""Benchmark of the multi-process gather: the per-step cost ShardGatherer adds to record_step.

Prints one JSON document. Figures, not assertions: tests never time anything.

    python bench/bench_gather.py                    # 2 and 4 ranks (gloo, CPU, 127.0.0.1), N = 1024, F = 4
    python bench/bench_gather.py --ranks 2 --steps 200

Run plainly, it launches itself under ``torchrun --nproc_per_node R`` for each R and
collects rank 0's figures. Each step every rank gathers its shard (N / R completions
of F rewards, advantages and lengths, and the scalars) to rank 0; the figure is the
wall time of ``ShardGatherer.gather`` per step (median and 90th percentile over the
steps), the whole added cost: statistics and sinks cost the same as on one process; and
the CPU time rank 0's process (all its threads) spends in it. With more ranks than cores
the wall time mostly measures the scheduler handing each process a core.
A barrier before each timed step keeps a slow previous step out of the figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N_SAMPLES, N_FUNCTIONS, GROUP_SIZE = 1024, 4, 8
MASTER_PORT = 20650


def measure(steps: int) -> dict | None:
    """Under torchrun: time each rank's gather of one step; rank 0 returns the figures."""
    import torch
    import torch.distributed as dist

    from rewardscope.distributed import LocalShard, ShardGatherer

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    gatherer = ShardGatherer(N_FUNCTIONS, timeout=60.0)
    rng = np.random.default_rng(rank)
    n = N_SAMPLES // world
    rewards = rng.uniform(0, 1, (N_FUNCTIONS, n))
    times, cpu = [], []
    for step in range(1, steps + 21):
        dist.barrier()
        started, cpu_started = time.perf_counter(), time.process_time()
        shard = LocalShard.build(step, rewards, GROUP_SIZE, advantages=rewards[0], lengths=rewards[1] * 100, kl=0.1,
                                 policy_entropy=1.0, loss=0.5, grad_norm=1.0, learning_rate=1e-5, tokens=1000)
        gatherer.gather(shard)
        if step > 20:  # warm-up steps left out
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)
    dist.destroy_process_group()
    if rank:
        return None
    ms = np.array(times) * 1e3
    return {"ranks": world, "samples": N_SAMPLES, "functions": N_FUNCTIONS, "steps": steps,
            "gather_ms_median": round(float(np.median(ms)), 3), "gather_ms_p90": round(float(np.percentile(ms, 90)), 3),
            "rank0_cpu_ms_mean": round(float(np.mean(cpu)) * 1e3, 3)}


def launch(ranks: int, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figures.json"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "BENCH_GATHER_OUT": str(out),
               "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks), "--master_addr",
                        "127.0.0.1", "--master_port", str(MASTER_PORT + ranks), __file__, "--steps", str(steps)],
                       env=env, check=True, capture_output=True)
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, nargs="*", default=[2, 4])
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    if "LOCAL_RANK" in os.environ:  # started by launch(): one rank of the measurement
        figures = measure(args.steps)
        if figures is not None:
            Path(os.environ["BENCH_GATHER_OUT"]).write_text(json.dumps(figures))
        return
    results = [launch(r, args.steps) for r in args.ranks]
    print(json.dumps({"cpu_count": os.cpu_count(), "load_average": os.getloadavg(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
