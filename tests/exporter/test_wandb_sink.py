"""WandbSink in offline mode (no network, no API key): what it logs is read back from the run's .wandb file."""

import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("wandb", reason="the W&B mirror is optional (rewardscope[wandb])")
from prometheus_client import CollectorRegistry

from rewardscope import RewardFunctionSpec, RewardMonitor
from rewardscope.compat import DashboardManager, RewardMetricsTracker
from rewardscope.exporter.runstore import read_steps
from rewardscope.exporter.wandb_sink import STEP_KEY, WandbSink

SPECS = [RewardFunctionSpec("format", 1.0, 0.0, 3.0), RewardFunctionSpec("answer", 1.0, -1.0, 3.0)]


@pytest.fixture
def wandb_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    for name, sub in (("WANDB_DIR", "wandb"), ("WANDB_CACHE_DIR", "cache"), ("WANDB_CONFIG_DIR", "config"),
                      ("WANDB_DATA_DIR", "data")):
        (tmp_path / sub).mkdir()
        monkeypatch.setenv(name, str(tmp_path / sub))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    yield tmp_path / "wandb"
    import wandb

    wandb.teardown()  # stops W&B's service process and forgets settings read from this test's environment


def read_records(wandb_dir: Path) -> list:
    """Records of the one offline run: a LevelDB-style log (32 KiB blocks, 7-byte headers) of protobuf Records.

    W&B's service process writes the file behind run.finish(); teardown stops it, which flushes the file.
    """
    import wandb
    from wandb.proto import wandb_internal_pb2

    wandb.teardown()

    (path,) = wandb_dir.glob("wandb/offline-run-*/run-*.wandb")
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, position, pending = [], 7, b""
    while position + 7 <= len(data):
        left = 32768 - position % 32768
        if left < 7:
            position += left
            continue
        _, length, kind = struct.unpack_from("<IHB", data, position)
        chunk = data[position + 7:position + 7 + length]
        position += 7 + length
        if kind == 0:
            break
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            records.append(wandb_internal_pb2.Record.FromString(pending))
    return records


def history_rows(records) -> list[dict]:
    """Logged rows without W&B's own keys; nested values (histograms) as "key/field"."""
    rows = [{"/".join(item.nested_key) or item.key: json.loads(item.value_json) for item in r.history.item}
            for r in records if r.WhichOneof("record_type") == "history"]
    return [{k: v for k, v in row.items() if not k.startswith("_")} for row in rows]


def metric_definitions(records) -> dict[str, dict]:
    found = {}
    for r in records:
        if r.WhichOneof("record_type") == "metric":
            m = r.metric
            summary = sorted(f.name for f, v in m.summary.ListFields() if v)
            found[m.name or m.glob_name] = {"step_metric": m.step_metric, "summary": summary}
    return found


def record(monitor, step):
    return monitor.record_step(step, {"format": np.array([0.0, 3.0, 3.0, 3.0]), "answer": np.array([-1.0, 3.0, 1.0, 1.0])},
                               kl=0.125 * step)


def test_steps_charts_failures_and_summary_through_a_monitor(wandb_dir, tmp_path):
    sink = WandbSink("rewardscope-test", run_name="run-1")
    registry = CollectorRegistry()
    with RewardMonitor("run", SPECS, group_size=2, run_dir=tmp_path / "store", registry=registry, extra_sinks=[sink]) as monitor:
        record(monitor, 1)
        record(monitor, 2)
        sink.run.finish()  # W&B goes away under the run: every later call raises
        record(monitor, 3)
        assert registry.get_sample_value("rewardscope_sink_errors_total", {"run_id": "run", "sink": "wandb"}) == 1.0
    assert monitor.summary()["sink_errors"] == {"wandb": 2.0}  # step 3 and close
    assert [s["grpo_step"] for s in read_steps(tmp_path / "store" / "run")] == [1, 2, 3]

    records = read_records(wandb_dir)
    rows = history_rows(records)
    assert [row[STEP_KEY] for row in rows] == [1, 2]
    assert rows[0]["rewards/mean"] == 3.25 and rows[0]["rewards/total"] == 13.0
    assert rows[0]["rewards/functions/format"] == 2.25 and rows[0]["contributions/answer"] == pytest.approx(4 / 13)
    assert [row["training/kl_divergence"] for row in rows] == [0.125, 0.25]
    assert rows[0]["rewardscope/grpo_group_zero_std_ratio"] == 0.5
    assert "rewardscope/grpo_step" not in rows[0]

    definitions = metric_definitions(records)
    for section in ("rewards/*", "contributions/*", "training/*", "eval/*", "rewardscope/*"):
        assert definitions[section]["step_metric"] == STEP_KEY
    assert definitions["rewards/mean"] == {"step_metric": STEP_KEY, "summary": ["last", "max"]}
    assert definitions["training/kl_divergence"]["summary"] == ["last", "max"]
    assert definitions["rewards/functions/answer"]["summary"] == ["last", "mean"]


def test_histograms_and_an_existing_run(wandb_dir):
    import wandb

    run = wandb.init(project="rewardscope-test", name="mine")
    sink = WandbSink(run=run, log_distributions=True)
    with RewardMonitor("run", SPECS, run_dir=None, registry=CollectorRegistry(), log_distributions=True,
                       extra_sinks=[sink]) as monitor:
        record(monitor, 4)
    run.log({"my/own": 1.0})  # the sink left the caller's run open
    run.finish()
    rows = history_rows(read_records(wandb_dir))
    histogram = "rewardscope/grpo_reward_fn_value/answer/"
    assert rows[0][histogram + "_type"] == "histogram" and sum(rows[0][histogram + "values"]) == 4
    assert rows[0][histogram + "bins"][0] == -1.0 and rows[0][histogram + "bins"][-1] == 3.0
    assert rows[-1] == {"my/own": 1.0}


def test_dashboard_manager_applies_the_chart_definitions(wandb_dir):
    tracker = RewardMetricsTracker(["format", "answer"])
    with DashboardManager("rewardscope-test", enable_wandb=True, run_name="dash") as dashboard:
        dashboard.define_wandb_charts(["format", "answer"])
        for step in (1, 2):
            dashboard.log_metrics(step, tracker.track_step(step, {"format": [3.0, 0.0], "answer": [1.0, 1.0]}))
        dashboard.log_summary(tracker, 2)
    assert dashboard.sink_errors == {}
    records = read_records(wandb_dir)
    assert [row["rewards/mean"] for row in history_rows(records)] == [2.5, 2.5]
    assert metric_definitions(records)["rewards/functions/format"] == {"step_metric": STEP_KEY, "summary": ["last", "mean"]}
    summary = {}
    for r in records:
        if r.WhichOneof("record_type") == "summary":
            summary.update({item.key: json.loads(item.value_json) for item in r.summary.update if item.key})
    assert summary["rewardscope"]["run_name"] == "dash" and summary["rewardscope"]["total_steps"] == 2


def test_a_missing_wandb_package_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ImportError, match=r"pip install 'rewardscope\[wandb\]'"):
        WandbSink("p")
