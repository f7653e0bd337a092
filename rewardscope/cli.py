"""The ``rewardscope`` command line.

Each subcommand lives beside the code it drives and exposes two functions,
``add_arguments(parser)`` and ``run(args) -> int``; this module only wires them.

Usage::

    rewardscope simulate --scenario reward_hacking --steps 200
    rewardscope summary monitoring_data/my-run
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# (subcommand, module, one-line help). Modules are imported lazily so that
# `rewardscope summary` does not pay for importing torch.
SUBCOMMANDS: tuple[tuple[str, str, str], ...] = (
    ("train", "rewardscope.trainer.cli", "run a monitored GRPO fine-tuning run"),
    ("simulate", "rewardscope.simulation.cli", "serve a realistic synthetic GRPO run (named failure scenarios)"),
    ("evaluate", "rewardscope.evaluation.cli", "measure every alert over many simulated runs and print the detection table"),
    ("summary", "rewardscope.report", "print a readable summary of a recorded run directory"),
    ("rules", "rewardscope.alerting.cli", "compile the alert definitions to Prometheus rule files"),
    ("dashboards", "rewardscope.dashboards.cli", "generate the Grafana dashboards (or --check them)"),
    ("reference", "rewardscope.metrics.reference", "regenerate the README's metric reference (or --check it)"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rewardscope", description="Watch the reward signal of GRPO fine-tuning runs.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name, help_text in SUBCOMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module_name)
        importlib.import_module(module_name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
