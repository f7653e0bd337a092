"""``rewardscope rules``: compile the alert definitions to Prometheus rule files.

Run from a checkout, it reads ``alerting/alerts.yml`` (the one source), writes
``prometheus/rules/rewardscope-alerts.yml`` and refreshes the package's copy of the
pack (``rewardscope/alerting/alerts.yml``, what an installed rewardscope loads).
Elsewhere it reads the packaged default pack. ``--check`` writes nothing and exits 1
when a generated file is stale; ``--operator`` writes a Prometheus Operator
``PrometheusRule`` manifest of the same rules. ``--check`` names each file ``missing`` or
``stale`` (present but different).

Usage::

    rewardscope rules                                  # regenerate the checked-in files
    rewardscope rules --check                          # exit 1 when they are stale
    rewardscope rules --overrides run.yml --out deploy/rules
    rewardscope rules --operator deploy/prometheusrule.yml --operator-namespace monitoring
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

RULES_FILE = "rewardscope-alerts.yml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default=".", help="checkout root (default: the current directory)")
    parser.add_argument("--pack", help="alert definitions (default: ROOT/alerting/alerts.yml if present, else the packaged pack)")
    parser.add_argument("--overrides", action="append", default=[], metavar="FILE",
                        help="per-run overrides YAML (repeatable; with run_id: scoped to that run)")
    parser.add_argument("--out", help="directory for the rule file (default: ROOT/prometheus/rules)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a generated file is stale")
    parser.add_argument("--operator", metavar="FILE", help="also write a PrometheusRule manifest ('-' for stdout)")
    parser.add_argument("--operator-name", default="rewardscope-alerts", help="metadata.name of the manifest")
    parser.add_argument("--operator-namespace", help="metadata.namespace of the manifest")
    parser.add_argument("--operator-label", action="append", default=[], metavar="KEY=VALUE",
                        help="extra metadata label, e.g. release=kube-prometheus-stack (repeatable)")


def _display(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def resolve_pack(root: Path, pack: str | Path | None = None) -> Path:
    """The pack to compile: the one given, else the checkout's alerting/alerts.yml, else the packaged one."""
    from .pack import DEFAULT_PACK_PATH

    if pack is not None:
        return Path(pack)
    checkout_pack = root / "alerting" / "alerts.yml"
    return checkout_pack if checkout_pack.is_file() else DEFAULT_PACK_PATH


def compile_pack(pack_path: Path, overrides: Sequence[str] = ()) -> list[dict]:
    from .compiler import compile_groups
    from .pack import load_overrides, load_pack

    return compile_groups(load_pack(pack_path), [load_overrides(o) for o in overrides])


def generated_files(root: Path, pack_path: Path, groups: list[dict], out: Path | None = None) -> dict[Path, str]:
    """Every file `rewardscope rules` writes, with its content: the rule file, and the package's copy
    of the pack when the pack is the checkout's alerting/alerts.yml."""
    from .compiler import rules_yaml

    out = root / "prometheus" / "rules" if out is None else out
    files = {out / RULES_FILE: rules_yaml(groups, source=_display(pack_path, root))}
    package_dir = root / "rewardscope" / "alerting"
    if pack_path.resolve() == (root / "alerting" / "alerts.yml").resolve() and package_dir.is_dir():
        files[package_dir / "alerts.yml"] = pack_path.read_text(encoding="utf-8")
    return files


def stale_files(files: dict[Path, str]) -> list[Path]:
    """The generated files missing or different on disk."""
    return [p for p, text in files.items() if not p.is_file() or p.read_text(encoding="utf-8") != text]


def run(args: argparse.Namespace) -> int:
    from .compiler import operator_manifest
    from .rules import RuleError

    root = Path(args.root)
    labels = dict(label.split("=", 1) for label in args.operator_label if "=" in label)
    if len(labels) != len(args.operator_label):
        print("error: --operator-label takes KEY=VALUE", file=sys.stderr)
        return 2
    try:
        pack_path = resolve_pack(root, args.pack)
        groups = compile_pack(pack_path, args.overrides)
    except (RuleError, KeyError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    files = generated_files(root, pack_path, groups, Path(args.out) if args.out else None)
    stale = stale_files(files)
    if args.check:
        for path in stale:
            state = "stale" if path.is_file() else "missing"
            print(f"{state}: {_display(path, root)} (run `rewardscope rules`)", file=sys.stderr)
        if not stale:
            print(f"{len(files)} generated rule files are up to date")
        return 1 if stale else 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[path], encoding="utf-8")
        print(f"wrote {_display(path, root)}")
    if args.operator:
        manifest = operator_manifest(groups, name=args.operator_name, namespace=args.operator_namespace, labels=labels)
        if args.operator == "-":
            sys.stdout.write(manifest)
        else:
            Path(args.operator).write_text(manifest, encoding="utf-8")
            print(f"wrote {args.operator}")
    return 0
