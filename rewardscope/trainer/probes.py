"""Probe prompts: the same few prompts answered greedily every K steps, to see an answer change.

``ProbeRecorder`` decides at which steps to probe (the first step it sees, every ``every``
steps, and the last step of the run) and appends the greedy answers to
``<run_dir>/probes.jsonl``, one line per probed step: ``{"step", "answers": [{"prompt",
"answer", "expected"}]}``. The report shows, for each probe prompt, the answer at the first
probed step, at the probed step nearest before each alert, and at the last one.

Bounded: at most ``max_records`` lines (``every`` is raised so that a run of
``total_steps`` fits), prompts and answers cut to ``max_chars`` characters. A run resumed
from a checkpoint drops the lines after it.

Our trainer takes the probe prompts from the eval split (``--probe-every K``,
``--probe-count N``); the TRL callback takes any prompts and answers them with
``hf_greedy_answers`` (``transformers``' ``generate``, greedy).

Usage::

    from rewardscope.trainer.probes import ProbeRecorder, read_probes
    probes = ProbeRecorder("/tmp/run", ["What is 2+3?"], every=10, total_steps=100, expected=["5"])
    for step in range(1, 101):
        if probes.due(step):
            probes.write(step, ["5"])
    [r["step"] for r in read_probes("/tmp/run")][:3]     # [1, 10, 20]
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..exporter.evidence import keep_records, whole_records

PROBES_FILE = "probes.jsonl"


class ProbeRecorder:
    """Appends the probe answers of selected steps to ``<run_dir>/probes.jsonl`` (see the module docstring)."""

    def __init__(self, run_dir: str | os.PathLike, prompts: Sequence[str], every: int, *, total_steps: int | None = None,
                 expected: Sequence[str | None] | None = None, max_chars: int = 500, max_records: int = 200,
                 resume_after_step: int | None = None) -> None:
        if every < 1 or max_records < 2 or max_chars < 1:
            raise ValueError("every must be >= 1, max_records >= 2 and max_chars >= 1")
        if expected is not None and len(expected) != len(prompts):
            raise ValueError(f"{len(expected)} expected answers for {len(prompts)} probe prompts")
        self.path = Path(run_dir) / PROBES_FILE
        self.prompts = [p[:max_chars] for p in prompts]
        self.expected = list(expected) if expected is not None else [None] * len(prompts)
        self.total_steps = total_steps
        # The first and last step are always probed; the rest of the budget is spread evenly.
        self.every = every if total_steps is None else max(every, math.ceil(total_steps / (max_records - 2)))
        self.max_chars = max_chars
        self.max_records = max_records
        self.records = len(keep_records(self.path, resume_after_step, is_probe_record)) if self.path.parent.is_dir() else 0
        self._seen_first = self.records > 0

    def due(self, step: int) -> bool:
        if not self.prompts or self.records >= self.max_records:
            return False
        return not self._seen_first or step % self.every == 0 or step == self.total_steps

    def record_if_due(self, step: int, answer: Callable[[list[str]], Sequence[str]]) -> bool:
        """Write ``answer(prompts)`` for ``step`` when it is due; return whether it was."""
        if not self.due(step):
            return False
        self.write(step, answer(self.prompts))
        return True

    def write(self, step: int, answers: Sequence[str]) -> None:
        if len(answers) != len(self.prompts):
            raise ValueError(f"{len(answers)} answers for {len(self.prompts)} probe prompts")
        record = {"step": int(step), "answers": [{"prompt": p, "answer": str(a)[: self.max_chars], "expected": e}
                                                 for p, a, e in zip(self.prompts, answers, self.expected)]}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        self.records += 1
        self._seen_first = True


def trainer_probes(trainer: Any, run_dir: str | os.PathLike | None, resume_after_step: int | None) -> ProbeRecorder | None:
    """The recorder of our GRPOTrainer: the first ``--probe-count`` eval problems every ``--probe-every`` steps
    (None when probing is off, the run has no run directory or no eval split)."""
    config = trainer.config
    problems = trainer.eval_problems[: config.probe_count]
    if not config.probe_every or run_dir is None or not problems:
        return None
    return ProbeRecorder(run_dir, [p.question for p in problems], config.probe_every, total_steps=config.num_steps,
                         expected=[p.answer for p in problems], resume_after_step=resume_after_step)


def is_probe_record(record: Any) -> bool:
    return isinstance(record, dict) and isinstance(record.get("step"), int) and isinstance(record.get("answers"), list)


def read_probes(run_dir: str | os.PathLike) -> list[dict]:
    """Every whole probe record of a run, in step order; [] when the run has none."""
    path = Path(run_dir) / PROBES_FILE
    if not path.exists():
        return []
    records = [record for _, record in whole_records(path, path.read_text(encoding="utf-8"), is_probe_record)]
    return sorted(records, key=lambda r: r["step"])


def hf_greedy_answers(model: Any, tokenizer: Any, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
    """Greedy answers of a transformers causal LM to ``prompts`` (chat template applied when the tokenizer has one)."""
    import torch

    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
             if getattr(tokenizer, "chat_template", None) else p for p in prompts]
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues each prompt from its last token
    try:
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    finally:
        tokenizer.padding_side = side
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=tokenizer.pad_token_id)
    finally:
        model.train(was_training)
    return tokenizer.batch_decode(output[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
