"""The evidence writer: which completions an alert keeps, the caps, bad texts, resume; and the monitor hook."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rewardscope import RewardFunctionSpec, RewardMonitor
from rewardscope.alerting.events import AlertEvent, AlertState
from rewardscope.exporter.evidence import EvidenceSink, evidence_index, read_evidence
from rewardscope.report import render, summarize

NAMES = ["format", "correct"]


def event(name: str = "GRPOWeakRewardSignal", step: int = 5, state: AlertState = AlertState.FIRING, **labels: str) -> AlertEvent:
    return AlertEvent(name, state, "warning", step, 0.0, labels={"run_id": "r", **labels}, value=0.1, threshold=0.3)


def batch() -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    rewards = np.array([[1.0, 0.0, 1.0, 1.0, 0.0, 0.5],      # format
                        [0.0, 1.0, 0.2, 0.9, 0.1, 0.3]])     # correct
    advantages = np.array([0.5, -2.0, 1.5, 0.1, -0.7, 3.0])
    return rewards, advantages, [f"prompt {i}" for i in range(6)], [f"completion {i}" for i in range(6)]


def test_run_level_alert_keeps_the_highest_and_lowest_advantage(tmp_path):
    rewards, advantages, prompts, completions = batch()
    writer = EvidenceSink(tmp_path, NAMES, [1.0, 2.0], per_side=2)
    assert writer.write(5, [event()], rewards, advantages=advantages, completion_lengths=[10, 20, 30, 40, 50, 60],
                        prompts=prompts, completions=completions) == 1
    (record,) = read_evidence(tmp_path)
    assert record["line"] == 1 and record["step"] == 5 and record["alertname"] == "GRPOWeakRewardSignal"
    chosen = [(s["reason"], s["index"]) for s in record["samples"]]
    assert chosen == [("highest advantage", 5), ("highest advantage", 2), ("lowest advantage", 1), ("lowest advantage", 4)]
    first = record["samples"][0]
    assert first == {"reason": "highest advantage", "index": 5, "prompt": "prompt 5", "completion": "completion 5",
                     "rewards": {"format": 0.5, "correct": 0.3}, "combined_reward": pytest.approx(1.1),
                     "advantage": 3.0, "length": 60.0}


def test_function_alert_adds_the_extremes_of_that_function(tmp_path):
    rewards, advantages, prompts, completions = batch()
    writer = EvidenceSink(tmp_path, NAMES, [1.0, 1.0], per_side=1)
    writer.write(5, [event("GRPORewardFunctionFalling", reward_fn="correct")], rewards, advantages=advantages,
                 prompts=prompts, completions=completions)
    chosen = [(s["reason"], s["index"]) for s in read_evidence(tmp_path)[0]["samples"]]
    assert chosen == [("highest advantage", 5), ("lowest advantage", 1), ("highest correct", 1), ("lowest correct", 0)]


def test_without_advantages_the_combined_reward_ranks_and_resolved_events_keep_nothing(tmp_path):
    rewards, _, _, _ = batch()
    writer = EvidenceSink(tmp_path, NAMES, [1.0, 1.0], per_side=1)
    assert writer.write(5, [event(state=AlertState.RESOLVED)], rewards) == 0
    writer.write(6, [event(step=6)], rewards)
    samples = read_evidence(tmp_path)[0]["samples"]
    assert [(s["reason"], s["index"]) for s in samples] == [("highest combined reward", 3), ("lowest combined reward", 4)]
    assert samples[0]["completion"] is None and samples[0]["advantage"] is None


def test_caps_per_alert_and_per_run_and_text_length(tmp_path):
    rewards, advantages, prompts, completions = batch()
    writer = EvidenceSink(tmp_path, NAMES, [1.0, 1.0], max_per_alert=2, max_per_run=3, max_chars=4)
    for step in range(1, 5):
        writer.write(step, [event(step=step)], rewards, advantages=advantages, prompts=prompts, completions=completions)
    assert [r["step"] for r in read_evidence(tmp_path)] == [1, 2]
    writer.write(9, [event("GRPOKLTooHigh", 9), event("GRPORewardFalling", 9)], rewards, advantages=advantages)
    assert [r["alertname"] for r in read_evidence(tmp_path)][2:] == ["GRPOKLTooHigh"]
    assert writer.skipped == 3
    assert read_evidence(tmp_path)[0]["samples"][0]["completion"] == "comp"
    assert read_evidence(tmp_path)[0]["samples"][0]["prompt"] == "pt 5"  # the end of a prompt is kept


def test_texts_that_do_not_match_the_batch_are_dropped_and_counted(tmp_path, caplog):
    rewards, advantages, prompts, _ = batch()
    writer = EvidenceSink(tmp_path, NAMES, [1.0, 1.0])
    writer.write(5, [event()], rewards, advantages=advantages, prompts=prompts, completions=["only one"])
    sample = read_evidence(tmp_path)[0]["samples"][0]
    assert sample["completion"] is None and sample["prompt"] == "prompt 5" and sample["rewards"]["format"] == 0.5
    assert writer.dropped_texts == 1 and "completions are not 6 strings" in caplog.text


def test_resume_drops_later_lines_and_a_torn_tail(tmp_path):
    rewards, advantages, _, _ = batch()
    writer = EvidenceSink(tmp_path, NAMES, [1.0, 1.0], max_per_alert=10)
    for step in (3, 6, 9):
        writer.write(step, [event(step=step)], rewards, advantages=advantages)
    path = tmp_path / "evidence.jsonl"
    path.write_text(path.read_text() + '{"step": 12, "alertn')  # a writer killed mid-line
    reopened = EvidenceSink(tmp_path, NAMES, [1.0, 1.0], max_per_alert=10, resume_after_step=6)
    assert [r["step"] for r in read_evidence(tmp_path)] == [3, 6] and reopened.lines == 2
    assert path.read_text().endswith("\n")


def test_a_line_that_is_json_but_no_record_is_dropped_on_reopen_not_a_crash(tmp_path):
    rewards, advantages, _, _ = batch()
    writer = EvidenceSink(tmp_path, NAMES, [1.0, 1.0], max_per_alert=10)
    writer.write(3, [event(step=3)], rewards, advantages=advantages)
    path = tmp_path / "evidence.jsonl"
    path.write_text(path.read_text() + "3\n[]\n")
    assert [r["step"] for r in read_evidence(tmp_path)] == [3]
    reopened = EvidenceSink(tmp_path, NAMES, [1.0, 1.0], max_per_alert=10, resume_after_step=6)
    assert reopened.lines == 1 and len(path.read_text().splitlines()) == 1


def test_monitor_keeps_evidence_of_a_firing_alert_and_summary_names_the_line(tmp_path):
    from rewardscope.alerting.engine import AlertEngine

    engine = AlertEngine.default({"alerts": {"kl_too_high": {"threshold": 0.5, "for_steps": 1}}})
    specs = [RewardFunctionSpec("format", 1.0, 0.0, 1.0), RewardFunctionSpec("correct", 1.0, 0.0, 1.0)]
    with RewardMonitor("ev", specs, group_size=3, run_dir=tmp_path, alerts=engine) as monitor:
        rewards = {"format": np.array([1, 0, 1, 0, 1, 0.0]), "correct": np.array([0, 0, 1, 1, 0, 1.0])}
        texts = [f"<answer>{i}</answer>" for i in range(6)]
        monitor.record_step(1, rewards, kl=0.1, completions=texts, prompts=["p"] * 6)
        monitor.record_step(2, rewards, kl=0.9, completions=texts, prompts=["p"] * 6, advantages=np.arange(6.0))
        assert monitor.record_step(3, rewards, kl=0.9, completions=texts[:2]) is None  # a bad input: skipped, counted
        assert monitor.summary()["skipped_steps"] == {"length_mismatch": 1}
    (record,) = read_evidence(tmp_path / "ev")
    assert record["alertname"] == "GRPOKLTooHigh" and record["step"] == 2
    assert record["samples"][0]["completion"] == "<answer>5</answer>" and record["samples"][0]["advantage"] == 5.0
    assert evidence_index(tmp_path / "ev")[0]["line"] == 1
    text = render(summarize(tmp_path / "ev"))
    assert f"evidence: GRPOKLTooHigh at step 2: 4 completions in {tmp_path / 'ev' / 'evidence.jsonl'}:1" in text
    assert json.loads((tmp_path / "ev" / "evidence.jsonl").read_text().splitlines()[0])["labels"]["run_id"] == "ev"


def test_a_failing_evidence_write_is_counted_and_training_goes_on(tmp_path):
    from rewardscope.alerting.engine import AlertEngine

    engine = AlertEngine.default({"alerts": {"kl_too_high": {"threshold": 0.5, "for_steps": 1}}})
    with RewardMonitor("broken", ["r"], group_size=2, run_dir=tmp_path, alerts=engine) as monitor:
        (tmp_path / "broken" / "evidence.jsonl").mkdir()  # appending to it now fails with an OSError
        assert monitor.record_step(1, {"r": np.array([0.0, 1.0])}, kl=0.9, completions=["a", "b"]) is not None
        assert monitor.record_step(2, {"r": np.array([0.0, 1.0])}, kl=0.1) is not None
        assert monitor.summary()["sink_errors"] == {"evidence": 1}
