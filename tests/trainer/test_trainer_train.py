"""Training runs on the tiny model, on the CPU, with the real monitor, run store and /metrics."""

from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np
import pytest

pytest.importorskip("torch", reason="the trainer needs torch (rewardscope[train])")

from rewardscope.exporter.runstore import read_manifest, read_steps
from rewardscope.trainer import ConfigError, StopTraining, train
from rewardscope.trainer.checkpoints import list_checkpoints
from rewardscope.trainer.cli import add_arguments, run

pytestmark = pytest.mark.slow  # real servers or training runs

FUNCTIONS = ("format_exact", "format_approx", "check_answer", "check_numbers")
EVERY_STEP = (
    "grpo_step", "grpo_reward_mean", "grpo_reward_std", "grpo_kl", "grpo_policy_entropy", "grpo_advantage_mean",
    "grpo_advantage_std", "grpo_clip_ratio", "grpo_grad_norm", "grpo_loss", "grpo_learning_rate",
    "grpo_completion_length_mean_tokens", "grpo_completion_truncated_ratio", "grpo_group_size",
)


def steps_of(result) -> list[dict]:
    return list(read_steps(result.run_directory))


def column(rows: list[dict], name: str) -> np.ndarray:
    return np.array([row.get(name, math.nan) for row in rows])


@pytest.mark.slow
def test_grpo_improves_the_reward_over_a_learning_rate_0_control(make_config, scrape):
    """60 steps of GRPO raise the format reward above the same run with learning rate 0,
    and every step reaches the run store and /metrics."""
    common = dict(num_steps=60, batch_size=4, num_generations=8, max_generation_steps=32, seed=0,
                  eval_every=20, eval_samples=32, num_problems=400)
    scraped = []

    def check_metrics(event):
        samples = scrape(event.monitor.prometheus_port)
        label = (("run_id", "trained"),)
        assert samples[("grpo_step", label)] == event.step
        assert samples[("grpo_steps_total", label)] == event.step
        assert samples[("grpo_samples_total", label)] == 32 * event.step
        for fn in FUNCTIONS:
            assert ("grpo_reward_fn_mean", (("reward_fn", fn), ("run_id", "trained"))) in samples
        assert ("grpo_kl", label) in samples and ("grpo_policy_entropy", label) in samples
        scraped.append(event.step)

    trained = train(make_config(run_name="trained", learning_rate=3e-3, prometheus=True, prometheus_port=0,
                                enable_alerts=True, **common), callbacks=[check_metrics])
    control = train(make_config(run_name="control", learning_rate=0.0, **common))

    assert scraped == list(range(1, 61))
    rows, control_rows = steps_of(trained), steps_of(control)
    assert [int(r["grpo_step"]) for r in rows] == list(range(1, 61))
    for row in rows:
        missing = [k for k in EVERY_STEP if k not in row]
        missing += [f"grpo_reward_fn_mean{{{fn}}}" for fn in FUNCTIONS if f"grpo_reward_fn_mean{{{fn}}}" not in row]
        assert not missing, (row["grpo_step"], missing)
    assert sorted(int(r["grpo_step"]) for r in rows if "grpo_eval_accuracy_ratio" in r) == [20, 40, 60]
    assert (trained.run_directory / "summary.json").is_file()
    assert read_manifest(trained.run_directory)["run_id"] == "trained"

    # Same seed: the first step samples the same completions in both runs.
    assert rows[0]["grpo_reward_mean"] == control_rows[0]["grpo_reward_mean"]
    # The control never moves: its policy is its reference.
    assert np.nanmax(column(control_rows, "grpo_kl")) == 0.0
    assert np.nanmean(column(rows, "grpo_kl")[30:]) > 0.0
    # Over seeds 0-6 the second half's mean total reward rose by 0.29 to 0.50 over the
    # control (format_exact by 0.07 to 0.25); the margins below leave room for machines
    # whose float rounding sends the run down another path.
    trained_total = column(rows, "grpo_reward_mean")[30:].mean()
    control_total = column(control_rows, "grpo_reward_mean")[30:].mean()
    assert trained_total > control_total + 0.15, (trained_total, control_total)
    fmt = "grpo_reward_fn_mean{format_exact}"
    assert column(rows, fmt)[30:].mean() > column(control_rows, fmt)[30:].mean() + 0.03
    # The learning rate warms up then decays (cosine) to near zero at the end.
    lr = column(rows, "grpo_learning_rate")
    assert lr[0] < lr[6] == pytest.approx(3e-3) and lr[-1] < 1e-4


def test_stop_and_resume_continue_the_run_exactly(make_config, tmp_path):
    """A run stopped after step 5 and resumed gives the same steps 6-8 as one that never
    stopped, and the run store holds each step exactly once."""
    settings = dict(num_steps=8, save_interval=3, seed=3)

    def stop_at_5(event):
        if event.step == 5:
            raise StopTraining

    first = train(make_config(**settings), callbacks=[stop_at_5])
    assert first.interrupted and first.last_step == 5
    assert [p.name for p in list_checkpoints(first.checkpoint_dir)] == ["checkpoint-0000003", "checkpoint-0000005"]

    resumed = train(make_config(resume="latest", **settings))
    assert (resumed.first_step, resumed.last_step, resumed.interrupted) == (6, 8, False)
    rows = steps_of(resumed)
    assert [int(r["grpo_step"]) for r in rows] == list(range(1, 9))

    straight = train(make_config(run_name="straight", monitoring_dir=str(tmp_path / "m2"),
                                 checkpoint_dir=str(tmp_path / "c2"), **settings))
    straight_rows = steps_of(straight)
    for name in ("grpo_reward_mean", "grpo_loss", "grpo_kl", "grpo_learning_rate"):
        assert column(rows, name) == pytest.approx(column(straight_rows, name), rel=1e-5, abs=1e-7), name


def test_crash_then_resume_drops_the_steps_after_the_last_checkpoint(make_config):
    settings = dict(num_steps=7, save_interval=2, max_checkpoints=2, seed=4)

    def crash_at_5(event):
        if event.step == 5:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        train(make_config(**settings), callbacks=[crash_at_5])
    config = make_config(**settings)
    checkpoints = list_checkpoints(config.checkpoint_dir)
    assert [p.name for p in checkpoints] == ["checkpoint-0000002", "checkpoint-0000004"]  # rotation kept 2

    resumed = train(make_config(resume="latest", **settings))
    assert resumed.first_step == 5
    assert [int(r["grpo_step"]) for r in steps_of(resumed)] == list(range(1, 8))


def test_ctrl_c_saves_the_last_step_and_reports_an_interrupted_run(make_config):
    def interrupt(event):
        if event.step == 2:
            raise KeyboardInterrupt

    result = train(make_config(num_steps=4), callbacks=[interrupt])
    assert result.interrupted and result.last_step == 2
    assert result.last_checkpoint is not None and result.last_checkpoint.name == "checkpoint-0000002"
    assert (result.last_checkpoint / "adapter" / "adapter_config.json").is_file()


def test_cli_runs_from_a_config_file_and_resumes(make_config, tmp_path, capsys):
    base = make_config()
    config_file = tmp_path / "run.yml"
    config_file.write_text(
        f"model-id: tiny\ncache-dir: {base.cache_dir}\nnum-steps: 3\nbatch-size: 2\nnum-generations: 4\n"
        f"max-generation-steps: 16\nnum-problems: 100\nsave-interval: 3\nrun-name: cli-run\n"
        f"monitoring-dir: {tmp_path / 'monitoring'}\ncheckpoint-dir: {tmp_path / 'ck'}\n"
        "progress: false\nprometheus-port: 0\nenable-alerts: false\n"
    )
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run(parser.parse_args(["--config", str(config_file), "--eval-every", "3"])) == 0
    out = capsys.readouterr().out
    assert "run cli-run: steps 1-3 of 3" in out and "eval accuracy" in out
    # Resume through the CLI: only the new step count is given; the rest comes from the checkpoint.
    args = parser.parse_args(["--resume", str(tmp_path / "ck"), "--num-steps", "5", "--no-progress", "--no-prometheus"])
    assert run(args) == 0
    assert "steps 4-5 of 5" in capsys.readouterr().out
    rows = list(read_steps(tmp_path / "monitoring" / "cli-run"))
    assert [int(r["grpo_step"]) for r in rows] == [1, 2, 3, 4, 5]
    assert rows[-1]["grpo_completion_length_mean_tokens"] <= 16


@pytest.mark.parametrize(
    "options",
    [
        dict(loss_type="token", num_iterations=2, gradient_accumulation_steps=2),
        dict(loss_type="dr_grpo", scale_rewards=False, gradient_accumulation_steps=3, beta=0.0),
    ],
    ids=["token-2-passes-accumulation", "dr_grpo-no-kl"],
)
def test_loss_options_train(make_config, options):
    result = train(make_config(num_steps=3, **options))
    rows = steps_of(result)
    assert len(rows) == 3
    for row in rows:
        assert math.isfinite(row["grpo_loss"]) and math.isfinite(row["grpo_grad_norm"])
    if options.get("beta") == 0.0:
        assert all("grpo_kl" not in r for r in rows)  # no reference pass, no KL to report
    if options.get("num_iterations", 1) > 1:
        assert column(rows, "grpo_clip_ratio").max() >= 0.0


def test_gradient_accumulation_gives_the_same_step(make_config, tmp_path):
    runs = []
    for accumulation in (1, 4):
        config = make_config(num_steps=2, gradient_accumulation_steps=accumulation, run_name=f"acc{accumulation}",
                             warmup_fraction=0.0, learning_rate=1e-3)
        runs.append(steps_of(train(config)))
    for name in ("grpo_loss", "grpo_grad_norm", "grpo_kl"):
        assert column(runs[0], name) == pytest.approx(column(runs[1], name), rel=1e-4, abs=1e-6), name


def test_full_fine_tuning_uses_a_frozen_reference_copy(make_config):
    result = train(make_config(num_steps=2, use_lora=False, learning_rate=1e-3, save_interval=2))
    rows = steps_of(result)
    assert rows[0]["grpo_kl"] == 0.0 and rows[1]["grpo_kl"] > 0.0
    assert not (result.last_checkpoint / "adapter").exists()


def test_gold_reward_is_monitored_but_does_not_train(make_config, tmp_path, monkeypatch):
    (tmp_path / "gold_rewards.py").write_text(
        "from rewardscope.trainer.rewards import reward_range\n"
        "@reward_range(0.0, 1.0)\n"
        "def short(prompts, completions, **kwargs):\n"
        "    return [1.0 if len(c) < 40 else 0.0 for c in completions]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    gold = train(make_config(num_steps=2, run_name="gold", reward_fn=list(FUNCTIONS) + ["gold_rewards:short=0"]))
    plain = train(make_config(num_steps=2, run_name="plain"))
    gold_rows, plain_rows = steps_of(gold), steps_of(plain)
    assert all("grpo_reward_fn_mean{short}" in r for r in gold_rows)
    specs = {f["name"]: f for f in read_manifest(gold.run_directory)["reward_functions"]}
    assert specs["short"]["weight"] == 0.0 and specs["short"]["max_value"] == 1.0
    # weight 0: the advantages, hence the loss and the update, are those of the plain run
    assert column(gold_rows, "grpo_loss") == pytest.approx(column(plain_rows, "grpo_loss"), rel=1e-6)
    sys.modules.pop("gold_rewards", None)


def test_an_existing_run_needs_resume(make_config):
    train(make_config(num_steps=1))
    with pytest.raises(ConfigError, match="already has steps"):
        train(make_config(num_steps=2))


def test_resume_refuses_changed_settings(make_config):
    train(make_config(num_steps=2, save_interval=1))
    with pytest.raises(ConfigError, match="num_generations"):
        train(make_config(num_steps=3, resume="latest", num_generations=2))
    with pytest.raises(ConfigError, match="raise --num-steps"):
        train(make_config(num_steps=2, resume="latest"))


def test_custom_reward_returning_nan_is_counted_not_fatal(make_config, tmp_path, monkeypatch):
    (tmp_path / "nan_rewards.py").write_text(
        "def flaky(prompts, completions, **kwargs):\n"
        "    return [float('nan') if i % 2 else 1.0 for i in range(len(completions))]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    result = train(make_config(num_steps=2, reward_fn=["format_exact", "nan_rewards:flaky"]))
    summary = json.loads((result.run_directory / "summary.json").read_text())
    assert summary["nonfinite_rewards"]["flaky"] == 2 * 4  # half of 8 completions, 2 steps
    sys.modules.pop("nan_rewards", None)


def test_tensorboard_and_wandb_mirrors(make_config, tmp_path, monkeypatch):
    pytest.importorskip("tensorboard", reason="the TensorBoard mirror is optional (rewardscope[tensorboard])")
    pytest.importorskip("wandb", reason="the W&B mirror is optional (rewardscope[wandb])")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "wandb").mkdir()
    result = train(make_config(num_steps=2, tensorboard=True, tensorboard_dir=str(tmp_path / "tb"), wandb=True,
                               wandb_project="rewardscope-tests"))
    events = EventAccumulator(str(tmp_path / "tb" / "test-run"), size_guidance={"scalars": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("rewards/mean")] == [1, 2]
    assert list((tmp_path / "wandb" / "wandb").glob("offline-run-*/run-*.wandb"))
    summary = json.loads((result.run_directory / "summary.json").read_text())
    assert not summary["sink_errors"]


def test_the_gpu_code_path_bf16_and_gradient_checkpointing_runs_on_cpu(make_config):
    """bf16 weights, gradient checkpointing and micro-batches, as on a GPU, on the tiny model."""
    with pytest.warns(UserWarning, match="bf16 on CPU"):
        result = train(make_config(num_steps=2, bf16=True, gradient_checkpointing=True, gradient_accumulation_steps=2,
                                   learning_rate=1e-3, save_interval=2, eval_every=2))
    rows = steps_of(result)
    assert len(rows) == 2 and rows[1]["grpo_kl"] >= 0.0 and math.isfinite(rows[1]["grpo_loss"])
    assert "grpo_eval_accuracy_ratio" in rows[1]


def test_a_busy_metrics_port_is_a_clear_error(make_config):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot serve /metrics on 127.0.0.1:{port}.*--no-prometheus"):
            train(make_config(num_steps=1, prometheus=True, prometheus_port=port))
