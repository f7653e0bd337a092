"""``rewardscope summary RUN_DIR``: a readable summary of a recorded run.

Reads a run directory of the run store (manifest.json, steps.jsonl, alerts.jsonl and,
when the run closed, summary.json) and reports how many steps were recorded, over what
time, how the reward moved from the first window of steps to the last, each reward
function's mean and contribution, the share of zero-spread groups, KL and entropy
ranges, non-finite rewards, skipped steps and the alerts that fired. A run killed
mid-way (no summary.json, a torn last line) is summarised from the steps it wrote.

``summarize`` streams the steps (memory O(window), whatever the run's length) and
returns plain data; ``render`` turns that into text; ``--json`` prints the data.

Usage::

    rewardscope summary monitoring_data/my-run
    rewardscope summary monitoring_data/my-run --json

    from rewardscope.report import render, summarize
    print(render(summarize("monitoring_data/my-run")))
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

DEFAULT_WINDOW = 20

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
    """Count, sum, min, max, first and last value of one column, streamed."""

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.first: float | None = None
        self.last: float | None = None

    def add(self, value: float) -> None:
        if self.first is None:
            self.first = value
        self.last = value
        self.count += 1
        self.total += value
        self.min = min(self.min, value)
        self.max = max(self.max, value)


def _window_mean(rows: list[dict], column: str) -> float | None:
    values = [row[column] for row in rows if column in row]
    return sum(values) / len(values) if values else None


def summarize(run_dir: str | Path, window: int = DEFAULT_WINDOW) -> dict[str, Any]:
    """Plain-data summary of the run stored in ``run_dir`` (see the module docstring).

    ``window`` is the number of steps in the first and last windows (halved, down to 1, for
    runs shorter than two windows). Raises RunStoreError when ``run_dir`` is not a run directory.
    """
    from .exporter.evidence import evidence_index
    from .exporter.runstore import read_alerts, read_manifest, read_steps, read_summary

    if window < 1:
        raise ValueError(f"window must be at least 1 step, got {window}")
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    functions = [f["name"] for f in manifest.get("reward_functions", [])]
    tracked = [_column(c) for c in RUN_COLUMNS] + [_column(c, fn) for fn in functions for c in FUNCTION_COLUMNS]

    stats = {column: _ColumnStats() for column in tracked}
    head: list[dict] = []
    tail: deque[dict] = deque(maxlen=window)
    steps_recorded = 0
    first_step = last_step = first_time = last_time = None
    for row in read_steps(run_dir):
        steps_recorded += 1
        step, stamp = int(row["grpo_step"]), row.get("grpo_last_step_timestamp_seconds")
        if first_step is None:
            first_step, first_time = step, stamp
        last_step, last_time = step, stamp
        kept = {column: row[column] for column in tracked if column in row}
        for column, value in kept.items():
            stats[column].add(value)
        if len(head) < window:
            head.append(kept)
        tail.append(kept)

    size = min(window, max(1, steps_recorded // 2))
    first_rows, last_rows = head[:size], list(tail)[-size:] if size else []
    metrics: dict[str, dict[str, Any]] = {}
    for column, s in stats.items():
        if s.count == 0:
            continue
        metrics[column] = {"first_window": _window_mean(first_rows, column), "last_window": _window_mean(last_rows, column),
                           "mean": s.total / s.count, "sum": s.total, "min": s.min, "max": s.max, "first": s.first, "last": s.last,
                           "steps": s.count}

    closing = read_summary(run_dir)
    steps_path = run_dir / "steps.jsonl"
    return {
        "run_id": manifest.get("run_id"),
        "run_dir": str(run_dir),
        "created": manifest.get("created"),
        "restarts": len(manifest.get("restarts", [])),
        "closed": closing is not None,
        "torn_final_line": _ends_torn(steps_path),
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
        "alerts": _alerts(read_alerts(run_dir)),
        "evidence": evidence_index(run_dir),
    }


def _ends_torn(path: Path) -> bool:
    if not path.exists() or path.stat().st_size == 0:
        return False
    with open(path, "rb") as f:
        f.seek(-1, 2)
        return f.read(1) != b"\n"


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
    except (RunStoreError, ValueError) as error:
        print(f"rewardscope summary: error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary, indent=2, allow_nan=False, default=str))
    else:
        print(render(summary))
    return 0
