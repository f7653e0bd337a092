"""What trainers pass: every input error is a StepInputError (or a counted skip), tensors are accepted, and a fuzz test
over record_step's arguments never gets anything else, keeps /metrics valid and records the next good step correctly."""

from __future__ import annotations

import datetime
import itertools
import subprocess

import numpy as np
import pytest

pytest.importorskip("hypothesis", reason="the fuzz tests need hypothesis (rewardscope[dev])")
import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from prometheus_client import generate_latest

from rewardscope import RewardFunctionSpec, RewardMonitor, StepInputError
from rewardscope.exporter.runstore import read_steps

SPECS = [RewardFunctionSpec("a", 1.0, 0.0, 1.0), RewardFunctionSpec("b", 0.5)]
GOOD = {"a": [0.0, 1.0, 1.0, 1.0], "b": [2.0, -2.0, 0.0, 4.0]}


def raising(**kwargs):
    return RewardMonitor("inputs", SPECS, group_size=2, run_dir=None, on_bad_input="raise", **kwargs)


@pytest.mark.parametrize("name, value", [("group_size", "x"), ("group_size", 0), ("group_size", True),
                                         ("max_completion_length", "x"), ("max_completion_length", -3)])
def test_bad_constructor_arguments_are_value_errors(name, value):
    with pytest.raises(ValueError, match=name):
        RewardMonitor("r", SPECS, run_dir=None, **{name: value})


@pytest.mark.parametrize("arguments, reason", [
    ({"step": 2 ** 63}, "not_numeric"),
    ({"step": -1}, "not_numeric"),
    ({"step": 1.0}, "not_numeric"),
    ({"group_size": "x"}, "not_numeric"),
    ({"max_completion_length": "x", "completion_lengths": [1, 2, 3, 4]}, "not_numeric"),
    ({"rewards": {"a": np.array([1j, 0, 1, 1]), "b": [0, 0, 0, 0]}}, "not_numeric"),
    ({"rewards": {"a": np.array(["2024-01-01"] * 4, dtype="datetime64[D]"), "b": [0, 0, 0, 0]}}, "not_numeric"),
    ({"rewards": {"a": ["1", "0", "1", "1"], "b": [0, 0, 0, 0]}}, "not_numeric"),
    ({"rewards": {"a": [datetime.date.today()] * 4, "b": [0, 0, 0, 0]}}, "not_numeric"),
    ({"kl": "0.1"}, "not_numeric"),
    ({"kl": 1j}, "not_numeric"),
    ({"kl": True}, "not_numeric"),
    ({"tokens": -5}, "not_numeric"),
    ({"prompts": ["p"] * 3}, "length_mismatch"),
    ({"completions": "one string"}, "not_numeric"),
])
def test_bad_step_inputs_are_step_input_errors(arguments, reason):
    monitor = raising()
    step = arguments.pop("step", 1)
    rewards = arguments.pop("rewards", GOOD)
    with pytest.raises(StepInputError) as error:
        monitor.record_step(step, rewards, **arguments)
    assert error.value.reason == reason
    assert monitor.record_step(1, GOOD).value("grpo_reward_mean") == pytest.approx(1.25)


def test_a_skipped_step_is_counted_by_reason():
    monitor = RewardMonitor("r", SPECS, group_size=2, run_dir=None)
    assert monitor.record_step(1, GOOD, kl=1j) is None
    assert monitor.registry.get_sample_value("grpo_skipped_steps_total", {"run_id": "r", "reason": "not_numeric"}) == 1.0


def test_reward_names_match_whole_strings():
    with pytest.raises(ValueError):
        RewardFunctionSpec("correct\n")


def test_tensors_are_accepted_detached_and_widened():
    torch = pytest.importorskip("torch")
    monitor = raising()
    a = torch.tensor([0.0, 1.0, 1.0, 1.0], requires_grad=True) * 1.0  # carries a graph
    b = torch.tensor([2.0, -2.0, 0.0, 4.0], dtype=torch.bfloat16)
    record = monitor.record_step(1, {"a": a, "b": b}, kl=torch.tensor(0.5, dtype=torch.bfloat16),
                                 advantages=torch.ones(4, dtype=torch.float16), completion_lengths=torch.tensor([1, 2, 3, 4]),
                                 tokens=torch.tensor(12))
    assert record.value("grpo_reward_mean") == pytest.approx(1.25)
    assert record.value("grpo_kl") == 0.5 and record.value("grpo_completion_length_mean_tokens") == 2.5
    with pytest.raises(StepInputError, match="complex"):
        monitor.record_step(2, {"a": torch.zeros(4, dtype=torch.complex64), "b": b})


def test_rewards_whose_sum_overflows_are_skipped_not_stored():
    monitor = raising()
    with pytest.raises(StepInputError) as error:
        monitor.record_step(1, {"a": [0.0, 1.0, 1.0, 1.0], "b": [1e308, 1e308, 1e308, 1e308]})
    assert error.value.reason == "overflow"
    assert monitor.registry.get_sample_value("grpo_reward_positive_sum_total", {"run_id": "inputs"}) == 0.0
    assert monitor.record_step(1, GOOD).value("grpo_reward_mean") == pytest.approx(1.25)


# ---------------------------------------------------------------------------- fuzz
NAMES = ("a", "b")

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2 ** 70, max_value=2 ** 70), st.floats(),
    st.complex_numbers(), st.text(max_size=4), st.just(datetime.datetime(2024, 1, 1)), st.lists(st.floats(), max_size=3),
)
dtypes = st.one_of(hnp.floating_dtypes(), hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(), hnp.boolean_dtypes(),
                   hnp.complex_number_dtypes(), hnp.datetime64_dtypes(), hnp.unicode_string_dtypes(max_len=3))


def arrays(n: int):
    return st.one_of(
        hnp.arrays(dtypes, st.sampled_from([n, n, n, max(n - 1, 0), n + 1, (2, 2)])),
        st.lists(st.one_of(st.floats(), st.integers(-10, 10), st.none(), st.text(max_size=2)), min_size=n, max_size=n),
        scalars,
    )


@st.composite
def step_arguments(draw):
    n = draw(st.sampled_from([0, 1, 2, 3, 4, 6, 8]))
    keys = draw(st.lists(st.sampled_from(NAMES + ("c", "")), min_size=0, max_size=3, unique=True))
    if draw(st.booleans()):
        keys = list(NAMES)
    rewards = {k: draw(arrays(n)) for k in keys}
    kwargs = {name: draw(scalars) for name in ("kl", "policy_entropy", "clip_ratio", "grad_norm", "loss", "learning_rate",
                                               "eval_accuracy", "tokens")}
    kwargs["group_size"] = draw(st.one_of(st.none(), st.integers(-2, 5), st.text(max_size=1), st.floats()))
    kwargs["max_completion_length"] = draw(st.one_of(st.none(), st.integers(-2, 40), st.text(max_size=1)))
    kwargs["advantages"] = draw(st.one_of(st.none(), arrays(n)))
    kwargs["completion_lengths"] = draw(st.one_of(st.none(), arrays(n)))
    kwargs["prompts"] = draw(st.one_of(st.none(), st.lists(st.text(max_size=5), min_size=n, max_size=n), scalars))
    offset = draw(st.one_of(st.just(0), st.just(-1), st.just(2 ** 63), st.text(max_size=1), st.floats()))
    return offset, rewards, kwargs


def test_fuzz_record_step_raises_only_step_input_errors(tmp_path, promtool):
    torch = pytest.importorskip("torch")
    monitor = RewardMonitor("fuzz", SPECS, group_size=2, run_dir=tmp_path, on_bad_input="raise", alerts=True)
    steps = itertools.count(1)
    good_steps: list[int] = []

    @settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(arguments=step_arguments(), as_tensor=st.booleans())
    def one_example(arguments, as_tensor):
        offset, rewards, kwargs = arguments
        step = next(steps)
        step_argument = step + offset if isinstance(offset, int) else offset
        if as_tensor:
            rewards = {k: _maybe_tensor(torch, v) for k, v in rewards.items()}
        with contextlib.suppress(StepInputError):
            monitor.record_step(step_argument, rewards, **kwargs)
        # the next good step is recorded exactly
        good = next(steps)
        record = monitor.record_step(good, GOOD, group_size=2)
        assert record.value("grpo_reward_mean") == pytest.approx(1.25)
        assert record.value("grpo_reward_fn_mean", "b") == pytest.approx(1.0)
        good_steps.append(good)

    one_example()
    body = generate_latest(monitor.registry)
    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    monitor.close()
    stored = [int(row["grpo_step"]) for row in read_steps(tmp_path / "fuzz")]
    assert stored == sorted(set(stored)) and set(good_steps) <= set(stored)


def _maybe_tensor(torch, value):
    try:
        array = np.asarray(value)
        if array.dtype.kind in "biuf":
            return torch.from_numpy(np.ascontiguousarray(array)).to(torch.bfloat16 if array.dtype.kind == "f" else (array.dtype == bool and torch.bool) or torch.int64)
    except (TypeError, ValueError, RuntimeError, OverflowError):
        pass
    return value
