"""Models and tokenizers: the tiny built-in model, and anything ``from_pretrained`` loads.

``--model-id tiny`` builds a small Llama-style model and a byte-level BPE tokenizer
trained locally on generated problems, teaches it the answer format with a short
supervised warm-up, and saves both with ``save_pretrained`` into a cache directory keyed
by a hash of the build settings. Every later run, and every other model id (a hub id or a
local path), goes through ``AutoModelForCausalLM.from_pretrained`` and
``AutoTokenizer.from_pretrained``: the tiny model is loaded exactly like a real one.

The warm-up is deliberately short: the model emits the format most of the time when
sampling and rarely gets the arithmetic right, so GRPO has something to improve.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from rewardscope.trainer.config import TINY_MODEL_ID
from rewardscope.trainer.data import SYSTEM_PROMPT, chat_messages, corpus_texts, generate_problems
from rewardscope.trainer.errors import ModelLoadError
from rewardscope.trainer.rewards import FORMAT_TAGS

# Bump when the build code changes in a way the settings below do not capture.
_TINY_BUILD_VERSION = 1

_SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<|system|>", "<|user|>", "<|assistant|>")
# Each turn is a role marker, the content and an end-of-sequence token; generation stops
# at the end-of-sequence token that closes the assistant turn.
TINY_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + eos_token }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


@dataclass(frozen=True)
class TinyModelConfig:
    """Everything that determines the tiny model; its hash names the cache entry."""

    vocab_size: int = 512
    hidden_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    intermediate_size: int = 256
    max_position_embeddings: int = 512
    corpus_problems: int = 2000
    max_operand: int = 9
    warmup_steps: int = 60
    warmup_batch_size: int = 64
    warmup_learning_rate: float = 3e-3
    seed: int = 1234
    system_prompt: str = SYSTEM_PROMPT

    def cache_key(self) -> str:
        """A short hash of the settings and the build code version."""
        payload = json.dumps({"version": _TINY_BUILD_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    """``$REWARDSCOPE_CACHE`` or ``~/.cache/rewardscope``."""
    return Path(os.environ.get("REWARDSCOPE_CACHE") or Path.home() / ".cache" / "rewardscope")


def tiny_model_path(cache_dir: str | Path | None = None, config: TinyModelConfig = TinyModelConfig()) -> Path:
    """Where the tiny model with these settings is (or would be) cached."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / "models" / f"tiny-{config.cache_key()}"


def build_tiny_tokenizer(texts: list[str], config: TinyModelConfig) -> Any:
    """A byte-level BPE tokenizer trained on ``texts``.

    Digits are split one per token so numbers are spelled out; the format tags are added
    after training as ordinary (not special) tokens, one id each, so that
    ``decode(skip_special_tokens=True)`` keeps them in the completions the rewards read.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        special_tokens=list(_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    # Added after training: tokens added before are not kept by the BPE trainer.
    tokenizer.add_tokens([AddedToken(tag, special=False, normalized=False) for tag in FORMAT_TAGS])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")
    fast.chat_template = TINY_CHAT_TEMPLATE
    fast.padding_side = "left"
    return fast


def build_tiny_model(tokenizer: Any, config: TinyModelConfig) -> Any:
    """A freshly initialised Llama-style model sized by ``config`` (tied embeddings)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    model_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads,
        intermediate_size=config.intermediate_size,
        max_position_embeddings=config.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(config.seed)
    model = LlamaForCausalLM(model_config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def supervised_batch(tokenizer: Any, prompts: list[str], targets: list[str]) -> dict[str, torch.Tensor]:
    """Right-padded prompt+target sequences with labels only on the target and its EOS."""
    sequences, labels = [], []
    for prompt, target in zip(prompts, targets):
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        target_ids = tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        sequences.append(prompt_ids + target_ids)
        labels.append([-100] * len(prompt_ids) + target_ids)
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), tokenizer.pad_token_id, dtype=torch.long)
    label_ids = torch.full((len(sequences), width), -100, dtype=torch.long)
    attention = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, (seq, lab) in enumerate(zip(sequences, labels)):
        input_ids[row, : len(seq)] = torch.tensor(seq)
        label_ids[row, : len(lab)] = torch.tensor(lab)
        attention[row, : len(seq)] = 1
    return {"input_ids": input_ids, "attention_mask": attention, "labels": label_ids}


def supervised_warmup(model: Any, tokenizer: Any, config: TinyModelConfig) -> list[float]:
    """Teach the answer format on generated worked solutions; returns the loss per step."""
    problems = generate_problems(config.corpus_problems, seed=config.seed + 1, max_operand=config.max_operand)
    prompts = [
        tokenizer.apply_chat_template(chat_messages(p.question, config.system_prompt), tokenize=False, add_generation_prompt=True)
        for p in problems
    ]
    generator = torch.Generator().manual_seed(config.seed + 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.warmup_learning_rate, weight_decay=0.0)
    model.train()
    losses = []
    for _ in range(config.warmup_steps):
        index = torch.randint(len(problems), (config.warmup_batch_size,), generator=generator).tolist()
        batch = supervised_batch(tokenizer, [prompts[i] for i in index], [problems[i].solution or "" for i in index])
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    model.eval()
    return losses


def ensure_tiny_model(cache_dir: str | Path | None = None, config: TinyModelConfig = TinyModelConfig()) -> Path:
    """The path of the cached tiny model, building and saving it first when missing.

    The build writes into a temporary directory beside the cache entry and renames it
    into place, so a concurrent or interrupted build never leaves a half-written model.
    """
    path = tiny_model_path(cache_dir, config)
    if (path / "config.json").is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    problems = generate_problems(config.corpus_problems, seed=config.seed, max_operand=config.max_operand)
    texts = corpus_texts(problems) + [config.system_prompt] * 50
    tokenizer = build_tiny_tokenizer(texts, config)
    # The build must not depend on (or disturb) the caller's RNG or thread settings; one
    # thread is also the fastest on a small shared CPU.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            model = build_tiny_model(tokenizer, config)
            losses = supervised_warmup(model, tokenizer, config)
    finally:
        torch.set_num_threads(threads)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        info = {
            "build_config": asdict(config),
            "cache_key": config.cache_key(),
            "warmup_final_loss": losses[-1] if losses else None,
            "build_seconds": round(time.perf_counter() - started, 2),
            "parameters": sum(p.numel() for p in model.parameters()),
        }
        (staging / "rewardscope_tiny.json").write_text(json.dumps(info, indent=2))
        try:
            staging.rename(path)
        except OSError:
            if not (path / "config.json").is_file():  # lost a race only if the winner finished
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return path


def resolve_model_path(model_id: str, cache_dir: str | Path | None = None) -> str:
    """``tiny`` becomes the cached tiny model's directory; anything else passes through."""
    if model_id == TINY_MODEL_ID:
        return str(ensure_tiny_model(cache_dir))
    return model_id


def check_model_id(model_id: str) -> str:
    """``"local"`` or ``"hub"``: where ``model_id`` would load from. Raises ``ModelLoadError``
    in plain words for a local path that does not exist or holds no model, and for an id
    that is neither a directory nor a well-formed hub id (``name`` or ``namespace/name``)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    path = Path(model_id).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"--model-id {model_id}: the directory holds no model (no config.json; "
                                 "write one with save_pretrained)")
        return "local"
    if path.exists():
        raise ModelLoadError(f"--model-id {model_id}: a file, not a model directory")
    try:
        validate_repo_id(model_id)
    except HFValidationError:
        if "/" in model_id or model_id.startswith((".", "~")):
            raise ModelLoadError(f"--model-id {model_id}: no such directory") from None
        raise ModelLoadError(f"--model-id {model_id!r} is neither a local directory nor a Hugging Face hub id "
                             "(name or namespace/name)") from None
    return "hub"


def load_model_and_tokenizer(
    model_id: str,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    cache_dir: str | Path | None = None,
) -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer by hub id, local path or ``tiny``.

    The tokenizer pads on the left (prompts for generation) and gets a pad token from
    EOS when it has none.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve_model_path(model_id, cache_dir)
    where = check_model_id(source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except (OSError, ValueError) as exc:
        if where == "hub" and isinstance(exc, OSError):
            # The hub library's message talks about offline mode and repo id forms; say what happened.
            raise ModelLoadError(
                f"--model-id {model_id}: not a local directory, and it could not be downloaded from the Hugging Face hub "
                "(no network, no such model, or a gated model that needs `huggingface-cli login`); "
                "pass a directory written by save_pretrained"
            ) from exc
        raise ModelLoadError(f"--model-id {model_id}: cannot load the model: {exc}") from exc
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:
        raise ModelLoadError(f"model {model_id!r}: its tokenizer has no chat template")
    model.to(device)
    return model, tokenizer


def apply_lora(model: Any, rank: int, alpha: float, dropout: float = 0.0, target_modules: str | list[str] = "all-linear") -> Any:
    """Wrap ``model`` in a LoRA adapter; the frozen base (adapter disabled) is the GRPO
    reference policy, so no second copy of the model is needed."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules, task_type="CAUSAL_LM")
    with warnings.catch_warnings():
        # peft still calls a transformers method that warns it is renamed in v6.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, config)


def eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """Every id that ends a completion: the tokenizer's EOS and the generation config's
    (chat models such as Gemma end turns with their own token)."""
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif isinstance(configured, (list, tuple)):
        ids.update(int(i) for i in configured)
    return sorted(ids)
