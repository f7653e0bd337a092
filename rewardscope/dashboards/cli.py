"""``rewardscope dashboards``: write grafana/dashboards/*.json, or ``--check`` them.

Writing refuses definitions that fail the lint (unknown metric, colliding ids, a
range without ``$__rate_interval`` ...). ``--check`` writes nothing and exits 1 when
the definitions are unsound or the files in the directory are not what they render
to, printing each problem on its own line.

Usage::

    rewardscope dashboards                 # from the repository root
    rewardscope dashboards --check
    rewardscope dashboards --out /tmp/dashboards
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_DIRECTORY = "grafana/dashboards"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=DEFAULT_DIRECTORY, metavar="DIR",
                        help=f"directory of the dashboard JSON files (default: {DEFAULT_DIRECTORY})")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if the files are stale or a definition is unsound")


def run(args: argparse.Namespace) -> int:
    from .check import check, lint_dashboard
    from .definitions import DASHBOARDS
    from .model import render_dashboard
    from .writer import write_dashboards

    directory = Path(args.out)
    if not directory.is_dir():
        print(f"rewardscope dashboards: missing: {directory} is not a directory; run from the repository root or pass --out",
              file=sys.stderr)
        return 2
    if args.check:
        problems = check(directory)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print(f"rewardscope dashboards --check: {len(problems)} problem(s)", file=sys.stderr)
            return 1
        print(f"{len(DASHBOARDS)} dashboards in {directory} are up to date")
        return 0
    problems = [p for board in DASHBOARDS for p in lint_dashboard(render_dashboard(board))]
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"rewardscope dashboards: {len(problems)} problem(s) in the definitions; nothing written", file=sys.stderr)
        return 1
    for path in write_dashboards(directory):
        print(f"wrote {path}")
    return 0
