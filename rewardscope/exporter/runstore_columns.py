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
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from .jsonl import ReadStats
from .runstore import STEPS_FILE, parse_step_line, read_manifest

log = logging.getLogger("rewardscope")

BLOCK_BYTES = 1 << 25
# One translate pass makes a block readable by numpy's C reader: brackets become spaces and "null"
# becomes "9e99", a sentinel for absent values (the writer's %.6g would spell that value "9e+99").
_FAST_TEXT = bytes.maketrans(b"[]nul", b"  9e9")
_ABSENT = 9e99


def read_step_columns(run_dir: str | os.PathLike, columns: Sequence[str], stats: ReadStats | None = None,
                      block_bytes: int = BLOCK_BYTES, byte_range: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """Blocks of shape (steps, len(columns)) of the valid steps, in order; a column the run lacks is all NaN.

    ``byte_range`` (start, end), both at line starts (``line_ranges``), reads that part of the file only; line
    numbers in warnings then count from its start.
    """
    run_dir = Path(run_dir)
    stored = read_manifest(run_dir)["columns"]
    stats = ReadStats() if stats is None else stats
    block = _BlockParser(run_dir / STEPS_FILE, stored, columns, stats)
    if not block.path.exists():
        return
    with open(block.path, "rb") as f:
        offset, stop = byte_range or (0, math.inf)
        size = block_bytes
        while True:
            f.seek(offset)
            chunk = f.read(int(min(size, stop - offset)))
            end = chunk.rfind(b"\n") + 1
            if end == 0:
                if len(chunk) < size:  # the end of the file: empty, or a torn final line
                    break
                size *= 2  # a line longer than a block
                continue
            rows = block.parse(chunk, end)
            offset += end
            if len(rows):
                yield rows
    if chunk:
        stats.torn_final_line = True
        warn_torn_final_line(block.path, block.lines_seen + 1)


def warn_torn_final_line(path: Path, number: int) -> None:
    log.warning("%s:%d: skipped a torn final line (an interrupted writer)", path, number)


def line_ranges(path: str | os.PathLike, parts: int) -> list[tuple[int, int]]:
    """``parts`` byte ranges of about equal size that cover the file, each starting at a line start (fewer when
    the file has fewer lines)."""
    size = os.path.getsize(path)
    starts = [0]
    with open(path, "rb") as f:
        for i in range(1, parts):
            position = max(size * i // parts, starts[-1])
            f.seek(position)
            while True:  # to the start of the next line, however long the line
                piece = f.read(1 << 16)
                newline = piece.find(b"\n")
                if newline >= 0 or not piece:
                    break
                position += len(piece)
            start = position + newline + 1 if newline >= 0 else size
            if start < size and start > starts[-1]:
                starts.append(start)
    return list(zip(starts, starts[1:] + [size]))


class _BlockParser:
    """Parses blocks of whole lines, carrying the line count and the last step from one block to the next."""

    def __init__(self, path: Path, stored: list[str], columns: Sequence[str], stats: ReadStats) -> None:
        self.path = path
        self.width = len(stored)
        self.stats = stats
        position = {name: i for i, name in enumerate(stored)}
        # The step (column 0) orders the rows; the last column makes the C reader reject a short line.
        wanted = sorted({0, self.width - 1, *(position[c] for c in columns if c in position)})
        self.usecols = wanted
        # (output column, column of the parsed values) for each requested column the run has.
        self.targets = np.array([(out, wanted.index(position[c])) for out, c in enumerate(columns) if c in position],
                                dtype=np.int64).reshape(-1, 2)
        self.n_out = len(columns)
        self.lines_seen = 0
        self.previous_step = -np.inf

    def parse(self, chunk: bytes, end: int) -> np.ndarray:
        """The valid steps among the whole lines ``chunk[:end]``, as rows of the requested columns."""
        first_line = self.lines_seen + 1
        n_lines = chunk.count(b"\n", 0, end)
        self.lines_seen += n_lines
        self.stats.lines += n_lines
        values = self._fast(chunk, end, n_lines)
        if values is None:
            values, numbers = self._line_by_line(chunk[:end], first_line)
        else:
            numbers = np.arange(first_line, first_line + n_lines)
        values = self._in_order(values, numbers)
        self.stats.rows += len(values)
        out = np.full((len(values), self.n_out), np.nan)
        out[:, self.targets[:, 0]] = values[:, self.targets[:, 1]]
        return out

    def _fast(self, chunk: bytes, end: int, n_lines: int) -> np.ndarray | None:
        """numpy's C reader when every line of ``chunk[:end]`` has the writer's shape, else None."""
        text = chunk.translate(_FAST_TEXT)
        # Each line "[v,...,v]" of width values: two brackets (now spaces) and width - 1 commas. With the
        # last column always read, the C reader fails on a shorter line, so the counts leave no longer one.
        if text.count(b" ", 0, end) != 2 * n_lines or text.count(b",", 0, end) != n_lines * (self.width - 1):
            return None
        try:
            values = np.loadtxt(io.BytesIO(text), delimiter=",", usecols=self.usecols, ndmin=2, dtype=np.float64,
                                max_rows=n_lines)
        except ValueError:  # a token that is not a number (e.g. a bare inf of an older writer): the JSON reader says which
            return None
        absent = values == _ABSENT
        if absent.any():
            if chunk.find(b"9e+99", 0, end) >= 0:  # a real 9e+99 in the run: the sentinel is ambiguous
                return None
            values[absent] = np.nan
        steps = values[:, 0]
        if np.isinf(values).any() or not (steps == np.floor(steps)).all():
            return None
        return values

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
