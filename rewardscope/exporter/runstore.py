"""The run store: one directory per run, the history of every step on disk.

Layout of ``<root>/<run_id>/``:

- ``manifest.json``: run id, start time, reward functions, group size, config,
  and ``columns``, the names of the values in each step line.
- ``steps.jsonl``: one JSON array per step, in ``columns`` order, ``null`` where
  a value is absent, 6 significant digits (step and timestamp exact). Appended and
  flushed every step; a line is never rewritten.
- ``alerts.jsonl``: one JSON object per alert transition.
- ``rewards.f16z`` (when distributions are logged): per step a 20-byte header
  (step int64, functions uint32, samples uint32, payload bytes uint32) then the
  (F, N) rewards as little-endian float16 (about 3 significant digits),
  zlib-compressed: about 0.6 bytes per value for the discrete rewards GRPO
  functions usually give, under 2 for continuous ones.
- ``summary.json``: written when the run closes.

A process killed mid-write leaves at most a torn last line (or record): readers
skip it and keep every line before it; a writer that reopens the run (same id)
cuts the torn tail and appends after the last whole step.

Usage::

    from rewardscope.exporter.runstore import read_steps, read_manifest
    for step in read_steps("monitoring_data/my-run"):
        print(step["grpo_step"], step["grpo_reward_mean"])
"""

from __future__ import annotations

import json
import logging
import os
import struct
import time
import zlib
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..alerting.events import AlertEvent
from ..metrics.layout import StepLayout, StepMetrics

log = logging.getLogger("rewardscope")

FORMAT_VERSION = 1
_RECORD_HEADER = struct.Struct("<qIII")
DISTRIBUTIONS_FILE = "rewards.f16z"


class RunStoreError(RuntimeError):
    """The run directory cannot be used (another layout, unreadable manifest)."""


def _cut_torn_tail(path: Path) -> int:
    """Truncate a file after its last newline; return the bytes cut."""
    if not path.exists():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as f:
        chunk = min(size, 1 << 16)
        end = size
        while end > 0:
            start = max(0, end - chunk)
            f.seek(start)
            data = f.read(end - start)
            newline = data.rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            end = start
        else:
            keep = 0
        if keep < size:
            f.truncate(keep)
        return size - keep


class RunStoreSink:
    """Writes a run directory; the one sink whose failure stops the run (``loud``)."""

    name = "runstore"
    loud = True

    def __init__(self, root: str | os.PathLike, run_id: str, layout: StepLayout, *, manifest_extra: dict[str, Any],
                 log_distributions: bool = False, resume_after_step: int | None = None) -> None:
        self.directory = Path(root) / run_id
        self.directory.mkdir(parents=True, exist_ok=True)
        self.layout = layout
        self.log_distributions = log_distributions
        manifest_path = self.directory / "manifest.json"
        columns = layout.column_names()
        if manifest_path.exists():
            manifest = read_manifest(self.directory)
            if manifest.get("columns") != columns:
                raise RunStoreError(
                    f"{self.directory} holds run {manifest.get('run_id')!r} with other columns "
                    f"(reward functions {manifest.get('reward_functions')}); use another run id or directory")
            manifest.setdefault("restarts", []).append(time.time())
        else:
            manifest = {"format": FORMAT_VERSION, "run_id": run_id, "created": time.time(), "columns": columns,
                        **manifest_extra}
        if log_distributions:
            manifest["distributions"] = {"file": DISTRIBUTIONS_FILE, "dtype": "<f2", "compression": "zlib",
                                         "header": "<qIII step functions samples payload_bytes"}
        _write_json_atomic(manifest_path, manifest)

        steps_path = self.directory / "steps.jsonl"
        cut = _cut_torn_tail(steps_path)
        if cut:
            log.warning("run store %s: cut a torn final line of %d bytes left by an interrupted writer", steps_path, cut)
        if resume_after_step is not None:
            dropped = _drop_steps_after(steps_path, resume_after_step)
            if dropped:
                log.warning("run store %s: dropped %d steps after step %d (resuming from a checkpoint)", steps_path, dropped,
                            resume_after_step)
        self.last_step = _last_step(steps_path)
        if log_distributions:
            _repair_distributions(self.directory / DISTRIBUTIONS_FILE, self.last_step)
        self._steps = open(steps_path, "a", encoding="utf-8")
        self._alerts = open(self.directory / "alerts.jsonl", "a", encoding="utf-8")
        self._distributions = open(self.directory / DISTRIBUTIONS_FILE, "ab") if log_distributions else None
        # One C-level format call per step; NaN renders as "nan" and becomes null below.
        self._format = "[%d,%.3f," + ",".join(["%.6g"] * (layout.width - 2)) + "]\n"

    def format_line(self, row: np.ndarray) -> str:
        line = self._format % tuple(row.tolist())
        return line.replace("nan", "null") if "nan" in line else line

    def write_step(self, metrics: StepMetrics) -> None:
        self._steps.write(self.format_line(metrics.row))
        self._steps.flush()
        if self._distributions is not None and metrics.rewards is not None:
            rewards = np.ascontiguousarray(metrics.rewards, dtype="<f2")
            payload = zlib.compress(rewards.tobytes(), 1)
            self._distributions.write(_RECORD_HEADER.pack(metrics.step, rewards.shape[0], rewards.shape[1], len(payload)) + payload)
            self._distributions.flush()
        self.last_step = metrics.step
        events = getattr(metrics, "events", ())  # a StepRecord carries the step's alert transitions
        if events:
            self.write_alerts(events)

    def write_alerts(self, events: Sequence[AlertEvent]) -> None:
        for event in events:
            self._alerts.write(json.dumps(_finite_or_none(event.to_json()), allow_nan=False, default=_json_default) + "\n")
        self._alerts.flush()

    def close(self, summary: dict) -> None:
        for f in (self._steps, self._alerts, self._distributions):
            if f is not None and not f.closed:
                f.close()
        _write_json_atomic(self.directory / "summary.json", summary)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_finite_or_none(data), indent=2, allow_nan=False, default=_json_default) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _finite_or_none(value: Any) -> Any:
    """NaN and infinities become null: JSON has no spelling for them."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


def _last_step(steps_path: Path) -> int | None:
    """Step of the last line; the writer has cut any torn tail, so reading the end of the file is enough."""
    if not steps_path.exists() or steps_path.stat().st_size == 0:
        return None
    with open(steps_path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        chunk = 1 << 16
        while True:
            start = max(0, size - chunk)
            f.seek(start)
            lines = f.read(size - start).splitlines()
            if len(lines) > 1 or start == 0:
                return int(json.loads(lines[-1])[0])
            chunk *= 2


def _drop_steps_after(steps_path: Path, step: int) -> int:
    """Truncate the file before its first line recorded after ``step``; return the lines cut.

    Steps only ever increase down the file, so the lines to drop are a tail: cutting at its
    offset needs neither a rewrite nor the file in memory.
    """
    if not steps_path.exists():
        return 0
    cut_at, dropped, offset = None, 0, 0
    with open(steps_path, "rb") as f:
        for line in f:
            if cut_at is None:
                try:
                    if json.loads(line)[0] > step:
                        cut_at = offset
                except (ValueError, IndexError):
                    pass
            if cut_at is not None:
                dropped += 1
            offset += len(line)
    if cut_at is not None:
        with open(steps_path, "rb+") as f:
            f.truncate(cut_at)
    return dropped


def _repair_distributions(path: Path, last_step: int | None) -> None:
    """Cut a torn final record and any record after the last stored step."""
    if not path.exists():
        return
    keep = 0
    for step, end in _record_ends(path.read_bytes()):
        if last_step is None or step > last_step:
            break
        keep = end
    if keep < path.stat().st_size:
        with open(path, "rb+") as f:
            f.truncate(keep)


def _record_ends(data: bytes) -> Iterator[tuple[int, int]]:
    offset = 0
    while offset + _RECORD_HEADER.size <= len(data):
        step, _, _, payload = _RECORD_HEADER.unpack_from(data, offset)
        end = offset + _RECORD_HEADER.size + payload
        if end > len(data):
            return
        yield step, end
        offset = end


def read_manifest(run_dir: str | os.PathLike) -> dict:
    path = Path(run_dir) / "manifest.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunStoreError(f"{run_dir} is not a rewardscope run directory (no manifest.json)") from None
    except ValueError as error:
        raise RunStoreError(f"{path} is not valid JSON: {error}") from None


def _read_rows(steps_path: Path) -> Iterator[list]:
    """Stream the step lines; a torn final line (no newline, or not JSON) is skipped with a warning."""
    if not steps_path.exists():
        return
    with open(steps_path, encoding="utf-8") as f:
        number = 0
        pending = f.readline()
        while pending:
            number += 1
            line, pending = pending, f.readline()
            try:
                row = json.loads(line)
                if not isinstance(row, list) or not line.endswith("\n"):
                    raise ValueError("incomplete line")
            except ValueError:
                if not pending:
                    log.warning("%s: skipped a torn final line (an interrupted writer)", steps_path)
                    return
                raise RunStoreError(f"{steps_path}:{number} is not a step line") from None
            yield row


def read_steps(run_dir: str | os.PathLike) -> Iterator[dict[str, float]]:
    """Every whole step of a run, as {column: value}, absent values left out."""
    run_dir = Path(run_dir)
    columns = read_manifest(run_dir)["columns"]
    for row in _read_rows(run_dir / "steps.jsonl"):
        if len(row) != len(columns):
            raise RunStoreError(f"{run_dir}: a step line has {len(row)} values, the manifest names {len(columns)} columns")
        yield {c: v for c, v in zip(columns, row) if v is not None}


def read_alerts(run_dir: str | os.PathLike) -> list[dict]:
    path = Path(run_dir) / "alerts.jsonl"
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue  # a torn final line
    return events


def read_distributions(run_dir: str | os.PathLike) -> Iterator[tuple[int, np.ndarray]]:
    """(step, (F, N) float32 rewards) for each whole record of the distributions file."""
    path = Path(run_dir) / DISTRIBUTIONS_FILE
    if not path.exists():
        return
    data = path.read_bytes()
    start = 0
    for step, end in _record_ends(data):
        functions, samples = _RECORD_HEADER.unpack_from(data, start)[1:3]
        values = np.frombuffer(zlib.decompress(data[start + _RECORD_HEADER.size:end]), dtype="<f2")
        yield step, values.reshape(functions, samples).astype(np.float32)
        start = end
    if start < len(data):
        log.warning("%s: skipped a torn final record", path)


def read_summary(run_dir: str | os.PathLike) -> dict | None:
    path = Path(run_dir) / "summary.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
