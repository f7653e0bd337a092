"""TensorBoardSink through a real RewardMonitor: exact scalars read back, the layout written once, failures counted."""

import sys

import numpy as np
import pytest

pytest.importorskip("tensorboard", reason="the TensorBoard mirror is optional (rewardscope[tensorboard])")
from prometheus_client import CollectorRegistry
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2

from rewardscope import RewardFunctionSpec, RewardMonitor
from rewardscope.alerting.events import AlertEvent, AlertState
from rewardscope.exporter.runstore import read_steps
from rewardscope.exporter.tensorboard_sink import LAYOUT_TAG, TensorBoardSink, custom_scalars_layout

SPECS = [RewardFunctionSpec("format", 1.0, 0.0, 3.0), RewardFunctionSpec("answer", 1.0, -1.0, 3.0)]


def read(log_dir):
    return EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0, "histograms": 0}).Reload()


def record(monitor, step, scale=1.0):
    return monitor.record_step(step, {"format": np.array([0.0, 3.0, 3.0, 3.0]) * scale, "answer": np.array([-1.0, 3.0, 1.0, 1.0])},
                               kl=0.125 * step, policy_entropy=1.5, advantages=[-1.0, 1.0, 0.5, -0.5])


def test_scalars_are_keyed_by_the_legacy_keys_with_exact_values(tmp_path):
    sink = TensorBoardSink(tmp_path / "tb")
    with RewardMonitor("run", SPECS, group_size=2, run_dir=None, registry=CollectorRegistry(), extra_sinks=[sink]) as monitor:
        record(monitor, 1)
        record(monitor, 2, scale=0.5)
    acc = read(tmp_path / "tb")
    # combined rewards: step 1 -> -1, 6, 4, 4; step 2 -> -1, 4.5, 2.5, 2.5
    assert [(e.step, e.value) for e in acc.Scalars("rewards/mean")] == [(1, 3.25), (2, 2.125)]
    assert [e.value for e in acc.Scalars("rewards/total")] == [13.0, 8.5]
    assert [e.value for e in acc.Scalars("rewards/functions/format")] == [2.25, 1.125]
    assert [e.value for e in acc.Scalars("rewards/functions/answer_std")] == [np.float32(np.std([-1.0, 3.0, 1.0, 1.0]))] * 2
    assert [e.value for e in acc.Scalars("contributions/answer")] == [np.float32(4 / 13), np.float32(4 / 8.5)]
    assert [e.value for e in acc.Scalars("training/kl_divergence")] == [0.125, 0.25]
    assert [e.value for e in acc.Scalars("training/advantage_std")] == [np.float32(np.sqrt(0.625))] * 2
    assert [e.value for e in acc.Scalars("rewardscope/grpo_reward_fn_min/answer")] == [-1.0, -1.0]
    assert "rewardscope/grpo_step" not in acc.Tags()["scalars"]


def test_custom_scalars_layout_is_the_seed_layout_written_once(tmp_path):
    sink = TensorBoardSink(tmp_path / "tb")
    with RewardMonitor("run", SPECS, group_size=2, run_dir=None, registry=CollectorRegistry(), extra_sinks=[sink]) as monitor:
        for step in range(1, 6):
            record(monitor, step)
    events = read(tmp_path / "tb").Tensors(LAYOUT_TAG)
    assert len(events) == 1
    layout = layout_pb2.Layout.FromString(events[0].tensor_proto.string_val[0])
    found = {c.title: {chart.title: list(chart.multiline.tag) for chart in c.chart} for c in layout.category}
    assert found == {
        "Reward Signals": {
            "Total Rewards": ["^rewards/mean$", "^rewards/total$", "^rewards/max$"],
            "Per-Function Rewards": ["^rewards/functions/format$", "^rewards/functions/answer$"],
            "Quality Metrics": ["^rewards/signal_to_noise$", "^rewards/entropy$", "^rewards/variance$"],
        },
        "Training Dynamics": {
            "Policy Metrics": ["^training/kl_divergence$", "^training/policy_entropy$"],
            "Advantages": ["^training/advantage_mean$", "^training/advantage_std$"],
        },
        "Contributions": {"Reward Contributions": ["^contributions/format$", "^contributions/answer$"]},
    }
    # every key the layout names is one the sink writes
    written = set(read(tmp_path / "tb").Tags()["scalars"])
    assert {k for charts in custom_scalars_layout(["format", "answer"]).values() for keys in charts.values() for k in keys} <= written


def test_histograms_when_distributions_are_logged(tmp_path):
    sink = TensorBoardSink(tmp_path / "tb", log_distributions=True)
    with RewardMonitor("run", SPECS, run_dir=None, registry=CollectorRegistry(), log_distributions=True,
                       extra_sinks=[sink]) as monitor:
        record(monitor, 7)
    histogram = read(tmp_path / "tb").Histograms("rewardscope/grpo_reward_fn_value/answer")[0]
    value = histogram.histogram_value
    assert histogram.step == 7
    assert (value.min, value.max, value.num, value.sum, value.sum_squares) == (-1.0, 3.0, 4.0, 4.0, 12.0)
    assert sum(value.bucket) == 4 and value.bucket[0] == 1 and value.bucket[-1] == 1 and value.bucket_limit[-1] == 3.0


def test_alerts_and_the_summary(tmp_path):
    sink = TensorBoardSink(tmp_path / "tb")
    event = AlertEvent("RewardCollapse", AlertState.FIRING, "critical", 12, 0.0, {"run_id": "run"})
    sink.write_alerts([event, AlertEvent("RewardCollapse", AlertState.RESOLVED, "critical", 15, 0.0)])
    sink.close({"run_id": "run", "steps_recorded": 15})
    acc = read(tmp_path / "tb")
    assert [(e.step, e.value) for e in acc.Scalars("rewardscope/grpo_alert_firing/RewardCollapse")] == [(12, 1.0), (15, 0.0)]
    assert '"steps_recorded": 15' in acc.Tensors("rewardscope/summary")[0].tensor_proto.string_val[0].decode()


def test_a_failing_sink_is_counted_and_training_goes_on(tmp_path):
    sink = TensorBoardSink(tmp_path / "tb")
    registry = CollectorRegistry()
    with RewardMonitor("run", SPECS, run_dir=tmp_path / "store", registry=registry, extra_sinks=[sink]) as monitor:
        record(monitor, 1)
        sink.close({})  # the event file is gone: every later write raises
        record(monitor, 2)
        record(monitor, 3)
        errors = registry.get_sample_value("rewardscope_sink_errors_total", {"run_id": "run", "sink": "tensorboard"})
        assert errors == 2.0
        assert monitor.summary()["sink_errors"] == {"tensorboard": 2.0}
    assert [s["grpo_step"] for s in read_steps(tmp_path / "store" / "run")] == [1, 2, 3]
    assert [e.step for e in read(tmp_path / "tb").Scalars("rewards/mean")] == [1]


def test_a_missing_tensorboard_package_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorboard.summary.writer.event_file_writer", None)
    with pytest.raises(ImportError, match=r"pip install 'rewardscope\[tensorboard\]'"):
        TensorBoardSink(tmp_path)
