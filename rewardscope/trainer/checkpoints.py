"""Checkpoints: save every N steps, keep the newest few, resume exactly, never run code.

A checkpoint is a directory ``checkpoint-<step>`` holding

- ``trainable.safetensors``: every trainable parameter by name (the LoRA weights, or the
  whole model without LoRA), what resuming loads;
- ``adapter/`` (with LoRA): the adapter in PEFT's ``save_pretrained`` format, for use
  outside the trainer (``PeftModel.from_pretrained(base, path)``);
- ``optimizer.pt``: the optimiser and learning-rate scheduler state, tensors and plain
  containers only, read back with ``torch.load(weights_only=True)``;
- ``rng.safetensors``: the torch generator states (CPU, sampling, CUDA devices);
- ``trainer_state.json``: step, run id, configuration, the prompt sampler and the Python
  and NumPy random states, so a resumed run draws the same prompts and samples as an
  uninterrupted one.

Nothing is unpickled beyond tensors and plain containers: a checkpoint copied from
elsewhere cannot run code when it is loaded. A tampered, foreign or incomplete
checkpoint gets a ``CheckpointError`` naming the file; so does a checkpoint of the old
format (``trainer_state.pt``, a full pickle), which is refused rather than unpickled.

A checkpoint is written into a temporary directory and renamed into place, so a crash
while saving never leaves a checkpoint that looks complete and is not.

Usage::

    path = save_checkpoint("checkpoints/run", 50, model, optimizer, scheduler, state, max_checkpoints=3, save_adapter=True)
    state = read_trainer_state(path)             # validated JSON; raises CheckpointError
    load_trainable_weights(path, model)
    restore_training_state(path, state, optimizer, scheduler, sampler, sampling_generator)
"""

from __future__ import annotations

import json
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from rewardscope.trainer.errors import CheckpointError

_NAME = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.pt"
RNG_FILE = "rng.safetensors"
WEIGHTS_FILE = "trainable.safetensors"
LEGACY_STATE_FILE = "trainer_state.pt"  # the earlier format, a full pickle: refused
FORMAT = "rewardscope-checkpoint"
FORMAT_VERSION = 2

# Keys of trainer_state.json and the JSON types they must have.
_STATE_KEYS: dict[str, type | tuple[type, ...]] = {"step": int, "run_id": str, "config": dict, "sampler": dict, "rng": dict}
_SAMPLER_KEYS = ("rng", "order", "position")
_NUMPY_KEYS = ("key", "pos", "has_gauss", "cached_gaussian")


def checkpoint_name(step: int) -> str:
    return f"checkpoint-{step:07d}"


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Checkpoints in ``directory`` (old-format ones included, so resuming one says why it
    cannot), oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for child in directory.iterdir():
        match = _NAME.match(child.name)
        if match and ((child / STATE_FILE).is_file() or (child / LEGACY_STATE_FILE).is_file()):
            found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]


def find_checkpoint(resume: str, checkpoint_dir: str | Path | None) -> Path:
    """The checkpoint ``--resume`` names: a checkpoint directory, a directory of
    checkpoints (the latest is taken) or ``latest`` (the latest in ``checkpoint_dir``)."""
    if resume == "latest" and checkpoint_dir is None:
        raise CheckpointError("--resume without a path needs --checkpoint-dir or --run-name")
    base = Path(checkpoint_dir) if resume == "latest" and checkpoint_dir is not None else Path(resume)
    if (base / STATE_FILE).is_file() or (base / LEGACY_STATE_FILE).is_file():
        return base
    found = list_checkpoints(base)
    if not found:
        raise CheckpointError(f"no checkpoint to resume from in {base}")
    return found[-1]


# ----------------------------------------------------------------------------- random states
def rng_state(sampling_generator: torch.Generator) -> dict[str, Any]:
    """Every random generator the run draws from, as the libraries return them."""
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


def _split_rng(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The JSON part (Python and NumPy states) and the tensor part (torch generators)."""
    version, internal, gauss_next = state["python"]
    name, keys, pos, has_gauss, cached_gaussian = state["numpy"]
    as_json = {
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
        "numpy": {"name": name, "key": [int(k) for k in keys], "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached_gaussian)},
    }
    tensors = {"torch": state["torch"], "sampling": state["sampling"]}
    for index, device_state in enumerate(state.get("cuda", [])):
        tensors[f"cuda.{index}"] = device_state
    return as_json, tensors


def _join_rng(as_json: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The inverse of ``_split_rng``."""
    python, numpy_state = as_json["python"], as_json["numpy"]
    state: dict[str, Any] = {
        "python": (python["version"], tuple(python["internal"]), python["gauss_next"]),
        "numpy": (numpy_state.get("name", "MT19937"), np.asarray(numpy_state["key"], dtype=np.uint32), numpy_state["pos"],
                  numpy_state["has_gauss"], numpy_state["cached_gaussian"]),
        "torch": tensors["torch"],
        "sampling": tensors["sampling"],
    }
    cuda = sorted((int(k.split(".", 1)[1]), v) for k, v in tensors.items() if k.startswith("cuda."))
    if cuda:
        state["cuda"] = [v for _, v in cuda]
    return state


# ----------------------------------------------------------------------------- saving
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
    """Write ``checkpoint-<step>`` and delete all but the newest ``max_checkpoints``.

    ``trainer_state`` holds ``run_id``, ``config`` and ``sampler`` (JSON values) and
    ``rng`` (what ``rng_state`` returns).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / checkpoint_name(step)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=directory))
    try:
        save_file(trainable_state_dict(model), str(staging / WEIGHTS_FILE))
        if save_adapter:
            model.save_pretrained(staging / "adapter")
        rng_json, rng_tensors = _split_rng(trainer_state["rng"])
        save_file({k: v.contiguous() for k, v in rng_tensors.items()}, str(staging / RNG_FILE))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, staging / OPTIMIZER_FILE)
        state = {"format": FORMAT, "version": FORMAT_VERSION, **trainer_state, "step": step, "rng": rng_json}
        (staging / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")
        if target.exists():  # re-saving the same step (e.g. interrupted right after a save)
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    for old in list_checkpoints(directory)[:-max_checkpoints]:
        shutil.rmtree(old, ignore_errors=True)
    return target


# ----------------------------------------------------------------------------- loading
def read_trainer_state(path: str | Path) -> dict[str, Any]:
    """The validated ``trainer_state.json`` of a checkpoint (JSON values only).

    Raises ``CheckpointError`` naming the file when it is missing, not JSON, of another
    format, or lacks a key; and for the old pickled format, which is never loaded.
    """
    directory = Path(path)
    file = directory / STATE_FILE
    if not file.is_file():
        if (directory / LEGACY_STATE_FILE).is_file():
            raise CheckpointError(
                f"{directory / LEGACY_STATE_FILE} is a checkpoint of an older rewardscope (a pickle); it is not loaded, "
                "because unpickling a file can run arbitrary code. Start a new run (its trainable.safetensors and "
                "adapter/ hold the weights)"
            )
        raise CheckpointError(f"{directory} is not a checkpoint (no {STATE_FILE})")
    try:
        state = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{file} is not a rewardscope checkpoint state (not JSON: {exc})") from None
    _check_state(state, file)
    return state


def _check_state(state: Any, file: Path) -> None:
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{file} is not a rewardscope checkpoint state (no \"format\": \"{FORMAT}\")")
    if state.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{file} has checkpoint format version {state.get('version')!r}; this rewardscope reads {FORMAT_VERSION}")
    for key, kind in _STATE_KEYS.items():
        if key not in state:
            raise CheckpointError(f"{file} lacks the key {key!r}")
        if not isinstance(state[key], kind) or isinstance(state[key], bool):
            raise CheckpointError(f"{file}: {key!r} must be a JSON {kind.__name__}, got {state[key]!r:.60}")  # type: ignore[union-attr]
    if state["step"] < 0:
        raise CheckpointError(f"{file}: step must be >= 0, got {state['step']}")
    missing = [f"sampler.{k}" for k in _SAMPLER_KEYS if k not in state["sampler"]]
    missing += [f"rng.{k}" for k in ("python", "numpy") if not isinstance(state["rng"].get(k), dict)]
    if not missing:
        missing += [f"rng.python.{k}" for k in ("version", "internal", "gauss_next") if k not in state["rng"]["python"]]
        missing += [f"rng.numpy.{k}" for k in _NUMPY_KEYS if k not in state["rng"]["numpy"]]
    if missing:
        raise CheckpointError(f"{file} lacks {', '.join(missing)}")


def _load_tensors(file: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(file))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{file} is not a readable safetensors file: {exc}") from None


def _load_optimizer_file(file: Path) -> dict[str, Any]:
    """``optimizer.pt`` through the restricted unpickler: tensors and plain containers only."""
    if not file.is_file():
        raise CheckpointError(f"{file} is missing")
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{file} is not an optimizer state this trainer wrote (refused: {first_line})") from None
    if not isinstance(payload, dict) or not all(isinstance(payload.get(k), dict) for k in ("optimizer", "scheduler")):
        raise CheckpointError(f"{file} lacks the 'optimizer' and 'scheduler' states")
    return payload


def restore_training_state(path: str | Path, state: dict[str, Any], optimizer: torch.optim.Optimizer, scheduler: Any,
                           sampler: Any, sampling_generator: torch.Generator) -> None:
    """Load the optimiser, scheduler, prompt sampler and random generators of the
    checkpoint at ``path`` (``state`` from ``read_trainer_state``)."""
    directory = Path(path)
    payload = _load_optimizer_file(directory / OPTIMIZER_FILE)
    generators = _load_tensors(directory / RNG_FILE)
    try:
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
    except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as exc:
        raise CheckpointError(f"{directory / OPTIMIZER_FILE} does not fit this run's optimizer: {exc}") from None
    try:
        sampler.load_state_dict(state["sampler"])
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{directory / STATE_FILE}: unusable sampler state: {exc}") from None
    if "torch" not in generators or "sampling" not in generators:
        raise CheckpointError(f"{directory / RNG_FILE} lacks the 'torch' or 'sampling' generator state")
    try:
        restore_rng_state(_join_rng(state["rng"], generators), sampling_generator)
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{directory / STATE_FILE} or {RNG_FILE}: unusable random state: {exc}") from None


def load_trainable_weights(path: str | Path, model: Any) -> None:
    """Copy the checkpoint's trainable parameters into ``model``; every name must match."""
    weights = _load_tensors(Path(path) / WEIGHTS_FILE)
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
