"""Append-only JSONL files that survive a crash, a full disk and a corrupt line.

Writing: ``AppendOnlyFile.append(data)`` writes the whole of ``data`` through an
unbuffered file descriptor (``os.write``, no Python buffer that could surface later)
or, when a write fails part-way, truncates the file back to its size before the call
and raises: the file holds every appended record whole, or is exactly as before.

Reading: ``iter_lines`` yields whole lines with their numbers; a torn final line
(no newline: a writer killed mid-write) is left out and noted in ``ReadStats``.
``parse_json_line`` reads one line, turning the non-finite tokens older writers
left (``inf``, ``nan``, ``Infinity``, ``NaN``) into ``None``, counted. Problems
are counted in a ``ReadStats`` and logged with file and line number (the first few
of each kind per file, so a badly damaged file does not flood the log).

Repair on reopen: ``cut_torn_tail`` drops a torn final line; ``lines_backwards``
walks a file from its end, so reopening reads only the tail, whatever its length.

Usage::

    from rewardscope.exporter.jsonl import AppendOnlyFile, ReadStats, iter_lines, parse_json_line
    out = AppendOnlyFile("events.jsonl")
    out.append(b'{"a": 1}\\n')
    out.close()
    stats = ReadStats()
    rows = [parse_json_line(line, stats) for _, line in iter_lines("events.jsonl", stats)]
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

log = logging.getLogger("rewardscope")

# Problems of one kind logged per file before the rest are only counted.
WARNINGS_PER_KIND = 5
_BLOCK = 1 << 16
# Bare non-finite tokens as C's printf writes them (JSON has no spelling for them).
_BARE_NONFINITE = re.compile(rb"(?<![\w.\"])-?(?:inf|nan)(?![\w\"])")


@dataclass
class ReadStats:
    """What a reader skipped or repaired; pass one in to learn why rows are missing."""

    lines: int = 0                 # whole lines read
    rows: int = 0                  # rows yielded
    corrupt_lines: int = 0         # not a valid record: skipped
    non_monotonic_steps: int = 0   # a step not after the previous one: skipped
    nonfinite_values: int = 0      # inf/NaN tokens read as null (absent)
    torn_final_line: bool = False  # an interrupted writer's last line: skipped
    _warned: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def skipped(self, kind: str, path: Path, number: int, detail: str) -> None:
        """Count a skipped line of ``kind`` (an attribute name) and log it, the first few per kind."""
        setattr(self, kind, getattr(self, kind) + 1)
        warned = self._warned.get(kind, 0)
        if warned < WARNINGS_PER_KIND:
            log.warning("%s:%d: skipped a line (%s)%s", path, number, detail,
                        "; further lines of this kind are only counted" if warned == WARNINGS_PER_KIND - 1 else "")
        self._warned[kind] = warned + 1

    def problems(self) -> dict[str, int]:
        """The non-zero problem counts, for reports."""
        counts = {"corrupt_lines": self.corrupt_lines, "non_monotonic_steps": self.non_monotonic_steps,
                  "nonfinite_values": self.nonfinite_values, "torn_final_line": int(self.torn_final_line)}
        return {kind: n for kind, n in counts.items() if n}


def parse_json_line(line: bytes, stats: ReadStats) -> Any:
    """One JSON value; non-finite numbers become None and are counted. Raises ValueError when not JSON."""
    found = 0

    def nonfinite(_token: str) -> None:
        nonlocal found
        found += 1

    try:
        value = json.loads(line, parse_constant=nonfinite)
    except ValueError:
        repaired, count = _BARE_NONFINITE.subn(b"null", line)
        if not count:
            raise
        value = json.loads(repaired, parse_constant=nonfinite)
        found += count
    stats.nonfinite_values += found
    return value


def iter_lines(path: str | os.PathLike, stats: ReadStats) -> Iterator[tuple[int, bytes]]:
    """(line number from 1, line) for each whole line; a torn final line is skipped, noted and logged."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.endswith(b"\n"):
                stats.torn_final_line = True
                log.warning("%s:%d: skipped a torn final line (an interrupted writer)", path, number)
                return
            stats.lines += 1
            yield number, line


def lines_backwards(f: BinaryIO, end: int) -> Iterator[tuple[int, bytes]]:
    """(offset, line) of the lines before byte ``end``, last first, reading blocks from the end.

    ``end`` must be a line boundary (0, or just after a newline): cut a torn tail first.
    """
    position, buf, limit = end, b"", 0
    # buf holds the bytes from ``position``; buf[:limit] are the lines not yielded yet.
    while True:
        cut = buf.rfind(b"\n", 0, limit - 1) if limit > 1 else -1
        if cut >= 0:
            yield position + cut + 1, buf[cut + 1:limit]
            limit = cut + 1
            continue
        if position == 0:
            if limit:
                yield 0, buf[:limit]
            return
        start = max(0, position - _BLOCK)
        f.seek(start)
        buf = f.read(position - start) + buf[:limit]
        limit, position = len(buf), start


def cut_torn_tail(path: Path) -> int:
    """Truncate a file after its last newline; return the bytes cut."""
    if not path.exists():
        return 0
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        keep = size
        while keep > 0:
            start = max(0, keep - _BLOCK)
            f.seek(start)
            newline = f.read(keep - start).rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            keep = start
        if keep < size:
            f.truncate(keep)
        return size - keep


class AppendOnlyFile:
    """A file appended to whole or not at all (see the module docstring)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 -- open for the object's lifetime, closed by close()
        self.size = os.fstat(self._file.fileno()).st_size
        self._broken: str | None = None

    @property
    def closed(self) -> bool:
        return self._file.closed

    def append(self, data: bytes) -> None:
        """Write all of ``data`` at the end, or leave the file as it was and raise OSError."""
        if self._broken is not None:
            raise OSError(f"{self.path} was left in an unknown state by an earlier failure ({self._broken}); "
                          "reopen the run to repair it")
        before = self.size
        try:
            _write_all(self._file.fileno(), data)
        except BaseException as error:
            self.truncate(before, error)
            raise
        self.size = before + len(data)

    def truncate(self, size: int, cause: BaseException | None = None) -> None:
        """Cut the file back to ``size``; if even that fails, refuse every later append."""
        try:
            os.ftruncate(self._file.fileno(), size)
        except OSError as error:
            self._broken = f"{cause!r}, then truncating failed: {error!r}"
            raise
        self.size = size

    def close(self) -> None:
        self._file.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(f"write returned {written}")
        view = view[written:]
