"""Helpers shared by the test folders (importable as `support`: pytest's pythonpath includes tests/)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

import pytest


def require_binary(name: str) -> str:
    """Path of a system binary; skips when it is missing, fails when CI is set (CI must install it)."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install prometheus prometheus-alertmanager docker-compose)"
        if os.environ.get("CI"):
            pytest.fail(message + " — CI must install it", pytrace=False)
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(process: subprocess.Popen) -> None:
    """Terminate a process this test started (by its PID), killing it if it does not exit within 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
