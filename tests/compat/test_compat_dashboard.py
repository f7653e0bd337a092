"""DashboardManager: JSON export through the run store, TensorBoard with its layout applied, mirror failures counted."""

import json

import numpy as np
import pytest

pytest.importorskip("tensorboard", reason="the TensorBoard mirror is optional (rewardscope[tensorboard])")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2

from rewardscope.analysis import load_run
from rewardscope.compat import DashboardManager, RewardMetricsTracker
from rewardscope.exporter.runstore import read_distributions, read_steps, read_summary


def steps(tracker, count=3):
    return [tracker.track_step(step, {"f": np.array([0.0, 1.0, 1.0, 1.0]) * step, "g": np.full(4, 0.5)})
            for step in range(1, count + 1)]


def test_json_export_is_one_run_directory_not_a_file_per_step(tmp_path):
    tracker = RewardMetricsTracker(["f", "g"])
    with DashboardManager("proj", json_export_dir=tmp_path, run_name="run-1") as dashboard:
        for m in steps(tracker):
            dashboard.log_metrics(m.step, m)
        dashboard.log_summary(tracker, 3)
    run_dir = tmp_path / "run-1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run-1"]
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock", "alerts.jsonl", "manifest.json", "steps.jsonl", "summary.json"]
    assert len((run_dir / "steps.jsonl").read_text().splitlines()) == 3
    stored = list(read_steps(run_dir))
    assert [s["grpo_reward_mean"] for s in stored] == [1.25, 2.0, 2.75]  # .75 * step + .5
    assert [s["grpo_reward_fn_mean{f}"] for s in stored] == [0.75, 1.5, 2.25]
    summary = read_summary(run_dir)
    assert summary["project"] == "proj" and summary["step"] == 3 and summary["total_steps"] == 3
    assert summary["sink_errors"] == {}
    assert load_run(run_dir).function_names == ("f", "g")
    json.loads((run_dir / "manifest.json").read_text())


def test_distributions_go_to_the_run_store_compactly(tmp_path):
    tracker = RewardMetricsTracker(["f", "g"], track_distributions=True)
    with DashboardManager("proj", json_export_dir=tmp_path, run_name="dist") as dashboard:
        for m in steps(tracker, 2):
            dashboard.log_metrics(m.step, m)
            dashboard.log_reward_distributions(m.step, m)
    records = list(read_distributions(tmp_path / "dist"))
    assert [step for step, _ in records] == [1, 2]
    assert records[1][1].tolist() == [[0.0, 2.0, 2.0, 2.0], [0.5, 0.5, 0.5, 0.5]]


def test_tensorboard_gets_scalars_layout_histograms_and_summary(tmp_path):
    tracker = RewardMetricsTracker(["f", "g"], track_distributions=True)
    with DashboardManager("proj", enable_tensorboard=True, tensorboard_dir=tmp_path, run_name="tb") as dashboard:
        dashboard.define_wandb_charts(["f", "g"])
        for m in steps(tracker):
            dashboard.log_metrics(m.step, m)
        dashboard.log_reward_distributions(3, m)
        dashboard.log_summary(tracker, 3)
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0, "tensors": 0, "histograms": 0}).Reload()
    assert [(e.step, e.value) for e in acc.Scalars("rewards/mean")] == [(1, 1.25), (2, 2.0), (3, 2.75)]
    assert [e.value for e in acc.Scalars("contributions/g")] == [np.float32(2 / 5), np.float32(2 / 8), np.float32(2 / 11)]
    layout = layout_pb2.Layout.FromString(acc.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0])
    assert [c.title for c in layout.category] == ["Reward Signals", "Training Dynamics", "Contributions"]
    assert list(layout.category[0].chart[1].multiline.tag) == ["^rewards/functions/f$", "^rewards/functions/g$"]
    histogram = acc.Histograms("rewardscope/grpo_reward_fn_value/f")[0]
    assert histogram.step == 3 and histogram.histogram_value.num == 4 and histogram.histogram_value.sum == 9.0
    summary = acc.Tensors("rewardscope/summary")[0].tensor_proto.string_val[0].decode()
    assert '"total_steps": 3' in summary


def test_log_metrics_checks_its_input(tmp_path):
    tracker = RewardMetricsTracker(["f", "g"])
    with DashboardManager("proj", json_export_dir=tmp_path, run_name="r") as dashboard:
        first, second = steps(tracker, 2)
        dashboard.log_metrics(2, second)
        with pytest.raises(ValueError, match="step 1 is not after the last logged step 2"):
            dashboard.log_metrics(1, first)
        with pytest.raises(TypeError, match=r"RewardMetrics returned by RewardMetricsTracker\.track_step"):
            dashboard.log_metrics(3, {"mean_reward": 1.0})
        with pytest.raises(ValueError, match="track_distributions=True"):
            dashboard.log_reward_distributions(2, second)


def test_a_mirror_that_cannot_start_is_counted_and_json_goes_on(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    tracker = RewardMetricsTracker(["f", "g"])
    with DashboardManager("proj", enable_tensorboard=True, tensorboard_dir=blocker, json_export_dir=tmp_path,
                          run_name="r") as dashboard:
        for m in steps(tracker, 2):
            dashboard.log_metrics(m.step, m)
    assert dashboard.sink_errors == {"tensorboard": 1}
    assert len(list(read_steps(tmp_path / "r"))) == 2
    assert read_summary(tmp_path / "r")["sink_errors"] == {"tensorboard": 1}
