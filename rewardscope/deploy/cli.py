"""``rewardscope deploy``: write deploy/kubernetes/*.yaml, or ``--check`` that they are up to date.

Run from a checkout after ``rewardscope rules`` and ``rewardscope dashboards``: the manifests
embed the compiled rules and the dashboard JSON.

Usage::

    rewardscope deploy                     # regenerate deploy/kubernetes/
    rewardscope deploy --check             # exit 1 when a manifest is stale
    rewardscope deploy --release kube-prometheus-stack --out /tmp/k8s
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_DIRECTORY = "deploy/kubernetes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default=".", help="checkout root (default: the current directory)")
    parser.add_argument("--out", help=f"directory of the manifests (default: ROOT/{DEFAULT_DIRECTORY})")
    parser.add_argument("--release",
                        help="add the label release=RELEASE (kube-prometheus-stack selects monitors and rules by it)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a manifest is stale")


def run(args: argparse.Namespace) -> int:
    from ..alerting.cli import resolve_pack
    from ..alerting.pack import load_pack
    from ..alerting.rules import RuleError
    from .kubernetes import manifests

    root = Path(args.root)
    out = Path(args.out) if args.out else root / DEFAULT_DIRECTORY
    try:
        files = manifests(load_pack(resolve_pack(root)), release_label=args.release)
    except (RuleError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ImportError as error:  # the dashboards need grafana-foundation-sdk, an extra
        print(f"rewardscope deploy needs Grafana's models: pip install 'rewardscope[dashboards]' ({error})", file=sys.stderr)
        return 2
    stale = [name for name, text in files.items()
             if not (out / name).is_file() or (out / name).read_text(encoding="utf-8") != text]
    if args.check:
        for name in stale:
            print(f"stale: {out / name} (run `rewardscope deploy`)", file=sys.stderr)
        if not stale:
            print(f"{len(files)} manifests in {out} are up to date")
        return 1 if stale else 0
    out.mkdir(parents=True, exist_ok=True)
    for name in stale:
        (out / name).write_text(files[name], encoding="utf-8")
        print(f"wrote {out / name}")
    return 0
