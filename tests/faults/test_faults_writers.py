"""One writer per run directory: a second one, in another process or the same one, is refused at once;
a writer killed by -9 does not block the next one."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from rewardscope.exporter.runstore import read_steps

sys.path.insert(0, str(Path(__file__).parent))
from recorder import open_monitor, rewards_of

REPO = Path(__file__).resolve().parents[2]
RECORDER = Path(__file__).parent / "recorder.py"
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def second_writer(root: Path) -> subprocess.CompletedProcess:
    """Another process trying to write the run; the timeout turns a lock that waits into a failure, not a hang."""
    code = ("import sys; sys.path.insert(0, sys.argv[2]); from recorder import open_monitor\n"
            "from rewardscope.exporter.runstore import RunStoreError\n"
            "try:\n    open_monitor(sys.argv[1], 'run')\nexcept RunStoreError as error:\n    print(error); sys.exit(3)\n")
    return subprocess.run([sys.executable, "-c", code, str(root), str(RECORDER.parent)], check=False,
                          capture_output=True, text=True, env=ENV, timeout=120)


@pytest.mark.slow
def test_a_second_writer_process_is_refused_naming_the_holder_and_a_killed_holder_does_not_block(tmp_path):
    holder = subprocess.Popen([sys.executable, str(RECORDER), "hold", str(tmp_path), "run"], stdout=subprocess.PIPE,
                              text=True, env=ENV)
    try:
        assert holder.stdout.readline() == "ready\n"
        refused = second_writer(tmp_path)
        assert refused.returncode == 3, refused.stderr
        assert f"is already being written by pid {holder.pid} on {socket.gethostname()} since " in refused.stdout
    finally:
        holder.kill()
        holder.wait()
    with open_monitor(str(tmp_path), "run") as monitor:  # the kernel released the dead holder's lock
        monitor.record_step(1, rewards_of(1))
    assert [s["grpo_step"] for s in read_steps(tmp_path / "run")] == [1]


def test_two_monitors_of_one_run_in_one_process_the_second_refused_and_nothing_written_twice(tmp_path):
    from rewardscope.exporter.runstore import RunStoreError

    with open_monitor(str(tmp_path), "run") as first:
        first.record_step(1, rewards_of(1))
        with pytest.raises(RunStoreError, match="another monitor or sink of this run is open"):
            open_monitor(str(tmp_path), "run")
        first.record_step(2, rewards_of(2))
    assert [s["grpo_step"] for s in read_steps(tmp_path / "run")] == [1, 2]
