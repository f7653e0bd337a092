"""The GRPO objective as pure tensor functions: advantages, KL, clipped surrogate, loss.

Shapes: N completions ordered group by group (G consecutive completions per prompt), C
completion tokens per row (right-padded, ``mask`` 1 on real tokens).

Loss aggregation, given per-token losses ``l`` and the mask:

- ``sequence`` (GRPO paper): mean over each completion's tokens, then mean over completions.
- ``token``: sum over every token of the batch divided by the number of tokens (longer
  completions weigh more; DAPO's choice).
- ``dr_grpo``: sum over every token divided by N * max_completion_length, a constant, so
  length does not bias the gradient (Dr. GRPO).

Each normaliser is taken over the whole batch, not the micro-batch, so summing the
micro-batch losses of gradient accumulation gives exactly the full-batch loss.
"""

from __future__ import annotations

import torch

LOSS_TYPES = ("sequence", "token", "dr_grpo")


def group_advantages(rewards: torch.Tensor, group_size: int, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """Each reward minus its group's mean, divided by the group's standard deviation
    (sample std, as TRL) when ``scale`` is true; Dr. GRPO leaves ``scale`` off."""
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    grouped = rewards.view(-1, group_size)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    if scale:
        std = grouped.std(dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(grouped[:, :1])
        centred = centred / (std + eps)
    return centred.reshape(-1)


def k3_kl(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator of KL(policy || reference): exp(d) - d - 1 with d = ref - logp.
    Unbiased, always >= 0 (Schulman, "Approximating KL divergence")."""
    delta = ref_logps - logps
    return torch.exp(delta) - delta - 1.0


def clipped_surrogate(
    logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, epsilon: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token negated PPO-clip objective and the mask of tokens where clipping bound.

    A token is counted as clipped when the clipped term is the one the minimum selects
    and it differs from the unclipped one (ratio outside [1-eps, 1+eps] in the direction
    the advantage pushes).
    """
    ratio = torch.exp(logps - old_logps)
    adv = advantages.unsqueeze(1)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - epsilon, 1.0 + epsilon) * adv
    loss = -torch.min(unclipped, clipped)
    is_clipped = ((ratio < 1.0 - epsilon) & (adv < 0)) | ((ratio > 1.0 + epsilon) & (adv > 0))
    return loss, is_clipped


def loss_weights(mask: torch.Tensor, loss_type: str, max_completion_length: int, total_rows: int | None = None, total_tokens: float | None = None) -> torch.Tensor:
    """Per-token weights such that ``(per_token_loss * weights).sum()`` is the aggregated
    loss of this (micro-)batch's share of the whole batch.

    ``total_rows`` and ``total_tokens`` describe the whole batch; they default to this one.
    """
    mask = mask.float()
    rows = float(total_rows if total_rows is not None else mask.size(0))
    if loss_type == "sequence":
        per_row = mask.sum(dim=1, keepdim=True).clamp(min=1.0)
        return mask / per_row / rows
    if loss_type == "token":
        tokens = float(total_tokens if total_tokens is not None else mask.sum().item())
        return mask / max(tokens, 1.0)
    if loss_type == "dr_grpo":
        return mask / (rows * float(max_completion_length))
    raise ValueError(f"unknown loss type {loss_type!r}: use one of {', '.join(LOSS_TYPES)}")


def grpo_token_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    ref_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    epsilon: float,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Per-token GRPO loss (clipped surrogate + beta * k3 KL), the clipped mask and the
    per-token KL (None without a reference)."""
    surrogate, is_clipped = clipped_surrogate(logps, old_logps, advantages, epsilon)
    kl = None
    if ref_logps is not None:
        kl = k3_kl(logps, ref_logps)
        if beta:
            surrogate = surrogate + beta * kl
    return surrogate, is_clipped, kl


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean of ``values`` over the tokens where ``mask`` is 1 (0.0 when there are none)."""
    mask = mask.to(values.dtype)
    count = float(mask.sum())
    return float((values * mask).sum()) / count if count else 0.0
