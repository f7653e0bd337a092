"""Math word problems: the built-in generator, GSM8K-style JSONL files and the HF dataset.

A problem is a question, its true answer (a number as text, without thousands
separators) and, for supervised warm-up, a worked solution in the answer format. The
trainer turns a question into a prompt with the tokenizer's chat template and a system
prompt that asks for that format.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rewardscope.trainer.errors import DataError
from rewardscope.trainer.rewards import (
    ANSWER_END,
    ANSWER_START,
    REASONING_END,
    REASONING_START,
    canonical_answer,
)

SYSTEM_PROMPT = (
    f"Think step by step inside {REASONING_START} {REASONING_END}, "
    f"then give the final number inside {ANSWER_START} {ANSWER_END}."
)


@dataclass(frozen=True)
class Problem:
    """One question with its true answer and, when known, a worked solution."""

    question: str
    answer: str
    solution: str | None = None


def format_solution(reasoning: str, answer: str) -> str:
    """A completion in the exact answer format."""
    return f"{REASONING_START}{reasoning}{REASONING_END}{ANSWER_START}{answer}{ANSWER_END}"


def chat_messages(question: str, system_prompt: str | None = SYSTEM_PROMPT) -> list[dict[str, str]]:
    """The chat messages of a prompt: the system prompt (if any), then the question."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": question})
    return messages


# Templates of the generated problems: (question, operator). Names and items vary so the
# model has to find the numbers rather than memorise positions.
_NAMES = ("Ana", "Ben", "Chloe", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivan", "Jo", "Kim", "Leo")
_ITEMS = ("apples", "books", "coins", "pens", "cards", "eggs", "shells", "stamps", "marbles", "cups")
_TEMPLATES = (
    ("{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?", "+"),
    ("{name} has {a} {item} and gives away {b}. How many {item} are left?", "-"),
    ("{name} buys {a} bags with {b} {item} in each. How many {item} in total?", "*"),
    ("There are {a} {item} in a box and {b} in another. How many {item} altogether?", "+"),
    ("{name} had {a} {item} and lost {b}. How many {item} does {name} have?", "-"),
    ("{name} makes {a} rows of {b} {item}. How many {item} is that?", "*"),
)


def generate_problems(count: int, seed: int = 0, max_operand: int = 9) -> list[Problem]:
    """``count`` arithmetic word problems (+, -, *) with operands in 0..max_operand.

    Seeded and deterministic; subtraction never goes below zero. The solution's
    reasoning is the arithmetic itself ("7 - 3 = 4").
    """
    if count < 0 or max_operand < 1:
        raise DataError("count must be >= 0 and max_operand >= 1")
    rng = random.Random(seed)
    problems = []
    for _ in range(count):
        template, op = rng.choice(_TEMPLATES)
        a, b = rng.randint(0, max_operand), rng.randint(0, max_operand)
        if op == "-" and b > a:
            a, b = b, a
        result = a + b if op == "+" else a - b if op == "-" else a * b
        question = template.format(name=rng.choice(_NAMES), item=rng.choice(_ITEMS), a=a, b=b)
        answer = str(result)
        problems.append(Problem(question, answer, format_solution(f"{a} {op} {b} = {result}", answer)))
    return problems


def parse_gsm8k_answer(text: str) -> str:
    """The final answer of a GSM8K answer field: the text after the last ``####``."""
    if "####" not in text:
        raise DataError(f"answer has no '#### N' line: {text[-80:]!r}")
    return canonical_answer(text.rsplit("####", 1)[1])


def gsm8k_record_to_problem(record: dict[str, Any], where: str = "record") -> Problem:
    """A GSM8K record (``question``, ``answer`` ending in ``#### N``) as a Problem."""
    if not isinstance(record, dict) or not isinstance(record.get("question"), str) or not isinstance(record.get("answer"), str):
        raise DataError(f"{where}: expected an object with string fields 'question' and 'answer'")
    full = record["answer"]
    answer = parse_gsm8k_answer(full)
    reasoning = full.rsplit("####", 1)[0].strip()
    return Problem(record["question"].strip(), answer, format_solution(reasoning, answer) if reasoning else None)


def load_jsonl(path: str | Path) -> list[Problem]:
    """Problems from a GSM8K-style JSONL file, one JSON object per line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"dataset file not found: {path}")
    problems = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}: invalid JSON: {exc.msg}") from None
            try:
                problems.append(gsm8k_record_to_problem(record, f"{path}:{number}"))
            except DataError as exc:
                raise DataError(f"{path}:{number}: {exc}") from None
    if not problems:
        raise DataError(f"{path}: no problems")
    return problems


def load_hf_gsm8k(split: str = "train") -> list[Problem]:
    """The ``openai/gsm8k`` dataset (config "main") through the ``datasets`` library."""
    try:
        import datasets
    except ImportError:
        raise DataError("the gsm8k dataset needs the optional `datasets` package (pip install datasets)") from None
    try:
        rows = datasets.load_dataset("openai/gsm8k", "main", split=split)
    except Exception as exc:  # offline, hub down, no cache: all end the same way
        raise DataError(
            f"cannot load openai/gsm8k from the Hugging Face hub ({type(exc).__name__}: {exc}); "
            "without network access use --dataset generated or a local JSONL file"
        ) from exc
    return [gsm8k_record_to_problem(dict(r), f"openai/gsm8k row {i}") for i, r in enumerate(rows)]


def load_problems(dataset: str, num_problems: int, seed: int, max_operand: int) -> list[Problem]:
    """Problems from ``generated``, ``gsm8k`` or a path to a JSONL file."""
    if dataset == "generated":
        return generate_problems(num_problems, seed=seed, max_operand=max_operand)
    if dataset == "gsm8k":
        return load_hf_gsm8k()
    return load_jsonl(dataset)


def split_problems(problems: Sequence[Problem], train_fraction: float, seed: int) -> tuple[list[Problem], list[Problem]]:
    """Shuffle with ``seed`` and split into train and eval; both sides get at least one
    problem when there are two or more (eval is empty for train_fraction 1.0)."""
    if not 0.0 < train_fraction <= 1.0:
        raise DataError(f"train_fraction must be in (0, 1], got {train_fraction}")
    order = np.random.default_rng(seed).permutation(len(problems))
    shuffled = [problems[i] for i in order]
    n_train = round(train_fraction * len(shuffled))
    if train_fraction < 1.0 and len(shuffled) >= 2:
        n_train = min(max(n_train, 1), len(shuffled) - 1)
    n_train = max(n_train, 1)
    return shuffled[:n_train], shuffled[n_train:]


class PromptSampler:
    """Draws prompts for each step: epochs of seeded permutations, no repeats within an
    epoch. Its state goes into checkpoints so a resumed run sees the same prompts."""

    def __init__(self, size: int, seed: int):
        if size < 1:
            raise DataError("the training split is empty")
        self.size = size
        self._rng = np.random.default_rng(seed)
        self._order: list[int] = []
        self._position = 0

    def next_indices(self, count: int) -> list[int]:
        """The next ``count`` problem indices."""
        indices = []
        while len(indices) < count:
            if self._position >= len(self._order):
                self._order = self._rng.permutation(self.size).tolist()
                self._position = 0
            indices.append(self._order[self._position])
            self._position += 1
        return indices

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self._rng.bit_generator.state, "order": list(self._order), "position": self._position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rng.bit_generator.state = state["rng"]
        self._order = list(state["order"])
        self._position = int(state["position"])


def corpus_texts(problems: Iterable[Problem]) -> list[str]:
    """Questions and solutions as plain texts (tokenizer training material)."""
    texts = []
    for p in problems:
        texts.append(p.question)
        if p.solution:
            texts.append(p.solution)
    return texts
