"""The report in a real browser (Debian's headless Chromium): a simulated run, two runs overlaid, and a
real tiny-model training run whose in-process alert kept completions as evidence.

Each page must load with no console error or uncaught exception, draw its charts (a screenshot
that is not blank; Bokeh plots and their canvases counted in the DOM, shadow roots included),
draw the alert periods as strips, and list the evidence rows and probe answers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("bokeh", reason="the report needs Bokeh (rewardscope[report])")

from report_chromium import inspect_page, png_is_blank

from rewardscope.htmlreport.page import write_report

pytestmark = pytest.mark.slow


def check_page(path: Path, screenshot: Path) -> dict:
    page = inspect_page(path)
    screenshot.write_bytes(page.screenshot_png)
    assert page.errors == [], page.errors
    assert not png_is_blank(page.screenshot_png)
    counts = page.counts
    assert counts["bokeh_documents"] == 1 and counts["scripts_with_src"] == 0
    assert counts["plots"] >= 15 and counts["canvases"] >= counts["plots"]
    return counts


def test_simulated_run_with_alerts_in_chromium(hacking_run, tmp_path):
    result = write_report([hacking_run], tmp_path / "hacking.html")
    counts = check_page(result.path, tmp_path / "hacking.png")
    run = result.runs[0]
    assert counts["alert_strips"] == len(run.alert_periods) >= 1 and counts["vstrip_glyphs"] >= counts["plots"]
    assert counts["alert_periods"] == len(run.alert_periods)
    assert counts["evidence_rows"] == sum(len(r["samples"]) for r in run.evidence) > 0
    assert counts["images"] >= 4  # one reward histogram over time per function


def test_two_runs_overlaid_in_chromium(hacking_run, healthy_run, tmp_path):
    result = write_report([hacking_run, healthy_run], tmp_path / "two.html")
    counts = check_page(result.path, tmp_path / "two.png")
    single = write_report([healthy_run], tmp_path / "one.html")
    one = inspect_page(single.path).counts
    assert counts["plots"] > one["plots"]  # the same charts, plus the hacking run's histograms
    assert counts["lines"] > one["lines"]  # and its lines overlaid on the same charts


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """A real GRPO run of the tiny model (8 steps) with probes, distributions, and an alert that fires: the default
    pack with the KL threshold lowered so that the KL of any update crosses it."""
    from rewardscope.alerting.engine import AlertEngine
    from rewardscope.trainer import TrainConfig, train

    root = tmp_path_factory.mktemp("trained")
    original = AlertEngine.default.__func__
    overrides = {"alerts": {"kl_too_high": {"threshold": 1e-7, "for_steps": 1}}}
    AlertEngine.default = classmethod(lambda cls, _=None: original(cls, overrides))
    try:
        config = TrainConfig(model_id="tiny", cache_dir=str(tiny_model.parents[1]), device="cpu", threads=1, num_steps=8, batch_size=2,
                             num_generations=4, max_generation_steps=24, num_problems=200, eval_every=4, eval_samples=8,
                             save_interval=0, monitoring_dir=str(root / "monitoring"), checkpoint_dir=str(root / "ckpt"),
                             run_name="tiny", prometheus=False, enable_alerts=True, progress=False, probe_every=4,
                             probe_count=2, log_distributions=True)
        result = train(config)
    finally:
        AlertEngine.default = classmethod(original)
    return Path(result.run_directory)


def test_trained_run_with_evidence_in_chromium(trained_run, tmp_path):
    result = write_report([trained_run], tmp_path / "trained.html")
    run = result.runs[0]
    assert [p.alertname for p in run.alert_periods] == ["GRPOKLTooHigh"]
    (record,) = run.evidence
    assert record["step"] == run.alert_periods[0].start
    assert all(s["completion"] and s["prompt"] and s["length"] is not None for s in record["samples"])
    counts = check_page(result.path, tmp_path / "trained.png")
    assert counts["alert_strips"] == 1 and counts["evidence_rows"] == len(record["samples"]) == 4
    assert counts["probe_tables"] == 2  # one per probe prompt: first, before the alert, last
    provenance = run.manifest["provenance"]
    assert provenance["packages"]["torch"] and provenance["config_hash"] and provenance["hardware"]["cpu_count"] >= 1
    page = result.path.read_text()
    assert "Probe 1:" in page and "before GRPOKLTooHigh" in page and "config hash" in page
