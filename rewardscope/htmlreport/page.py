"""The report page: one self-contained HTML file (Bokeh's JavaScript and every style inlined).

``render_report(runs)`` returns the HTML of the page for already loaded runs; ``write_report``
loads run directories and writes the file. The page has, per run, a header (model, reward
functions and weights, group size, steps, duration, final state), the provenance, what the
run lacks, and the text of ``rewardscope summary``; then the charts by section; then every
alert period with the completions kept as its evidence; then the probe answers (first, before
each alert, last). Every text that comes from a run directory is HTML-escaped: nothing in a
completion can run as script.

Usage::

    from rewardscope.htmlreport.page import write_report
    result = write_report(["monitoring_data/run-a", "monitoring_data/run-b"], "report.html")
    print(result.path, result.size_bytes)
"""

from __future__ import annotations

import html
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bokeh.document import Document
from bokeh.embed import components
from bokeh.resources import Resources

from .._version import __version__
from .charts import build_sections
from .downsample import DEFAULT_BUCKETS
from .runs import AlertPeriod, RunData, load_run

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1500px;padding:0 18px 40px;color:#222}
h1{font-size:1.5em;margin:18px 0 4px} h2{border-bottom:2px solid #ddd;padding-bottom:3px;margin-top:30px}
h3{margin:18px 0 6px} nav a{margin-right:14px} .meta{color:#666;font-size:.9em}
table{border-collapse:collapse;margin:6px 0;font-size:.9em} td,th{border:1px solid #ddd;padding:3px 7px;vertical-align:top;text-align:left}
th{background:#f4f4f4} pre{background:#f7f7f7;padding:8px;overflow-x:auto;font-size:.85em;white-space:pre-wrap}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:14px}
.notes{background:#fff8e1;border-left:4px solid #f0b400;padding:6px 12px} .critical{color:#b00;font-weight:600}
.warning{color:#c60;font-weight:600} td.text{white-space:pre-wrap;font-family:ui-monospace,monospace;max-width:620px}
details{margin:6px 0} summary{cursor:pointer}
"""


@dataclass
class ReportResult:
    path: Path
    size_bytes: int
    runs: list[RunData]
    missing_charts: list[str]


def e(value: Any) -> str:
    """HTML-escaped text of any value ('-' for None)."""
    return "-" if value is None else html.escape(str(value))


def _fmt(value: Any, spec: str = ".4g") -> str:
    """A number for a table cell: floats to ``spec``, anything else as text, '-' for None."""
    if isinstance(value, float):
        return e(format(value, spec))
    return e(value)


def _table(rows: Iterable[tuple[str, str]]) -> str:
    """A two-column table; the values are HTML already."""
    return "<table>" + "".join(f"<tr><th>{e(k)}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def _header(run: RunData) -> str:
    s, m = run.summary, run.manifest
    info = m.get("run_info") or {}
    weights = ", ".join(f"{e(f['name'])} &times; {_fmt(f.get('weight', 1.0))}" for f in m.get("reward_functions", []))
    duration = s.get("duration_seconds")
    metrics = s.get("metrics", {})
    last = {name: metrics.get(name, {}).get("last") for name in ("grpo_reward_mean", "grpo_kl", "grpo_eval_accuracy_ratio")}
    firing = s.get("alerts", {}).get("firing_at_end", [])
    state = ("closed" if s.get("closed") else "not closed (killed or still running)") + (
        f"; {len(firing)} alert(s) still firing" if firing else "; no alert firing")
    rows = [("model", e(info.get("model") or "-")), ("trainer", e(info.get("trainer") or "-")), ("reward functions", weights),
            ("group size", e(s.get("group_size"))),
            ("steps", f"{s['steps_recorded']} recorded, {e(s.get('first_step'))}..{e(s.get('last_step'))}"),
            ("duration", "-" if duration is None else f"{duration:.1f} s ({duration / 3600:.2f} h)"),
            ("final state", e(state)),
            ("last values", ", ".join(f"{e(k)} = {_fmt(v)}" for k, v in last.items() if v is not None) or "-")]
    return _table(rows)


def _provenance(run: RunData) -> str:
    p = run.manifest.get("provenance")
    if not p:
        return "<p class='meta'>No provenance recorded.</p>"
    git = p.get("git") or {}
    hw = p.get("hardware") or {}
    packages = ", ".join(f"{e(k)} {e(v) if v else '(not installed)'}" for k, v in (p.get("packages") or {}).items())
    rows = [("packages", packages),
            ("git commit", e(git.get("commit")) + (" (uncommitted changes)" if git.get("dirty") else "") if git else "not a git checkout"),
            ("hardware", f"{e(hw.get('cpu'))} &times; {e(hw.get('cpu_count'))} CPUs; "
                         + (", ".join(e(g) for g in hw.get("gpus", [])) or "no GPU") + f"; {e(hw.get('platform'))}"),
            ("launch command", f"<code>{e(' '.join(p.get('command') or []))}</code>"),
            ("config hash", f"<code>{e(p.get('config_hash'))}</code>")]
    for resume in run.manifest.get("resumes", []):
        rows.append(("resumed", f"from step {e(resume.get('from_step'))} at "
                                f"{e(time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(resume.get('time', 0))))}; config "
                                + ("<b>changed</b> (hash " + e((resume.get('provenance') or {}).get('config_hash')) + ")"
                                   if resume.get("config_changed") else "unchanged")))
    return _table(rows)


def _run_section(run: RunData, anchor: str) -> str:
    notes = "".join(f"<li>{e(n)}</li>" for n in run.notes)
    return (f"<section id='{anchor}'><h2>Run {e(run.run_id)}</h2><p class='meta'>{e(run.run_dir)}</p>{_header(run)}"
            f"<h3>Provenance</h3>{_provenance(run)}"
            + (f"<div class='notes'><b>What this run lacks</b><ul>{notes}</ul></div>" if notes else "")
            + f"<details open><summary>Summary (rewardscope summary)</summary><pre>{e(run.summary_text)}</pre></details></section>")


def _evidence_table(record: dict, functions: Sequence[str]) -> str:
    head = "".join(f"<th>{e(fn)}</th>" for fn in functions)
    rows = []
    for sample in record.get("samples", []):
        rewards = sample.get("rewards") or {}
        cells = "".join(f"<td>{_fmt(rewards.get(fn))}</td>" for fn in functions)
        rows.append(f"<tr class='evidence-row'><td>{e(sample.get('reason'))}</td><td class='text'>{e(sample.get('prompt'))}</td>"
                    f"<td class='text'>{e(sample.get('completion'))}</td>{cells}<td>{_fmt(sample.get('combined_reward'))}</td>"
                    f"<td>{_fmt(sample.get('advantage'))}</td><td>{_fmt(sample.get('length'))}</td></tr>")
    return (f"<table><tr><th>why</th><th>prompt</th><th>completion</th>{head}<th>combined</th><th>advantage</th>"
            f"<th>length</th></tr>{''.join(rows)}</table>")


def _matches(period: AlertPeriod, record: dict) -> bool:
    return (record.get("alertname") == period.alertname and record.get("labels", {}) == period.labels
            and record.get("step") == period.start)


def _alerts_section(run: RunData) -> str:
    if not run.alert_periods:
        return f"<h3>{e(run.run_id)}</h3><p>No alert fired.</p>"
    parts = [f"<h3>{e(run.run_id)}</h3>"]
    used: set[int] = set()
    for period in run.alert_periods:
        labels = ", ".join(f"{e(k)}={e(v)}" for k, v in sorted(period.labels.items()) if k != "run_id")
        until = f"resolved at step {period.end}" if period.resolved else f"still firing at step {period.end}"
        parts.append(f"<div class='alert-period'><p><span class='{e(period.severity)}'>{e(period.severity)}</span> "
                     f"<b>{e(period.alertname)}</b> {{{labels}}} fired at step {period.start}, {until}. {e(period.summary)}</p>")
        records = [r for r in run.evidence if _matches(period, r)]
        for record in records:
            used.add(record["line"])
            parts.append(f"<details open><summary>Evidence: completions of step {record['step']} "
                         f"(evidence.jsonl line {record['line']})</summary>{_evidence_table(record, run.reward_functions)}</details>")
        if not records:
            parts.append("<p class='meta'>No completions kept for this alert (evidence cap reached, or recorded without "
                         "the evidence writer).</p>")
        parts.append("</div>")
    return "".join(parts)


def _probe_section(run: RunData) -> str:
    if not run.probes:
        return ""
    chosen: dict[int, list[str]] = {run.probes[0]["step"]: ["first"]}
    for period in run.alert_periods:
        before = [r for r in run.probes if r["step"] <= period.start]
        if before:
            chosen.setdefault(before[-1]["step"], []).append(f"before {period.alertname} (step {period.start})")
    chosen.setdefault(run.probes[-1]["step"], []).append("last")
    by_step = {r["step"]: r for r in run.probes}
    prompts = [a.get("prompt") for a in run.probes[0]["answers"]]
    parts = [f"<h3>{e(run.run_id)}: {len(run.probes)} probed steps</h3>"]
    for index, prompt in enumerate(prompts):
        rows = []
        for step, label in sorted(chosen.items()):
            answers = by_step[step]["answers"]
            answer = answers[index] if index < len(answers) else {}
            rows.append(f"<tr><td>{step}</td><td>{e('; '.join(dict.fromkeys(label)))}</td><td class='text'>{e(answer.get('answer'))}</td></tr>")
        expected = run.probes[0]["answers"][index].get("expected")
        parts.append(f"<p><b>Probe {index + 1}:</b> <code>{e(prompt)}</code>"
                     + (f" (expected <code>{e(expected)}</code>)" if expected is not None else "")
                     + f"</p><table class='probe'><tr><th>step</th><th>when</th><th>greedy answer</th></tr>{''.join(rows)}</table>")
    return "".join(parts)


def render_report(runs: list[RunData], buckets: int = DEFAULT_BUCKETS) -> tuple[str, list[str]]:
    """The HTML of the report for ``runs``, and the titles of the charts no run had data for."""
    sections, missing = build_sections(runs, buckets)
    figures = [fig for _, figs in sections for fig in figs]
    if figures:
        # One document for all charts, filled with its model index frozen: Bokeh otherwise re-walks
        # every model for each chart added (quadratic; most of the render time with 25 charts).
        document = Document()
        with document.models.freeze():
            for fig in figures:
                document.add_root(fig)
    script, divs = components(figures) if figures else ("", ())
    names = ", ".join(run.run_id for run in runs)
    nav = ["<a href='#runs'>Runs</a>"] + [f"<a href='#section-{i}'>{e(title)}</a>" for i, (title, _) in enumerate(sections)]
    nav += ["<a href='#alerts'>Alerts and evidence</a>", "<a href='#probes'>Probe answers</a>"]
    body = [f"<h1>rewardscope report: {e(names)}</h1>",
            (f"<p class='meta'>Generated {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())} by rewardscope {e(__version__)}. "
             "Charts: drag to zoom (every chart follows), wheel to zoom the steps, click a legend entry to hide it; "
             f"series longer than {2 * buckets} points are downsampled keeping each bucket's minimum and maximum.</p>"),
            f"<nav>{' '.join(nav)}</nav>", "<div id='runs'>"]
    body += [_run_section(run, f"run-{i}") for i, run in enumerate(runs)]
    body.append("</div>")
    position = 0
    for i, (title, figs) in enumerate(sections):
        cells = "".join(f"<div class='chart'>{div}</div>" for div in divs[position:position + len(figs)])
        position += len(figs)
        body.append(f"<section id='section-{i}'><h2>{e(title)}</h2><div class='grid'>{cells}</div></section>")
    if missing:
        body.append(f"<p class='meta'>Not drawn (no run recorded the data): {e(', '.join(missing))}.</p>")
    body.append("<section id='alerts'><h2>Alerts and evidence</h2>" + "".join(_alerts_section(r) for r in runs) + "</section>")
    probes = "".join(_probe_section(r) for r in runs)
    body.append("<section id='probes'><h2>Probe answers</h2>"
                + (probes or "<p>No run has probe answers (train with --probe-every N).</p>") + "</section>")
    js = Resources(mode="inline", components=["bokeh"]).render_js() if figures else ""
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>rewardscope report: {e(names)}</title>"
            f"<style>{STYLE}</style>{js}</head><body>{''.join(body)}{script}</body></html>")
    return page, missing


def write_report(run_dirs: Sequence[str | os.PathLike], output: str | os.PathLike, buckets: int = DEFAULT_BUCKETS) -> ReportResult:
    """Load every run directory and write the report to ``output``; ReportInputError for an unusable directory."""
    if not run_dirs:
        raise ValueError("give at least one run directory")
    runs = [load_run(d) for d in run_dirs]
    page, missing = render_report(runs, buckets)
    path = Path(output)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return ReportResult(path, path.stat().st_size, runs, missing)
