"""Provenance of a run: what produced it, recorded in the run's manifest.

``collect_provenance(config)`` gathers package versions (rewardscope, torch,
transformers, peft, trl; null when not installed), the git commit of the working
directory (and whether it had uncommitted changes) when it is a git checkout, the
hardware (CPU model and count, GPU models when torch sees CUDA), the launch command and
a hash of the config (SHA-256 of its canonical JSON).

``record_provenance(run_dir, provenance, resumed_after_step)`` writes it into
``manifest.json`` as ``provenance``. When the run is resumed (the manifest already holds
provenance) the first provenance stays and a ``resumes`` entry is appended instead:
when, from which step, whether the config hash changed, and the new provenance.

Nothing here imports torch: versions come from package metadata, and GPUs are read only
when torch is already imported by the caller.

Usage::

    from rewardscope.provenance import collect_provenance, record_provenance
    provenance = collect_provenance({"learning_rate": 2e-3})
    print(provenance["config_hash"][:12], provenance["packages"]["rewardscope"])
    # record_provenance("monitoring_data/my-run", provenance, resumed_after_step=None)
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("rewardscope", "torch", "transformers", "peft", "trl")


def config_hash(config: Mapping[str, Any]) -> str:
    """SHA-256 of the config's canonical JSON (sorted keys; values JSON cannot spell become strings)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state(directory: str | os.PathLike = ".") -> dict[str, Any] | None:
    """{"commit", "dirty"} of the git checkout holding ``directory``; None outside one or without git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=5,
                                check=False)
        if commit.returncode != 0:
            return None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=directory, capture_output=True,
                                text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip()) if status.returncode == 0 else None}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> dict[str, Any]:
    """CPU model and count, and the CUDA devices when torch is already imported and sees some."""
    gpus: list[str] = []
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available():
                gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        except Exception:
            gpus = []
    return {"cpu": _cpu_model(), "cpu_count": os.cpu_count(), "gpus": gpus, "gpu_count": len(gpus),
            "platform": platform.platform(), "python": platform.python_version()}


def collect_provenance(config: Mapping[str, Any], *, argv: Sequence[str] | None = None,
                       directory: str | os.PathLike = ".") -> dict[str, Any]:
    """Everything ``record_provenance`` stores (see the module docstring)."""
    return {
        "packages": package_versions(),
        "git": git_state(directory),
        "hardware": hardware(),
        "command": list(sys.argv if argv is None else argv),
        "working_directory": os.path.abspath(directory),
        "config_hash": config_hash(config),
        "recorded": time.time(),
    }


def record_provenance(run_dir: str | os.PathLike, provenance: Mapping[str, Any], resumed_after_step: int | None) -> dict:
    """Put ``provenance`` into ``<run_dir>/manifest.json`` (see the module docstring); return the manifest."""
    from .exporter.runstore import _write_json_atomic, read_manifest

    manifest = read_manifest(run_dir)
    first = manifest.get("provenance")
    if first is None:
        manifest["provenance"] = dict(provenance)
    else:
        previous = (manifest.get("resumes") or [{}])[-1].get("provenance") or first
        manifest.setdefault("resumes", []).append({
            "time": time.time(),
            "from_step": resumed_after_step,
            "config_changed": previous.get("config_hash") != provenance.get("config_hash"),
            "provenance": dict(provenance),
        })
    _write_json_atomic(Path(run_dir) / "manifest.json", manifest)
    return manifest
