"""kill -9 of a recording process at random moments, round after round on the same run: nothing lost, nothing duplicated.

The recorder writes through a slow disk (RECORDER_SLOW_DISK: 64 bytes per write, then a
pause), so most kills land in the middle of a step line or a distributions record.
"""

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rewardscope.exporter.jsonl import ReadStats
from rewardscope.exporter.runstore import read_distributions, read_steps

sys.path.insert(0, str(Path(__file__).parent))
from recorder import SAMPLES, open_monitor, rewards_of

REPO = Path(__file__).resolve().parents[2]
ROUNDS = 8


def start_recorder(root: Path, log, stall_at: int | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "RECORDER_SLOW_DISK": "1"}
    if stall_at is not None:
        env["RECORDER_STALL_AT"] = str(stall_at)
    return subprocess.Popen([sys.executable, str(Path(__file__).parent / "recorder.py"), "record", str(root), "run"],
                            stdout=subprocess.PIPE, stderr=log, env=env)


def run_round(root: Path, rng: random.Random, log, wanted: int | None = None) -> list[int]:
    """Start a recorder, kill -9 it at a random moment (after ``wanted`` steps), return the steps it acknowledged."""
    process = start_recorder(root, log)
    acknowledged: list[int] = []
    try:
        if wanted is None:
            wanted = rng.choice([0, 1, rng.randint(2, 40)])  # 0: killed while starting up or repairing the run
        while len(acknowledged) < wanted:
            line = process.stdout.readline()
            if not line:
                pytest.fail(f"the recorder exited early with {process.wait()}; see {log.name}")
            acknowledged.append(int(line))
        time.sleep(rng.uniform(0, 0.05))
    finally:
        process.kill()  # SIGKILL: no cleanup, no flush, no close
        rest = process.stdout.read()
        process.wait()
    return acknowledged + [int(line) for line in rest.split()]


def run_stalled_round(root: Path, log) -> list[int]:
    """A round whose kill surely tears a write: the recorder stalls mid-write in its second step."""
    process = start_recorder(root, log, stall_at=2)
    acknowledged: list[int] = []
    try:
        for line in process.stdout:
            if line.strip() == b"stalled":
                break
            acknowledged.append(int(line))
        else:
            pytest.fail(f"the recorder exited before stalling, with {process.wait()}; see {log.name}")
    finally:
        process.kill()
        process.wait()
    return acknowledged


@pytest.mark.slow
def test_kill_9_at_random_moments_loses_and_duplicates_nothing(tmp_path):
    rng = random.Random(20261201)
    acknowledged: list[int] = []
    with open(tmp_path / "recorder.log", "wb") as log:
        for _ in range(ROUNDS):
            acknowledged += run_round(tmp_path, rng, log)
        # Random kills land mid-write most of the time, not always: one stalled round makes sure of a torn write,
        # and the round after it (one step) opens the run and repairs it.
        acknowledged += run_stalled_round(tmp_path, log)
        acknowledged += run_round(tmp_path, rng, log, wanted=1)
    assert len(acknowledged) > ROUNDS and acknowledged == sorted(set(acknowledged))
    repairs = [line for line in (tmp_path / "recorder.log").read_text().splitlines() if line.startswith("run store ") and ": cut " in line]
    assert len(repairs) >= 1

    # One more writer opens the run (repairing whatever the last kill left) and closes it.
    open_monitor(str(tmp_path), "run").close()
    stats = ReadStats()
    stored = list(read_steps(tmp_path / "run", stats=stats))
    steps = [int(s["grpo_step"]) for s in stored]
    assert steps == list(range(1, steps[-1] + 1))  # nothing duplicated, no gap
    assert set(acknowledged) <= set(steps)  # nothing acknowledged was lost
    assert stats.problems() == {}
    for row in stored:  # each stored line is the step it claims to be
        rewards = rewards_of(int(row["grpo_step"]))
        assert row["grpo_reward_fn_mean{a}"] == pytest.approx(rewards["a"].mean(), abs=5e-6)
        assert row["grpo_reward_fn_mean{b}"] == pytest.approx(rewards["b"][0], abs=5e-6)
    records = list(read_distributions(tmp_path / "run"))
    assert [step for step, _ in records] == steps
    step, values = records[-1]
    assert values.shape == (2, SAMPLES) and np.array_equal(values[0], rewards_of(step)["a"])
