"""Every generated dashboard type-checks against Grafana's published schema (`@grafana/schema` 11.2.0,
the compose image's version) with `tsc --strict`.

Each dashboard becomes a TypeScript module: the dashboard is a `Dashboard`, each panel a `Panel` with
its own plugin's `Options` and `FieldConfig` (timeseries, stat, gauge, bargauge, table, heatmap), so
an unknown key anywhere (an object literal's excess property) or a wrong type fails. Grafana's types
are TypeScript string enums; `Literal<T>` reads each enum as the union of its string values, which is
what the JSON holds. Annotation queries are datasource-specific (the schema types them with a generic
query), so their Prometheus fields are the one part left open, as the schema leaves panel targets.

npm packages come from tests/dashboards/schema/package-lock.json (`npm ci --prefix tests/dashboards/schema`,
scripts/ci-extra.sh); without them the test skips, and fails when CI is set.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "tests" / "dashboards" / "schema"
FILES = sorted((REPO / "grafana" / "dashboards").glob("*.json"))
PANELCFG = "@grafana/schema/dist/esm/raw/composable/{0}/panelcfg/x/{1}PanelCfg_types.gen"
PLUGINS = {"timeseries": ("timeseries", "TimeSeries", True), "stat": ("stat", "Stat", False), "gauge": ("gauge", "Gauge", False),
           "bargauge": ("bargauge", "BarGauge", False), "table": ("table", "Table", True), "heatmap": ("heatmap", "Heatmap", True)}
HEADER = """import type {{ AnnotationQuery, DataQuery, Dashboard, Panel, RowPanel }} from "@grafana/schema";
{imports}
// Grafana's string enums, read as the union of their values (what the JSON holds).
type Literal<T> = T extends string ? `${{T}}` : T extends (infer U)[] ? Literal<U>[] : T extends object ? {{ [K in keyof T]: Literal<T[K]> }} : T;
// Prometheus annotation fields are the datasource's, not the dashboard schema's.
type PrometheusAnnotation = Literal<AnnotationQuery<DataQuery & Record<string, unknown>>> & Record<string, unknown>;
// Panel<O, F> types fieldConfig.custom with F but leaves options open: the plugin's Options type them here.
type PluginPanel<O, F> = Omit<Literal<Panel<Record<string, unknown>, F>>, "options"> & {{ options: Literal<O> }};
type Board = Omit<Literal<Dashboard>, "panels" | "annotations"> & {{ annotations?: {{ list?: PrometheusAnnotation[] }}; panels?: unknown[] }};
"""


def require_schema_packages() -> str:
    npx = shutil.which("npx")
    if npx is None or not (SCHEMA / "node_modules" / "@grafana" / "schema").is_dir():
        message = "npm packages missing: run `npm ci --prefix tests/dashboards/schema` (scripts/ci-extra.sh)"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return npx


def typescript(board: dict) -> str:
    """The dashboard as a TypeScript module whose declarations tsc checks against the schema."""
    imports, lines = set(), []
    for index, panel in enumerate(board["panels"]):
        if panel["type"] == "row":
            lines.append(f"export const panel_{index} = {json.dumps(panel)} satisfies Literal<RowPanel>;")
            continue
        folder, prefix, has_field_config = PLUGINS[panel["type"]]
        imports.add(f'import type * as {folder} from "{PANELCFG.format(folder, prefix)}";')
        field_config = f"{folder}.FieldConfig" if has_field_config else "Record<string, unknown>"
        lines.append(f"export const panel_{index} = {json.dumps(panel)} satisfies PluginPanel<{folder}.Options, {field_config}>;")
    rest = {k: v for k, v in board.items() if k != "panels"}
    lines.append(f"export const dashboard = {json.dumps(rest)} satisfies Board;")
    return HEADER.format(imports="\n".join(sorted(imports))) + "\n".join(lines) + "\n"


def type_check(boards: dict[str, dict]) -> subprocess.CompletedProcess:
    npx = require_schema_packages()
    build = SCHEMA / "build"
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir()
    for name, board in boards.items():
        (build / f"{name}.ts").write_text(typescript(board))
    return subprocess.run([npx, "--no-install", "tsc", "-p", str(SCHEMA / "tsconfig.json")], cwd=SCHEMA, capture_output=True,
                          text=True, timeout=300)


def boards() -> dict[str, dict]:
    return {path.stem.replace("-", "_"): json.loads(path.read_text()) for path in FILES}


def test_every_dashboard_type_checks_against_grafana_schema():
    result = type_check(boards())
    assert result.returncode == 0, result.stdout + result.stderr


def test_planted_typos_fail_the_schema_check():
    planted = boards()

    def first(board: str, kind: str) -> dict:
        return next(p for p in planted[board]["panels"] if p["type"] == kind)

    misspelt = first("rewardscope_compare", "table")
    misspelt["titel"] = misspelt.pop("title")  # a misspelt panel key
    first("rewardscope_training", "timeseries")["options"]["legend"]["placement"] = "middle"  # not a legend placement
    first("rewardscope_overview", "table")["options"]["footer"]["fields"] = ""  # the schema wants a list of field names
    result = type_check(planted)
    assert result.returncode != 0
    assert "'\"titel\"' does not exist" in result.stdout, result.stdout
    assert "Type '\"middle\"' is not assignable to type 'LegendPlacement'" in result.stdout, result.stdout
    assert "Type 'string' is not assignable to type 'string[]'" in result.stdout, result.stdout
    assert result.stdout.count("error TS") == 3, result.stdout
