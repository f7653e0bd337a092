"""The package's import graph: nothing imports the package root from inside, and metrics/ stands alone."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "rewardscope"


def imported_modules(path: Path) -> list[str]:
    """Absolute names of the rewardscope modules a file imports (relative imports resolved)."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    if path.name == "__init__.py":
        module = package
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names.append(target)
    return [n for n in names if n == "rewardscope" or n.startswith("rewardscope.")]


def modules():
    return [p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE]


def test_no_module_imports_the_package_root():
    offenders = [f"{p.relative_to(PACKAGE.parent)} imports {name}" for p in modules() for name in imported_modules(p)
                 if name == "rewardscope"]
    assert offenders == []


def test_metrics_imports_nothing_else_of_rewardscope():
    offenders = [f"{p.relative_to(PACKAGE.parent)} imports {name}" for p in (PACKAGE / "metrics").rglob("*.py")
                 for name in imported_modules(p) if not name.startswith("rewardscope.metrics")]
    assert offenders == []


def test_the_walker_sees_relative_imports(tmp_path):
    assert "rewardscope._version" in imported_modules(PACKAGE / "monitor.py")
    assert "rewardscope.metrics.step" in imported_modules(PACKAGE / "metrics" / "inputs.py")
