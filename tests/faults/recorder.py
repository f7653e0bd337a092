"""A recording process for the fault tests, run as a subprocess (not a test module).

    python tests/faults/recorder.py record ROOT RUN_ID   # record steps from last_step + 1 until killed, print each one
    python tests/faults/recorder.py hold ROOT RUN_ID     # open the run, print "ready", wait until killed

Each step's rewards are a pure function of the step number (``rewards_of``), so a test can
check every stored value, not only the step numbers. With ``RECORDER_SLOW_DISK=1`` every
``os.write`` writes at most 64 bytes and then pauses (a slow disk, as the kernel may do):
a kill then usually lands in the middle of a line or record, which is what the repair
on reopen has to handle. With ``RECORDER_STALL_AT=K`` as well, the K-th step this process
records stops for good after the first 64 bytes of a write and prints "stalled": a kill
then surely leaves a torn line or record.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from rewardscope import RewardFunctionSpec, RewardMonitor

SPECS = [RewardFunctionSpec("a", 1.0, 0.0, 1.0), RewardFunctionSpec("b", 1.0, -1.0, 1.0)]
SAMPLES = 2048  # big enough that a distributions record takes several page writes


def rewards_of(step: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(step)
    return {"a": rng.integers(0, 2, SAMPLES).astype(float), "b": np.full(SAMPLES, (step % 7) / 7 - 0.5)}


def open_monitor(root: str, run_id: str) -> RewardMonitor:
    return RewardMonitor(run_id, SPECS, group_size=8, run_dir=root, prometheus_port=None, log_distributions=True)


RECORDING = {"steps": 0}  # how many steps this process has started to record


def slow_disk(stall_at: int | None) -> None:
    real_write = os.write

    def write(fd: int, data) -> int:
        written = real_write(fd, bytes(data[:64]))
        if RECORDING["steps"] == stall_at and len(data) > written:
            print("stalled", flush=True)
            time.sleep(3600)
        time.sleep(0.0005)
        return written

    os.write = write


def main(mode: str, root: str, run_id: str) -> None:
    if os.environ.get("RECORDER_SLOW_DISK"):
        stall_at = os.environ.get("RECORDER_STALL_AT")
        slow_disk(None if stall_at is None else int(stall_at))
    monitor = open_monitor(root, run_id)
    if mode == "hold":
        print("ready", flush=True)
        time.sleep(3600)
        return
    step = (monitor.last_step or 0) + 1
    while True:
        RECORDING["steps"] += 1
        monitor.record_step(step, rewards_of(step))
        print(step, flush=True)  # acknowledged: record_step returned
        step += 1


if __name__ == "__main__":
    main(*sys.argv[1:4])
