"""The pure half of the gather: rank 0 combining every rank's header and payload (no torch, no processes)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rewardscope.distributed import (
    HEADER_WIDTH,
    LocalShard,
    ShardGatherer,
    combine_shards,
)


def _headers_and_parts(shards: list[LocalShard]) -> tuple[np.ndarray, list]:
    gatherer = ShardGatherer.__new__(ShardGatherer)  # the header and payload builders need no process group
    gatherer._last_exit = None
    headers = np.stack([gatherer._header(s, 0.0) for s in shards])
    assert headers.shape[1] == HEADER_WIDTH
    return headers, [gatherer._payload(s) for s in shards]


def test_groups_spanning_ranks_are_rebuilt_in_rank_order() -> None:
    # TRL's layout: one prompt's group of 4 starts on rank 0 and ends on rank 1.
    a = LocalShard.build(5, np.array([[1.0, 1.0, 0.0, 0.0, 1.0, 1.0]]), 4, advantages=np.arange(6.0))
    b = LocalShard.build(5, np.array([[1.0, 1.0]]), 4, advantages=np.array([6.0, 7.0]))
    batch = combine_shards(*_headers_and_parts([a, b]), n_functions=1, groups_span_ranks=True)
    assert batch.skip is None
    np.testing.assert_array_equal(batch.rewards, [[1, 1, 0, 0, 1, 1, 1, 1]])
    np.testing.assert_array_equal(batch.advantages, np.arange(8.0))
    # Without the integration's promise, a shard that is not whole groups is a counted skip, not wrong group signals.
    assert combine_shards(*_headers_and_parts([a, b]), n_functions=1).skip[0] == "group_split"


def test_scalars_combine_as_documented() -> None:
    shards = [LocalShard.build(1, np.zeros((1, n)), 2, kl=kl, loss=loss, grad_norm=g, tokens=t)
              for n, kl, loss, g, t in [(2, 0.1, 1.0, 3.0, 10), (6, 0.5, 2.0, 3.0, 30), (0, None, 3.0, None, 0)]]
    scalars = combine_shards(*_headers_and_parts(shards), n_functions=1).scalars
    assert scalars["kl"] == pytest.approx((2 * 0.1 + 6 * 0.5) / 8)  # sample-weighted, the rank without kl left out
    assert scalars["loss"] == pytest.approx(2.0)  # plain mean: DDP weighs every rank equally
    assert scalars["grad_norm"] == 3.0 and scalars["tokens"] == 40 and scalars["policy_entropy"] is None
    nan_on_one = [LocalShard.build(1, np.zeros((1, 2)), 2, kl=v) for v in (0.1, math.nan)]
    assert math.isnan(combine_shards(*_headers_and_parts(nan_on_one), n_functions=1).scalars["kl"])


def test_bad_shards_and_disagreeing_ranks_skip_the_step_with_a_reason() -> None:
    good = LocalShard.build(3, np.zeros((1, 4)), 4)
    bad = LocalShard.build(3, np.zeros((1, 4)), 4, advantages=np.zeros(3))
    assert bad.reason == "length_mismatch"
    assert combine_shards(*_headers_and_parts([good, bad]), n_functions=1).skip[0] == "length_mismatch"
    late = LocalShard.build(4, np.zeros((1, 4)), 4)
    assert combine_shards(*_headers_and_parts([good, late]), n_functions=1).skip[0] == "rank_mismatch"
    other_g = LocalShard.build(3, np.zeros((1, 4)), 2)
    assert combine_shards(*_headers_and_parts([good, other_g]), n_functions=1).skip[0] == "rank_mismatch"


def test_advantages_from_some_ranks_only_are_dropped() -> None:
    with_adv = LocalShard.build(1, np.zeros((1, 2)), 2, advantages=[1.0, -1.0])
    without = LocalShard.build(1, np.zeros((1, 2)), 2)
    batch = combine_shards(*_headers_and_parts([with_adv, without]), n_functions=1)
    assert batch.advantages is None and batch.rewards.shape == (1, 4)
