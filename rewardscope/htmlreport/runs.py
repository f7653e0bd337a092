"""Reading one run directory into what the report draws: columns, alert periods, evidence, probes.

``load_run`` reads the run store (manifest, steps, alerts, distributions, summary),
``evidence.jsonl`` and ``probes.jsonl``, and reuses ``rewardscope summary``
(``rewardscope.report.summarize``/``render``) for the text summary. What a run lacks
(no steps, no distributions, no evidence, no closing summary, a torn final line) is listed in
``RunData.notes`` so the page can say so instead of drawing empty charts.

Memory: the stored columns of every step (8 bytes per value; about 50 MB for 100,000 steps
of a run with four reward functions) plus fixed-size distribution grids.

Usage::

    from rewardscope.htmlreport.runs import load_run
    run = load_run("monitoring_data/my-run")
    print(run.run_id, run.steps.size, [p.alertname for p in run.alert_periods], run.notes)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..exporter.evidence import EVIDENCE_FILE, read_evidence
from ..exporter.runstore import DISTRIBUTIONS_FILE, RunStoreError, read_alerts, read_distributions, read_manifest
from ..exporter.runstore_columns import read_step_columns
from ..metrics.layout import column_name
from ..report import render, summarize
from ..trainer.probes import PROBES_FILE, read_probes

HISTOGRAM_BINS = 40
HISTOGRAM_COLUMNS = 300


class ReportInputError(ValueError):
    """A directory that cannot be reported on (missing, not a run directory, unreadable)."""


@dataclass
class AlertPeriod:
    """One alert instance from firing to resolved (``end`` is the last step when it never resolved)."""

    alertname: str
    severity: str
    labels: dict[str, str]
    start: int
    end: int
    resolved: bool
    summary: str


@dataclass
class Distribution:
    """Share of one function's rewards in each value bin (rows) over step buckets (columns)."""

    reward_fn: str
    step_edges: np.ndarray  # columns + 1 step boundaries
    value_edges: np.ndarray  # bins + 1 reward boundaries
    shares: np.ndarray  # (bins, columns) float32, NaN where a bucket had no step


@dataclass
class RunData:
    run_dir: Path
    manifest: dict[str, Any]
    summary: dict[str, Any]
    summary_text: str
    steps: np.ndarray
    columns: dict[str, np.ndarray]
    alert_periods: list[AlertPeriod] = field(default_factory=list)
    evidence: list[dict] = field(default_factory=list)
    probes: list[dict] = field(default_factory=list)
    distributions: list[Distribution] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return str(self.manifest.get("run_id") or self.run_dir.name)

    @property
    def reward_functions(self) -> list[str]:
        return [f["name"] for f in self.manifest.get("reward_functions", [])]

    def column(self, name: str, reward_fn: str | None = None) -> np.ndarray | None:
        """The values of one stored metric over the steps (NaN where absent); None when never recorded."""
        values = self.columns.get(column_name(name, reward_fn))
        return None if values is None or np.all(np.isnan(values)) else values


def load_run(run_dir: str | os.PathLike) -> RunData:
    """Everything the report shows of one run; ReportInputError when ``run_dir`` is not a readable run."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportInputError(f"{run_dir}: no such run directory")
    try:
        manifest = read_manifest(run_dir)
        summary = summarize(run_dir)
        steps, columns = _read_columns(run_dir, manifest.get("columns", []))
    except RunStoreError as error:
        raise ReportInputError(str(error)) from None
    run = RunData(run_dir, manifest, summary, render(summary), steps, columns)
    run.alert_periods = alert_periods(read_alerts(run_dir), int(steps[-1]) if steps.size else 0)
    run.evidence = read_evidence(run_dir)
    run.probes = read_probes(run_dir)
    if steps.size:
        run.distributions = distribution_grids(run)
    run.notes = _notes(run)
    return run


def _read_columns(run_dir: Path, names: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Every valid step's stored values, by column (the run store's block reader: numpy's C parser)."""
    blocks = list(read_step_columns(run_dir, names))
    table = np.concatenate(blocks) if blocks else np.zeros((0, len(names)))
    columns = {name: table[:, i] for i, name in enumerate(names)}
    steps = columns["grpo_step"].astype(np.int64) if "grpo_step" in columns else np.zeros(0, dtype=np.int64)
    return steps, columns


def alert_periods(events: list[dict], last_step: int) -> list[AlertPeriod]:
    """Pair each firing event with the next resolved event of the same alert instance."""
    open_: dict[tuple, dict] = {}
    periods: list[AlertPeriod] = []

    def close(event: dict, end: int, resolved: bool) -> None:
        periods.append(AlertPeriod(str(event.get("alertname")), str(event.get("severity")), dict(event.get("labels") or {}),
                                   int(event["step"]), max(int(end), int(event["step"])), resolved, str(event.get("summary") or "")))

    for event in events:
        if not isinstance(event, dict) or not isinstance(event.get("step"), int):
            continue
        key = (event.get("alertname"), tuple(sorted((event.get("labels") or {}).items())))
        if event.get("state") == "firing":
            if key in open_:
                close(open_[key], event["step"], False)
            open_[key] = event
        elif event.get("state") == "resolved" and key in open_:
            close(open_.pop(key), event["step"], True)
    for event in open_.values():
        close(event, last_step, False)
    return sorted(periods, key=lambda p: (p.start, p.alertname))


def distribution_grids(run: RunData, bins: int = HISTOGRAM_BINS, columns: int = HISTOGRAM_COLUMNS) -> list[Distribution]:
    """Per-function histograms over time from the stored distributions ([] when the run has none)."""
    if not (run.run_dir / DISTRIBUTIONS_FILE).exists():
        return []
    names = run.reward_functions
    first, last = int(run.steps[0]), int(run.steps[-1])
    step_edges = np.linspace(first, last + 1, min(columns, last + 1 - first) + 1)
    n_cols = step_edges.size - 1
    lows, highs = [], []
    for fn in names:
        low, high = run.column("grpo_reward_fn_min", fn), run.column("grpo_reward_fn_max", fn)
        lo = float(np.nanmin(low)) if low is not None else 0.0
        hi = float(np.nanmax(high)) if high is not None else 1.0
        if not hi > lo:
            lo, hi = lo - 0.5, hi + 0.5
        lows.append(lo)
        highs.append(hi)
    lo_arr, span = np.array(lows)[:, None], (np.array(highs) - np.array(lows))[:, None]
    counts = np.zeros((len(names), bins, n_cols), dtype=np.float64)
    offsets = (np.arange(len(names)) * bins)[:, None]

    def add(col: int, chunk: list[np.ndarray]) -> None:
        # One vectorised pass per step bucket: the records arrive in step order.
        rewards = np.concatenate(chunk, axis=1)
        with np.errstate(invalid="ignore"):
            bin_index = np.clip(np.floor((rewards - lo_arr) / span * bins), 0, bins - 1)
        flat = (bin_index + offsets)[np.isfinite(rewards)].astype(np.int64)
        counts[:, :, col] += np.bincount(flat, minlength=len(names) * bins).reshape(len(names), bins)

    chunk: list[np.ndarray] = []
    current = -1
    for step, rewards in read_distributions(run.run_dir):
        if rewards.shape[0] != len(names) or not first <= step <= last:
            continue
        col = min(int(np.searchsorted(step_edges, step, side="right")) - 1, n_cols - 1)
        if col != current and chunk:
            add(current, chunk)
            chunk = []
        current = col
        chunk.append(rewards)
    if chunk:
        add(current, chunk)
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.where(totals > 0, counts / totals, np.nan).astype(np.float32)
    return [Distribution(fn, step_edges, np.linspace(lows[i], highs[i], bins + 1), shares[i]) for i, fn in enumerate(names)]


def _notes(run: RunData) -> list[str]:
    notes = []
    if not run.steps.size:
        notes.append("no steps recorded: steps.jsonl is missing or empty, so there is nothing to chart")
    if run.summary.get("torn_final_line"):
        notes.append("steps.jsonl ends with a torn line (the writer was interrupted); it was skipped")
    problems = run.summary.get("read_problems") or {}
    if problems:
        notes.append("lines of steps.jsonl skipped while reading: " + ", ".join(f"{k} {v}" for k, v in sorted(problems.items())))
    if not run.summary.get("closed"):
        notes.append("no summary.json: the run was killed or is still running; skipped steps are unknown")
    if run.steps.size and not run.distributions:
        notes.append(f"no reward distributions ({DISTRIBUTIONS_FILE}): histograms need log_distributions=True "
                     "(--log-distributions)")
    if run.alert_periods and not run.evidence:
        notes.append(f"alerts fired but the run kept no evidence ({EVIDENCE_FILE}): recorded by an older rewardscope, "
                     "or not in-process")
    if not run.probes:
        notes.append(f"no probe answers ({PROBES_FILE}): the trainer writes them with --probe-every N")
    if "provenance" not in run.manifest:
        notes.append("no provenance in the manifest (recorded without it)")
    return notes
