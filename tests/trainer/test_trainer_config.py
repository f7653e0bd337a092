"""Configuration: one flag per setting, YAML files whose keys are the flags, precedence,
clear errors, and the device-dependent defaults."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys

import pytest

pytest.importorskip("torch", reason="the trainer needs torch (rewardscope[train])")

from rewardscope.trainer.cli import add_arguments, add_train_arguments, config_from_args, run, run_train
from rewardscope.trainer.config import (
    DEFAULT_GPU_MODEL_ID,
    TrainConfig,
    config_from_mapping,
    flag_name,
    load_config_file,
    option_fields,
    resolve_config,
)
from rewardscope.trainer.errors import ConfigError

# The options of the script this trainer replaces; each must still exist.
OLD_SCRIPT_FLAGS = ["--num-steps", "--model-id", "--learning-rate", "--batch-size", "--use-lora", "--lora-rank", "--lora-alpha", "--num-generations", "--beta", "--epsilon", "--temperature", "--max-prompt-length", "--max-generation-steps", "--weight-decay", "--max-grad-norm", "--warmup-fraction", "--checkpoint-dir", "--save-interval", "--max-checkpoints", "--run-name", "--train-fraction", "--eval-every", "--monitoring-dir", "--enable-alerts", "--log-distributions"]
NEW_FLAGS = ["--config", "--device", "--seed", "--threads", "--prometheus-port", "--no-prometheus", "--reward-fn", "--resume", "--loss-type", "--num-iterations", "--gradient-accumulation-steps", "--no-scale-rewards", "--dataset"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p


def parse(*argv: str) -> TrainConfig:
    return config_from_args(parser().parse_args(list(argv)))


def test_every_flag_exists():
    options = set(parser()._option_string_actions)
    missing = [f for f in OLD_SCRIPT_FLAGS + NEW_FLAGS if f not in options]
    assert not missing


def test_every_setting_is_a_flag_and_a_config_key(tmp_path):
    options = parser()._option_string_actions
    for f in option_fields():
        assert flag_name(f.name) in options, f.name
    # every key of a full config file is accepted
    values = TrainConfig().to_dict()
    assert config_from_mapping({k.replace("_", "-"): v for k, v in values.items()}) == values


def test_names_the_brief_promised_are_the_main_cli_functions():
    assert add_train_arguments is add_arguments and run_train is run


def test_defaults_without_flags():
    assert parse() == TrainConfig()


def test_flags_are_typed():
    config = parse("--num-steps", "7", "--learning-rate", "1e-4", "--no-use-lora", "--reward-fn", "format_exact",
                   "--reward-fn", "check_answer=2", "--no-prometheus", "--loss-type", "dr_grpo", "--no-scale-rewards")
    assert config.num_steps == 7 and config.learning_rate == 1e-4
    assert config.use_lora is False and config.prometheus is False and config.scale_rewards is False
    assert config.reward_fn == ["format_exact", "check_answer=2"]
    assert config.loss_type == "dr_grpo"


def test_resume_flag_alone_means_latest():
    args = parser().parse_args(["--resume"])
    assert args.resume == "latest"


def test_config_file_keys_match_flags_and_flags_override(tmp_path):
    path = tmp_path / "run.yml"
    path.write_text(
        "num-steps: 12\n"
        "learning_rate: 0.001\n"  # underscores work too
        "use-lora: false\n"
        "reward-fn: [format_exact, check_answer=0]\n"
        "run-name: from-file\n"
        "batch-size: 3\n"
    )
    config = parse("--config", str(path), "--num-steps", "20", "--use-lora")
    assert config.num_steps == 20  # flag wins
    assert config.use_lora is True  # flag wins over the file's false
    assert config.learning_rate == 0.001 and config.batch_size == 3 and config.run_name == "from-file"
    assert config.reward_fn == ["format_exact", "check_answer=0"]


def test_unknown_config_key_is_a_clear_error(tmp_path):
    path = tmp_path / "run.yml"
    path.write_text("num-step: 12\n")
    with pytest.raises(ConfigError, match=r"unknown option 'num-step' \(did you mean 'num-steps'\?\)"):
        parse("--config", str(path))


@pytest.mark.parametrize(
    "content, message",
    [
        ("num-steps: twelve\n", "num-steps must be an integer"),
        ("use-lora: 1\n", "use-lora must be true or false"),
        ("learning-rate: fast\n", "learning-rate must be a number"),
        ("loss-type: dapo\n", "loss-type must be one of sequence, token, dr_grpo"),
        ("reward-fn: [1, 2]\n", "reward-fn must be a string or a list of strings"),
        ("- just\n- a list\n", "expected a mapping"),
        ("num-steps: [unclosed\n", "invalid YAML"),
        ("num-steps: null\n", None),  # null means "choose for me" where the default is auto
        ("batch-size: null\n", "batch-size cannot be null"),
        ("config: other.yml\n", "unknown option 'config'"),
    ],
)
def test_bad_config_files(tmp_path, content, message):
    path = tmp_path / "run.yml"
    path.write_text(content)
    if message is None:
        assert load_config_file(path) == {"num_steps": None}
        return
    with pytest.raises(ConfigError, match=message):
        load_config_file(path)


def test_missing_config_file():
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config_file("/nonexistent/run.yml")


def test_empty_config_file(tmp_path):
    path = tmp_path / "empty.yml"
    path.write_text("")
    assert load_config_file(path) == {}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--num-generations", "1"], "num-generations must be >= 2"),
        (["--batch-size", "0"], "batch-size must be >= 1"),
        (["--temperature", "0"], "temperature must be > 0"),
        (["--warmup-fraction", "1.5"], "warmup-fraction"),
        (["--train-fraction", "0"], "train-fraction"),
        (["--gradient-accumulation-steps", "100"], "cannot exceed"),
    ],
)
def test_invalid_values(argv, message):
    with pytest.raises(ConfigError, match=message):
        parse(*argv)


def test_run_prints_a_clear_error_and_exits_2(capsys, tmp_path):
    path = tmp_path / "run.yml"
    path.write_text("nmu-steps: 3\n")
    assert run(parser().parse_args(["--config", str(path)])) == 2
    assert "unknown option 'nmu-steps'" in capsys.readouterr().err


def test_cpu_defaults_are_the_tiny_model():
    config = resolve_config(TrainConfig(), cuda_available=False)
    assert (config.device, config.model_id, config.threads, config.bf16, config.gradient_checkpointing) == ("cpu", "tiny", 1, False, False)
    assert config.max_generation_steps == 32 and config.max_operand == 9
    assert config.run_name.startswith("grpo-tiny-")
    assert config.checkpoint_dir.endswith(config.run_name)


def test_gpu_defaults_are_gemma_with_bf16_and_checkpointing():
    config = resolve_config(TrainConfig(), cuda_available=True)
    assert (config.device, config.model_id, config.bf16, config.gradient_checkpointing, config.threads) == (
        "cuda", DEFAULT_GPU_MODEL_ID, True, True, None)
    assert config.max_generation_steps == 256
    assert config.gradient_accumulation_steps == 4  # micro-batches of 8 completions for a 262k vocabulary


def test_explicit_settings_survive_resolution():
    config = resolve_config(TrainConfig(model_id="tiny", threads=2, max_generation_steps=8, run_name="x"), cuda_available=True)
    assert (config.model_id, config.threads, config.max_generation_steps, config.run_name) == ("tiny", 2, 8, "x")


def test_cuda_without_cuda_is_an_error_and_bf16_on_cpu_a_warning():
    with pytest.raises(ConfigError, match="no CUDA device"):
        resolve_config(TrainConfig(device="cuda"), cuda_available=False)
    with pytest.warns(UserWarning, match="bf16 on CPU"):
        resolve_config(TrainConfig(bf16=True), cuda_available=False)


def test_config_is_json_able():
    import json

    json.dumps(dataclasses.asdict(TrainConfig()))


def test_building_the_cli_does_not_import_torch():
    code = (
        "import argparse, sys\n"
        "from rewardscope.trainer.cli import add_arguments\n"
        "add_arguments(argparse.ArgumentParser())\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
