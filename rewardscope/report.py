"""``rewardscope summary RUN_DIR``: a readable summary of a recorded run.

Reads a run directory of the run store (manifest.json, steps.jsonl, alerts.jsonl and,
when the run closed, summary.json) and reports how many steps were recorded, over what
time, how the reward moved from the first window of steps to the last, each reward
function's mean and contribution, the share of zero-spread groups, KL and entropy
ranges, non-finite rewards, skipped steps and the alerts that fired. A run killed
mid-way (no summary.json, a torn last line) is summarised from the steps it wrote.

``summarize`` streams the steps (memory O(window), whatever the run's length; a large
``steps.jsonl`` is read in parts by several processes) and returns plain data; ``render``
turns that into text; ``--json`` prints the data.

Usage::

    rewardscope summary monitoring_data/my-run
    rewardscope summary monitoring_data/my-run --json

    from rewardscope.report import render, summarize
    print(render(summarize("monitoring_data/my-run")))
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_WINDOW = 20
# steps.jsonl from this size on is read by several processes (one per CPU, at most MAX_SCAN_WORKERS): numpy's
# text reader holds the GIL, so threads would not help. bench/bench_runstore.py: 1M steps, 455 MB.
PARALLEL_SCAN_BYTES = 64 << 20
MAX_SCAN_WORKERS = 4

# Run-level columns summarised, in the order they are rendered.
RUN_COLUMNS = ("grpo_reward_mean", "grpo_reward_std", "grpo_group_zero_std_ratio", "grpo_kl", "grpo_policy_entropy",
               "grpo_grad_norm", "grpo_completion_length_mean_tokens", "grpo_completion_truncated_ratio",
               "grpo_eval_accuracy_ratio", "grpo_reward_nonfinite_samples")
# Per-function columns summarised for every reward function.
FUNCTION_COLUMNS = ("grpo_reward_fn_mean", "grpo_reward_fn_contribution_ratio", "grpo_reward_fn_group_zero_std_ratio",
                    "grpo_reward_fn_nonfinite_samples")


def _column(name: str, reward_fn: str | None = None) -> str:
    from .metrics.layout import column_name

    return column_name(name, reward_fn)


class _ColumnStats:
    """Per column: count, sum, min, max, first and last present value, and the first and last window of rows, streamed."""

    def __init__(self, n_columns: int, window: int) -> None:
        self.window = window
        self.count = np.zeros(n_columns, dtype=np.int64)
        self.total = np.zeros(n_columns)
        self.min = np.full(n_columns, np.inf)
        self.max = np.full(n_columns, -np.inf)
        self.first = np.full(n_columns, np.nan)
        self.last = np.full(n_columns, np.nan)
        self.head = np.empty((0, n_columns))
        self.tail = np.empty((0, n_columns))
        self.rows = 0

    def add(self, block: np.ndarray) -> None:
        present = ~np.isnan(block)
        self.rows += len(block)
        self.count += present.sum(axis=0)
        self.total += np.where(present, block, 0.0).sum(axis=0)
        self.min = np.fmin(self.min, np.fmin.reduce(block, axis=0, initial=np.inf))
        self.max = np.fmax(self.max, np.fmax.reduce(block, axis=0, initial=-np.inf))
        columns = np.arange(block.shape[1])
        has = present.any(axis=0)
        unset = has & np.isnan(self.first)
        self.first[unset] = block[present.argmax(axis=0), columns][unset]
        last_row = len(block) - 1 - present[::-1].argmax(axis=0)
        self.last[has] = block[last_row, columns][has]
        if len(self.head) < self.window:
            self.head = np.concatenate([self.head, block[:self.window - len(self.head)]])
        self.tail = np.concatenate([self.tail, block])[-self.window:]

    def then(self, later: _ColumnStats) -> _ColumnStats:
        """These statistics followed by those of the rows after them (``later``), as one stream would give."""
        self.rows += later.rows
        self.count += later.count
        self.total += later.total
        self.min = np.fmin(self.min, later.min)
        self.max = np.fmax(self.max, later.max)
        self.first = np.where(np.isnan(self.first), later.first, self.first)
        self.last = np.where(np.isnan(later.last), self.last, later.last)
        self.head = np.concatenate([self.head, later.head])[:self.window]
        self.tail = np.concatenate([self.tail, later.tail])[-self.window:]
        return self


def _scan(run_dir: Path, columns: list[str], window: int, workers: int | None) -> tuple[_ColumnStats, Any]:
    """The column statistics of every valid step and what the reader skipped. A large file is read by several
    processes, each a part; the parts are kept only when each read cleanly and its steps follow the previous
    part's, otherwise (a damaged file) the file is read again in one pass, whose warnings name the lines."""
    from .exporter.runstore import STEPS_FILE

    path = run_dir / STEPS_FILE
    if workers is None:
        large = path.exists() and path.stat().st_size >= PARALLEL_SCAN_BYTES
        workers = min(os.cpu_count() or 1, MAX_SCAN_WORKERS) if large else 1
    if workers > 1 and path.exists():
        merged = _scan_in_parts(run_dir, columns, window, workers)
        if merged is not None:
            return merged
    return _scan_range(run_dir, columns, window, None)


def _scan_range(run_dir: Path, columns: list[str], window: int, byte_range: tuple[int, int] | None,
                quiet: bool = False) -> tuple[_ColumnStats, Any]:
    from .exporter.jsonl import ReadStats
    from .exporter.runstore_columns import read_step_columns

    if quiet:  # a part read in a worker: its warnings would number lines from the part's start
        logging.getLogger("rewardscope").disabled = True
    read_stats = ReadStats()
    stats = _ColumnStats(len(columns), window)
    for block in read_step_columns(run_dir, columns, read_stats, byte_range=byte_range):
        stats.add(block)
    return stats, read_stats


def _scan_in_parts(run_dir: Path, columns: list[str], window: int, workers: int) -> tuple[_ColumnStats, Any] | None:
    import multiprocessing
    import threading
    from concurrent.futures import ProcessPoolExecutor

    from .exporter.runstore import STEPS_FILE
    from .exporter.runstore_columns import line_ranges, warn_torn_final_line

    ranges = line_ranges(run_dir / STEPS_FILE, workers)
    if len(ranges) < 2:
        return None
    # fork starts a worker at once but is unsafe in a process running other threads (the trainer's /metrics
    # server): there, spawn (each worker imports rewardscope afresh, about 0.4 s).
    single_threaded = threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if single_threaded else "spawn")
    with ProcessPoolExecutor(len(ranges), mp_context=context) as pool:
        parts = list(pool.map(_scan_range, *zip(*[(run_dir, columns, window, r, True) for r in ranges])))
    last_step = -math.inf
    for index, (stats, read_stats) in enumerate(parts):
        problems = read_stats.problems()
        torn_at_end = index == len(parts) - 1 and problems == {"torn_final_line": 1}
        if (problems and not torn_at_end) or stats.rows == 0 or stats.head[0, 0] <= last_step:
            return None
        last_step = stats.tail[-1, 0]
    stats, read_stats = parts[0]
    for later, later_read in parts[1:]:
        stats.then(later)
        read_stats.lines += later_read.lines
        read_stats.rows += later_read.rows
        read_stats.torn_final_line = later_read.torn_final_line
    if read_stats.torn_final_line:  # the parts' readers were quiet: warn as the one pass does
        warn_torn_final_line(run_dir / STEPS_FILE, read_stats.lines + 1)
    return stats, read_stats


def _window_mean(rows: np.ndarray, column: int) -> float | None:
    values = rows[:, column]
    values = values[~np.isnan(values)]
    return float(values.sum() / len(values)) if len(values) else None


def _number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def summarize(run_dir: str | Path, window: int = DEFAULT_WINDOW, *, workers: int | None = None) -> dict[str, Any]:
    """Plain-data summary of the run stored in ``run_dir`` (see the module docstring).

    ``window`` is the number of steps in the first and last windows (halved, down to 1, for
    runs shorter than two windows). ``workers``: processes that read ``steps.jsonl`` in parts
    (None: one per CPU, up to 4, when the file holds at least 64 MB; 1: one pass). Raises
    RunStoreError when ``run_dir`` is not a run directory, or is one that recorded no step and
    never closed (a failed start).
    """
    from .exporter.evidence import evidence_index
    from .exporter.runstore import RunStoreError, read_alerts, read_manifest, read_summary

    if window < 1:
        raise ValueError(f"window must be at least 1 step, got {window}")
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    functions = [f["name"] for f in manifest.get("reward_functions", [])]
    tracked = [_column(c) for c in RUN_COLUMNS] + [_column(c, fn) for fn in functions for c in FUNCTION_COLUMNS]
    columns = ["grpo_step", "grpo_last_step_timestamp_seconds", *tracked]

    stats, read_stats = _scan(run_dir, columns, window, workers)
    closing = read_summary(run_dir)
    steps_recorded = stats.rows
    if not steps_recorded and closing is None:
        raise RunStoreError(f"{run_dir} holds no recorded step and no summary.json: the run failed to start, "
                            "or has not recorded its first step yet")

    size = min(window, max(1, steps_recorded // 2))
    first_rows, last_rows = stats.head[:size], stats.tail[-size:]
    metrics: dict[str, dict[str, Any]] = {}
    for index, column in enumerate(columns[2:], start=2):
        count = int(stats.count[index])
        if count == 0:
            continue
        metrics[column] = {"first_window": _window_mean(first_rows, index), "last_window": _window_mean(last_rows, index),
                           "mean": float(stats.total[index] / count), "sum": float(stats.total[index]),
                           "min": float(stats.min[index]), "max": float(stats.max[index]), "first": float(stats.first[index]),
                           "last": float(stats.last[index]), "steps": count}

    first_step = int(stats.head[0, 0]) if steps_recorded else None
    last_step = int(stats.tail[-1, 0]) if steps_recorded else None
    first_time = _number(stats.head[0, 1]) if steps_recorded else None
    last_time = _number(stats.tail[-1, 1]) if steps_recorded else None
    return {
        "run_id": manifest.get("run_id"),
        "run_dir": str(run_dir),
        "created": manifest.get("created"),
        "restarts": len(manifest.get("restarts", [])),
        "closed": closing is not None,
        "torn_final_line": read_stats.torn_final_line,
        "reward_functions": functions,
        "weights": {f["name"]: f.get("weight", 1.0) for f in manifest.get("reward_functions", [])},
        "group_size": manifest.get("group_size"),
        "config": manifest.get("config", {}),
        "steps_recorded": steps_recorded,
        "first_step": first_step,
        "last_step": last_step,
        "duration_seconds": None if first_time is None or last_time is None else last_time - first_time,
        "window_steps": size if steps_recorded else 0,
        "metrics": metrics,
        "nonfinite_rewards": {fn: int(metrics.get(_column("grpo_reward_fn_nonfinite_samples", fn), {}).get("sum", 0))
                              for fn in functions},
        # Skipped steps never reach steps.jsonl: only the closing summary counts them.
        "skipped_steps": None if closing is None else closing.get("skipped_steps", {}),
        "sink_errors": None if closing is None else closing.get("sink_errors", {}),
        # Lines of steps.jsonl the reader skipped (corrupt, out of order) and infinities read as absent.
        "read_problems": {k: v for k, v in read_stats.problems().items() if k != "torn_final_line"},
        "alerts": _alerts(read_alerts(run_dir)),
        "evidence": evidence_index(run_dir),
    }


def _alerts(events: list[dict]) -> dict[str, Any]:
    """Firing transitions per alert/severity, and the alert instances still firing at the last event."""
    fired: dict[str, int] = {}
    state: dict[tuple, dict] = {}
    for event in events:
        key = (event.get("alertname"), tuple(sorted((event.get("labels") or {}).items())))
        if event.get("state") == "firing":
            name = f"{event.get('alertname')}/{event.get('severity')}"
            fired[name] = fired.get(name, 0) + 1
        state[key] = event
    firing = [{"alertname": e.get("alertname"), "severity": e.get("severity"), "labels": e.get("labels") or {},
               "since_step": e.get("step")} for e in state.values() if e.get("state") == "firing"]
    return {"transitions": len(events), "fired": fired, "firing_at_end": firing}


# --------------------------------------------------------------------------- text
def _fmt(value: float | None, spec: str = ".4g") -> str:
    return "-" if value is None else format(value, spec)


def render(summary: dict[str, Any]) -> str:
    """The summary as lines of text for a terminal."""
    m = summary["metrics"]
    lines = [f"run {summary['run_id']}  ({summary['run_dir']})"]
    created = summary.get("created")
    if created:
        lines.append(f"  started:             {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(created))}"
                     + (f", restarted {summary['restarts']}x" if summary.get("restarts") else ""))
    status = "closed (summary.json written)" if summary["closed"] else "not closed: no summary.json (killed, or still running)"
    if summary.get("torn_final_line"):
        status += "; torn final line skipped"
    lines.append(f"  status:              {status}")
    simulation = (summary.get("config") or {}).get("simulation")
    if simulation:
        lines.append(f"  simulation:          scenario {simulation.get('scenario')}, onset step {simulation.get('onset')}, "
                     f"seed {simulation.get('seed')}")
    lines.append(f"  reward functions:    {', '.join(summary['reward_functions'])} (G={summary.get('group_size')})")
    if not summary["steps_recorded"]:
        lines.append("  steps:               none recorded")
    else:
        duration = summary.get("duration_seconds")
        lines.append(f"  steps:               {summary['steps_recorded']} recorded, {summary['first_step']}..{summary['last_step']}"
                     + ("" if duration is None else f", over {duration:.1f} s"))
        w = summary["window_steps"]

        def trend(column: str, label: str, spec: str = ".4g") -> None:
            if column in m:
                c = m[column]
                lines.append(f"  {label:<20} {_fmt(c['first_window'], spec)} (first {w} steps) -> {_fmt(c['last_window'], spec)} "
                             f"(last {w}), mean {_fmt(c['mean'], spec)}")

        def span(column: str, label: str) -> None:
            if column in m:
                c = m[column]
                lines.append(f"  {label:<20} {_fmt(c['min'])} .. {_fmt(c['max'])}, last {_fmt(c['last'])}")

        trend("grpo_reward_mean", "reward mean:")
        lines.append(f"  {'per function':<24}{'first':>9}{'last':>9}{'mean':>9}{'contrib':>9}{'zero-spread':>13}{'non-finite':>12}")
        for fn in summary["reward_functions"]:
            mean = m.get(_column("grpo_reward_fn_mean", fn), {})
            contribution = m.get(_column("grpo_reward_fn_contribution_ratio", fn), {})
            zero = m.get(_column("grpo_reward_fn_group_zero_std_ratio", fn), {})
            lines.append(f"    {fn:<22}{_fmt(mean.get('first_window'), '.3f'):>9}{_fmt(mean.get('last_window'), '.3f'):>9}"
                         f"{_fmt(mean.get('mean'), '.3f'):>9}{_fmt(contribution.get('mean'), '.3f'):>9}"
                         f"{_fmt(zero.get('mean'), '.3f'):>13}{summary['nonfinite_rewards'].get(fn, 0):>12}")
        trend("grpo_group_zero_std_ratio", "zero-spread groups:", ".3f")
        span("grpo_kl", "KL:")
        span("grpo_policy_entropy", "policy entropy:")
        span("grpo_grad_norm", "grad norm:")
        trend("grpo_completion_truncated_ratio", "truncated:", ".3f")
        if "grpo_eval_accuracy_ratio" in m:
            c = m["grpo_eval_accuracy_ratio"]
            lines.append(f"  {'eval accuracy:':<20} {_fmt(c['first'], '.3f')} (first eval) -> {_fmt(c['last'], '.3f')} (last), "
                         f"best {_fmt(c['max'], '.3f')}, {c['steps']} evals")
    nonfinite = {fn: n for fn, n in summary["nonfinite_rewards"].items() if n}
    lines.append("  non-finite:          " + (", ".join(f"{fn} {n}" for fn, n in nonfinite.items()) if nonfinite else "none"))
    problems = summary.get("read_problems") or {}
    if problems:
        lines.append("  read problems:       " + ", ".join(f"{kind.replace('_', ' ')} {n}" for kind, n in problems.items())
                     + " (skipped or read as absent; see the log for line numbers)")
    skipped = summary["skipped_steps"]
    lines.append("  skipped steps:       " + ("unknown (no summary.json)" if skipped is None else
                                       ", ".join(f"{reason} {int(n)}" for reason, n in skipped.items()) or "none"))
    alerts = summary["alerts"]
    if not alerts["fired"]:
        lines.append("  alerts fired:        none")
    else:
        lines.append("  alerts fired:        " + ", ".join(f"{name} x{n}" for name, n in sorted(alerts["fired"].items())))
        for event in alerts["firing_at_end"]:
            labels = ",".join(f"{k}={v}" for k, v in sorted(event["labels"].items()) if k != "run_id")
            lines.append(f"    still firing: {event['alertname']} ({event['severity']}) {{{labels}}} since step {event['since_step']}")
    for item in summary.get("evidence", []):
        lines.append(f"    evidence: {item['alertname']} at step {item['step']}: {item['samples']} completions in {item['file']}:{item['line']}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory, e.g. monitoring_data/<run_id>")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW,
                        help=f"steps in the first and last windows compared (default {DEFAULT_WINDOW})")


def run(args: argparse.Namespace) -> int:
    from .exporter.runstore import RunStoreError

    try:
        summary = summarize(args.run_dir, window=args.window)
    except (RunStoreError, ValueError, OSError) as error:
        print(f"rewardscope summary: error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary, indent=2, allow_nan=False, default=str))
    else:
        print(render(summary))
    return 0
