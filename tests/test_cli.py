"""The `rewardscope` command line: --version, flags spelled out, one-line usage errors with a
suggestion, `simulate --alerts` printing, and `--check` telling missing files from stale ones."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import rewardscope
from rewardscope.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]


def exit_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    return int(caught.value.code)


def test_version_prints_the_package_version(capsys):
    assert exit_code(["--version"]) == 0
    assert capsys.readouterr().out == f"rewardscope {rewardscope.__version__}\n"


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["train", "--num-step", "5"], "rewardscope train: error: unrecognized arguments: --num-step 5 (did you mean --num-steps?)"),
        (["train", "--lerning-rate=0.1"], ("rewardscope train: error: unrecognized arguments: --lerning-rate=0.1 "
                                           "(did you mean --learning-rate?)")),
        (["simulate", "--scenaro", "healthy", "--step", "3"], ("rewardscope simulate: error: unrecognized arguments: "
         "--scenaro healthy --step 3 (--scenaro: did you mean --scenario?; --step: did you mean --steps?)")),
        (["train", "--num-steps", "x"], "rewardscope train: error: argument --num-steps: invalid int value: 'x'"),
        (["rules", "--frobnicate"], "rewardscope rules: error: unrecognized arguments: --frobnicate"),
        ([], "rewardscope: error: the following arguments are required: COMMAND"),
    ],
    ids=["mistyped", "mistyped-with-value", "two-mistakes", "bad-value", "nothing-close", "no-command"],
)
def test_usage_errors_are_one_line_with_exit_status_2_and_a_suggestion(capsys, argv, error):
    assert exit_code(argv) == 2
    captured = capsys.readouterr()
    assert captured.err == error + "\n" and captured.out == ""


def test_no_parser_accepts_an_abbreviated_flag(capsys):
    parser = build_parser()
    subparsers = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert parser.allow_abbrev is False
    assert {name: p.allow_abbrev for name, p in subparsers.items()} == dict.fromkeys(subparsers, False)
    for argv in (["train", "--num-step", "5"], ["simulate", "--scen", "healthy"], ["rules", "--chec"], ["--verb", "rules"]):
        assert exit_code(argv) == 2, argv
        assert "unrecognized arguments: " in capsys.readouterr().err, argv


def test_the_console_entry_point_gives_a_one_line_error_without_a_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.run([sys.executable, "-m", "rewardscope.cli", "train", "--num-step", "5"], cwd=tmp_path, env=env,
                             check=False, capture_output=True, text=True, timeout=120)
    assert process.returncode == 2
    assert process.stderr == "rewardscope train: error: unrecognized arguments: --num-step 5 (did you mean --num-steps?)\n"
    version = subprocess.run([sys.executable, "-m", "rewardscope.cli", "--version"], cwd=tmp_path, env=env,
                             check=False, capture_output=True, text=True, timeout=120)
    assert (version.returncode, version.stdout) == (0, f"rewardscope {rewardscope.__version__}\n")


def test_simulate_alerts_prints_alerts_without_print_alerts(tmp_path, capsys):
    common = ["simulate", "--scenario", "kl_blowup", "--steps", "60", "--rate", "0", "--no-serve", "--run-dir", str(tmp_path)]
    assert main(common + ["--alerts", "--run-id", "printed"]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[rewardscope] ")]
    assert any(line.startswith("[rewardscope] FIRING warning GRPOKLTooHigh ") for line in printed), printed
    assert main(common + ["--alerts", "--no-print-alerts", "--run-id", "quiet"]) == 0
    assert "[rewardscope] " not in capsys.readouterr().out
    # Evaluated either way: both runs recorded every transition (firing and resolved).
    assert (tmp_path / "printed" / "alerts.jsonl").read_text().count("\n") == len(printed)
    assert (tmp_path / "quiet" / "alerts.jsonl").read_text().count("\n") == len(printed)


def test_rules_check_says_missing_for_a_missing_file_and_stale_for_a_differing_one(tmp_path, capsys):
    rules = tmp_path / "prometheus" / "rules" / "rewardscope-alerts.yml"
    assert main(["rules", "--root", str(tmp_path), "--check"]) == 1
    assert capsys.readouterr().err == "missing: prometheus/rules/rewardscope-alerts.yml (run `rewardscope rules`)\n"
    assert main(["rules", "--root", str(tmp_path)]) == 0 and rules.is_file()
    rules.write_text(rules.read_text() + "# edited\n")
    capsys.readouterr()
    assert main(["rules", "--root", str(tmp_path), "--check"]) == 1
    assert capsys.readouterr().err == "stale: prometheus/rules/rewardscope-alerts.yml (run `rewardscope rules`)\n"


def test_reference_check_says_missing_stale_or_no_markers(tmp_path, capsys):
    readme = tmp_path / "README.md"
    assert main(["reference", "--check", "--readme", str(readme)]) == 1
    assert capsys.readouterr().err.startswith(f"missing: {readme} ")
    readme.write_text((ROOT / "README.md").read_text().replace("| `grpo_step` |", "| `grpo_stepp` |"))
    assert main(["reference", "--check", "--readme", str(readme)]) == 1
    assert capsys.readouterr().err.startswith(f"stale: {readme}: ")
    readme.write_text("# a README without the markers\n")
    assert main(["reference", "--check", "--readme", str(readme)]) == 1
    assert "has no metric reference markers" in capsys.readouterr().err


def test_dashboards_check_says_missing_for_a_missing_directory(tmp_path, capsys):
    assert main(["dashboards", "--check", "--out", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.startswith(f"rewardscope dashboards: missing: {tmp_path / 'nope'} is not a directory")
