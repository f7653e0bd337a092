"""TensorBoard mirror: event files with each step's metrics, the seed's custom-scalars layout and histograms.

Scalars use the same keys as the W&B mirror (``mirror_key``: the catalogue's
``legacy_key``, else ``rewardscope/<metric>[/<reward_fn>]``) at the training step.
The Custom Scalars layout of the system we replace is written once, on the first
step (or earlier through ``define_charts``), so TensorBoard's Custom Scalars tab
shows it:

    Reward Signals     Total Rewards (mean, total, max) | Per-Function Rewards | Quality Metrics (SNR, entropy, variance)
    Training Dynamics  Policy Metrics (KL, policy entropy) | Advantages (mean, std)
    Contributions      Reward Contributions by function

With ``log_distributions`` (and a RewardMonitor that keeps distributions) each step
also writes a histogram per reward function (Histograms and Distributions tabs).
Alert transitions become ``rewardscope/grpo_alert_firing/<alertname>`` = 1 or 0,
and the run summary a text entry on close.

Only the ``tensorboard`` package is needed (no torch, no TensorFlow): events are
written with its EventFileWriter and protobufs. Not ``loud``: a failing writer is
counted in rewardscope_sink_errors_total{sink="tensorboard"} and training goes on.

Usage::

    from rewardscope import RewardMonitor
    from rewardscope.exporter.tensorboard_sink import TensorBoardSink
    monitor = RewardMonitor("run-1", ["correct"], log_distributions=True,
                            extra_sinks=[TensorBoardSink("runs/tensorboard/run-1", log_distributions=True)])
    # tensorboard --logdir runs/tensorboard
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from typing import Any

from ..alerting.events import AlertEvent
from ..metrics.layout import StepMetrics
from .base import Sink
from .wandb_sink import alert_scalars, mirror_key, mirror_scalars, reward_histograms

LAYOUT_TAG = "custom_scalars__config__"
SUMMARY_TAG = "rewardscope/summary"


def custom_scalars_layout(function_names: Sequence[str]) -> dict[str, dict[str, list[str]]]:
    """{category: {chart: [keys]}}: the seed's TensorBoard layout, keys from the catalogue."""
    return {
        "Reward Signals": {
            "Total Rewards": [mirror_key(n) for n in ("grpo_reward_mean", "grpo_reward_sum_of_batch", "grpo_reward_max")],
            "Per-Function Rewards": [mirror_key("grpo_reward_fn_mean", fn) for fn in function_names],
            "Quality Metrics": [mirror_key(n) for n in ("grpo_reward_signal_to_noise", "grpo_reward_entropy_ratio",
                                                        "grpo_reward_variance")],
        },
        "Training Dynamics": {
            "Policy Metrics": [mirror_key("grpo_kl"), mirror_key("grpo_policy_entropy")],
            "Advantages": [mirror_key("grpo_advantage_mean"), mirror_key("grpo_advantage_std")],
        },
        "Contributions": {
            "Reward Contributions": [mirror_key("grpo_reward_fn_contribution_ratio", fn) for fn in function_names],
        },
    }


def _import_tensorboard() -> dict[str, Any]:
    try:
        from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
        from tensorboard.plugins.custom_scalar import layout_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except ImportError as error:
        raise ImportError("the TensorBoard mirror needs the tensorboard package: pip install 'rewardscope[tensorboard]'") from error
    return {"EventFileWriter": EventFileWriter, "event": event_pb2, "summary": summary_pb2, "tensor": tensor_pb2,
            "shape": tensor_shape_pb2, "types": types_pb2, "layout": layout_pb2}


class TensorBoardSink(Sink):
    """Writes TensorBoard event files under ``log_dir``; see the module docstring."""

    name = "tensorboard"
    loud = False

    def __init__(self, log_dir: str | os.PathLike, *, log_distributions: bool = False, flush_secs: float = 10.0) -> None:
        self._pb = _import_tensorboard()
        self.log_dir = os.fspath(log_dir)
        self.log_distributions = log_distributions
        self._writer = self._pb["EventFileWriter"](self.log_dir, max_queue_size=100, flush_secs=flush_secs)
        self.layout_written = False
        self._last_step = 0

    # ------------------------------------------------------------------ protobuf helpers
    def _write(self, step: int, values: list, wall_time: float | None = None) -> None:
        summary = self._pb["summary"].Summary(value=values)
        self._writer.add_event(self._pb["event"].Event(wall_time=time.time() if wall_time is None else wall_time,
                                                       step=step, summary=summary))

    def _scalar(self, tag: str, value: float) -> Any:
        return self._pb["summary"].Summary.Value(tag=tag, simple_value=value)

    def _string_tensor(self, tag: str, plugin: str, data: bytes) -> Any:
        pb = self._pb
        metadata = pb["summary"].SummaryMetadata(plugin_data=pb["summary"].SummaryMetadata.PluginData(plugin_name=plugin))
        tensor = pb["tensor"].TensorProto(dtype=pb["types"].DT_STRING, string_val=[data],
                                          tensor_shape=pb["shape"].TensorShapeProto())
        return pb["summary"].Summary.Value(tag=tag, metadata=metadata, tensor=tensor)

    def _histogram_values(self, metrics: StepMetrics) -> list:
        values = []
        for fn, (finite, counts, edges) in reward_histograms(metrics).items():
            histogram = self._pb["summary"].HistogramProto(
                min=float(finite.min()), max=float(finite.max()), num=float(finite.size), sum=float(finite.sum()),
                sum_squares=float(finite @ finite), bucket_limit=edges[1:].tolist(), bucket=counts.astype(float).tolist())
            values.append(self._pb["summary"].Summary.Value(tag=mirror_key("grpo_reward_fn_value", fn), histo=histogram))
        return values

    # ------------------------------------------------------------------ the sink
    def define_charts(self, function_names: Sequence[str]) -> None:
        """Write the Custom Scalars layout (once); tags are anchored regexes of the exact keys."""
        if self.layout_written:
            return
        pb = self._pb["layout"]
        categories = []
        for category, charts in custom_scalars_layout(function_names).items():
            chart_protos = [pb.Chart(title=title, multiline=pb.MultilineChartContent(tag=[f"^{re.escape(k)}$" for k in keys]))
                            for title, keys in charts.items()]
            categories.append(pb.Category(title=category, chart=chart_protos))
        layout = pb.Layout(category=categories)
        self._write(0, [self._string_tensor(LAYOUT_TAG, "custom_scalars", layout.SerializeToString())])
        self.layout_written = True

    def write_step(self, metrics: StepMetrics) -> None:
        self.define_charts(metrics.reward_functions)
        values = [self._scalar(k, v) for k, v in mirror_scalars(metrics).items()]
        if self.log_distributions:
            values += self._histogram_values(metrics)
        self._write(metrics.step, values, metrics.timestamp)
        self._last_step = metrics.step
        events = getattr(metrics, "events", ())  # a StepRecord carries the step's alert transitions
        if events:
            self.write_alerts(events)

    def write_distributions(self, metrics: StepMetrics) -> None:
        """Write the step's reward histograms alone (DashboardManager.log_reward_distributions)."""
        values = self._histogram_values(metrics)
        if values:
            self._write(metrics.step, values, metrics.timestamp)

    def write_alerts(self, events: Sequence[AlertEvent]) -> None:
        for step, key, value in alert_scalars(events):
            self._write(step, [self._scalar(key, value)])

    def close(self, summary: dict) -> None:
        """Write the run summary as text (a Markdown code block) and close the event file."""
        text = "    " + json.dumps(summary, indent=2, sort_keys=True, default=str).replace("\n", "\n    ")
        self._write(self._last_step, [self._string_tensor(SUMMARY_TAG, "text", text.encode("utf-8"))])
        self._writer.close()
