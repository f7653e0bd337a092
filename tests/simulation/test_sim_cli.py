"""`rewardscope simulate` end to end: run directory, /metrics served, summary, Ctrl-C; pacing and progress."""

import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from rewardscope.cli import main
from rewardscope.exporter.runstore import read_distributions, read_manifest, read_steps, read_summary
from rewardscope.simulation import simulate_steps
from rewardscope.simulation.run import Progress, drive


def test_simulate_writes_a_run_directory_that_summary_reads(tmp_path, capsys):
    rc = main(["simulate", "--scenario", "kl_blowup", "--steps", "30", "--rate", "0", "--port", "0", "--seed", "5",
               "--run-dir", str(tmp_path), "--run-id", "e2e", "--log-distributions", "--end-linger", "0"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "/metrics: http://127.0.0.1:" in out and f"run dir:  {tmp_path / 'e2e'}" in out
    assert "steps:               30 recorded, 1..30" in out  # the summary printed at the end
    manifest = read_manifest(tmp_path / "e2e")
    assert manifest["config"]["simulation"] == {"scenario": "kl_blowup", "steps": 30, "seed": 5, "prompts": 16, "group_size": 8,
                                                "onset": 12, "ramp": 9, "rate": 0.0, "max_completion_length": 512,
                                                "eval_every": 10, "shape": "linear", "strength": 1.0, "noise": 1.0,
                                                "functions": 4}
    assert [row["grpo_step"] for row in read_steps(tmp_path / "e2e")] == list(range(1, 31))
    assert read_summary(tmp_path / "e2e")["steps_recorded"] == 30
    distributions = list(read_distributions(tmp_path / "e2e"))
    assert [step for step, _ in distributions] == list(range(1, 31)) and distributions[0][1].shape == (4, 128)

    assert main(["summary", str(tmp_path / "e2e"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["steps_recorded"], summary["first_step"], summary["last_step"], summary["closed"]) == (30, 1, 30, True)
    assert summary["config"]["simulation"]["scenario"] == "kl_blowup"
    assert summary["metrics"]["grpo_kl"]["max"] > 1.0  # the blow-up is in the record


def test_simulate_rejects_bad_arguments_and_a_used_run_id(tmp_path, capsys):
    assert main(["simulate", "--steps", "10", "--onset", "20", "--no-serve", "--run-dir", str(tmp_path)]) == 2
    assert "onset 20 is after the last step 10" in capsys.readouterr().err
    assert main(["simulate", "--steps", "5", "--rate", "-1", "--no-serve", "--run-dir", str(tmp_path)]) == 2
    assert "--rate must be >= 0" in capsys.readouterr().err
    assert main(["simulate", "--steps", "5", "--print-alerts", "--no-serve", "--run-dir", str(tmp_path)]) == 2
    assert "--print-alerts prints the in-process alerts: add --alerts" in capsys.readouterr().err
    assert main(["simulate", "--steps", "5", "--no-serve", "--run-dir", str(tmp_path), "--run-id", "a/b"]) == 2
    assert "run_id must be a non-empty printable name without '/'" in capsys.readouterr().err
    assert main(["simulate", "--steps", "3", "--rate", "0", "--no-serve", "--run-dir", str(tmp_path), "--run-id", "x"]) == 0
    capsys.readouterr()
    assert main(["simulate", "--steps", "3", "--rate", "0", "--no-serve", "--run-dir", str(tmp_path), "--run-id", "x"]) == 2
    assert "already holds a recorded run" in capsys.readouterr().err


def test_list_shows_every_scenario_with_onset_and_signals(capsys):
    assert main(["simulate", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ("healthy", "reward_hacking", "entropy_collapse", "kl_blowup", "zero_variance_groups", "length_explosion",
                 "stalled", "nonfinite_rewards"):
        assert f"\n{name}\n" in f"\n{out}\n"
    assert "shows in: grpo_kl up" in out and "onset: the last recorded step is onset - 1" in out


def _start(args, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "rewardscope.cli", "simulate", *args, "--port", "0", "--run-dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _read_until(stream, marker):
    lines = []
    for line in stream:
        lines.append(line)
        if marker in line:
            return line, lines
    raise AssertionError(f"{marker!r} never printed; got {lines}")


def _scrape(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


@pytest.fixture
def processes():
    started = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            stream.close()


def test_stalled_run_keeps_serving_metrics_and_ctrl_c_closes_it(tmp_path, processes):
    process = _start(["--scenario", "stalled", "--steps", "50", "--onset", "8", "--rate", "0", "--run-id", "st"], tmp_path)
    processes.append(process)
    url = _read_until(process.stdout, "/metrics: ")[0].split("/metrics: ")[1].strip()
    _read_until(process.stdout, "until Ctrl-C")
    text = _scrape(url)
    assert 'grpo_step{run_id="st"} 7.0' in text and 'grpo_steps_total{run_id="st"} 7.0' in text
    assert process.poll() is None  # still serving after its last step
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "steps:               7 recorded, 1..7" in out
    assert read_summary(tmp_path / "st")["last_step"] == 7


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_during_the_steps_writes_the_summary(tmp_path, processes, signum):
    process = _start(["--scenario", "healthy", "--steps", "100000", "--rate", "20", "--run-id", "int"], tmp_path)
    processes.append(process)
    _read_until(process.stdout, "/metrics: ")
    _read_until(process.stderr, "step ")  # a progress line: steps are being recorded
    process.send_signal(signum)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert "interrupted; closing the run" in err
    summary = read_summary(tmp_path / "int")
    assert summary is not None and 1 <= summary["last_step"] < 100000
    assert summary["last_step"] == len(list(read_steps(tmp_path / "int")))
    assert f"{summary['steps_recorded']} recorded" in out


class FakeTime:
    """A clock that only moves when sleep() is called: pacing without wall-clock time."""

    def __init__(self):
        self.now = 100.0
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


class RecordingMonitor:
    def __init__(self, clock):
        self.clock = clock
        self.calls = []

    def record_step(self, step, **kwargs):
        self.calls.append((step, self.clock()))
        return None


def test_drive_paces_steps_at_the_rate():
    fake = FakeTime()
    monitor = RecordingMonitor(fake.clock)
    recorded = drive(monitor, simulate_steps("healthy", 5, prompts=2, group_size=2), rate=4.0, clock=fake.clock,
                     sleep=fake.sleep)
    assert recorded == 0  # RecordingMonitor returns None like a skipped step
    assert monitor.calls == [(1, 100.0), (2, 100.25), (3, 100.5), (4, 100.75), (5, 101.0)]
    fake = FakeTime()
    drive(RecordingMonitor(fake.clock), simulate_steps("healthy", 5, prompts=2, group_size=2), rate=0, clock=fake.clock,
          sleep=fake.sleep)
    assert fake.sleeps == []
    with pytest.raises(ValueError, match="rate must be >= 0"):
        drive(monitor, [], rate=-1)


def test_progress_prints_a_line_every_tenth_when_not_a_tty():
    stream = io.StringIO()
    progress = Progress(20, stream, tty=False, clock=lambda: 0.0)
    for done in range(1, 21):
        progress.update(done, done, None)
    progress.finish()
    lines = stream.getvalue().splitlines()
    assert lines == [f"step {n}/20 ({5 * n}%)  0.0 steps/s  alerts firing 0" for n in [1, *range(2, 21, 2)]]


def test_progress_rewrites_one_line_on_a_tty():
    stream = io.StringIO()
    ticks = iter(range(100))
    progress = Progress(3, stream, tty=True, clock=lambda: float(next(ticks)))
    for done in range(1, 4):
        progress.update(done, done, None)
    progress.finish()
    text = stream.getvalue()
    assert text.count("\r\x1b[2K") == 3 and text.endswith("step 3/3 (100%)  1.0 steps/s  alerts firing 0\n")


def test_alerts_without_the_alert_engine_get_a_clear_message(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "rewardscope.alerting.engine", None)  # as if the engine were not installed
    assert main(["simulate", "--steps", "3", "--rate", "0", "--no-serve", "--alerts", "--run-dir", str(tmp_path)]) == 2
    assert "--alerts needs the in-process alert engine (rewardscope.alerting.engine)" in capsys.readouterr().err
    assert main(["simulate", "--steps", "3", "--rate", "0", "--no-serve", "--no-alerts", "--run-dir", str(tmp_path)]) == 0


def test_in_process_alerts_are_printed_and_recorded(tmp_path, capsys):
    pytest.importorskip("rewardscope.alerting.engine", reason="the alert engine lands with its own issue")
    assert main(["simulate", "--scenario", "kl_blowup", "--steps", "60", "--rate", "0", "--no-serve", "--alerts",
                 "--print-alerts", "--run-dir", str(tmp_path), "--run-id", "al"]) == 0
    out = capsys.readouterr().out
    fired = [json.loads(line) for line in (tmp_path / "al" / "alerts.jsonl").read_text().splitlines()]
    firing = [e for e in fired if e["state"] == "firing"]
    assert firing and all(e["step"] >= 24 for e in fired)  # nothing before the onset (step 24)
    assert out.count("[rewardscope] FIRING ") == len(firing)
    assert "alerts fired:        none" not in out


def test_a_finished_run_reports_its_end_on_metrics_before_it_exits(tmp_path, processes):
    process = _start(["--scenario", "healthy", "--steps", "5", "--rate", "0", "--run-id", "ends", "--end-linger", "20"], tmp_path)
    processes.append(process)
    line, _ = _read_until(process.stdout, "/metrics: http://")
    url = line.split("/metrics: ", 1)[1].strip()
    deadline = time.monotonic() + 20
    ended = False
    while not ended and time.monotonic() < deadline:
        ended = 'grpo_run_ended{run_id="ends"} 1.0' in _scrape(url)
        time.sleep(0.1)
    assert ended, "Prometheus would never have seen the run end"
    assert 'grpo_step{run_id="ends"} 5.0' in _scrape(url)  # the final state, still served
    process.terminate()  # SIGTERM ends the linger early
    process.wait(timeout=30)
