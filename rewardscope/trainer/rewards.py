"""Reward functions for math word problems, and loading custom ones.

Every reward function follows TRL's calling convention, so the same callables work in
our trainer and in TRL's GRPOTrainer:

    fn(prompts: list, completions: list, answer: list[str], **kwargs) -> list[float]

``completions`` holds either plain strings or chat messages (a list of
``{"role", "content"}`` dicts, as TRL passes for conversational datasets); the text of
the last message is scored. Each function declares the range of its scores as
``min_value`` / ``max_value`` attributes, which become the ``RewardFunctionSpec`` the
monitor uses to normalise and to detect out-of-range values.

The four built-in functions are those of the system we replace, with its flaws fixed:

- ``format_exact``: 3.0 when the whole completion is ``<reasoning>…</reasoning>``
  followed by ``<answer>…</answer>`` (only whitespace around and between), else 0.
  The old regex accepted any text before, between and after the tags.
- ``format_approx``: five checks worth +0.5 when met and -0.5 when not (-2.5 to 2.5):
  exactly one of each of the four tags, and the four in the right order.
- ``check_answer``: 3.0 when the text inside ``<answer>`` equals the true answer, 1.5 when
  equal after stripping whitespace, thousands separators, currency signs and units, 0.5
  when within 10% of it, 0.25 within 20%, -1.0 when wrong or missing. Closeness is
  measured as ``|guess - truth| <= 0.1 * |truth|``, which is the old ratio test for any
  non-zero truth and never divides, so a true answer of 0 only accepts 0.
- ``check_numbers``: 1.5 when the first number inside ``<answer>`` equals the true answer,
  else 0. Signs and thousands separators are parsed ("-1,234.5" is -1234.5).

None of them prints anything.
"""

from __future__ import annotations

import importlib
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from rewardscope.trainer.errors import RewardSpecError

REASONING_START = "<reasoning>"
REASONING_END = "</reasoning>"
ANSWER_START = "<answer>"
ANSWER_END = "</answer>"
FORMAT_TAGS = (REASONING_START, REASONING_END, ANSWER_START, ANSWER_END)

RewardCallable = Callable[..., Sequence[float]]

# Text between tags may contain anything except another format tag; that is what makes a
# completion with two answer blocks fail the exact format.
_NO_TAG = r"(?:(?!</?(?:reasoning|answer)>).)"
_EXACT_FORMAT = re.compile(
    rf"\s*<reasoning>{_NO_TAG}+?</reasoning>\s*<answer>({_NO_TAG}+?)</answer>\s*",
    flags=re.DOTALL,
)
_ANSWER_BLOCK = re.compile(r"<answer>(.*?)</answer>", flags=re.DOTALL)
# A number: optional sign, then either digits grouped by thousands separators or plain
# digits, then an optional decimal part; or a bare decimal part (".5").
_NUMBER = r"[-+\u2212]?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
_NUMBER_RE = re.compile(_NUMBER)
# An answer that is one number, optionally with a currency sign before it and a unit or
# percent sign after it ("$1,234.50", "12 apples", "-3 %").
_SINGLE_NUMBER_ANSWER = re.compile(
    rf"[$€£]?\s*({_NUMBER})\s*(?:%|[A-Za-z][A-Za-z .]*)?\.?",
)


def reward_range(min_value: float | None, max_value: float | None) -> Callable[[RewardCallable], RewardCallable]:
    """Decorator that declares the range of a reward function's scores for the monitor."""

    def mark(fn: RewardCallable) -> RewardCallable:
        fn.min_value = min_value  # type: ignore[attr-defined]
        fn.max_value = max_value  # type: ignore[attr-defined]
        return fn

    return mark


def completion_text(completion: Any) -> str:
    """The text of one completion, whether a string or a list of chat messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    raise TypeError(f"a completion must be a string or a list of chat messages, got {type(completion).__name__}")


def parse_number(text: str) -> float | None:
    """The first number in ``text`` with its sign and thousands separators, or None."""
    match = _NUMBER_RE.search(text)
    if match is None:
        return None
    return _to_float(match.group(0))


def _to_float(number: str) -> float:
    return float(number.replace(",", "").replace("\u2212", "-"))


def normalised_number(text: str) -> float | None:
    """The value of an answer that is a single number once whitespace, commas,
    currency signs and units are stripped ("$ 1,234 apples" -> 1234.0); None otherwise."""
    match = _SINGLE_NUMBER_ANSWER.fullmatch(text.strip())
    if match is None:
        return None
    return _to_float(match.group(1))


def extract_answer(text: str) -> str | None:
    """The text inside the first ``<answer>…</answer>`` block, or None when there is none."""
    match = _ANSWER_BLOCK.search(text)
    return None if match is None else match.group(1)


def canonical_answer(answer: str) -> str:
    """The true answer as stored for exact comparison: stripped, without thousands separators."""
    return answer.strip().replace(",", "")


def score_format_exact(text: str) -> float:
    """3.0 when the whole text is the reasoning block followed by the answer block."""
    return 3.0 if _EXACT_FORMAT.fullmatch(text) is not None else 0.0


def score_format_approx(text: str) -> float:
    """Sum of five +-0.5 checks: one of each tag, and the tags in order."""
    score = 0.0
    for tag in FORMAT_TAGS:
        score += 0.5 if text.count(tag) == 1 else -0.5
    positions = [text.find(tag) for tag in FORMAT_TAGS]
    in_order = all(p >= 0 for p in positions) and positions == sorted(positions)
    score += 0.5 if in_order else -0.5
    return score


def score_check_answer(text: str, answer: str) -> float:
    """Tiered correctness score of the answer block against the true answer."""
    guess = extract_answer(text)
    if guess is None:
        return -1.0
    if guess == answer:
        return 3.0
    truth = normalised_number(answer)
    value = normalised_number(guess)
    if truth is None or value is None:
        # Non-numeric truth: only a match after stripping whitespace counts.
        return 1.5 if guess.strip() == answer.strip() and guess.strip() else -1.0
    if value == truth:
        return 1.5
    error = abs(value - truth)
    if error <= 0.1 * abs(truth):
        return 0.5
    if error <= 0.2 * abs(truth):
        return 0.25
    return -1.0


def score_check_numbers(text: str, answer: str) -> float:
    """1.5 when the first number inside the answer block equals the true answer."""
    guess = extract_answer(text)
    truth = normalised_number(answer)
    if truth is None:
        truth = parse_number(answer)
    if guess is None or truth is None:
        return 0.0
    value = parse_number(guess)
    return 1.5 if value is not None and value == truth else 0.0


def is_correct(completion: Any, answer: str) -> bool:
    """Whether a completion's answer block holds the true answer (exactly or once
    stripped); the measure of eval accuracy."""
    return score_check_answer(completion_text(completion), answer) >= 1.5


def _answers(answer: Sequence[str] | None, n: int) -> Sequence[str]:
    if answer is None:
        raise ValueError("this reward function needs the true answers (the `answer` column)")
    if len(answer) != n:
        raise ValueError(f"got {n} completions but {len(answer)} answers")
    return answer


@reward_range(0.0, 3.0)
def format_exact(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """3.0 when the completion is exactly the reasoning block then the answer block, else 0."""
    return [score_format_exact(completion_text(c)) for c in completions]


@reward_range(-2.5, 2.5)
def format_approx(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """Partial format credit: five +-0.5 checks on tag counts and order."""
    return [score_format_approx(completion_text(c)) for c in completions]


@reward_range(-1.0, 3.0)
def check_answer(
    prompts: Sequence[Any], completions: Sequence[Any], answer: Sequence[str] | None = None, **kwargs: Any
) -> list[float]:
    """Tiered answer correctness: 3.0, 1.5, 0.5, 0.25 or -1.0."""
    answers = _answers(answer, len(completions))
    return [score_check_answer(completion_text(c), a) for c, a in zip(completions, answers)]


@reward_range(0.0, 1.5)
def check_numbers(
    prompts: Sequence[Any], completions: Sequence[Any], answer: Sequence[str] | None = None, **kwargs: Any
) -> list[float]:
    """1.5 when the first number in the answer block equals the true answer, else 0."""
    answers = _answers(answer, len(completions))
    return [score_check_numbers(completion_text(c), a) for c, a in zip(completions, answers)]


BUILTIN_REWARDS: dict[str, RewardCallable] = {
    "format_exact": format_exact,
    "format_approx": format_approx,
    "check_answer": check_answer,
    "check_numbers": check_numbers,
}
DEFAULT_REWARD_FNS = ("format_exact", "format_approx", "check_answer", "check_numbers")


@dataclass(frozen=True)
class RewardFunction:
    """A reward function with its name, weight in the total reward and declared range.

    Weight 0 makes a monitor-only ("gold") reward: it is computed and monitored every step
    but does not enter the total reward nor the advantages.
    """

    name: str
    fn: RewardCallable
    weight: float = 1.0
    min_value: float | None = None
    max_value: float | None = None

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        scores = self.fn(prompts, completions, **kwargs)
        values = [float(s) if s is not None else math.nan for s in scores]
        if len(values) != len(completions):
            raise ValueError(f"reward function {self.name} returned {len(values)} scores for {len(completions)} completions")
        return values


def import_from_working_directory(module_name: str) -> ModuleType:
    """Import ``module_name`` with the working directory first on the path, as ``python -m``
    would: the ``rewardscope`` console script does not put it there. The path is restored
    afterwards, so later imports are not shadowed by files that happen to be in the directory.

    This runs the module's code with the trainer's rights (see docs/security.md).
    """
    cwd = os.getcwd()
    if cwd in sys.path or "" in sys.path:
        return importlib.import_module(module_name)
    sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    finally:
        if cwd in sys.path:
            sys.path.remove(cwd)


def parse_reward_spec(spec: str) -> RewardFunction:
    """Resolve ``name[=weight]`` (a built-in) or ``module:function[=weight]`` (an import)."""
    target, weight = spec, 1.0
    if "=" in spec:
        target, _, weight_text = spec.rpartition("=")
        try:
            weight = float(weight_text)
        except ValueError:
            raise RewardSpecError(f"reward function {spec!r}: weight {weight_text!r} is not a number") from None
        if not math.isfinite(weight):
            raise RewardSpecError(f"reward function {spec!r}: weight must be finite")
    target = target.strip()
    if ":" in target:
        module_name, _, attr = target.partition(":")
        try:
            module = import_from_working_directory(module_name)
        except ImportError as exc:
            raise RewardSpecError(f"reward function {spec!r}: cannot import module {module_name!r}: {exc}") from exc
        fn = getattr(module, attr, None)
        if fn is None:
            raise RewardSpecError(f"reward function {spec!r}: module {module_name!r} has no attribute {attr!r}")
        if not callable(fn):
            raise RewardSpecError(f"reward function {spec!r}: {module_name}.{attr} is not callable")
        name = attr
    elif target in BUILTIN_REWARDS:
        fn, name = BUILTIN_REWARDS[target], target
    else:
        known = ", ".join(BUILTIN_REWARDS)
        raise RewardSpecError(f"unknown reward function {target!r}: use one of {known} or module:function")
    return RewardFunction(
        name=str(getattr(fn, "reward_name", name)),
        fn=fn,
        weight=weight,
        min_value=getattr(fn, "min_value", None),
        max_value=getattr(fn, "max_value", None),
    )


def resolve_reward_functions(specs: Sequence[str]) -> list[RewardFunction]:
    """Resolve every spec; at least one must have a non-zero weight, and names are unique."""
    functions = [parse_reward_spec(s) for s in specs]
    if not functions:
        raise RewardSpecError("at least one reward function is needed")
    names = [f.name for f in functions]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RewardSpecError(f"reward function names must be unique, repeated: {', '.join(duplicates)}")
    if all(f.weight == 0 for f in functions):
        raise RewardSpecError("every reward function has weight 0: nothing would train the policy")
    return functions
