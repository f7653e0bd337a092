"""Checkpoints load without running code: tampered, foreign, incomplete and old-format
checkpoints are refused with a CheckpointError naming the file."""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shlex
import shutil
from pathlib import Path

import pytest
import torch

from rewardscope.trainer import TrainConfig, train
from rewardscope.trainer.checkpoints import (
    LEGACY_STATE_FILE,
    OPTIMIZER_FILE,
    RNG_FILE,
    STATE_FILE,
    WEIGHTS_FILE,
    find_checkpoint,
    read_trainer_state,
)
from rewardscope.trainer.cli import add_arguments, run
from rewardscope.trainer.errors import CheckpointError


class MarkerPayload:
    """Unpickling this object runs a shell command that creates ``marker``: what an attacker
    puts in a checkpoint copied between machines."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_cache) -> tuple[dict, Path]:
    """Settings of a one-step run and the checkpoint it saved."""
    root = tmp_path_factory.mktemp("saved")
    settings = {"model_id": "tiny", "cache_dir": str(tiny_cache), "device": "cpu", "threads": 1, "num_steps": 1,
                "batch_size": 2, "num_generations": 4, "max_generation_steps": 16, "num_problems": 100, "eval_every": 0,
                "save_interval": 1, "checkpoint_dir": str(root / "checkpoints"), "run_name": "saved", "prometheus": False,
                "enable_alerts": False, "progress": False, "monitoring_dir": str(root / "monitoring")}
    result = train(TrainConfig(**settings))
    assert result.last_checkpoint is not None
    return settings, result.last_checkpoint


@pytest.fixture
def copy_of(saved, tmp_path):
    """A fresh copy of the saved checkpoint and the settings to resume it with more steps."""
    settings, checkpoint = saved
    target = tmp_path / "checkpoints" / checkpoint.name
    shutil.copytree(checkpoint, target)
    shutil.copytree(Path(settings["monitoring_dir"]), tmp_path / "monitoring")
    resume = {**settings, "num_steps": 2, "resume": str(target), "checkpoint_dir": str(tmp_path / "checkpoints"),
              "monitoring_dir": str(tmp_path / "monitoring")}
    return target, resume


def test_a_checkpoint_holds_no_pickle_beyond_tensors(saved):
    _, checkpoint = saved
    names = sorted(p.name for p in checkpoint.iterdir())
    assert names == ["adapter", OPTIMIZER_FILE, RNG_FILE, WEIGHTS_FILE, STATE_FILE]
    state = json.loads((checkpoint / STATE_FILE).read_text())
    assert (state["format"], state["version"], state["step"], state["run_id"]) == ("rewardscope-checkpoint", 2, 1, "saved")
    assert len(state["rng"]["python"]["internal"]) == 625 and len(state["rng"]["numpy"]["key"]) == 624
    payload = torch.load(checkpoint / OPTIMIZER_FILE, weights_only=True)
    assert set(payload) == {"optimizer", "scheduler"}


def test_a_tampered_optimizer_file_runs_no_code_and_names_the_file(copy_of, tmp_path):
    checkpoint, resume = copy_of
    marker = tmp_path / "marker"
    torch.save(MarkerPayload(marker), checkpoint / OPTIMIZER_FILE)
    # Control: the full unpickler (what checkpoints were loaded with before) runs the payload.
    torch.load(checkpoint / OPTIMIZER_FILE, weights_only=False)
    assert marker.exists()
    marker.unlink()

    with pytest.raises(CheckpointError, match=f"{checkpoint / OPTIMIZER_FILE} is not an optimizer state") as caught:
        train(TrainConfig(**resume))
    assert not marker.exists()
    assert "refused" in str(caught.value)


@pytest.mark.parametrize("victim", [STATE_FILE, WEIGHTS_FILE, RNG_FILE])
def test_a_pickle_in_place_of_any_file_runs_no_code(copy_of, tmp_path, victim):
    checkpoint, resume = copy_of
    marker = tmp_path / "marker"
    (checkpoint / victim).write_bytes(pickle.dumps(MarkerPayload(marker)))
    with pytest.raises(CheckpointError, match=str(checkpoint / victim)):
        train(TrainConfig(**resume))
    assert not marker.exists()


def test_an_old_format_checkpoint_is_refused_not_unpickled(copy_of, tmp_path):
    checkpoint, resume = copy_of
    marker = tmp_path / "marker"
    (checkpoint / STATE_FILE).unlink()
    torch.save(MarkerPayload(marker), checkpoint / LEGACY_STATE_FILE)
    assert find_checkpoint("latest", checkpoint.parent) == checkpoint
    with pytest.raises(CheckpointError, match=f"{checkpoint / LEGACY_STATE_FILE} is a checkpoint of an older rewardscope"):
        train(TrainConfig(**resume))
    assert not marker.exists()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.pop("rng"), "lacks the key 'rng'"),
        (lambda s: s["rng"]["numpy"].pop("key"), "lacks rng.numpy.key"),
        (lambda s: s["sampler"].pop("order"), "lacks sampler.order"),
        (lambda s: s.update(step="5"), "'step' must be a JSON int"),
        (lambda s: s.update(format="something-else"), "is not a rewardscope checkpoint state"),
        (lambda s: s.update(version=99), "format version 99"),
        (lambda s: s["rng"]["python"].update(internal=[1, 2, 3]), "unusable random state"),
        (lambda s: s["sampler"].update(rng={"bit_generator": "nope"}), "unusable sampler state"),
    ],
    ids=["no-rng", "no-numpy-key", "no-order", "step-as-text", "foreign-format", "future-version", "short-python-state",
         "bad-sampler"],
)
def test_an_edited_state_file_is_a_clear_error_not_a_key_error(copy_of, edit, message):
    checkpoint, resume = copy_of
    file = checkpoint / STATE_FILE
    state = json.loads(file.read_text())
    edit(state)
    file.write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match=message) as caught:
        train(TrainConfig(**resume))
    assert str(file) in str(caught.value) or str(checkpoint) in str(caught.value)


def test_missing_and_foreign_optimizer_files(copy_of):
    checkpoint, resume = copy_of
    (checkpoint / OPTIMIZER_FILE).unlink()
    with pytest.raises(CheckpointError, match=f"{checkpoint / OPTIMIZER_FILE} is missing"):
        train(TrainConfig(**resume))
    torch.save([1, 2, 3], checkpoint / OPTIMIZER_FILE)  # loads under weights_only, but is not ours
    with pytest.raises(CheckpointError, match="lacks the 'optimizer' and 'scheduler' states"):
        train(TrainConfig(**resume))
    (checkpoint / OPTIMIZER_FILE).write_text("not a torch file")
    with pytest.raises(CheckpointError, match=str(checkpoint / OPTIMIZER_FILE)):
        train(TrainConfig(**resume))


def test_the_command_line_reports_a_tampered_checkpoint_in_one_line(copy_of, tmp_path, capsys):
    checkpoint, _ = copy_of
    marker = tmp_path / "marker"
    (checkpoint / STATE_FILE).write_bytes(pickle.dumps(MarkerPayload(marker)))
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run(parser.parse_args(["--resume", str(checkpoint), "--no-progress", "--no-prometheus"])) == 2
    err = capsys.readouterr().err
    assert err.startswith("rewardscope train: error: ") and err.count("\n") == 1 and str(checkpoint / STATE_FILE) in err
    assert "Traceback" not in err and not marker.exists()


def test_read_trainer_state_of_a_directory_without_one(tmp_path):
    with pytest.raises(CheckpointError, match=f"{tmp_path} is not a checkpoint"):
        read_trainer_state(tmp_path)
