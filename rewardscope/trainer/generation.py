"""Sampling completions and scoring their tokens.

Prompts are left-padded so every prompt ends at the same column and generation appends
to all rows together. Position ids come from the attention mask (count of real tokens so
far) in both the sampling loop and the training forward, which is what makes the
log-probabilities of the sampled tokens agree between the two (to float rounding).

The sampling loop is our own rather than ``generate``: one forward per new token with the
KV cache, nothing else per step, which is what keeps small models fast on a CPU.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Rollout:
    """A batch of prompts and their sampled completions.

    ``completion_mask`` is 1 on generated tokens up to and including the end-of-sequence
    token and 0 on the padding after it; ``truncated`` marks completions that reached
    the length limit without ending.
    """

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    truncated: torch.Tensor
    sampling_logprobs: torch.Tensor | None = None

    @property
    def completion_lengths(self) -> torch.Tensor:
        return self.completion_mask.sum(dim=1)

    def select(self, rows: slice | torch.Tensor) -> Rollout:
        """The rollout restricted to some rows (a micro-batch)."""
        return Rollout(
            self.prompt_ids[rows],
            self.prompt_mask[rows],
            self.completion_ids[rows],
            self.completion_mask[rows],
            self.truncated[rows],
            None if self.sampling_logprobs is None else self.sampling_logprobs[rows],
        )


def encode_prompts(tokenizer: Any, prompts: Sequence[str], max_prompt_length: int | None, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenise rendered prompts (the chat template already added any BOS), left-padded.

    Prompts longer than ``max_prompt_length`` keep their last tokens: the end of a chat
    prompt (the question and the assistant marker) matters more than its start.
    """
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    if max_prompt_length is not None:
        encoded = [ids[-max_prompt_length:] for ids in encoded]
    width = max(len(ids) for ids in encoded)
    input_ids = torch.full((len(encoded), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, ids in enumerate(encoded):
        if ids:
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            mask[row, width - len(ids) :] = 1
    return input_ids.to(device), mask.to(device)


def position_ids_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only, so left padding does not shift them."""
    return (mask.cumsum(dim=1) - 1).clamp(min=0)


@torch.no_grad()
def sample_completions(
    model: Any,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    max_new_tokens: int,
    eos_token_ids: Sequence[int],
    pad_token_id: int,
    temperature: float = 1.0,
    greedy: bool = False,
    generator: torch.Generator | None = None,
    return_logprobs: bool = False,
) -> Rollout:
    """Sample up to ``max_new_tokens`` tokens per prompt with the KV cache.

    Stops early once every row has produced an end-of-sequence token; tokens after a
    row's end are padding and masked out. With ``return_logprobs`` the rollout also
    holds each sampled token's log-probability under the temperature-scaled sampling
    distribution (what the training forward must reproduce).
    """
    batch = prompt_ids.size(0)
    device = prompt_ids.device
    eos = torch.tensor(list(eos_token_ids), device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    tokens: list[torch.Tensor] = []
    masks: list[torch.Tensor] = []
    logprobs: list[torch.Tensor] = []
    attention = prompt_mask
    positions = position_ids_from_mask(prompt_mask)
    cache_name = cache_argument_name(model)
    output = model(input_ids=prompt_ids, attention_mask=attention, position_ids=positions, use_cache=True, logits_to_keep=1)
    cache = getattr(output, cache_name)
    logits = output.logits[:, -1, :]
    for index in range(max_new_tokens):
        scaled = logits.float() / temperature
        if greedy:
            next_token = scaled.argmax(dim=-1)
        else:
            next_token = torch.multinomial(torch.softmax(scaled, dim=-1), 1, generator=generator).squeeze(1)
        if return_logprobs:
            logprobs.append(torch.log_softmax(scaled, dim=-1).gather(1, next_token[:, None]).squeeze(1))
        alive = ~finished
        next_token = torch.where(alive, next_token, torch.full_like(next_token, pad_token_id))
        tokens.append(next_token)
        masks.append(alive.long())
        finished = finished | torch.isin(next_token, eos)
        if index == max_new_tokens - 1 or bool(finished.all()):
            break
        attention = torch.cat([attention, torch.ones((batch, 1), dtype=attention.dtype, device=device)], dim=1)
        positions = positions[:, -1:] + 1
        output = model(
            input_ids=next_token[:, None],
            attention_mask=attention,
            position_ids=positions,
            use_cache=True,
            **{cache_name: cache},
        )
        cache = getattr(output, cache_name)
        logits = output.logits[:, -1, :]
    completion_ids = torch.stack(tokens, dim=1)
    completion_mask = torch.stack(masks, dim=1)
    sampled_logprobs = torch.stack(logprobs, dim=1) * completion_mask if return_logprobs else None
    return Rollout(prompt_ids, prompt_mask, completion_ids, completion_mask, ~finished, sampled_logprobs)


def cache_argument_name(model: Any) -> str:
    """The name of the KV-cache argument and output field: ``cache`` from transformers
    5.x on, ``past_key_values`` before."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def decode_completions(tokenizer: Any, rollout: Rollout) -> list[str]:
    """Completion texts without special tokens (the format tags are ordinary tokens)."""
    texts = []
    for ids, mask in zip(rollout.completion_ids.tolist(), rollout.completion_mask.tolist()):
        kept = [t for t, m in zip(ids, mask) if m]
        texts.append(tokenizer.decode(kept, skip_special_tokens=True))
    return texts


def selective_log_softmax(logits: torch.Tensor, index: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``log_softmax(logits / temperature).gather(index)`` in float32, one row at a time,
    so a large vocabulary never needs a float32 copy of the whole (batch, length, vocab)
    tensor at once."""
    rows = []
    for row_logits, row_index in zip(logits, index):
        row_logits = row_logits.float() / temperature
        gathered = row_logits.gather(-1, row_index.unsqueeze(-1)).squeeze(-1)
        rows.append(gathered - torch.logsumexp(row_logits, dim=-1))
    return torch.stack(rows)


def token_entropy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Entropy of each position's distribution (of ``logits / temperature``), one row at a time."""
    rows = []
    for row_logits in logits:
        logp = torch.log_softmax(row_logits.float() / temperature, dim=-1)
        rows.append(-(logp.exp() * logp).sum(dim=-1))
    return torch.stack(rows)


def completion_logprobs(
    model: Any, rollout: Rollout, temperature: float = 1.0, with_entropy: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probabilities of the completion tokens under ``model`` (and optionally the
    per-token entropy), from one forward over prompt + completion.

    Logits are divided by the sampling temperature so the probabilities are those of the
    distribution the tokens were drawn from. Only the logits that predict completion
    tokens are computed (``logits_to_keep``), which matters for large vocabularies.
    """
    input_ids = torch.cat([rollout.prompt_ids, rollout.completion_ids], dim=1)
    attention = torch.cat([rollout.prompt_mask, rollout.completion_mask], dim=1)
    length = rollout.completion_ids.size(1)
    output = model(
        input_ids=input_ids,
        attention_mask=attention,
        position_ids=position_ids_from_mask(attention),
        use_cache=False,
        logits_to_keep=length + 1,
    )
    logits = output.logits[:, :-1, :]
    logps = selective_log_softmax(logits, rollout.completion_ids, temperature)
    entropy = None
    if with_entropy:
        with torch.no_grad():
            entropy = token_entropy(logits.detach(), temperature)
    return logps, entropy
