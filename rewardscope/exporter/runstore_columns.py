"""Some columns of a run's steps as numpy arrays, fast: what reports over long runs need.

``read_step_columns`` streams ``steps.jsonl`` in blocks of about 32 MB and yields,
per block, a float array of the requested columns (NaN = absent). It keeps the same
steps as ``read_steps`` and counts the same problems: a block whose lines all have
the shape the writer gives them (``[`` + one value per column + ``]``) is parsed by
numpy's C reader, only the requested columns converted; a block holding any other
line goes through the line-by-line JSON reader, which skips and counts what it
cannot use. Memory is one block, whatever the run's length.

Usage::

    from rewardscope.exporter.jsonl import ReadStats
    from rewardscope.exporter.runstore_columns import read_step_columns
    stats = ReadStats()
    for block in read_step_columns("monitoring_data/my-run", ["grpo_step", "grpo_reward_mean"], stats):
        print(block[:, 1].mean())
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .jsonl import ReadStats
from .runstore import STEPS_FILE, parse_step_line, read_manifest

log = logging.getLogger("rewardscope")

BLOCK_BYTES = 1 << 25


def read_step_columns(run_dir: str | os.PathLike, columns: Sequence[str], stats: ReadStats | None = None,
                      block_bytes: int = BLOCK_BYTES) -> Iterator[np.ndarray]:
    """Blocks of shape (steps, len(columns)) of the valid steps, in order; a column the run lacks is all NaN."""
    run_dir = Path(run_dir)
    stored = read_manifest(run_dir)["columns"]
    stats = ReadStats() if stats is None else stats
    block = _BlockParser(run_dir / STEPS_FILE, stored, columns, stats)
    if not block.path.exists():
        return
    with open(block.path, "rb") as f:
        carry = b""
        while True:
            chunk = f.read(block_bytes)
            if not chunk:
                break
            data = carry + chunk
            end = data.rfind(b"\n") + 1
            carry = data[end:]
            if end:
                rows = block.parse(data[:end])
                if len(rows):
                    yield rows
    if carry:
        stats.torn_final_line = True
        log.warning("%s:%d: skipped a torn final line (an interrupted writer)", block.path, block.lines_seen + 1)


class _BlockParser:
    """Parses blocks of whole lines, carrying the line count and the last step from one block to the next."""

    def __init__(self, path: Path, stored: list[str], columns: Sequence[str], stats: ReadStats) -> None:
        self.path = path
        self.width = len(stored)
        self.stats = stats
        position = {name: i for i, name in enumerate(stored)}
        wanted = sorted({0, *(position[c] for c in columns if c in position)})
        self.usecols = np.array(wanted)  # the step (column 0) is always read: it orders the rows
        self.targets = [(out, wanted.index(position[c])) for out, c in enumerate(columns) if c in position]
        self.n_out = len(columns)
        self.lines_seen = 0
        self.previous_step = -np.inf

    def parse(self, data: bytes) -> np.ndarray:
        first_line = self.lines_seen + 1
        n_lines = data.count(b"\n")
        self.lines_seen += n_lines
        self.stats.lines += n_lines
        values, numbers = self._fast(data, n_lines)
        if values is None:
            values, numbers = self._line_by_line(data, first_line)
        else:
            numbers = numbers + first_line
        values = self._in_order(values, numbers)
        self.stats.rows += len(values)
        out = np.full((len(values), self.n_out), np.nan)
        for column, source in self.targets:
            out[:, column] = values[:, source]
        return out

    def _fast(self, data: bytes, n_lines: int) -> tuple[np.ndarray | None, np.ndarray]:
        """numpy's C reader when every line has the writer's shape, else (None, _)."""
        buf = np.frombuffer(data, dtype=np.uint8)
        newlines = np.flatnonzero(buf == ord("\n"))
        starts = np.concatenate(([0], newlines[:-1] + 1))
        commas_before = np.searchsorted(np.flatnonzero(buf == ord(",")), newlines)
        commas = np.diff(commas_before, prepend=0)
        shaped = (commas == self.width - 1) & (buf[starts] == ord("[")) & (buf[newlines - 1] == ord("]"))
        if not shaped.all():
            return None, newlines
        text = data.replace(b"[", b"").replace(b"]", b"").replace(b"null", b"nan")
        try:
            values = np.loadtxt(io.BytesIO(text), delimiter=",", usecols=self.usecols, ndmin=2, dtype=np.float64)
        except ValueError:  # a value that is not a number: let the JSON reader say which line
            return None, newlines
        steps = values[:, 0]
        if not (np.isfinite(steps).all() and (steps == np.floor(steps)).all()):
            return None, newlines
        bare_infinities = data.count(b"inf")
        if bare_infinities:  # older writers wrote bare inf: counted over every column, read as absent
            self.stats.nonfinite_values += bare_infinities
            values[np.isinf(values)] = np.nan
        return values, np.arange(n_lines)

    def _line_by_line(self, data: bytes, first_line: int) -> tuple[np.ndarray, np.ndarray]:
        rows, numbers = [], []
        for number, line in enumerate(data.splitlines(keepends=True), start=first_line):
            row = parse_step_line(line, self.width, self.stats)
            if row is None:
                self.stats.skipped("corrupt_lines", self.path, number, f"not a step line of {self.width} values")
                continue
            rows.append([np.nan if row[i] is None else row[i] for i in self.usecols])
            numbers.append(number)
        return np.array(rows, dtype=np.float64).reshape(-1, len(self.usecols)), np.array(numbers, dtype=np.int64)

    def _in_order(self, values: np.ndarray, numbers: np.ndarray) -> np.ndarray:
        """Drop steps not after the previous kept step (the same rule as ``read_steps``), counted and logged."""
        steps = values[:, 0]
        before = np.maximum.accumulate(np.concatenate(([self.previous_step], steps)))[:-1]
        keep = steps > before
        for i in np.flatnonzero(~keep):
            self.stats.skipped("non_monotonic_steps", self.path, int(numbers[i]),
                               f"step {int(steps[i])} is not after step {int(before[i])}")
        if len(steps):
            self.previous_step = max(self.previous_step, float(steps.max()))
        return values[keep]
