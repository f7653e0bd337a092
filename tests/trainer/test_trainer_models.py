"""The tiny model and tokenizer, loading by path, the cache, and sampling consistency."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("torch", reason="the trainer needs torch (rewardscope[train])")
import torch

from rewardscope.trainer.data import chat_messages, generate_problems
from rewardscope.trainer.errors import ModelLoadError
from rewardscope.trainer.generation import (
    completion_logprobs,
    decode_completions,
    encode_prompts,
    sample_completions,
)
from rewardscope.trainer.models import (
    TinyModelConfig,
    apply_lora,
    ensure_tiny_model,
    eos_token_ids,
    load_model_and_tokenizer,
    tiny_model_path,
)
from rewardscope.trainer.rewards import FORMAT_TAGS, format_exact


@pytest.fixture(scope="module")
def tiny(tiny_cache):
    torch.set_num_threads(1)
    return load_model_and_tokenizer("tiny", "cpu", torch.float32, tiny_cache)


def prompts_for(tokenizer, count, seed=5):
    problems = generate_problems(count, seed=seed)
    texts = [tokenizer.apply_chat_template(chat_messages(p.question), tokenize=False, add_generation_prompt=True) for p in problems]
    return problems, encode_prompts(tokenizer, texts, None, torch.device("cpu"))


def test_tiny_model_shape(tiny, tiny_path):
    model, _tokenizer = tiny
    params = sum(p.numel() for p in model.parameters())
    assert 300_000 < params < 400_000
    c = model.config
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads, c.intermediate_size) == (128, 2, 4, 2, 256)
    assert c.tie_word_embeddings
    info = json.loads((tiny_path / "rewardscope_tiny.json").read_text())
    assert info["parameters"] == params


def test_format_tags_are_single_ordinary_tokens_that_survive_decoding(tiny):
    _, tokenizer = tiny
    for tag in FORMAT_TAGS:
        ids = tokenizer(tag, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, tag
        assert tag not in tokenizer.all_special_tokens
    text = "<reasoning>12 + 3 = 15</reasoning><answer>15</answer>"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    # digits are one token each
    assert len(tokenizer("123", add_special_tokens=False)["input_ids"]) == 3


def test_chat_template_renders_roles_and_generation_prompt(tiny):
    _, tokenizer = tiny
    text = tokenizer.apply_chat_template(chat_messages("What is 2 + 2?"), tokenize=False, add_generation_prompt=True)
    assert text.startswith("<bos><|system|>") and text.endswith("<|user|>What is 2 + 2?<eos><|assistant|>")


def test_warmed_up_model_emits_the_format_but_leaves_room(tiny):
    model, tokenizer = tiny
    _problems, (ids, mask) = prompts_for(tokenizer, 64)
    greedy = decode_completions(tokenizer, sample_completions(model, ids, mask, 32, eos_token_ids(model, tokenizer), tokenizer.pad_token_id, greedy=True))
    assert sum(format_exact(None, greedy)) / 3.0 / 64 > 0.8  # greedy outputs are formatted
    generator = torch.Generator().manual_seed(0)
    sampled = decode_completions(tokenizer, sample_completions(model, ids, mask, 32, eos_token_ids(model, tokenizer), tokenizer.pad_token_id, generator=generator))
    formatted = sum(format_exact(None, sampled)) / 3.0 / 64
    assert 0.5 < formatted < 0.97  # sampling is often right, not always: GRPO has work to do


def test_cache_is_reused_and_keyed_by_build_settings(tiny_cache, tiny_path):
    mtime = (tiny_path / "config.json").stat().st_mtime_ns
    assert ensure_tiny_model(tiny_cache) == tiny_path
    assert (tiny_path / "config.json").stat().st_mtime_ns == mtime  # not rebuilt
    other = TinyModelConfig(warmup_steps=1)
    assert tiny_model_path(tiny_cache, other) != tiny_path


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("REWARDSCOPE_CACHE", str(tmp_path))
    assert tiny_model_path().parent.parent == tmp_path


def test_load_by_local_path_through_from_pretrained(tiny, tiny_path, tmp_path):
    model, tokenizer = tiny
    # save_pretrained into a fresh directory, then load it back the way --model-id PATH does
    saved = tmp_path / "my-model"
    model.save_pretrained(saved)
    tokenizer.save_pretrained(saved)
    loaded, loaded_tokenizer = load_model_and_tokenizer(str(saved), "cpu", torch.float32)
    assert type(loaded).__name__ == "LlamaForCausalLM"
    assert loaded_tokenizer.padding_side == "left"
    assert loaded_tokenizer.get_vocab() == tokenizer.get_vocab()
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    # and the copy of the cached directory works the same
    copy = tmp_path / "copy"
    shutil.copytree(tiny_path, copy)
    assert load_model_and_tokenizer(str(copy))[0].config.hidden_size == 128


def test_unloadable_model_id_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match=f"--model-id {empty}: the directory holds no model"):
        load_model_and_tokenizer(str(empty))


def test_custom_sampling_loop_matches_generate_greedy(tiny):
    model, tokenizer = tiny
    _, (ids, mask) = prompts_for(tokenizer, 8, seed=11)
    eos = eos_token_ids(model, tokenizer)
    ours = sample_completions(model, ids, mask, 24, eos, tokenizer.pad_token_id, greedy=True)
    reference = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=24, do_sample=False, pad_token_id=tokenizer.pad_token_id, eos_token_id=eos)
    generated = reference[:, ids.size(1) :]
    width = ours.completion_ids.size(1)
    assert torch.equal(generated[:, :width] * ours.completion_mask, ours.completion_ids * ours.completion_mask)


def test_sampling_logprobs_match_the_training_forward_with_left_padding(tiny):
    model, tokenizer = tiny
    lora = apply_lora(model, 8, 16)
    with torch.no_grad():  # a non-zero adapter, so the check covers the LoRA path too
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    _, (ids, mask) = prompts_for(tokenizer, 6, seed=13)
    assert (mask == 0).any()  # prompts of different lengths: left padding is exercised
    generator = torch.Generator().manual_seed(1)
    rollout = sample_completions(lora, ids, mask, 24, eos_token_ids(lora, tokenizer), tokenizer.pad_token_id,
                                 temperature=0.7, generator=generator, return_logprobs=True)
    with torch.no_grad():
        logps, entropy = completion_logprobs(lora, rollout, temperature=0.7, with_entropy=True)
    m = rollout.completion_mask.bool()
    assert torch.allclose(logps[m], rollout.sampling_logprobs[m], atol=1e-4)
    assert (entropy[m] >= 0).all()
    with lora.disable_adapter():
        with torch.no_grad():
            base_logps, _ = completion_logprobs(lora, rollout, temperature=0.7)
    assert not torch.allclose(base_logps[m], logps[m])  # the adapter really is switched off
    lora.unload()  # leave the module-scoped base model without adapter layers
