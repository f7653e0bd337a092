"""The ``rewardscope`` command line.

Each subcommand lives beside the code it drives and exposes two functions,
``add_arguments(parser)`` and ``run(args) -> int``; this module only wires them.
Every parser is a ``CommandParser``: flags must be spelled out (no abbreviations), and
a usage error is one line on stderr with exit status 2, suggesting the closest flag
for a mistyped one.

Usage::

    rewardscope --version
    rewardscope simulate --scenario reward_hacking --steps 200
    rewardscope summary monitoring_data/my-run
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from ._version import __version__

# (subcommand, module, one-line help). Modules are imported lazily so that
# `rewardscope summary` does not pay for importing torch.
SUBCOMMANDS: tuple[tuple[str, str, str], ...] = (
    ("train", "rewardscope.trainer.cli", "run a monitored GRPO fine-tuning run"),
    ("simulate", "rewardscope.simulation.cli", "serve a realistic synthetic GRPO run (named failure scenarios)"),
    ("evaluate", "rewardscope.evaluation.cli", "measure every alert over many simulated runs and print the detection table"),
    ("summary", "rewardscope.report", "print a readable summary of a recorded run directory"),
    ("report", "rewardscope.htmlreport.cli", "write a self-contained HTML report with charts of one or several runs"),
    ("rules", "rewardscope.alerting.cli", "compile the alert definitions to Prometheus rule files"),
    ("dashboards", "rewardscope.dashboards.cli", "generate the Grafana dashboards (or --check them)"),
    ("deploy", "rewardscope.deploy.cli", "generate the Kubernetes manifests of deploy/kubernetes (or --check them)"),
    ("reference", "rewardscope.metrics.reference", "regenerate the README's metric reference (or --check it)"),
)


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser that refuses abbreviated flags and reports usage errors in one
    line (``rewardscope train: error: ...``, exit status 2), naming the closest known flag
    for an unknown one. Subcommand parsers made by ``add_subparsers`` are of this class too;
    each records itself as ``args._parser`` so errors about its flags name it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False  # `--num-step 5` must not silently mean --num-steps
        super().__init__(*args, **kwargs)
        self.set_defaults(_parser=self)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            owner: CommandParser = getattr(parsed, "_parser", self)
            owner.error(unrecognized_message(extras, option_strings(owner) + option_strings(self)))
        return parsed


def option_strings(parser: argparse.ArgumentParser) -> list[str]:
    """Every flag ``parser`` accepts (argparse keeps its actions in a private list)."""
    return [flag for action in parser._actions for flag in action.option_strings]


def unrecognized_message(extras: Sequence[str], known: Sequence[str]) -> str:
    """``unrecognized arguments: ...`` with the closest known flag for each unknown one."""
    hints = []
    for argument in extras:
        flag = argument.split("=", 1)[0]
        if flag.startswith("-"):
            close = difflib.get_close_matches(flag, list(dict.fromkeys(known)), n=1, cutoff=0.6)
            if close:
                hints.append((flag, close[0]))
    message = f"unrecognized arguments: {' '.join(extras)}"
    if len(hints) == 1:
        return f"{message} (did you mean {hints[0][1]}?)"
    if hints:
        return message + " (" + "; ".join(f"{flag}: did you mean {match}?" for flag, match in hints) + ")"
    return message


def build_parser() -> CommandParser:
    parser = CommandParser(prog="rewardscope", description="Watch the reward signal of GRPO fine-tuning runs.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
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
