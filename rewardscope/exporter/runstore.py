"""The run store: one directory per run, the history of every step on disk.

Layout of ``<root>/<run_id>/``:

- ``manifest.json``: run id, start time, reward functions, group size, config,
  and ``columns``, the names of the values in each step line.
- ``steps.jsonl``: one JSON array per step, in ``columns`` order, ``null`` where
  a value is absent, 6 significant digits (step and timestamp exact). A line is
  never rewritten. Infinite values (JSON cannot spell them) are stored as ``null``,
  logged once per column and counted in ``nonfinite_values`` of summary.json.
- ``alerts.jsonl``: one JSON object per alert transition.
- ``rewards.f16z`` (when distributions are logged): per step a 20-byte header
  (step int64, functions uint32, samples uint32, payload bytes uint32) then the
  (F, N) rewards as little-endian float16 (about 3 significant digits),
  zlib-compressed: about 0.6 bytes per value for the discrete rewards GRPO
  functions usually give, under 2 for continuous ones.
- ``summary.json``: written when the run closes.
- ``.lock``: who writes the run now (see ``runlock``): one writer per directory.

What holds, short of losing the disk:

- ``write_step`` appends the step's distributions record and then its line through
  unbuffered file descriptors: when it returns the step is in the files (the
  kernel's page cache; it survives a killed process), and when it raises
  (``RunStoreError``: disk full, I/O error) both files are exactly as before the
  call, so the caller may retry the step and it is recorded once.
- A process killed mid-write leaves at most a torn last line or record. A writer
  that reopens the run (same id) cuts the torn tail of every file of the run,
  reading only the files' ends, and appends after the last whole step.
- Readers skip, count and log (file and line number) a corrupt line, a step that
  is not after the previous one and a torn last line, and read non-finite tokens
  left by older writers as ``null``; pass a ``ReadStats`` to get the counts.

Usage::

    from rewardscope.exporter.jsonl import ReadStats
    from rewardscope.exporter.runstore import read_steps
    stats = ReadStats()
    for step in read_steps("monitoring_data/my-run", stats=stats):
        print(step["grpo_step"], step["grpo_reward_mean"])
    print(stats.problems())   # {} when every line was whole and in order
"""

from __future__ import annotations

import json
import logging
import os
import struct
import time
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..alerting.events import AlertEvent
from ..metrics.layout import StepLayout, StepMetrics
from .base import Sink
from .jsonl import AppendOnlyFile, ReadStats, cut_torn_tail, iter_lines, lines_backwards, parse_json_line
from .runlock import RunDirectoryLock, RunDirectoryLocked

log = logging.getLogger("rewardscope")

FORMAT_VERSION = 1
_RECORD_HEADER = struct.Struct("<qIII")
STEPS_FILE = "steps.jsonl"
ALERTS_FILE = "alerts.jsonl"
DISTRIBUTIONS_FILE = "rewards.f16z"


class RunStoreError(RuntimeError):
    """The run directory cannot be used (another layout, unreadable manifest, another writer, a failed write)."""


class RunStoreSink(Sink):
    """Writes a run directory; the one sink whose failure stops the run (``loud``)."""

    name = "runstore"
    loud = True

    def __init__(self, root: str | os.PathLike, run_id: str, layout: StepLayout, *, manifest_extra: dict[str, Any],
                 log_distributions: bool = False, resume_after_step: int | None = None) -> None:
        self.directory = Path(root) / run_id
        self.directory.mkdir(parents=True, exist_ok=True)
        self.layout = layout
        self.log_distributions = log_distributions
        self.last_step: int | None = None
        # Infinite values stored as null since this sink opened the run, per column (summary.json).
        self.nonfinite_values: dict[str, int] = {}
        self._lock = RunDirectoryLock(self.directory)
        try:
            self._lock.acquire()
        except RunDirectoryLocked as error:
            raise RunStoreError(str(error)) from None
        try:
            self._open(run_id, manifest_extra, resume_after_step)
        except BaseException:
            self._lock.release()
            raise

    def _open(self, run_id: str, manifest_extra: dict[str, Any], resume_after_step: int | None) -> None:
        manifest_path = self.directory / "manifest.json"
        columns = self.layout.column_names()
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
        if self.log_distributions:
            manifest["distributions"] = {"file": DISTRIBUTIONS_FILE, "dtype": "<f2", "compression": "zlib",
                                         "header": "<qIII step functions samples payload_bytes"}
        self._write_json(manifest_path, manifest)

        steps_path = self.directory / STEPS_FILE
        self.last_step = _repair_steps(steps_path, self.layout.width, resume_after_step)
        alerts_path = self.directory / ALERTS_FILE
        _repair_alerts(alerts_path, self.last_step)
        distributions_path = self.directory / DISTRIBUTIONS_FILE
        _repair_distributions(distributions_path, self.last_step, len(self.layout.reward_functions))

        self._steps = AppendOnlyFile(steps_path)
        self._alerts = AppendOnlyFile(alerts_path)
        self._distributions = AppendOnlyFile(distributions_path) if self.log_distributions else None
        # One C-level format call per step; NaN (absent) renders as "nan" and becomes null below.
        self._format = "[%d,%.3f," + ",".join(["%.6g"] * (self.layout.width - 2)) + "]\n"

    def format_line(self, row: np.ndarray) -> tuple[str, np.ndarray]:
        """The step line of ``row`` and the indices of the infinite values it stores as null."""
        infinite = np.flatnonzero(np.isinf(row))
        if infinite.size:
            row = row.copy()
            row[infinite] = np.nan
        line = self._format % tuple(row.tolist())
        return (line.replace("nan", "null") if "nan" in line else line), infinite

    def write_step(self, metrics: StepMetrics) -> None:
        """Append the step whole or raise RunStoreError with every file exactly as before (see the module docstring).

        The step's distributions record and its alert transitions (``metrics.events``, which a
        StepRecord carries) go first; the step line goes last and commits the step: a writer
        killed before it leaves a record or alert lines that reopening the run cuts.
        """
        line, infinite = self.format_line(metrics.row)
        record = None
        if self._distributions is not None and metrics.rewards is not None:
            rewards = np.ascontiguousarray(metrics.rewards, dtype="<f2")
            payload = zlib.compress(rewards.tobytes(), 1)
            record = _RECORD_HEADER.pack(metrics.step, rewards.shape[0], rewards.shape[1], len(payload)) + payload
        alerts, replaced = self._alert_lines(getattr(metrics, "events", ()))
        appends = [(self._distributions, record), (self._alerts, alerts), (self._steps, line.encode())]
        sizes = [(f, f.size) for f, data in appends if f is not None and data]
        try:
            for f, data in appends:
                if f is not None and data:
                    f.append(data)
        except BaseException as error:  # OSError (disk full), or e.g. KeyboardInterrupt between two appends
            for f, size in sizes:
                if f.size != size:
                    f.truncate(size, error)
            if isinstance(error, OSError):
                raise RunStoreError(f"run store {self.directory}: step {metrics.step} was not written ({error}); "
                                    "the files are as before it, so retrying the step records it once") from error
            raise
        self.last_step = metrics.step
        self._count_nonfinite([self.layout.column_names()[i] for i in infinite], STEPS_FILE)
        self._count_nonfinite(replaced, ALERTS_FILE)

    def write_alerts(self, events: Sequence[AlertEvent]) -> None:
        """Append alert events on their own, whole or not at all (RunStoreError with alerts.jsonl unchanged)."""
        data, replaced = self._alert_lines(events)
        try:
            self._alerts.append(data)
        except OSError as error:
            raise RunStoreError(f"run store {self.directory}: {len(events)} alert events were not written ({error}); "
                                "alerts.jsonl is as before them") from error
        self._count_nonfinite(replaced, ALERTS_FILE)

    def _alert_lines(self, events: Sequence[AlertEvent]) -> tuple[bytes, list[str]]:
        """The events as JSON lines, and where they held infinite values (stored as null)."""
        replaced: list[str] = []
        lines = [json.dumps(_finite_or_none(event.to_json(), replaced), allow_nan=False, default=_json_default) + "\n"
                 for event in events]
        return "".join(lines).encode(), replaced

    def close(self, summary: dict) -> None:
        """Close the files, write summary.json (with ``nonfinite_values``) and release the lock. Safe to call twice."""
        if not self._lock.held:
            return
        try:
            for f in (self._steps, self._alerts, self._distributions):
                if f is not None and not f.closed:
                    f.close()
            replaced: list[str] = []
            summary = _finite_or_none(summary, replaced)
            self._count_nonfinite(replaced, "summary.json")
            _write_json_atomic(self.directory / "summary.json", {**summary, "nonfinite_values": dict(self.nonfinite_values)})
        finally:
            self._lock.release()

    def _write_json(self, path: Path, data: dict) -> None:
        replaced: list[str] = []
        _write_json_atomic(path, _finite_or_none(data, replaced))
        self._count_nonfinite(replaced, path.name)

    def _count_nonfinite(self, columns: list[str], file: str) -> None:
        for column in columns:
            key = column if file == STEPS_FILE else f"{file}:{column}"
            if key not in self.nonfinite_values:
                log.warning("run store %s: %s %s is infinite, stored as null (JSON has no infinity); "
                            "counted in summary.json nonfinite_values, logged once", self.directory, file, column)
            self.nonfinite_values[key] = self.nonfinite_values.get(key, 0) + 1


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(data, indent=2, allow_nan=False, default=_json_default) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _finite_or_none(value: Any, replaced: list[str], where: str = "") -> Any:
    """NaN and infinities become null (JSON has no spelling for them); the paths of infinite ones go to ``replaced``."""
    if isinstance(value, (float, np.floating)):
        if np.isfinite(value):
            return float(value)
        if np.isinf(value):
            replaced.append(where or "value")
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v, replaced, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v, replaced, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


# --------------------------------------------------------------------------- repair on reopen
def _repair_steps(steps_path: Path, width: int, resume_after_step: int | None) -> int | None:
    """Cut a torn tail and, when resuming, the steps after ``resume_after_step``; return the last step kept.

    Reads the file backwards from its end: the cost is the tail cut, not the run's length.
    """
    cut = cut_torn_tail(steps_path)
    if cut:
        log.warning("run store %s: cut a torn final line of %d bytes left by an interrupted writer", steps_path, cut)
    if not steps_path.exists():
        return None
    stats = ReadStats()
    with open(steps_path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        keep, dropped, last_step = 0, 0, None
        for offset, line in lines_backwards(f, size):
            row = parse_step_line(line, width, stats)
            if row is None:
                dropped += resume_after_step is not None
                continue
            if resume_after_step is None or row[0] <= resume_after_step:
                keep, last_step = offset + len(line), row[0]
                break
            dropped += 1
        if resume_after_step is None:
            return last_step
        if keep < size:
            f.truncate(keep)
    if dropped:
        log.warning("run store %s: dropped %d lines after step %d (resuming from a checkpoint)", steps_path, dropped,
                    resume_after_step)
    return last_step


def _repair_alerts(path: Path, last_step: int | None) -> None:
    """Cut a torn final line, then the transitions of steps after the last stored step, read from the end.

    Those belong to a step whose line was never written (the writer died between the two) or
    to steps a resume dropped: the steps will be recorded again, and their alerts with them.
    """
    cut = cut_torn_tail(path)
    if cut:
        log.warning("run store %s: cut a torn final line of %d bytes left by an interrupted writer", path, cut)
    if not path.exists():
        return
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        keep = size
        for offset, line in lines_backwards(f, size):
            try:
                event = parse_json_line(line, ReadStats())
            except ValueError:
                break
            step = event.get("step") if isinstance(event, dict) else None
            if type(step) is not int or (last_step is not None and step <= last_step):
                break
            keep = offset
        if keep < size:
            log.warning("run store %s: cut %d bytes of alert transitions after step %s (steps not stored)", path,
                        size - keep, last_step)
            f.truncate(keep)


def _repair_distributions(path: Path, last_step: int | None, functions: int) -> None:
    """Cut a torn final record and any record after the last stored step (an orphan of an interrupted step)."""
    if not path.exists():
        return
    size = path.stat().st_size
    keep = 0 if last_step is None else _end_of_record(path, last_step, functions, size)
    if keep is None:  # no whole record of the last step near the end: walk the headers from the start
        keep = 0
        with open(path, "rb") as f:
            for step, _, _, end in _iter_records(f, size, read_payload=False):
                if step > last_step:  # type: ignore[operator]
                    break
                keep = end
    if keep < size:
        log.warning("run store %s: cut %d bytes after the record of step %s (a torn record, or one whose step line "
                    "was never written)", path, size - keep, last_step)
        with open(path, "rb+") as f:
            f.truncate(keep)


def _end_of_record(path: Path, step: int, functions: int, size: int) -> int | None:
    """End offset of the whole record of ``step``, searched from the end of the file; None when absent."""
    prefix = struct.pack("<qI", step, functions)
    window = 1 << 20
    with open(path, "rb") as f:
        while True:
            start = max(0, size - window)
            f.seek(start)
            data = f.read(size - start)
            at = data.rfind(prefix)
            while at >= 0:
                if _is_whole_record(data, at):
                    return start + at + _RECORD_HEADER.size + _RECORD_HEADER.unpack_from(data, at)[3]
                at = data.rfind(prefix, 0, at)
            if start == 0:
                return None
            window *= 4


def _is_whole_record(data: bytes, at: int) -> bool:
    if at + _RECORD_HEADER.size > len(data):
        return False
    _, functions, samples, payload = _RECORD_HEADER.unpack_from(data, at)
    begin = at + _RECORD_HEADER.size
    if begin + payload > len(data):
        return False
    try:
        return len(zlib.decompress(data[begin:begin + payload])) == functions * samples * 2
    except zlib.error:
        return False


def _iter_records(f: BinaryIO, size: int, read_payload: bool = True) -> Iterator[tuple[int, tuple[int, int], bytes, int]]:
    """(step, (functions, samples), payload, end offset) of each whole record, streamed from the file's start."""
    offset = 0
    while offset + _RECORD_HEADER.size <= size:
        f.seek(offset)
        step, functions, samples, length = _RECORD_HEADER.unpack(f.read(_RECORD_HEADER.size))
        end = offset + _RECORD_HEADER.size + length
        if end > size:
            return
        yield step, (functions, samples), f.read(length) if read_payload else b"", end
        offset = end


# --------------------------------------------------------------------------- readers
def read_manifest(run_dir: str | os.PathLike) -> dict:
    """The run's manifest; RunStoreError when ``run_dir`` is not a readable run directory."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise RunStoreError(f"{run_dir} does not exist (expected a run directory, e.g. monitoring_data/<run_id>)")
    if not run_dir.is_dir():
        raise RunStoreError(f"{run_dir} is not a rewardscope run directory (it is a file)")
    path = run_dir / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunStoreError(f"{run_dir} is not a rewardscope run directory (no manifest.json)") from None
    except (OSError, ValueError) as error:
        raise RunStoreError(f"{path} cannot be read: {error}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("columns"), list):
        raise RunStoreError(f"{path} is not a rewardscope manifest (no list of columns)")
    return manifest


def parse_step_line(line: bytes, width: int, stats: ReadStats) -> list | None:
    """The values of a step line (``width`` of them, an integer step first), or None when it is not one."""
    try:
        row = parse_json_line(line, stats)
    except ValueError:
        return None
    if isinstance(row, list) and len(row) == width and type(row[0]) is int:
        return row
    return None


def iter_step_rows(steps_path: Path, width: int, stats: ReadStats) -> Iterator[list]:
    """The valid step lines as lists, in file order; every other line skipped, counted in ``stats`` and logged."""
    previous: int | None = None
    for number, line in iter_lines(steps_path, stats):
        row = parse_step_line(line, width, stats)
        if row is None:
            stats.skipped("corrupt_lines", steps_path, number, f"not a step line of {width} values")
            continue
        if previous is not None and row[0] <= previous:
            stats.skipped("non_monotonic_steps", steps_path, number, f"step {row[0]} is not after step {previous}")
            continue
        previous = row[0]
        stats.rows += 1
        yield row


def read_steps(run_dir: str | os.PathLike, stats: ReadStats | None = None) -> Iterator[dict[str, float]]:
    """Every valid step of a run, as {column: value}, absent values left out; problems counted in ``stats``."""
    run_dir = Path(run_dir)
    columns = read_manifest(run_dir)["columns"]
    for row in iter_step_rows(run_dir / STEPS_FILE, len(columns), ReadStats() if stats is None else stats):
        yield {c: v for c, v in zip(columns, row) if v is not None}


def read_alerts(run_dir: str | os.PathLike, stats: ReadStats | None = None) -> list[dict]:
    """Every whole alert event; corrupt lines skipped, counted in ``stats`` and logged."""
    path = Path(run_dir) / ALERTS_FILE
    stats = ReadStats() if stats is None else stats
    events = []
    for number, line in iter_lines(path, stats):
        try:
            event = parse_json_line(line, stats)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            stats.skipped("corrupt_lines", path, number, "not a JSON alert event")
            continue
        stats.rows += 1
        events.append(event)
    return events


def read_distributions(run_dir: str | os.PathLike) -> Iterator[tuple[int, np.ndarray]]:
    """(step, (F, N) float32 rewards) for each whole record of the distributions file, streamed."""
    path = Path(run_dir) / DISTRIBUTIONS_FILE
    if not path.exists():
        return
    whole = 0  # bytes of whole records read
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        for step, shape, payload, end in _iter_records(f, size):
            whole = end
            yield step, np.frombuffer(zlib.decompress(payload), dtype="<f2").reshape(shape).astype(np.float32)
    if whole < size:
        log.warning("%s: skipped a torn final record", path)


def read_summary(run_dir: str | os.PathLike) -> dict | None:
    """The closing summary, or None when the run has not closed (or its summary.json is unreadable, logged)."""
    path = Path(run_dir) / "summary.json"
    if not path.exists():
        return None
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        log.warning("%s cannot be read (%s); treated as absent", path, error)
        return None
    return summary if isinstance(summary, dict) else None
