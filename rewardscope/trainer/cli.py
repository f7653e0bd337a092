"""``rewardscope train``: the flags, the config file, and the run.

``add_arguments(parser)`` adds one flag per ``TrainConfig`` field plus ``--config``;
``run(args)`` builds the configuration (flags given on the command line override the
file, which overrides the defaults), trains, and prints a summary. Every flag defaults
to None here so that "given on the command line" can be told apart from "default".

Importing this module does not import torch: ``rewardscope --help`` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from pathlib import Path
from typing import Any

from rewardscope.trainer.config import (
    TrainConfig,
    build_config,
    config_from_mapping,
    flag_name,
    load_config_file,
    option_fields,
)
from rewardscope.trainer.errors import TrainerError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the train flags to ``parser`` (a subcommand parser or a standalone one)."""
    parser.add_argument("--config", metavar="FILE.yml", help="YAML file whose keys are these flags without '--' (flags override it)")
    for f in option_fields():
        meta = f.metadata
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        help_text = meta["help"] if "default:" in meta["help"] else f"{meta['help']} (default: {_show_default(default)})"
        kwargs: dict[str, Any] = {"dest": f.name, "default": None, "help": help_text}
        if meta["kind"] is bool:
            parser.add_argument(flag_name(f.name), action=argparse.BooleanOptionalAction, **kwargs)
            continue
        if meta.get("repeat"):
            parser.add_argument(flag_name(f.name), action="append", metavar="SPEC", **kwargs)
            continue
        kwargs["type"] = meta["kind"]
        if meta.get("choices"):
            kwargs["choices"] = meta["choices"]
        for key in ("nargs", "const"):
            if key in meta:
                kwargs[key] = meta[key]
        parser.add_argument(flag_name(f.name), **kwargs)


def _show_default(value: Any) -> str:
    if value is None:
        return "auto"
    if isinstance(value, list):
        return " ".join(value)
    return str(value)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig the parsed flags (and ``--config`` file) describe.

    With ``--resume``, settings neither given as flags nor in the file are those of the
    run being resumed, so a bare ``--resume`` continues it unchanged.
    """
    names = {f.name for f in option_fields()}
    cli_values = {k: v for k, v in vars(args).items() if k in names and v is not None}
    cli_values = config_from_mapping(cli_values, "command line") if cli_values else {}
    file_values = load_config_file(args.config) if getattr(args, "config", None) else {}
    resume = cli_values.get("resume", file_values.get("resume"))
    if resume is not None:
        base = _checkpoint_settings(resume, {**file_values, **cli_values})
        file_values = {**base, **file_values}
    return build_config(file_values, cli_values)


def _checkpoint_settings(resume: str, given: dict[str, Any]) -> dict[str, Any]:
    from rewardscope.trainer import checkpoints  # imports torch: only when resuming

    checkpoint_dir = given.get("checkpoint_dir")
    if checkpoint_dir is None and given.get("run_name"):
        checkpoint_dir = str(Path("checkpoints") / given["run_name"])
    path = checkpoints.find_checkpoint(resume, checkpoint_dir)
    saved = dict(checkpoints.read_trainer_state(path).get("config", {}))
    names = {f.name for f in option_fields()}
    # Machine-specific choices are made afresh; everything else continues.
    for key in ("device", "threads", "bf16", "gradient_checkpointing", "resume", "progress", "prometheus_port", "prometheus_host", "cache_dir"):
        saved.pop(key, None)
    return {k: v for k, v in saved.items() if k in names}


def run(args: argparse.Namespace) -> int:
    """Train as the flags say and print a summary; the exit status."""
    from rewardscope.exporter.runstore import RunStoreError

    try:
        config = config_from_args(args)
        from rewardscope.trainer.grpo import train

        result = train(config)
    except (TrainerError, RunStoreError) as exc:
        print(f"rewardscope train: error: {exc}", file=sys.stderr)
        return 2
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one summary
        print(format_summary(result))
    return 130 if result.interrupted else 0


def format_summary(result: Any) -> str:
    """A few lines on the finished run: steps, reward, accuracy, where things are."""
    rewards = [r for r in result.reward_mean if not math.isnan(r)]
    window = max(1, min(10, len(rewards) // 2))
    lines = [
        f"run {result.run_id}: steps {result.first_step}-{result.last_step} of {result.num_steps}"
        + (" (interrupted)" if result.interrupted else ""),
    ]
    if rewards:
        first, last = sum(rewards[:window]) / window, sum(rewards[-window:]) / window
        lines.append(f"  mean reward: first {window} steps {first:.3f}, last {window} steps {last:.3f}")
    if result.eval_accuracy:
        step, accuracy = max(result.eval_accuracy.items())
        lines.append(f"  eval accuracy: {accuracy:.1%} at step {step}")
    if result.step_seconds:
        lines.append(f"  seconds per step: {sum(result.step_seconds) / len(result.step_seconds):.3f}")
    final = result.final_metrics
    for key in ("grpo_kl", "grpo_policy_entropy", "grpo_completion_truncated_ratio"):
        if key in final:
            lines.append(f"  {key}: {final[key]:.4g}")
    lines += _alert_lines(result)
    if result.run_directory is not None:
        lines.append(f"  run store: {result.run_directory}")
    if result.last_checkpoint is not None:
        lines.append(f"  last checkpoint: {result.last_checkpoint}")
    return "\n".join(lines)


def _alert_lines(result: Any) -> list[str]:
    """What the in-process alerts said: how often each fired, and which still fire."""
    if result.alerts_fired is None:
        return ["  alerts: not evaluated (--no-enable-alerts)"]
    fired = sorted(result.alerts_fired.items())
    total = int(sum(count for _, count in fired))
    shown = ", ".join(f"{name.replace('/', ' ')} x{int(count)}" for name, count in fired)
    lines = [f"  alerts fired: {total} ({shown})" if total else "  alerts fired: none"]
    if result.alerts_firing:
        lines.append(f"  alerts still firing: {', '.join(result.alerts_firing)}")
    elif total:
        lines.append("  alerts still firing: none")
    return lines


# The names the trainer brief uses; the main CLI calls add_arguments / run.
add_train_arguments = add_arguments
run_train = run


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point: ``python -m rewardscope.trainer.cli``."""
    import logging

    from rewardscope.cli import CommandParser

    parser = CommandParser(prog="rewardscope train", description="Run a monitored GRPO fine-tuning run.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
