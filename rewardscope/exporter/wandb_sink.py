"""Weights & Biases mirror: each step's metrics logged to a W&B run under the seed's keys.

Keys come from the catalogue: a metric's ``legacy_key`` when it has one
(``rewards/mean``, ``rewards/functions/{fn}``, ``contributions/{fn}``,
``training/kl_divergence``, ...), else ``rewardscope/<metric>`` (plus ``/<reward_fn>``
for per-function metrics), so W&B shows every stored gauge of the run
(``mirror_key``; the TensorBoard mirror uses the same keys). Each logged row
carries ``train/step``, the training step, and ``define_charts`` (applied on the
first step, or earlier by DashboardManager.define_wandb_charts) makes it the x
axis of every rewardscope section and sets the run summaries (best mean reward,
worst KL, ...): charts line up with the training step even when another library
logs to the same run.

With ``log_distributions`` (and a RewardMonitor that keeps distributions) each
step also logs a histogram per reward function. Alert transitions are logged as
``rewardscope/grpo_alert_firing/<alertname>`` = 1 (firing) or 0 (resolved).

Like every mirror the sink is not ``loud``: if W&B fails, RewardMonitor counts the
error in rewardscope_sink_errors_total{sink="wandb"} and training goes on.

Usage::

    from rewardscope import RewardMonitor
    from rewardscope.exporter.wandb_sink import WandbSink
    sink = WandbSink("my-project", run_name="run-1")          # or WandbSink(run=wandb.run)
    monitor = RewardMonitor("run-1", ["correct"], extra_sinks=[sink])
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..alerting.events import AlertEvent, AlertState
from ..metrics.catalogue import metric
from ..metrics.layout import StepMetrics
from .base import Sink

STEP_KEY = "train/step"
HISTOGRAM_BINS = 20
# Liveness columns are the step itself and wall time: not chart material.
_NOT_MIRRORED = frozenset({"grpo_step", "grpo_last_step_timestamp_seconds"})


def mirror_key(name: str, label: str | None = None) -> str:
    """The W&B/TensorBoard key of a catalogue metric (``label``: its reward_fn or alertname)."""
    spec = metric(name)
    if spec.legacy_key is not None:
        return spec.legacy_key.format(fn=label) if "{fn}" in spec.legacy_key else spec.legacy_key
    return f"rewardscope/{name}" if label is None else f"rewardscope/{name}/{label}"


def mirror_scalars(metrics: StepMetrics) -> dict[str, float]:
    """Every value present in the step, keyed by ``mirror_key``."""
    return {mirror_key(name, fn): value for name, fn, value in metrics.items() if name not in _NOT_MIRRORED}


def reward_histograms(metrics: StepMetrics) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per reward function with finite rewards this step: (finite values, counts, bin edges) over HISTOGRAM_BINS bins."""
    if metrics.rewards is None:
        return {}
    result = {}
    for fn, row in zip(metrics.reward_functions, metrics.rewards):
        values = np.asarray(row, dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size:
            counts, edges = np.histogram(values, bins=HISTOGRAM_BINS)
            result[fn] = (values, counts, edges)
    return result


def alert_scalars(events: Sequence[AlertEvent]) -> Iterable[tuple[int, str, float]]:
    """(step, key, 1 firing / 0 resolved) for each alert transition."""
    for event in events:
        yield event.step, mirror_key("grpo_alert_firing", event.alertname), 1.0 if event.state is AlertState.FIRING else 0.0


def import_wandb() -> Any:
    try:
        import wandb
    except ImportError as error:
        raise ImportError("the W&B mirror needs the wandb package: pip install 'rewardscope[wandb]'") from error
    return wandb


# Run summaries W&B keeps beside the last value (define_metric summary ops).
SUMMARIES: dict[str, str] = {
    mirror_key("grpo_reward_mean"): "max,last",
    mirror_key("grpo_reward_signal_to_noise"): "min,last",
    mirror_key("grpo_kl"): "max,last",
    mirror_key("grpo_eval_accuracy_ratio"): "max,last",
    mirror_key("grpo_reward_hacking_suspected"): "max,last",
}
SECTIONS = ("rewards/*", "contributions/*", "training/*", "eval/*", "rewardscope/*")


class WandbSink(Sink):
    """Logs every step to a W&B run; see the module docstring.

    Pass ``run`` to log into a run you already started (it is left open on close);
    otherwise the sink starts one with ``wandb.init(project=..., name=run_name,
    config=config, **init_kwargs)`` and finishes it on close.
    """

    name = "wandb"
    loud = False

    def __init__(self, project: str | None = None, *, run: Any = None, run_name: str | None = None,
                 config: dict | None = None, log_distributions: bool = False, **init_kwargs: Any) -> None:
        self._wandb = import_wandb()
        self._owns_run = run is None
        self.run = run if run is not None else self._wandb.init(project=project, name=run_name, config=dict(config or {}),
                                                                 **init_kwargs)
        self.log_distributions = log_distributions
        self.charts_defined = False

    def define_charts(self, function_names: Sequence[str]) -> None:
        """Make train/step the x axis of the rewardscope sections and set the run summaries (once)."""
        if self.charts_defined:
            return
        self.run.define_metric(STEP_KEY)
        for section in SECTIONS:
            self.run.define_metric(section, step_metric=STEP_KEY)
        summaries = dict(SUMMARIES)
        summaries.update({mirror_key("grpo_reward_fn_mean", fn): "mean,last" for fn in function_names})
        for key, ops in summaries.items():
            self.run.define_metric(key, step_metric=STEP_KEY, summary=ops)
        self.charts_defined = True

    def _histograms(self, metrics: StepMetrics) -> dict[str, Any]:
        return {mirror_key("grpo_reward_fn_value", fn): self._wandb.Histogram(np_histogram=(counts, edges))
                for fn, (_, counts, edges) in reward_histograms(metrics).items()}

    def write_step(self, metrics: StepMetrics) -> None:
        self.define_charts(metrics.reward_functions)
        row: dict[str, Any] = {STEP_KEY: metrics.step, **mirror_scalars(metrics)}
        if self.log_distributions:
            row.update(self._histograms(metrics))
        self.run.log(row)
        events = getattr(metrics, "events", ())  # a StepRecord carries the step's alert transitions
        if events:
            self.write_alerts(events)

    def write_distributions(self, metrics: StepMetrics) -> None:
        """Log the step's reward histograms alone (DashboardManager.log_reward_distributions)."""
        histograms = self._histograms(metrics)
        if histograms:
            self.run.log({STEP_KEY: metrics.step, **histograms})

    def write_alerts(self, events: Sequence[AlertEvent]) -> None:
        for step, key, value in alert_scalars(events):
            self.run.log({STEP_KEY: step, key: value})

    def close(self, summary: dict) -> None:
        self.run.summary.update({"rewardscope": summary})
        if self._owns_run:
            self.run.finish()
