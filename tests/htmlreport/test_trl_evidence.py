"""TRL's GRPOTrainer through RewardScopeCallback: the completion texts reach the evidence of an alert, and the
probe prompts are answered greedily every step."""

from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="the trainer needs torch (rewardscope[train])")
pytest.importorskip("trl", reason="TRL is a dev dependency (pip install rewardscope[trl])")

from rewardscope.trainer.data import generate_problems
from rewardscope.trainer.rewards import check_answer, format_exact

pytestmark = pytest.mark.slow  # a training run


def test_trl_run_keeps_completions_as_evidence_and_probe_answers(tiny_model, tmp_path):
    from trl_support import train_tiny_trl

    from rewardscope import RewardMonitor
    from rewardscope.alerting.engine import AlertEngine
    from rewardscope.exporter.evidence import read_evidence
    from rewardscope.integrations.trl import RewardScopeCallback, reward_specs
    from rewardscope.trainer.probes import ProbeRecorder, read_probes

    functions = [format_exact, check_answer]
    problems = generate_problems(64, seed=0)  # the problems train_tiny_trl trains on
    # Any update moves the KL above this threshold: the alert fires at the first step with a non-zero KL.
    engine = AlertEngine.default({"alerts": {"kl_too_high": {"threshold": 1e-7, "for_steps": 1}}})
    monitor = RewardMonitor("trl-evidence", reward_specs(functions), group_size=4, run_dir=tmp_path, alerts=engine)
    probes = ProbeRecorder(monitor.run_directory, ["What is 2 + 3?", "What is 9 - 4?"], every=1, total_steps=3,
                           expected=["5", "5"])
    callback = RewardScopeCallback(monitor, probes=probes, probe_max_new_tokens=12)
    train_tiny_trl(tiny_model, tmp_path / "out", callback, functions)
    monitor.close()

    (record,) = read_evidence(tmp_path / "trl-evidence")
    assert record["alertname"] == "GRPOKLTooHigh" and record["step"] in (2, 3)
    assert len(record["samples"]) == 4
    for sample in record["samples"]:
        assert isinstance(sample["completion"], str) and isinstance(sample["length"], float)
        # The kept text is that sample's own completion: scoring it again gives the reward stored beside it.
        assert format_exact([sample["prompt"]], [sample["completion"]]) == [sample["rewards"]["format_exact"]]
        assert sample["prompt"] in {p.question for p in problems}  # the user message of the conversational prompt
        assert set(sample["rewards"]) == {"format_exact", "check_answer"} and sample["advantage"] is not None
    answers = read_probes(tmp_path / "trl-evidence")
    assert [r["step"] for r in answers] == [1, 2, 3]
    assert all(isinstance(a["answer"], str) and a["answer"] for r in answers for a in r["answers"])
    assert answers[0]["answers"][0]["prompt"] == "What is 2 + 3?" and answers[0]["answers"][0]["expected"] == "5"
