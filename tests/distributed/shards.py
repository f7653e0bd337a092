"""The shards each rank records in the multi-process tests, a pure function of (scenario, step, rank, world),
so the test can rebuild the global batch that a single-process monitor must see."""

from __future__ import annotations

import numpy as np

from rewardscope import RewardFunctionSpec

GROUP_SIZE = 4
STEPS = 6
SPECS = [RewardFunctionSpec("correct", 1.0, 0.0, 1.0), RewardFunctionSpec("format", 0.5, 0.0, 1.0),
         RewardFunctionSpec("length", 0.1, -1.0, 1.0), RewardFunctionSpec("gold", 0.0, 0.0, 1.0)]


def groups_of(step: int, rank: int) -> int:
    """Unequal shards: rank r holds r + 1 groups (one more on odd steps); rank 1 holds none at step 3 (an empty
    shard) and 80 at step 5 (a message above the gatherer's first capacity, sent in two parts)."""
    if rank == 1 and step in (3, 5):
        return 0 if step == 3 else 80
    return rank + 1 + step % 2


def shard(step: int, rank: int) -> dict:
    """One rank's record_step arguments for a step."""
    rng = np.random.default_rng(1000 * step + rank)
    n = groups_of(step, rank) * GROUP_SIZE
    rewards = {
        "correct": rng.integers(0, 2, n).astype(np.float64),
        "format": rng.choice([0.0, 0.5, 1.0], n),
        "length": rng.uniform(-1, 1, n),
        "gold": rng.integers(0, 2, n).astype(np.float64),
    }
    if n and step % 3 == 2 and rank == n_ranks_with_nan():
        rewards["correct"][1] = np.nan  # NaN on one rank only
    return {
        "rewards": rewards,
        "advantages": rng.normal(size=n),
        "completion_lengths": rng.integers(1, 33, n).astype(np.float64),
        "kl": 0.01 * (rank + 1) * step,
        "policy_entropy": 1.0 + 0.1 * rank,
        "clip_ratio": 0.02 * rank,
        "loss": 0.5 + rank,
        "grad_norm": 1.5,
        "learning_rate": 1e-4,
        "tokens": 100 * n,
        "max_completion_length": 32,
    }


def n_ranks_with_nan() -> int:
    return 1


def global_step(step: int, world: int) -> dict:
    """What one process would record: the shards concatenated in rank order, scalars combined as documented."""
    shards = [shard(step, r) for r in range(world)]
    sizes = np.array([groups_of(step, r) * GROUP_SIZE for r in range(world)], dtype=np.float64)

    def cat(key: str) -> np.ndarray:
        return np.concatenate([s[key] for s in shards])

    def weighted(key: str) -> float:
        return float(np.average([s[key] for s in shards], weights=sizes))

    return {
        "rewards": {name: np.concatenate([s["rewards"][name] for s in shards]) for name in shards[0]["rewards"]},
        "advantages": cat("advantages"),
        "completion_lengths": cat("completion_lengths"),
        "kl": weighted("kl"),
        "policy_entropy": weighted("policy_entropy"),
        "clip_ratio": weighted("clip_ratio"),
        "loss": float(np.mean([s["loss"] for s in shards])),
        "grad_norm": 1.5,
        "learning_rate": 1e-4,
        "tokens": int(sum(s["tokens"] for s in shards)),
        "max_completion_length": 32,
    }
