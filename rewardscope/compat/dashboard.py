"""DashboardManager: the old multi-backend logging API, on the run store and the W&B/TensorBoard sinks.

The manager sends each step's metrics (a RewardMetrics from RewardMetricsTracker,
or a StepMetrics) to

- JSON export: a run store under ``json_export_dir/<run_name>/`` (manifest.json,
  one line per step in steps.jsonl, summary.json on close; compact reward
  distributions when the tracker tracks them) instead of one JSON file per step.
  ``rewardscope.analysis.load_run`` and ``rewardscope summary`` read it back;
- W&B (``enable_wandb``): a WandbSink, its chart definitions (train/step x axis,
  run summaries) applied by ``define_wandb_charts`` or on the first step;
- TensorBoard (``enable_tensorboard``): a TensorBoardSink under
  ``tensorboard_dir/<run_name>/``, its Custom Scalars layout written once.

Mirrors never stop training: an error in W&B or TensorBoard (also when starting
them) is counted in ``sink_errors`` and logged once; the run store is the one
loud sink. ``log_summary`` keeps the tracker's summary, written by every backend
when the manager closes.

Usage::

    from rewardscope.compat import DashboardManager, RewardMetricsTracker
    tracker = RewardMetricsTracker(["func1", "func2"])
    with DashboardManager("my-project", enable_tensorboard=True, json_export_dir="./data", run_name="run-1") as dashboard:
        dashboard.define_wandb_charts(["func1", "func2"])
        metrics = tracker.track_step(1, {"func1": [1.0, 2.0], "func2": [0.5, 0.7]})
        dashboard.log_metrics(1, metrics)
        dashboard.log_summary(tracker, 1)
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..exporter.base import FanOut, Sink
from ..exporter.runstore import RunStoreSink
from ..metrics.layout import StepMetrics
from .tracker import RewardMetrics, RewardMetricsTracker

log = logging.getLogger("rewardscope")

DEFAULT_TENSORBOARD_DIR = "runs/tensorboard"


class _MethodAsStep(Sink):
    """Presents one method of a sink as ``write_step`` so that FanOut's error counting covers it too."""

    loud = False

    def __init__(self, sink: Sink, method: str) -> None:
        self.name = sink.name
        self._method = getattr(sink, method)

    def write_step(self, argument: Any) -> None:
        self._method(argument)


class _ErrorCounter(Sink):
    """Counts the errors the fan-out reports, per sink, for the manager's summary."""

    name = "error_counter"

    def __init__(self, counts: Counter[str]) -> None:
        self.counts = counts

    def write_sink_error(self, sink: str) -> None:
        self.counts[sink] += 1


def _as_step_metrics(metrics: RewardMetrics | StepMetrics) -> StepMetrics:
    if isinstance(metrics, StepMetrics):
        return metrics
    if isinstance(metrics, RewardMetrics) and metrics.step_metrics is not None:
        return metrics.step_metrics
    raise TypeError("log_metrics takes the RewardMetrics returned by RewardMetricsTracker.track_step, or a StepMetrics; "
                    f"got {type(metrics).__name__}")


class DashboardManager:
    """Logs tracked steps to JSON (run store), W&B and TensorBoard; see the module docstring."""

    def __init__(self, project_name: str, enable_wandb: bool = False, enable_tensorboard: bool = False,
                 json_export_dir: str | os.PathLike | None = None, tensorboard_dir: str | os.PathLike | None = None,
                 run_name: str | None = None, *, config: dict | None = None, wandb_options: dict | None = None) -> None:
        self.project_name = project_name
        self.run_name = run_name or f"{project_name}-{time.strftime('%Y%m%d-%H%M%S')}"
        self.config = dict(config or {})
        self.json_export_dir = json_export_dir
        self.sink_errors: Counter[str] = Counter()
        self.store: RunStoreSink | None = None
        self.last_step: int | None = None
        self._summary: dict[str, Any] = {}
        self._closed = False
        mirrors: list[Sink] = []
        if enable_wandb:
            self._start(mirrors, "wandb", lambda: self._wandb_sink(wandb_options or {}))
        if enable_tensorboard:
            tb_dir = Path(tensorboard_dir or DEFAULT_TENSORBOARD_DIR) / self.run_name
            self._start(mirrors, "tensorboard", lambda: self._tensorboard_sink(tb_dir))
        self.mirrors = mirrors
        self._error_counter = _ErrorCounter(self.sink_errors)
        self._fanout = FanOut([*mirrors, self._error_counter])

    # ------------------------------------------------------------------ set-up
    def _wandb_sink(self, options: dict) -> Sink:
        from ..exporter.wandb_sink import WandbSink

        return WandbSink(self.project_name, run_name=self.run_name, config=self.config, **options)

    @staticmethod
    def _tensorboard_sink(log_dir: Path) -> Sink:
        from ..exporter.tensorboard_sink import TensorBoardSink

        return TensorBoardSink(log_dir)

    def _start(self, mirrors: list[Sink], name: str, make) -> None:
        """Start a mirror; a missing package is the caller's error, any other failure is counted and skipped."""
        try:
            mirrors.append(make())
        except ImportError:
            raise
        except Exception as error:
            self._count_error(name)
            log.warning("rewardscope: could not start the %s mirror (%s: %s); logging goes on without it",
                        name, type(error).__name__, error)

    def _count_error(self, sink: str) -> None:
        self.sink_errors[sink] += 1

    def _mirror_call(self, method: str, argument: Any) -> None:
        views = [_MethodAsStep(sink, method) for sink in self.mirrors if hasattr(sink, method)]
        FanOut([*views, self._error_counter]).write_step(argument)

    # ------------------------------------------------------------------ the old API
    def define_wandb_charts(self, function_names: Sequence[str]) -> None:
        """Apply the W&B chart definitions and the TensorBoard custom-scalars layout for these functions now."""
        self._mirror_call("define_charts", list(function_names))

    def log_metrics(self, step: int, metrics: RewardMetrics | StepMetrics) -> None:
        """Write one step to every backend; ``step`` must increase from call to call."""
        if self._closed:
            raise RuntimeError("DashboardManager is closed")
        step_metrics = _as_step_metrics(metrics)
        if step != step_metrics.step:
            step_metrics = replace(step_metrics, step=int(step))
        if self.last_step is not None and step <= self.last_step:
            raise ValueError(f"step {step} is not after the last logged step {self.last_step}")
        if self.store is None and self.json_export_dir is not None:
            manifest = {"project": self.project_name, "config": self.config,
                        "reward_functions": [{"name": fn} for fn in step_metrics.reward_functions]}
            self.store = RunStoreSink(self.json_export_dir, self.run_name, step_metrics.layout, manifest_extra=manifest,
                                      log_distributions=step_metrics.rewards is not None)
            self._fanout.sinks.insert(0, self.store)
        self._fanout.write_step(step_metrics)
        self.last_step = step

    def log_reward_distributions(self, step: int, metrics: RewardMetrics | StepMetrics) -> None:
        """Write the step's reward histograms to W&B and TensorBoard (the run store keeps them with log_metrics)."""
        step_metrics = _as_step_metrics(metrics)
        if step_metrics.rewards is None:
            raise ValueError("these metrics carry no reward distributions: create the tracker with track_distributions=True")
        self._mirror_call("write_distributions", replace(step_metrics, step=int(step)))

    def log_summary(self, tracker: RewardMetricsTracker, step: int) -> None:
        """Keep the tracker's summary; every backend writes it when the manager closes."""
        self._summary = {"step": int(step), **tracker.get_summary()}

    def close(self) -> None:
        """Write the summary to every backend and close them. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        summary = {"project": self.project_name, "run_name": self.run_name, "last_step": self.last_step,
                   "sink_errors": dict(self.sink_errors), **self._summary}
        self._fanout.close(summary)
        if self.sink_errors:
            log.warning("rewardscope: mirror errors during the run: %s", dict(self.sink_errors))

    def __enter__(self) -> DashboardManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
