"""Helpers of the multi-process tests: torchrun on 127.0.0.1 with gloo, master ports in 20600-20699."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def torchrun(nproc: int, port: int, script: str | Path, *args: str, timeout: float = 180, env: dict | None = None
             ) -> subprocess.CompletedProcess:
    """Run a script under ``torchrun --nproc_per_node nproc`` (CPU, gloo, 127.0.0.1); returns the finished process."""
    pytest.importorskip("torch")
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                   "OMP_NUM_THREADS": "1", **(env or {})}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr", "127.0.0.1",
               "--master_port", str(port), str(script), *args]
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=timeout, cwd=REPO, check=False)
