"""Checkpoints: save every N steps, keep the newest few, resume exactly.

A checkpoint is a directory ``checkpoint-<step>`` holding

- ``trainable.safetensors``: every trainable parameter by name (the LoRA weights, or the
  whole model without LoRA), what resuming loads;
- ``adapter/`` (with LoRA): the adapter in PEFT's ``save_pretrained`` format, for use
  outside the trainer (``PeftModel.from_pretrained(base, path)``);
- ``trainer_state.pt``: step, run id, configuration, optimiser and scheduler state,
  the prompt sampler and every random generator, so a resumed run draws the same
  prompts and samples as an uninterrupted one.

A checkpoint is written into a temporary directory and renamed into place, so a crash
while saving never leaves a checkpoint that looks complete and is not.
"""

from __future__ import annotations

import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from rewardscope.trainer.errors import CheckpointError

_NAME = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "trainer_state.pt"
WEIGHTS_FILE = "trainable.safetensors"


def checkpoint_name(step: int) -> str:
    return f"checkpoint-{step:07d}"


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Complete checkpoints in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for child in directory.iterdir():
        match = _NAME.match(child.name)
        if match and (child / STATE_FILE).is_file():
            found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]


def find_checkpoint(resume: str, checkpoint_dir: str | Path | None) -> Path:
    """The checkpoint ``--resume`` names: a checkpoint directory, a directory of
    checkpoints (the latest is taken) or ``latest`` (the latest in ``checkpoint_dir``)."""
    base = Path(checkpoint_dir) if resume == "latest" else Path(resume)
    if resume == "latest" and checkpoint_dir is None:
        raise CheckpointError("--resume without a path needs --checkpoint-dir or --run-name")
    if (base / STATE_FILE).is_file():
        return base
    found = list_checkpoints(base)
    if not found:
        raise CheckpointError(f"no checkpoint to resume from in {base}")
    return found[-1]


def rng_state(sampling_generator: torch.Generator) -> dict[str, Any]:
    """Every random generator the run draws from."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "sampling": sampling_generator.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any], sampling_generator: torch.Generator) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    sampling_generator.set_state(state["sampling"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trainable_state_dict(model: Any) -> dict[str, torch.Tensor]:
    """Trainable parameters by name, detached and contiguous on the CPU."""
    return {name: p.detach().to("cpu").contiguous() for name, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(
    directory: str | Path,
    step: int,
    model: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    trainer_state: dict[str, Any],
    max_checkpoints: int,
    save_adapter: bool,
) -> Path:
    """Write ``checkpoint-<step>`` and delete all but the newest ``max_checkpoints``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / checkpoint_name(step)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=directory))
    try:
        save_file(trainable_state_dict(model), str(staging / WEIGHTS_FILE))
        if save_adapter:
            model.save_pretrained(staging / "adapter")
        state = {
            **trainer_state,
            "step": step,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
        }
        torch.save(state, staging / STATE_FILE)
        if target.exists():  # re-saving the same step (e.g. interrupted right after a save)
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    for old in list_checkpoints(directory)[:-max_checkpoints]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def read_trainer_state(path: str | Path) -> dict[str, Any]:
    """The trainer state of a checkpoint (our own file: it holds Python RNG tuples and
    NumPy states, hence the full unpickler)."""
    file = Path(path) / STATE_FILE
    if not file.is_file():
        raise CheckpointError(f"{path} is not a checkpoint (no {STATE_FILE})")
    return torch.load(file, map_location="cpu", weights_only=False)


def load_trainable_weights(path: str | Path, model: Any) -> None:
    """Copy the checkpoint's trainable parameters into ``model``; every name must match."""
    weights = load_file(str(Path(path) / WEIGHTS_FILE))
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    missing = sorted(set(params) - set(weights))
    unexpected = sorted(set(weights) - set(params))
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {path} does not fit this model: missing {missing[:3]}, unexpected {unexpected[:3]} "
            "(was it saved with other --model-id, --use-lora or --lora-rank settings?)"
        )
    with torch.no_grad():
        for name, param in params.items():
            source = weights[name]
            if source.shape != param.shape:
                raise CheckpointError(f"checkpoint {path}: {name} has shape {tuple(source.shape)}, model has {tuple(param.shape)}")
            param.copy_(source.to(param.device, param.dtype))
