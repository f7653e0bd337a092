"""`rewardscope report` without a browser: contents of the page, downsampling, bad input, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("bokeh", reason="the report needs Bokeh (rewardscope[report])")

from bokeh.models import ColumnDataSource

from rewardscope.htmlreport.charts import build_sections
from rewardscope.htmlreport.downsample import envelope, minmax_indices
from rewardscope.htmlreport.page import write_report
from rewardscope.htmlreport.runs import ReportInputError, alert_periods, load_run

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "rewardscope.cli", "report", *args], capture_output=True, text=True, env=env,
                          timeout=120, check=False)


# --------------------------------------------------------------------------- downsampling
def test_minmax_decimation_keeps_every_bucket_extreme_and_bounds_points():
    rng = np.random.default_rng(0)
    y = rng.normal(size=100_003)
    y[77_777] = 50.0
    y[3_000] = -50.0
    y[5:900] = np.nan
    kept = minmax_indices(y, buckets=500)
    assert kept.size <= 1000 and np.all(np.diff(kept) > 0)
    assert 77_777 in kept and 3_000 in kept and not np.isnan(y[kept]).any()
    width = -(-y.size // 500)
    for b in (0, 250, 499):  # each bucket's own extremes are there
        chunk = y[b * width:(b + 1) * width]
        if np.isfinite(chunk).any():
            assert np.nanmax(chunk) in y[kept] and np.nanmin(chunk) in y[kept]


def test_short_series_are_kept_whole_without_missing_values():
    y = np.array([1.0, np.nan, 3.0])
    assert minmax_indices(y, buckets=10).tolist() == [0, 2]


def test_envelope_covers_the_band():
    x = np.arange(10_000, dtype=float)
    low, high = np.sin(x / 50) - 1, np.sin(x / 50) + 1
    bx, blow, bhigh = envelope(x, low, high, buckets=100)
    assert bx.size == 100 and blow.min() == low.min() and bhigh.max() == high.max()
    bucket = np.searchsorted(bx, x, side="right") - 1
    assert np.all(blow[bucket] <= low) and np.all(bhigh[bucket] >= high)


def test_every_drawn_series_is_bounded_by_the_buckets(hacking_run):
    sections, _ = build_sections([load_run(hacking_run)], buckets=40)
    sizes = [len(next(iter(r.data_source.data.values()))) for _, figs in sections for fig in figs for r in fig.renderers
             if isinstance(r.data_source, ColumnDataSource) and "y" in r.data_source.data]
    assert sizes and max(sizes) <= 80


# --------------------------------------------------------------------------- page contents
def test_report_of_a_run_with_alerts(hacking_run, tmp_path):
    result = write_report([hacking_run], tmp_path / "r.html")
    page = result.path.read_text()
    assert result.size_bytes == len(page.encode())
    assert "<script src" not in page and "<link" not in page and "cdn.bokeh.org" not in page  # offline
    for text in ("Run hacking", "format_exact &times; 1", "group size", "Provenance", "Reward per function",
                 "Signal-to-noise", "Groups with zero reward spread", "KL divergence", "Eval accuracy",
                 "Reward distribution over time: check_answer", "reward mean:"):
        assert text in page, text
    run = result.runs[0]
    assert run.alert_periods and run.evidence
    assert page.count("class='evidence-row'") == sum(len(r["samples"]) for r in run.evidence)
    assert "evidence.jsonl line 1" in page
    # Completions are shown as text, never as markup.
    assert "&lt;script&gt;alert(" in page and "<script>alert(" not in page


def test_several_runs_are_overlaid(hacking_run, healthy_run, tmp_path):
    result = write_report([hacking_run, healthy_run], tmp_path / "two.html")
    page = result.path.read_text()
    assert "Run hacking" in page and "Run healthy" in page
    assert "mean (hacking)" in page and "mean (healthy)" in page  # legend labels of the overlaid runs
    assert "no reward distributions" in page  # the healthy run was recorded without them


def test_alert_periods_pair_firing_and_resolved():
    events = [{"alertname": "A", "state": "firing", "step": 3, "labels": {"x": "1"}, "severity": "warning"},
              {"alertname": "B", "state": "firing", "step": 4, "labels": {}, "severity": "critical"},
              {"alertname": "A", "state": "resolved", "step": 9, "labels": {"x": "1"}, "severity": "warning"},
              {"alertname": "A", "state": "firing", "step": 12, "labels": {"x": "1"}, "severity": "warning"}]
    periods = [(p.alertname, p.start, p.end, p.resolved) for p in alert_periods(events, last_step=20)]
    assert periods == [("A", 3, 9, True), ("B", 4, 20, False), ("A", 12, 20, False)]


# --------------------------------------------------------------------------- bad input
def test_missing_and_empty_directories_are_clear_errors(tmp_path):
    with pytest.raises(ReportInputError, match="no such run directory"):
        load_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportInputError, match="not a rewardscope run directory"):
        load_run(tmp_path / "empty")
    done = run_cli(str(tmp_path / "empty"), "-o", str(tmp_path / "x.html"))
    assert done.returncode == 2 and "not a rewardscope run directory (no manifest.json)" in done.stderr
    assert not (tmp_path / "x.html").exists()


def test_run_without_steps_gives_a_report_that_says_so(tmp_path):
    from rewardscope import RewardMonitor

    with RewardMonitor("idle", ["r"], run_dir=tmp_path):
        pass
    result = write_report([tmp_path / "idle"], tmp_path / "idle.html")
    page = result.path.read_text()
    assert "no steps recorded" in page and "Not drawn (no run recorded the data)" in page
    assert "bokeh" not in page.lower().split("</style>")[0]  # no charts, so no chart library either


def test_torn_last_line_is_reported_and_the_steps_before_it_drawn(hacking_run, tmp_path):
    import shutil

    torn = tmp_path / "torn"
    shutil.copytree(hacking_run, torn)
    (torn / "summary.json").unlink()
    with open(torn / "steps.jsonl", "a") as f:
        f.write("[301,17000.1,8,")
    run = load_run(torn)
    assert run.steps.size == 300 and run.steps[-1] == 300
    assert any("torn line" in n for n in run.notes) and any("no summary.json" in n for n in run.notes)


def test_cli_writes_the_report_and_lists_what_is_missing(healthy_run, tmp_path):
    done = run_cli(str(healthy_run), "-o", str(tmp_path / "h.html"))
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout and (tmp_path / "h.html").stat().st_size > 1_000_000
    assert "healthy: no reward distributions (rewards.f16z)" in done.stderr


def test_manifest_that_is_not_json_is_a_clear_error(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{not json")
    with pytest.raises(ReportInputError, match=r"manifest\.json cannot be read"):
        load_run(tmp_path / "bad")


def test_columns_match_the_run_store_reader(hacking_run):
    from rewardscope.exporter.runstore import read_steps

    run = load_run(hacking_run)
    rows = list(read_steps(hacking_run))
    assert run.steps.tolist() == [int(r["grpo_step"]) for r in rows]
    for name, values in run.columns.items():
        expected = np.array([r.get(name, np.nan) for r in rows], dtype=float)
        np.testing.assert_array_equal(values, expected, err_msg=name)


def test_a_corrupt_middle_line_is_skipped_and_reported(hacking_run, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(hacking_run, broken)
    lines = (broken / "steps.jsonl").read_text().splitlines(keepends=True)
    lines[10] = "garbage\n"
    (broken / "steps.jsonl").write_text("".join(lines))
    run = load_run(broken)  # the run store's readers skip and count such a line; the page says so
    assert run.steps.size == 299 and 11 not in run.steps.tolist()
    assert "lines of steps.jsonl skipped while reading: corrupt_lines 1" in run.notes
