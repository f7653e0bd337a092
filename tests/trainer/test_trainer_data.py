"""Data: the built-in generator, GSM8K-style JSONL, the HF dataset offline, splits, sampling."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch", reason="the trainer needs torch (rewardscope[train])")

from rewardscope.trainer.data import (
    PromptSampler,
    generate_problems,
    load_hf_gsm8k,
    load_jsonl,
    load_problems,
    parse_gsm8k_answer,
    split_problems,
)
from rewardscope.trainer.errors import DataError
from rewardscope.trainer.rewards import format_exact, is_correct


def test_generator_is_seeded_and_consistent():
    a = generate_problems(50, seed=3)
    assert a == generate_problems(50, seed=3)
    assert a != generate_problems(50, seed=4)
    for p in a:
        assert is_correct(p.solution, p.answer)  # every worked solution is right
        assert format_exact([None], [p.solution]) == [3.0]  # and in the exact format
        assert int(p.answer) >= 0


def test_generator_respects_max_operand():
    problems = generate_problems(200, seed=0, max_operand=3)
    assert max(int(p.answer) for p in problems) <= 9


def test_jsonl_gsm8k_records(tmp_path):
    path = tmp_path / "math.jsonl"
    records = [
        {"question": "Two plus two?", "answer": "2 + 2 = 4\n#### 4"},
        {"question": "Big?", "answer": "a lot\n#### 1,234"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    problems = load_jsonl(path)
    assert [p.answer for p in problems] == ["4", "1234"]
    assert problems[0].solution == "<reasoning>2 + 2 = 4</reasoning><answer>4</answer>"
    assert load_problems(str(path), 0, 0, 9) == problems


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"question": "q", "answer": "no marker"}', "has no '#### N' line"),
        ('{"question": "q"}', "string fields"),
        ("not json", "invalid JSON"),
        ("", "no problems"),
    ],
)
def test_jsonl_errors_name_the_line(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_jsonl(path)


def test_missing_jsonl_file():
    with pytest.raises(DataError, match="not found"):
        load_jsonl("/nonexistent/file.jsonl")


def test_gsm8k_answer_parsing():
    assert parse_gsm8k_answer("steps\n#### -1,000") == "-1000"


def test_hf_dataset_offline_gives_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    datasets = pytest.importorskip("datasets")
    # Both libraries read the offline switch when first imported, which may have happened
    # earlier in the session: set it where they look now too, so nothing waits on a network.
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    with pytest.raises(DataError, match="cannot load openai/gsm8k"):
        load_hf_gsm8k()


def test_split_by_train_fraction():
    problems = generate_problems(100, seed=0)
    train, held_out = split_problems(problems, 0.9, seed=1)
    assert len(train) == 90 and len(held_out) == 10
    assert sorted(map(repr, train + held_out)) == sorted(map(repr, problems))
    assert split_problems(problems, 1.0, seed=1)[1] == []
    with pytest.raises(DataError):
        split_problems(problems, 0.0, seed=1)


def test_sampler_covers_an_epoch_and_resumes_exactly():
    sampler = PromptSampler(10, seed=0)
    first = sampler.next_indices(10)
    assert sorted(first) == list(range(10))
    state = sampler.state_dict()
    expected = sampler.next_indices(7)
    resumed = PromptSampler(10, seed=99)
    resumed.load_state_dict(state)
    assert resumed.next_indices(7) == expected
