"""Our GRPO trainer under torchrun (2 ranks, CPU, the tiny model): DDP, rank 0 records the global batch and
writes the checkpoints once, and a resumed run continues the same run store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from torchrun_support import torchrun

from rewardscope.exporter.runstore import (
    read_distributions,
    read_manifest,
    read_steps,
    read_summary,
)

BATCH, GROUPS = 3, 4  # 3 prompts over 2 ranks: shards of 2 and 1 groups


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("peft")
    from rewardscope.trainer.models import ensure_tiny_model

    cache = tmp_path_factory.mktemp("rewardscope-cache")
    ensure_tiny_model(cache)
    return cache


def _train(tmp_path: Path, cache: Path, steps: int, *extra: str):
    arguments = ["--model-id", "tiny", "--cache-dir", str(cache), "--device", "cpu", "--threads", "1",
                 "--num-steps", str(steps), "--batch-size", str(BATCH), "--num-generations", str(GROUPS),
                 "--max-generation-steps", "16", "--num-problems", "200", "--eval-every", "0", "--save-interval", "2",
                 "--checkpoint-dir", str(tmp_path / "checkpoints"), "--monitoring-dir", str(tmp_path / "monitoring"),
                 "--run-name", "ddp", "--no-prometheus", "--no-progress", "--beta", "0.04", "--log-distributions", *extra]
    return torchrun(2, 20621, "-m", "rewardscope.cli", "train", *arguments, timeout=300)


@pytest.mark.slow
def test_trainer_under_torchrun_records_the_global_batch_and_resumes(tmp_path: Path, tiny_cache: Path) -> None:
    run = _train(tmp_path, tiny_cache, 3)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("run ddp: steps 1-3 of 3") == 1  # one summary, from rank 0
    store = tmp_path / "monitoring" / "ddp"
    steps = list(read_steps(store))
    assert [s["grpo_step"] for s in steps] == [1, 2, 3]
    # Every step holds the whole batch of both ranks (3 prompts x 4), not one rank's shard.
    distributions = list(read_distributions(store))
    assert [(step, rewards.shape[1]) for step, rewards in distributions] == [(s, BATCH * GROUPS) for s in (1, 2, 3)]
    names = [f["name"] for f in read_manifest(store)["reward_functions"]]
    for (_, rewards), line in zip(distributions, steps):
        # The recorded statistics are those of the global batch (float16 copies: 3 digits).
        for name, row in zip(names, rewards):
            assert line[f"grpo_reward_fn_mean{{{name}}}"] == pytest.approx(float(np.mean(row)), abs=2e-3)
    assert read_summary(store)["samples"] == 3 * BATCH * GROUPS
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["checkpoint-0000002", "checkpoint-0000003"]

    resumed = _train(tmp_path, tiny_cache, 4, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [s["grpo_step"] for s in read_steps(store)] == [1, 2, 3, 4]
    assert [step for step, _ in read_distributions(store)] == [1, 2, 3, 4]
    assert (tmp_path / "checkpoints" / "checkpoint-0000004").is_dir()
    assert np.isfinite([s["grpo_reward_mean"] for s in read_steps(store)]).all()
