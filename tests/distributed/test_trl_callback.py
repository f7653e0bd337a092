"""The TRL adapter without training: the loud warning of an unwrapped callback, and attach's in-place wrapping."""

from __future__ import annotations

import asyncio
import functools
import logging
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("transformers")

from rewardscope.integrations.trl import RewardScopeCallback, attach


class _Monitor:
    gatherer = None

    def __init__(self) -> None:
        self.steps: list[tuple[int, dict]] = []

    def record_step(self, step, rewards, **kwargs):
        self.steps.append((step, rewards))
        return None


def test_a_callback_without_wrapped_rewards_warns_once_loudly(caplog: pytest.LogCaptureFixture) -> None:
    callback = RewardScopeCallback(_Monitor())
    state = SimpleNamespace(global_step=1)
    with caplog.at_level(logging.ERROR, logger="rewardscope"), pytest.warns(RuntimeWarning, match="no wrapped reward functions"):
        callback.on_log(SimpleNamespace(), state, None, logs={"loss": 1.0})
        callback.on_log(SimpleNamespace(), state, None, logs={"loss": 1.0})
    assert [r.levelno for r in caplog.records if "no wrapped reward" in r.message] == [logging.ERROR]  # once


def _plain(completions, **kwargs):
    return [1.0 for _ in completions]


def _scaled(completions, scale, **kwargs):
    return [scale * len(c) for c in completions]


async def _later(completions, **kwargs):
    return [0.5 for _ in completions]


class _Unnamed:
    def __call__(self, completions, **kwargs):
        return [None for _ in completions]  # TRL turns None into NaN; so do we


def test_attach_wraps_every_kind_of_reward_function_in_place_keeping_trls_names() -> None:
    funcs = [_plain, _later, functools.partial(_scaled, scale=2.0), _Unnamed()]
    names = ["_plain", "_later", "_scaled", "_Unnamed"]  # as trl's get_callable_name gives them
    added = []
    trainer = SimpleNamespace(reward_funcs=funcs, reward_func_names=names, reward_weights=None,
                              args=SimpleNamespace(logging_steps=1, num_generations=2, max_completion_length=8),
                              accelerator=SimpleNamespace(num_processes=1), add_callback=added.append)
    monitor = _Monitor()
    callback = attach(trainer, monitor)
    assert trainer.reward_funcs is funcs and added == [callback]  # wrapped in place, callback registered
    assert asyncio.iscoroutinefunction(funcs[1]) and not asyncio.iscoroutinefunction(funcs[0])
    kwargs = {"prompts": ["p", "p"], "completions": ["a", "b"], "completion_ids": [[1], [1, 2]]}
    funcs[0](**kwargs), asyncio.run(funcs[1](**kwargs)), funcs[2](**kwargs), funcs[3](**kwargs)
    callback.on_log(trainer.args, SimpleNamespace(global_step=3), None, logs={"loss": 0.1})
    ((step, rewards),) = monitor.steps
    assert step == 3 and list(rewards) == names
    assert rewards["_plain"].tolist() == [1.0, 1.0] and rewards["_later"].tolist() == [0.5, 0.5]
    assert rewards["_scaled"].tolist() == [2.0, 2.0] and np.isnan(rewards["_Unnamed"]).all()
