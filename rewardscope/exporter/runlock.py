"""One writer per run directory: an exclusive ``flock`` on ``<run_dir>/.lock``.

The run store holds the lock from the moment it opens a run directory until it
closes it. A second writer of the same directory — another process, or a second
monitor in the same process — fails at once with an error naming the holder
(pid, host, since when), which the holder writes into the lock file.

The lock is tied to an open file, not to the file's existence: when the holder
dies (even by ``kill -9``) the operating system releases it, so a lock file left
behind never blocks a later writer. The file itself is never deleted (deleting it
would let two writers lock two different files of the same name).

NFS caveat: on Linux, ``flock`` on an NFS mount is emulated with POSIX byte-range
locks, which work across machines only when the server and client run a working
lock manager (NFSv4, or NFSv3 with lockd; not with the ``nolock`` mount option,
where the lock is local to each machine). Two machines writing one run directory on
such a share are not stopped: give each run its own id.

Usage::

    from rewardscope.exporter.runlock import RunDirectoryLock
    lock = RunDirectoryLock("monitoring_data/my-run")
    lock.acquire()      # RunDirectoryLocked if another writer holds it
    ...
    lock.release()
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
import time
from pathlib import Path

LOCK_FILE = ".lock"


class RunDirectoryLocked(RuntimeError):
    """Another writer holds the run directory's lock."""


class RunDirectoryLock:
    """An exclusive, non-blocking lock on one run directory (see the module docstring)."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.path = Path(directory) / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise RunDirectoryLocked naming the holder; never waits."""
        if self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunDirectoryLocked(self._refusal()) from None
        except BaseException:
            os.close(fd)
            raise
        since = time.time()
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": since,
                  "since_utc": datetime.datetime.fromtimestamp(since, datetime.timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Give the lock up (closing the file releases it). Safe to call twice."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        os.close(fd)

    def holder(self) -> dict | None:
        """What the current holder wrote into the lock file, or None when it is unreadable."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _refusal(self) -> str:
        directory = self.path.parent
        holder = self.holder()
        if holder is None:  # the holder has locked the file but not written its name yet
            who = "another process (it has not written its name yet)"
        elif holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
            who = f"this process (pid {holder['pid']}) since {holder.get('since_utc')}: another monitor or sink of this run is open"
        else:
            who = f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since_utc')}"
        return (f"run directory {directory} is already being written by {who} (lock {self.path}); "
                "one writer per run directory: stop that writer, close it, or use another run id")
