"""Reward functions: every score of the table, and each flaw of the old regexes fixed."""

from __future__ import annotations

import sys

import pytest

pytest.importorskip("torch", reason="the trainer needs torch (rewardscope[train])")

from rewardscope.trainer.errors import RewardSpecError
from rewardscope.trainer.rewards import (
    BUILTIN_REWARDS,
    check_answer,
    check_numbers,
    completion_text,
    format_approx,
    format_exact,
    is_correct,
    normalised_number,
    parse_number,
    parse_reward_spec,
    resolve_reward_functions,
)

GOOD = "<reasoning>3 + 4 = 7</reasoning><answer>7</answer>"


def one(fn, completion, answer=None):
    kwargs = {} if answer is None else {"answer": [answer]}
    return fn([None], [completion], **kwargs)[0]


# ---------------------------------------------------------------- format_exact 0 | 3.0
@pytest.mark.parametrize(
    "completion",
    [
        GOOD,
        "<reasoning>a</reasoning>\n\n<answer>7</answer>",
        "  \n<reasoning>multi\nline</reasoning> <answer>7</answer>\n",
        "<reasoning>3 < 4</reasoning><answer>7</answer>",  # '<' inside text is fine
    ],
)
def test_format_exact_scores_three_for_the_exact_format(completion):
    assert one(format_exact, completion) == 3.0


@pytest.mark.parametrize(
    "completion",
    [
        "Sure! " + GOOD,  # old flaw: text before the tags was accepted
        GOOD + " Hope that helps.",  # old flaw: text after
        "<reasoning>a</reasoning> so <answer>7</answer>",  # old flaw: text between
        "<reasoning>a</reasoning><answer>7</answer><answer>8</answer>",  # a second answer block
        "<reasoning>a <answer>7</answer></reasoning><answer>7</answer>",  # nested tag
        "<reasoning></reasoning><answer>7</answer>",  # empty reasoning
        "<reasoning>a</reasoning><answer></answer>",  # empty answer
        "<answer>7</answer><reasoning>a</reasoning>",  # wrong order
        "<reasoning>a</reasoning>",
        "",
    ],
)
def test_format_exact_scores_zero_otherwise(completion):
    assert one(format_exact, completion) == 0.0


# ---------------------------------------------------------------- format_approx, five +-0.5 checks
@pytest.mark.parametrize(
    "completion, expected",
    [
        (GOOD, 2.5),
        ("", -2.5),
        ("<reasoning>a</reasoning>", -0.5),  # two tags right (+1.0), two missing and no order (-1.5)
        ("<answer>7</answer><reasoning>a</reasoning>", 1.5),  # counts right, order wrong
        ("<reasoning>a</reasoning><reasoning>b</reasoning><answer>7</answer>", 0.5),  # duplicated tags
        ("junk " + GOOD + " junk", 2.5),  # partial credit does not look at surrounding text
    ],
)
def test_format_approx_counts_tags_and_order(completion, expected):
    assert one(format_approx, completion) == pytest.approx(expected)


def test_format_approx_stays_in_its_declared_range():
    for completion in ["", GOOD, "<answer>" * 5, "</reasoning></answer><answer><reasoning>"]:
        assert -2.5 <= one(format_approx, completion) <= 2.5


# ---------------------------------------------------------------- check_answer 3.0 / 1.5 / 0.5 / 0.25 / -1.0
def answer_block(text: str) -> str:
    return f"<reasoning>r</reasoning><answer>{text}</answer>"


@pytest.mark.parametrize(
    "guess, truth, expected",
    [
        ("7", "7", 3.0),  # exact
        (" 7 ", "7", 1.5),  # whitespace stripped
        ("1,234", "1234", 1.5),  # thousands separator
        ("$1,234.00", "1234", 1.5),  # currency and decimals
        ("12 apples", "12", 1.5),  # unit
        ("-1,234.5", "-1234.5", 1.5),  # sign and separators
        ("95", "100", 0.5),  # within 10%
        ("110", "100", 0.5),
        ("85", "100", 0.25),  # within 20%
        ("120", "100", 0.25),
        ("50", "100", -1.0),  # wrong
        ("-100", "100", -1.0),  # old flaw: signs were dropped, -100 matched 100
        ("-95", "-100", 0.5),  # negative truths keep their tiers
        ("seven", "7", -1.0),  # not a number
        ("0", "0", 3.0),  # old flaw: a true answer of 0 divided by zero
        ("0.0", "0", 1.5),
        ("1", "0", -1.0),
        ("0.05", "0", -1.0),  # no "close to zero" tier: 10% of 0 is 0
    ],
)
def test_check_answer_tiers(guess, truth, expected):
    assert one(check_answer, answer_block(guess), truth) == expected


def test_check_answer_missing_answer_scores_minus_one():
    assert one(check_answer, "<reasoning>r</reasoning> 7", "7") == -1.0
    assert one(check_answer, "", "7") == -1.0


def test_check_answer_reads_the_answer_block_even_with_imperfect_format():
    # Format has its own rewards; correctness is judged on the answer block alone.
    assert one(check_answer, "text <answer>7</answer> text", "7") == 3.0


# ---------------------------------------------------------------- check_numbers 1.5 | 0
@pytest.mark.parametrize(
    "guess, truth, expected",
    [
        ("7", "7", 1.5),
        ("The answer is 7 apples", "7", 1.5),  # first number in the answer
        ("7 then 8", "8", 0.0),  # only the first number counts
        ("-3", "-3", 1.5),  # old flaw: signs ignored
        ("-3", "3", 0.0),
        ("1,234", "1234", 1.5),  # old flaw: "1,234" read as 1
        ("1,234.5", "1,234.5", 1.5),
        ("0", "0", 1.5),
        ("none", "7", 0.0),
    ],
)
def test_check_numbers(guess, truth, expected):
    assert one(check_numbers, answer_block(guess), truth) == expected


def test_check_numbers_needs_an_answer_block():
    assert one(check_numbers, "7", "7") == 0.0


# ---------------------------------------------------------------- parsing helpers, conventions
@pytest.mark.parametrize(
    "text, value",
    [("-1,234.5", -1234.5), ("+3", 3.0), ("x .5 y", 0.5), ("12,34", 12.0), ("none", None), ("\u22125", -5.0)],
)
def test_parse_number(text, value):
    assert parse_number(text) == value


def test_normalised_number_accepts_only_a_single_number():
    assert normalised_number(" $ 1,000 dollars. ") == 1000.0
    assert normalised_number("7 or 8") is None
    assert normalised_number("") is None


def test_rewards_accept_chat_message_completions_as_trl_passes_them():
    messages = [{"role": "assistant", "content": GOOD}]
    assert format_exact([None], [messages]) == [3.0]
    assert completion_text(messages) == GOOD
    assert is_correct(messages, "7")


def test_reward_functions_print_nothing(capsys):
    for fn in BUILTIN_REWARDS.values():
        fn([None, None], [GOOD, "junk"], answer=["7", "7"], question=["q", "q"])
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_every_builtin_declares_its_range():
    ranges = {name: (fn.min_value, fn.max_value) for name, fn in BUILTIN_REWARDS.items()}
    assert ranges == {
        "format_exact": (0.0, 3.0),
        "format_approx": (-2.5, 2.5),
        "check_answer": (-1.0, 3.0),
        "check_numbers": (0.0, 1.5),
    }


def test_answer_functions_reject_mismatched_answers():
    with pytest.raises(ValueError, match="answers"):
        check_answer([None], [GOOD], answer=["7", "8"])
    with pytest.raises(ValueError, match="answer"):
        check_numbers([None], [GOOD])


# ---------------------------------------------------------------- --reward-fn specs
def test_builtin_spec_with_weight():
    f = parse_reward_spec("check_answer=2.5")
    assert (f.name, f.weight, f.min_value, f.max_value) == ("check_answer", 2.5, -1.0, 3.0)


def test_custom_module_function_spec_and_gold_weight(tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text(
        "def brevity(prompts, completions, **kwargs):\n"
        "    return [-len(c) / 100 for c in completions]\n"
        "brevity.min_value = -1.0\n"
        "brevity.max_value = 0.0\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    f = parse_reward_spec("my_rewards:brevity=0")
    assert (f.name, f.weight, f.min_value, f.max_value) == ("brevity", 0.0, -1.0, 0.0)
    assert f(["p"], ["abcd"]) == [-0.04]
    functions = resolve_reward_functions(["format_exact", "my_rewards:brevity=0"])
    assert [x.weight for x in functions] == [1.0, 0.0]
    sys.modules.pop("my_rewards", None)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("no_such_builtin", "unknown reward function"),
        ("no_such_module_xyz:fn", "cannot import module"),
        ("json:no_such_attr", "has no attribute"),
        ("json:__doc__", "not callable"),
        ("format_exact=heavy", "not a number"),
        ("format_exact=inf", "finite"),
    ],
)
def test_bad_reward_specs_give_clear_errors(spec, message):
    with pytest.raises(RewardSpecError, match=message):
        parse_reward_spec(spec)


def test_reward_function_sets_are_validated():
    with pytest.raises(RewardSpecError, match="unique"):
        resolve_reward_functions(["format_exact", "format_exact=2"])
    with pytest.raises(RewardSpecError, match="weight 0"):
        resolve_reward_functions(["format_exact=0"])
