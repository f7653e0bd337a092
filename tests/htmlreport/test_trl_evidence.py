"""TRL's GRPOTrainer through RewardScopeCallback: the completion texts reach the evidence of an alert, and the
probe prompts are answered greedily every step."""

from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="the trainer needs torch (rewardscope[train])")
pytest.importorskip("trl", reason="TRL is a dev dependency (pip install rewardscope[trl])")

from rewardscope.trainer.data import chat_messages, generate_problems
from rewardscope.trainer.rewards import check_answer, format_exact

pytestmark = pytest.mark.slow  # a training run


def test_trl_run_keeps_completions_as_evidence_and_probe_answers(tiny_model, tmp_path):
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    from rewardscope import RewardMonitor
    from rewardscope.alerting.engine import AlertEngine
    from rewardscope.exporter.evidence import read_evidence
    from rewardscope.integrations.trl import RewardScopeCallback, reward_specs
    from rewardscope.trainer.probes import ProbeRecorder, read_probes

    torch.set_num_threads(1)
    functions = [format_exact, check_answer]
    problems = generate_problems(64, seed=0)
    dataset = Dataset.from_list([{"prompt": chat_messages(p.question), "answer": p.answer} for p in problems])
    # Any update moves the KL above this threshold: the alert fires at the first step with a non-zero KL.
    engine = AlertEngine.default({"alerts": {"kl_too_high": {"threshold": 1e-7, "for_steps": 1}}})
    monitor = RewardMonitor("trl-evidence", reward_specs(functions), group_size=4, run_dir=tmp_path, alerts=engine)
    probes = ProbeRecorder(monitor.run_directory, ["What is 2 + 3?", "What is 9 - 4?"], every=1, total_steps=3,
                           expected=["5", "5"])
    callback = RewardScopeCallback(monitor, probes=probes, probe_max_new_tokens=12)
    args = GRPOConfig(
        output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, max_steps=3, per_device_train_batch_size=8,
        num_generations=4, max_completion_length=16, beta=0.04, learning_rate=1e-3, logging_steps=1,
        save_strategy="no", report_to="none", disable_tqdm=True, seed=0,
    )
    trainer = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(str(tiny_model)),
        reward_funcs=callback.wrap(functions),
        args=args,
        train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(str(tiny_model)),
        peft_config=LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"),
        callbacks=[callback],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train()
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
