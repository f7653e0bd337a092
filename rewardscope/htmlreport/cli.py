"""``rewardscope report RUN_DIR [RUN_DIR ...] -o report.html``: write the self-contained HTML report.

Exit status 0 when written, 2 when a directory cannot be reported on (missing, not a run
directory, unreadable) or Bokeh is not installed; the message says which and why.

Usage::

    rewardscope report monitoring_data/my-run -o report.html
"""

from __future__ import annotations

import argparse
import sys

from .downsample import DEFAULT_BUCKETS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", metavar="RUN_DIR", nargs="+", help="run directories (several are overlaid for comparison)")
    parser.add_argument("-o", "--output", default="report.html", help="the HTML file to write (default report.html)")
    parser.add_argument("--buckets", type=int, default=DEFAULT_BUCKETS,
                        help=f"series longer than 2 x BUCKETS points are downsampled to BUCKETS min-max pairs "
                             f"(default {DEFAULT_BUCKETS})")


def run(args: argparse.Namespace) -> int:
    try:
        from .page import write_report
        from .runs import ReportInputError
    except ImportError as error:
        print(f"rewardscope report: error: {error.name or error} is not installed; pip install 'rewardscope[report]'",
              file=sys.stderr)
        return 2
    if args.buckets < 1:
        print("rewardscope report: error: --buckets must be at least 1", file=sys.stderr)
        return 2
    try:
        result = write_report(args.run_dirs, args.output, args.buckets)
    except (ReportInputError, OSError) as error:
        print(f"rewardscope report: error: {error}", file=sys.stderr)
        return 2
    for run in result.runs:
        for note in run.notes:
            print(f"{run.run_id}: {note}", file=sys.stderr)
    print(f"wrote {result.path} ({result.size_bytes / 1e6:.2f} MB, {len(result.runs)} run(s))")
    return 0
