"""Run under torchrun by test_monitor_ranks.py: every rank records its shards; rank 0 saves /metrics.

    torchrun --nproc_per_node 2 tests/distributed/worker_monitor.py OUT_DIR [all | bad | stop-rank RANK TIMEOUT | rank0-only]

Modes: all (every rank records every step), bad (rank 1 sends a bad shard at step 2 and a shard
that is not whole groups at step 4), stop-rank (RANK stops calling record_step at step 4 and sleeps),
rank0-only (only rank 0 builds a monitor).
"""

from __future__ import annotations

import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).parent))
from shards import GROUP_SIZE, SPECS, STEPS, shard

from rewardscope import RewardMonitor


def main() -> None:
    out = Path(sys.argv[1])
    mode = sys.argv[2] if len(sys.argv) > 2 else "all"
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    timeout = float(sys.argv[4]) if mode == "stop-rank" else 3.0 if mode == "rank0-only" else 120.0
    if mode == "rank0-only" and rank != 0:
        time.sleep(timeout + 5)  # the common mistake: only rank 0 builds the monitor
        return
    try:
        monitor = RewardMonitor("mp", SPECS, group_size=GROUP_SIZE, run_dir=out / "runs", prometheus_port=0,
                                detectors=[], distributed_timeout=timeout)
    except RuntimeError as error:
        (out / f"error-rank{rank}.txt").write_text(str(error))
        return
    for step in range(1, STEPS + 1):
        if mode == "stop-rank" and rank == int(sys.argv[3]) and step == 4:
            time.sleep(timeout + 10)  # this rank stops calling record_step (it hangs, it does not exit)
            return
        arguments = shard(step, rank)
        if mode == "bad" and rank == 1 and step == 2:
            arguments["advantages"] = arguments["advantages"][:-1]
        if mode == "bad" and rank == 1 and step == 4:
            arguments["rewards"] = {name: np.append(values, 0.0) for name, values in arguments["rewards"].items()}
            arguments.update(advantages=None, completion_lengths=None)
        try:
            result = monitor.record_step(step, arguments.pop("rewards"), **arguments)
        except Exception as error:  # the test reads what each rank saw
            (out / f"error-rank{rank}.txt").write_text(f"{type(error).__name__}: {error}")
            monitor.close()
            return
        if rank != 0:
            assert result is None, "only rank 0 returns StepMetrics"
    if rank == 0:
        with urllib.request.urlopen(f"http://127.0.0.1:{monitor.prometheus_port}/metrics") as response:
            (out / "metrics.txt").write_bytes(response.read())
    monitor.close()
    if mode != "stop-rank":
        dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
