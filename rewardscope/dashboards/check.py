"""``rewardscope dashboards --check``: are the dashboards sound, and are the checked-in files current?

``lint_dashboard`` reads a rendered dashboard the way Grafana will see it and
reports: panel ids that collide, grid positions outside the 24 columns or overlapping,
panels without a title, description or known unit, queries that name a metric the
catalogue lacks, call an unknown function, use a range other than
``[$__rate_interval]`` or forget the ``$job``/``$run_id`` filters, variables that are
used but not defined, and a missing ``datasource`` variable. ``stale_files`` compares
a directory with what the definitions render. ``check`` does both.

Usage::

    from rewardscope.dashboards.check import check
    for problem in check("grafana/dashboards"):
        print(problem)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .definitions import DASHBOARDS
from .model import DATASOURCE, GRID_COLUMNS, Dashboard, render_dashboard
from .promql import PromQLSyntaxError, check_expression, parse
from .references import REFERENCES, required_filters
from .units import is_known_unit
from .writer import rendered_files

PANEL_TYPES = frozenset({"timeseries", "stat", "gauge", "heatmap", "table", "bargauge", "text", "row"})
BUILTIN_VARIABLES = frozenset({"__rate_interval", "__interval", "__range"})
_VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
_LABEL_VALUES = re.compile(r"^label_values\((?:(?P<selector>.+),\s*)?(?P<label>[A-Za-z_][A-Za-z0-9_]*)\)$")


def _overlap(a: dict[str, int], b: dict[str, int]) -> bool:
    return a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]


def _check_variable_query(query: str) -> list[str]:
    match = _LABEL_VALUES.match(query.strip())
    if match is None:
        return [f"variable query {query!r} is not label_values(selector, label)"]
    if match.group("selector") is None:
        return []
    try:
        names = parse(match.group("selector")).metric_names
    except PromQLSyntaxError as error:
        return [str(error)]
    return [f"variable query names unknown metric {name!r}" for name in names if name not in REFERENCES]


def lint_dashboard(board: dict[str, Any]) -> list[str]:
    """Problems of one rendered dashboard (see the module docstring); empty when sound."""
    uid = board.get("uid", "?")
    problems: list[str] = []
    filters = required_filters()
    variables = {v["name"]: v for v in board.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if ds is None or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        problems.append(f"{uid}: no 'datasource' variable of type datasource for prometheus")
    for variable in variables.values():
        if variable["type"] == "query":
            problems += [f"{uid}: variable {variable['name']}: {p}" for p in _check_variable_query(variable["query"])]

    def used_variables(text: str, where: str) -> None:
        for name in _VARIABLE.findall(text):
            if name not in variables and name not in BUILTIN_VARIABLES:
                problems.append(f"{uid}: {where} uses ${name}, which is not a dashboard variable")

    ids: dict[int, str] = {}
    grids: list[tuple[str, dict[str, int]]] = []
    titles: set[str] = set()
    for panel in board.get("panels", []):
        where = f"panel {panel.get('id')} {panel.get('title', '')!r}"
        if panel.get("id") in ids:
            problems.append(f"{uid}: {where}: id {panel.get('id')} already used by {ids[panel['id']]}")
        ids[panel.get("id")] = where
        grid = panel.get("gridPos", {})
        if not (grid.get("x", -1) >= 0 and grid.get("y", -1) >= 0 and grid.get("w", 0) >= 1 and grid.get("h", 0) >= 1
                and grid["x"] + grid["w"] <= GRID_COLUMNS):
            problems.append(f"{uid}: {where}: gridPos {grid} is outside the {GRID_COLUMNS}-column grid")
        else:
            for other, other_grid in grids:
                if _overlap(grid, other_grid):
                    problems.append(f"{uid}: {where}: gridPos {grid} overlaps {other} at {other_grid}")
            grids.append((where, grid))
        if panel.get("type") not in PANEL_TYPES:
            problems.append(f"{uid}: {where}: unknown panel type {panel.get('type')!r}")
        if not panel.get("title"):
            problems.append(f"{uid}: {where}: no title")
        elif panel["title"] in titles:
            problems.append(f"{uid}: {where}: title used twice")
        titles.add(panel.get("title", ""))
        if panel.get("type") == "row":
            continue
        if not panel.get("description"):
            problems.append(f"{uid}: {where}: no description")
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        if not unit or not is_known_unit(unit):
            problems.append(f"{uid}: {where}: unit {unit!r} is not a Grafana unit")
        if panel.get("datasource") != DATASOURCE:
            problems.append(f"{uid}: {where}: datasource must be {DATASOURCE}")
        if panel.get("repeat"):
            repeat = variables.get(panel["repeat"])
            if repeat is None or not repeat.get("multi"):
                problems.append(f"{uid}: {where}: repeats over {panel['repeat']!r}, which is not a multi-value variable")
        targets = panel.get("targets", [])
        if not targets:
            problems.append(f"{uid}: {where}: no query")
        ref_ids = [t.get("refId") for t in targets]
        if len(set(ref_ids)) != len(ref_ids) or None in ref_ids:
            problems.append(f"{uid}: {where}: refIds {ref_ids} are missing or repeated")
        for target in targets:
            if target.get("datasource") != DATASOURCE:
                problems.append(f"{uid}: {where}: query {target.get('refId')} datasource must be {DATASOURCE}")
            expr = target.get("expr", "")
            problems += [f"{uid}: {where}: query {target.get('refId')}: {p}" for p in check_expression(expr, filters)]
            used_variables(expr, where)
    for annotation in board.get("annotations", {}).get("list", []):
        if "expr" in annotation:
            where = f"annotation {annotation.get('name')!r}"
            problems += [f"{uid}: {where}: {p}" for p in check_expression(annotation["expr"], filters)]
            used_variables(annotation["expr"], where)
    return problems


def stale_files(directory: str | Path, dashboards: Sequence[Dashboard] = DASHBOARDS) -> list[str]:
    """Files in ``directory`` that are missing, differ from the definitions, or were not generated."""
    directory = Path(directory)
    expected = rendered_files(dashboards)
    problems = []
    for name, text in expected.items():
        path = directory / name
        if not path.is_file():
            problems.append(f"{path}: missing; run `rewardscope dashboards`")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{path}: stale (differs from the dashboard definitions); run `rewardscope dashboards`")
    for path in sorted(directory.glob("*.json")):
        if path.name not in expected:
            problems.append(f"{path}: not generated by `rewardscope dashboards`; delete it or add a definition")
    return problems


def check(directory: str | Path, dashboards: Sequence[Dashboard] = DASHBOARDS) -> list[str]:
    """Every lint problem of the definitions, then every stale file; empty when all is well."""
    problems = []
    for board in dashboards:
        problems += lint_dashboard(render_dashboard(board))
    uids = [board.uid for board in dashboards]
    if len(set(uids)) != len(uids):
        problems.append(f"dashboard uids repeat: {uids}")
    return problems + stale_files(directory, dashboards)
