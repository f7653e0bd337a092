"""A new user's first hour with `rewardscope train`: failures are early, plain and leave nothing behind."""

from __future__ import annotations

import argparse
import socket
import sys

import pytest

from rewardscope.trainer import ConfigError, train
from rewardscope.trainer.cli import add_arguments, run
from rewardscope.trainer.errors import ModelLoadError
from rewardscope.trainer.rewards import parse_reward_spec


@pytest.fixture
def busy_port():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        yield busy.getsockname()[1]


def test_a_busy_port_is_reported_before_the_model_loads_and_leaves_no_run_directory(make_config, tmp_path, busy_port):
    # The model path does not exist: had the model been loaded first, that would be the error.
    config = make_config(prometheus=True, prometheus_port=busy_port, model_id=str(tmp_path / "no-model"))
    with pytest.raises(ConfigError, match=f"cannot serve /metrics on 127.0.0.1:{busy_port}.*--no-prometheus"):
        train(config)
    assert not (tmp_path / "monitoring" / "test-run").exists()


def test_a_monitor_that_cannot_start_removes_the_run_directory_it_created(make_config, tmp_path, busy_port):
    from rewardscope.trainer.config import resolve_config
    from rewardscope.trainer.grpo import _make_monitor
    from rewardscope.trainer.rewards import resolve_reward_functions

    # The port is taken after the early probe: the monitor's own bind fails once its run store exists.
    config = resolve_config(make_config(prometheus=True, prometheus_port=busy_port), False)
    with pytest.raises(ConfigError, match="cannot serve /metrics"):
        _make_monitor(config, resolve_reward_functions(config.reward_fn), resume_after_step=None)
    assert not (tmp_path / "monitoring" / "test-run").exists()


@pytest.mark.parametrize(
    ("model_id", "message"),
    [
        ("{tmp}/models/missing", "--model-id {tmp}/models/missing: no such directory"),
        ("./missing-model", "--model-id ./missing-model: no such directory"),
        ("{tmp}", "--model-id {tmp}: the directory holds no model"),
        ("not a model id", "is neither a local directory nor a Hugging Face hub id"),
    ],
    ids=["absolute-path", "relative-path", "directory-without-model", "malformed"],
)
def test_a_bad_model_id_says_so_plainly(make_config, tmp_path, model_id, message):
    model_id, message = model_id.format(tmp=tmp_path), message.format(tmp=tmp_path)
    with pytest.raises(ModelLoadError, match=message) as caught:
        train(make_config(model_id=model_id))
    assert "Repo id must" not in str(caught.value)
    assert not (tmp_path / "monitoring" / "test-run").exists()


def test_a_hub_id_that_cannot_be_reached_offline_says_so(make_config, monkeypatch, capsys):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no network: fail at once, no retries
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = make_config()
    args = parser.parse_args(["--model-id", "rewardscope-tests/no-such-model", "--cache-dir", config.cache_dir,
                              "--monitoring-dir", config.monitoring_dir, "--no-prometheus", "--no-progress"])
    assert run(args) == 2
    err = capsys.readouterr().err
    assert err == ("rewardscope train: error: --model-id rewardscope-tests/no-such-model: not a local directory, and it "
                   "could not be downloaded from the Hugging Face hub (no network, no such model, or a gated model that "
                   "needs `huggingface-cli login`); pass a directory written by save_pretrained\n")


def test_a_reward_module_in_the_working_directory_is_imported(tmp_path, monkeypatch):
    (tmp_path / "first_hour_rewards.py").write_text("def brevity(prompts, completions, **kwargs):\n"
                                                    "    return [-len(c) for c in completions]\n")
    monkeypatch.chdir(tmp_path)
    # As under the `rewardscope` console script: the working directory is not on the path.
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    path_before = list(sys.path)
    try:
        function = parse_reward_spec("first_hour_rewards:brevity=0.5")
    finally:
        sys.modules.pop("first_hour_rewards", None)
    assert (function.name, function.weight) == ("brevity", 0.5)
    assert function(["p", "p"], ["ab", "abcd"]) == [-2.0, -4.0]
    assert sys.path == path_before  # the working directory was on the path for the import only


def test_the_closing_summary_lists_alerts_fired_and_still_firing(make_config, tmp_path, capsys):
    (tmp_path / "constant_rewards.py").write_text("def one(prompts, completions, **kwargs):\n"
                                                  "    return [1.0] * len(completions)\n")
    config = make_config()
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--model-id", "tiny", "--cache-dir", config.cache_dir, "--num-steps", "4", "--batch-size", "2",
                              "--num-generations", "4", "--max-generation-steps", "8", "--num-problems", "50",
                              "--eval-every", "0", "--save-interval", "0", "--run-name", "constant",
                              "--monitoring-dir", config.monitoring_dir, "--checkpoint-dir", config.checkpoint_dir,
                              "--reward-fn", "constant_rewards:one", "--enable-alerts", "--no-prometheus", "--no-progress"])
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(tmp_path)
            assert run(args) == 0
    finally:
        sys.modules.pop("constant_rewards", None)
    out = capsys.readouterr().out
    # Every completion gets the same reward: no spread from step 1, critical after 3 steps, still firing at the end.
    # With at most 8 generated tokens nearly every completion is cut at the limit: more than 25% for 3 steps, a warning.
    assert "  alerts fired: 2 (GRPOCompletionsTruncated warning x1, GRPOWeakRewardSignal critical x1)\n" in out
    assert "  alerts still firing: GRPOCompletionsTruncated (warning), GRPOWeakRewardSignal (critical)\n" in out


def test_the_closing_summary_says_when_alerts_were_off(make_config, capsys):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = make_config()
    args = parser.parse_args(["--model-id", "tiny", "--cache-dir", config.cache_dir, "--num-steps", "1", "--batch-size", "2",
                              "--num-generations", "2", "--max-generation-steps", "4", "--num-problems", "20",
                              "--eval-every", "0", "--save-interval", "0", "--monitoring-dir", config.monitoring_dir,
                              "--checkpoint-dir", config.checkpoint_dir, "--no-enable-alerts", "--no-prometheus",
                              "--no-progress"])
    assert run(args) == 0
    assert "  alerts: not evaluated (--no-enable-alerts)\n" in capsys.readouterr().out
