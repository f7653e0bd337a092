"""The GRPO objective: advantages, k3 KL, clipping, loss aggregation, accumulation."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("torch", reason="the trainer needs torch (rewardscope[train])")
import itertools

import torch

from rewardscope.trainer.grpo import warmup_cosine
from rewardscope.trainer.objective import (
    clipped_surrogate,
    group_advantages,
    grpo_token_loss,
    k3_kl,
    loss_weights,
)


def test_group_advantages_normalise_within_each_group():
    rewards = torch.tensor([1.0, 3.0, 0.0, 0.0, 2.0, 2.0, 2.0, 6.0])
    adv = group_advantages(rewards, 4)
    first = rewards[:4]
    expected = (first - first.mean()) / (first.std() + 1e-4)
    assert torch.allclose(adv[:4], expected)
    assert torch.allclose(adv.view(2, 4).mean(dim=1), torch.zeros(2), atol=1e-6)


def test_dr_grpo_advantages_are_not_scaled():
    rewards = torch.tensor([1.0, 3.0, 5.0, 7.0])
    assert torch.equal(group_advantages(rewards, 4, scale=False), torch.tensor([-3.0, -1.0, 1.0, 3.0]))


def test_equal_rewards_give_zero_advantages():
    assert torch.equal(group_advantages(torch.full((4,), 2.0), 4), torch.zeros(4))


def test_group_size_must_divide_the_batch():
    with pytest.raises(ValueError):
        group_advantages(torch.zeros(6), 4)


def test_k3_is_zero_at_equality_and_positive_otherwise():
    logp = torch.tensor([-1.0, -2.0, -0.5])
    ref = torch.tensor([-1.0, -1.0, -3.0])
    kl = k3_kl(logp, ref)
    assert kl[0] == 0.0
    d = ref - logp
    assert torch.allclose(kl, torch.exp(d) - d - 1)
    assert (kl[1:] > 0).all()


def test_clipping_binds_only_in_the_advantage_direction():
    old = torch.zeros(1, 4)
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.5, 0.5]]))
    loss, clipped = clipped_surrogate(logp, old, torch.tensor([1.0]), epsilon=0.2)
    # positive advantage: ratio 1.5 clipped to 1.2; ratio 0.5 not clipped (min picks 0.5)
    assert clipped.tolist() == [[True, False, True, False]]
    assert torch.allclose(loss, -torch.tensor([[1.2, 0.5, 1.2, 0.5]]))
    _, clipped_neg = clipped_surrogate(logp, old, torch.tensor([-1.0]), epsilon=0.2)
    assert clipped_neg.tolist() == [[False, True, False, True]]


def test_first_pass_gradient_is_the_policy_gradient():
    # With old = current (one pass), ratio = 1 and d loss / d logp = -advantage.
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    loss, _, _ = grpo_token_loss(logp, logp.detach(), None, torch.tensor([0.7]), 0.2, 0.0)
    loss.sum().backward()
    assert torch.allclose(logp.grad, torch.tensor([[-0.7, -0.7]]))


MASK = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]])


def test_sequence_loss_is_the_mean_of_per_sequence_means():
    values = torch.tensor([[1.0, 2.0, 3.0, 99.0], [4.0, 99.0, 99.0, 99.0], [1.0, 1.0, 1.0, 1.0]])
    total = (values * loss_weights(MASK, "sequence", 4)).sum()
    assert total.item() == pytest.approx((2.0 + 4.0 + 1.0) / 3)


def test_token_loss_is_the_mean_over_all_tokens():
    values = torch.tensor([[1.0, 2.0, 3.0, 99.0], [4.0, 99.0, 99.0, 99.0], [1.0, 1.0, 1.0, 1.0]])
    total = (values * loss_weights(MASK, "token", 4)).sum()
    assert total.item() == pytest.approx((1 + 2 + 3 + 4 + 4) / 8)


def test_dr_grpo_loss_uses_a_constant_normaliser():
    values = torch.ones(3, 4)
    total = (values * loss_weights(MASK, "dr_grpo", max_completion_length=10)).sum()
    assert total.item() == pytest.approx(8 / (3 * 10))


@pytest.mark.parametrize("loss_type", ["sequence", "token", "dr_grpo"])
def test_micro_batches_sum_to_the_full_batch_loss(loss_type):
    values = torch.rand(3, 4)
    full = (values * loss_weights(MASK, loss_type, 4)).sum()
    tokens = float(MASK.sum())
    parts = [slice(0, 1), slice(1, 3)]
    summed = sum((values[p] * loss_weights(MASK[p], loss_type, 4, total_rows=3, total_tokens=tokens)).sum() for p in parts)
    assert summed.item() == pytest.approx(full.item())


def test_unknown_loss_type():
    with pytest.raises(ValueError, match="unknown loss type"):
        loss_weights(MASK, "dapo", 4)


def test_warmup_then_cosine_schedule():
    factor = warmup_cosine(total_steps=100, warmup_fraction=0.1)
    assert factor(0) == pytest.approx(0.1)
    assert factor(9) == pytest.approx(1.0)
    assert factor(10) == pytest.approx(1.0)
    assert factor(55) == pytest.approx(0.5)
    assert factor(100) == pytest.approx(0.0, abs=1e-12)
    values = [factor(i) for i in range(10, 101)]
    assert all(a >= b for a, b in itertools.pairwise(values))
    assert warmup_cosine(10, 0.0)(0) == pytest.approx(1.0)
    assert math.isfinite(warmup_cosine(1, 0.5)(5))
