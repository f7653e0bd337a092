"""Provenance in the manifest (first run and resumes) and the probe recorder's schedule and bounds."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rewardscope import RewardMonitor
from rewardscope.provenance import collect_provenance, config_hash, record_provenance
from rewardscope.trainer.probes import ProbeRecorder, read_probes


def test_config_hash_is_canonical():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_collect_provenance_names_versions_git_hardware_and_command(tmp_path):
    provenance = collect_provenance({"lr": 1e-3}, argv=["rewardscope", "train", "--lr", "1e-3"])
    assert provenance["packages"]["rewardscope"] == "0.1.0" and set(provenance["packages"]) >= {"torch", "transformers",
                                                                                                   "peft", "trl"}
    assert provenance["command"] == ["rewardscope", "train", "--lr", "1e-3"]
    assert provenance["hardware"]["cpu_count"] >= 1 and provenance["hardware"]["cpu"]
    assert len(provenance["git"]["commit"]) == 40  # the tests run inside the repository's checkout
    assert collect_provenance({}, directory=tmp_path)["git"] is None


def test_monitor_records_provenance_then_each_resume(tmp_path):
    first = collect_provenance({"lr": 1e-3})
    with RewardMonitor("p", ["r"], run_dir=tmp_path, provenance=first) as monitor:
        for step in (1, 2, 3):
            monitor.record_step(step, {"r": np.array([0.0, 1.0])})
    with RewardMonitor("p", ["r"], run_dir=tmp_path, provenance=first, resume_after_step=2):
        pass
    with RewardMonitor("p", ["r"], run_dir=tmp_path, provenance=collect_provenance({"lr": 5e-3})):
        pass
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert manifest["provenance"]["config_hash"] == first["config_hash"]
    assert [(r["from_step"], r["config_changed"]) for r in manifest["resumes"]] == [(2, False), (2, True)]


def test_record_provenance_needs_a_run_directory(tmp_path):
    from rewardscope.exporter.runstore import RunStoreError

    with pytest.raises(RunStoreError, match=r"no manifest\.json"):
        record_provenance(tmp_path, {"config_hash": "x"}, None)


def test_probes_first_every_k_last_and_bounded(tmp_path):
    probes = ProbeRecorder(tmp_path, ["q1", "q2"], every=10, total_steps=95, expected=["1", "2"])
    for step in range(1, 96):
        probes.record_if_due(step, lambda prompts: [p.upper() for p in prompts])
    records = read_probes(tmp_path)
    assert [r["step"] for r in records] == [1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95]
    assert records[0]["answers"] == [{"prompt": "q1", "answer": "Q1", "expected": "1"}, {"prompt": "q2", "answer": "Q2", "expected": "2"}]
    bounded = ProbeRecorder(tmp_path / "b", ["q"], every=1, total_steps=10_000, max_records=50)
    (tmp_path / "b").mkdir()
    written = sum(bounded.record_if_due(step, lambda p: ["a" * 900]) for step in range(1, 10_001))
    assert written <= 50 and len(read_probes(tmp_path / "b")[0]["answers"][0]["answer"]) == 500


def test_probes_resume_drops_later_records(tmp_path):
    probes = ProbeRecorder(tmp_path, ["q"], every=2, total_steps=10)
    for step in range(1, 9):
        probes.record_if_due(step, lambda p: ["a"])
    ProbeRecorder(tmp_path, ["q"], every=2, total_steps=10, resume_after_step=4)
    assert [r["step"] for r in read_probes(tmp_path)] == [1, 2, 4]
