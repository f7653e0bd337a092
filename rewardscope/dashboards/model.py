"""Typed dashboard pieces and their Grafana JSON: targets, panels, rows, variables, annotations.

A dashboard is written as rows of typed panels (``TimeSeries``, ``Stat``, ``Gauge``,
``BarGauge``, ``Table``, ``Heatmap``). ``render_dashboard`` lays the rows out on
Grafana's 24-column grid (left to right, wrapping, one line per row header), numbers
the panels 1, 2, 3 ... in definition order (the same definitions always give the same
ids), points every query at the ``${datasource}`` variable and completes each panel:

* its description is the panel's own lead sentence followed by the catalogue help of
  every metric its queries name, so a reader sees the definition of the number;
* its unit is the explicit one, else the Grafana unit of its first metric's catalogue unit.

Rendering never fails on a bad query: ``check`` reports those.

Usage::

    from rewardscope.dashboards.model import Dashboard, Row, TimeSeries, Target, render_dashboard
    kl = TimeSeries(title="KL", targets=(Target('grpo_kl{job=~"$job", run_id=~"$run_id"}'),))
    board = Dashboard(uid="demo", title="Demo", description="KL only.", rows=(Row("Training", (kl,)),))
    render_dashboard(board)["panels"][1]["fieldConfig"]["defaults"]["unit"]      # 'suffix: nats'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .promql import PromQLSyntaxError, parse
from .references import REFERENCES
from .units import grafana_unit

GRID_COLUMNS = 24
DATASOURCE: dict[str, str] = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION = 39  # Grafana 11.0-11.2; later versions migrate it on load
REFRESH_INTERVALS = ("5s", "10s", "30s", "1m", "5m", "15m", "1h")

Thresholds = tuple[tuple[float | None, str], ...]  # (from value or None for the base, colour)
ValueMapping = tuple[str, str, str]  # (exact value, text shown, colour)


@dataclass(frozen=True)
class Target:
    """One PromQL query of a panel."""

    expr: str
    legend: str = "{{run_id}}"
    instant: bool = False
    format: str = "time_series"  # or "table", "heatmap"

    def to_json(self, ref_id: str) -> dict[str, Any]:
        return {
            "datasource": DATASOURCE,
            "editorMode": "code",
            "expr": self.expr,
            "format": self.format,
            "instant": self.instant,
            "legendFormat": self.legend,
            "range": not self.instant,
            "refId": ref_id,
        }


@dataclass(frozen=True, kw_only=True)
class Panel:
    """Fields every panel type shares; subclasses add their own options."""

    title: str
    targets: tuple[Target, ...]
    description: str = ""  # lead sentence; the catalogue help of each metric is appended
    unit: str | None = None  # None: from the catalogue unit of the first metric
    width: int = 12
    height: int = 8
    min: float | None = None
    max: float | None = None
    decimals: int | None = None
    thresholds: Thresholds = ((None, "green"),)
    mappings: tuple[ValueMapping, ...] = ()
    repeat: str | None = None  # a variable name: one copy of the panel per selected value
    # Why this panel can legitimately show no data for a healthy run; empty = it must show data.
    may_be_empty: str = ""

    type: ClassVar[str] = ""

    def options(self) -> dict[str, Any]:
        return {}

    def custom(self) -> dict[str, Any]:
        return {}

    def overrides(self) -> list[dict[str, Any]]:
        return []

    def transformations(self) -> list[dict[str, Any]]:
        return []


def _reduce(calcs: tuple[str, ...] = ("lastNotNull",)) -> dict[str, Any]:
    return {"calcs": list(calcs), "fields": "", "values": False}  # a reducer's fields: a regex ("" = numeric fields)


@dataclass(frozen=True, kw_only=True)
class TimeSeries(Panel):
    """Lines over time; ``band=(upper, lower)`` fills between the two series with those legends."""

    type: ClassVar[str] = "timeseries"
    stack: bool = False
    fill: int = 10
    band: tuple[str, str] | None = None
    legend_calcs: tuple[str, ...] = ()  # e.g. ("lastNotNull", "max"): a table legend with those columns

    def custom(self) -> dict[str, Any]:
        return {
            "drawStyle": "line",
            "fillOpacity": self.fill,
            "lineInterpolation": "linear",
            "lineWidth": 1,
            "pointSize": 4,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"group": "A", "mode": "normal" if self.stack else "none"},
        }

    def options(self) -> dict[str, Any]:
        return {
            "legend": {"calcs": list(self.legend_calcs), "displayMode": "table" if self.legend_calcs else "list",
                       "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }

    def overrides(self) -> list[dict[str, Any]]:
        if self.band is None:
            return []
        upper, lower = self.band
        band_colour = {"id": "color", "value": {"fixedColor": "blue", "mode": "fixed"}}
        return [
            {"matcher": {"id": "byName", "options": upper},
             "properties": [{"id": "custom.fillBelowTo", "value": lower}, {"id": "custom.fillOpacity", "value": 20},
                            {"id": "custom.lineWidth", "value": 0}, band_colour]},
            {"matcher": {"id": "byName", "options": lower},
             "properties": [{"id": "custom.lineWidth", "value": 0}, band_colour]},
        ]


@dataclass(frozen=True, kw_only=True)
class Stat(Panel):
    """A big number (the last value) with a sparkline."""

    type: ClassVar[str] = "stat"
    graph: bool = True
    width: int = 4
    height: int = 4

    def options(self) -> dict[str, Any]:
        return {"colorMode": "value", "graphMode": "area" if self.graph else "none", "justifyMode": "auto",
                "orientation": "auto", "percentChangeColorMode": "standard", "reduceOptions": _reduce(),
                "showPercentChange": False, "textMode": "auto", "wideLayout": True}


@dataclass(frozen=True, kw_only=True)
class Gauge(Panel):
    """Dials of the last values against thresholds."""

    type: ClassVar[str] = "gauge"

    def options(self) -> dict[str, Any]:
        return {"minVizHeight": 75, "minVizWidth": 75, "orientation": "auto", "reduceOptions": _reduce(),
                "showThresholdLabels": False, "showThresholdMarkers": True, "sizing": "auto"}


@dataclass(frozen=True, kw_only=True)
class BarGauge(Panel):
    """Horizontal bars of the last values, one per series."""

    type: ClassVar[str] = "bargauge"

    def options(self) -> dict[str, Any]:
        return {"displayMode": "gradient", "maxVizHeight": 300, "minVizHeight": 16, "minVizWidth": 8, "namePlacement": "auto",
                "orientation": "horizontal", "reduceOptions": _reduce(), "showUnfilled": True, "sizing": "auto", "valueMode": "color"}


@dataclass(frozen=True, kw_only=True)
class Table(Panel):
    """Instant queries as a table; several targets are merged on their common labels."""

    type: ClassVar[str] = "table"
    hide: tuple[str, ...] = ("Time", "__name__")
    rename: tuple[tuple[str, str], ...] = ()  # (column, shown name)
    column_units: tuple[tuple[str, str], ...] = ()  # (shown name, unit) where a column differs from ``unit``

    def overrides(self) -> list[dict[str, Any]]:
        return [{"matcher": {"id": "byName", "options": column}, "properties": [{"id": "unit", "value": unit}]}
                for column, unit in self.column_units if unit != self.unit]

    def custom(self) -> dict[str, Any]:
        return {"align": "auto", "cellOptions": {"type": "auto"}, "inspect": False}

    def options(self) -> dict[str, Any]:
        return {"cellHeight": "sm", "footer": {"show": False, "reducer": ["sum"], "fields": []}, "frameIndex": 0, "showHeader": True}

    def transformations(self) -> list[dict[str, Any]]:
        steps: list[dict[str, Any]] = []
        if len(self.targets) > 1:
            steps.append({"id": "merge", "options": {}})
        steps.append({"id": "organize", "options": {"excludeByName": {name: True for name in self.hide},
                                                     "indexByName": {}, "renameByName": dict(self.rename)}})
        return steps


@dataclass(frozen=True, kw_only=True)
class Heatmap(Panel):
    """Buckets of a Prometheus histogram over time (targets in ``heatmap`` format, legend ``{{le}}``).

    ``unit`` is that of the cell values (counts); ``y_unit`` that of the bucket bounds.
    """

    type: ClassVar[str] = "heatmap"
    unit: str | None = "short"
    y_unit: str = "none"

    def custom(self) -> dict[str, Any]:
        return {"hideFrom": {"legend": False, "tooltip": False, "viz": False}, "scaleDistribution": {"type": "linear"}}

    def options(self) -> dict[str, Any]:
        return {
            "calculate": False,
            "cellGap": 1,
            "color": {"exponent": 0.5, "fill": "dark-orange", "mode": "scheme", "reverse": False, "scale": "exponential",
                      "scheme": "Oranges", "steps": 64},
            "exemplars": {"color": "rgba(255,0,255,0.7)"},
            "filterValues": {"le": 1e-9},
            "legend": {"show": True},
            "rowsFrame": {"layout": "auto"},
            "showValue": "auto",
            "tooltip": {"mode": "single", "yHistogram": False},
            "yAxis": {"axisPlacement": "left", "reverse": False, "unit": self.y_unit},
        }


@dataclass(frozen=True)
class Row:
    """A titled band of panels."""

    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class DatasourceVariable:
    """``$datasource``: every query goes through it; defaults to the provisioned Prometheus."""

    default_uid: str
    default_name: str = "Prometheus"
    name: str = "datasource"

    def to_json(self) -> dict[str, Any]:
        return {"current": {"selected": False, "text": self.default_name, "value": self.default_uid},
                "hide": 0, "includeAll": False, "label": "Data source", "multi": False, "name": self.name,
                "options": [], "query": "prometheus", "refresh": 1, "regex": "", "skipUrlSync": False,
                "type": "datasource"}


@dataclass(frozen=True)
class QueryVariable:
    """A variable filled from ``label_values(...)``, refreshed when the time range changes."""

    name: str
    label: str
    query: str
    multi: bool = True
    include_all: bool = True
    all_value: str | None = ".*"
    sort: int = 1  # 1 = alphabetical ascending, 2 = descending

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"datasource": DATASOURCE, "hide": 0,
                               "includeAll": self.include_all, "label": self.label, "multi": self.multi,
                               "name": self.name, "options": [], "query": self.query, "refresh": 2, "regex": "",
                               "skipUrlSync": False, "sort": self.sort, "type": "query"}
        if self.include_all and self.all_value is not None:
            out["allValue"] = self.all_value
        return out


@dataclass(frozen=True)
class Annotation:
    """Marks on every time series where ``expr`` is 1 or more (e.g. while an alert fires)."""

    name: str
    expr: str
    title: str
    text: str
    tags: tuple[str, ...]
    color: str = "red"

    def to_json(self) -> dict[str, Any]:
        return {"datasource": DATASOURCE, "enable": True, "expr": self.expr, "hide": False, "iconColor": self.color,
                "name": self.name, "step": "", "tagKeys": ",".join(self.tags), "textFormat": self.text,
                "titleFormat": self.title, "useValueForTime": False}


Variable = DatasourceVariable | QueryVariable

GRAFANA_ANNOTATIONS = {"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
                       "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts",
                       "type": "dashboard"}


@dataclass(frozen=True)
class Dashboard:
    """One dashboard: its identity, rows, variables and annotations."""

    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    variables: tuple[Variable, ...] = ()
    annotations: tuple[Annotation, ...] = ()
    tags: tuple[str, ...] = ("rewardscope",)
    refresh: str = "10s"
    time_from: str = "now-1h"
    graph_tooltip: int = 1  # shared crosshair

    @property
    def filename(self) -> str:
        return f"{self.uid}.json"

    def panels(self) -> list[Panel]:
        return [p for row in self.rows for p in row.panels]


def _references(panel: Panel):
    """Catalogue references of the metrics the panel's queries name, in query order."""
    for target in panel.targets:
        try:
            names = parse(target.expr).metric_names
        except PromQLSyntaxError:
            continue
        for name in names:
            ref = REFERENCES.get(name)
            if ref is not None:
                yield ref


def describe(panel: Panel) -> str:
    """The panel's lead sentence, then ``metric``: catalogue help for each metric its queries name."""
    helps: dict[str, str] = {}
    for ref in _references(panel):
        helps.setdefault(ref.metric, ref.help)
    parts = [panel.description.strip()] if panel.description.strip() else []
    parts += [f"`{name}`: {help_text}" for name, help_text in helps.items()]
    return "\n\n".join(parts)


def panel_unit(panel: Panel) -> str:
    """The explicit unit, else the Grafana unit of the first metric's catalogue unit ("none" if it has none)."""
    if panel.unit is not None:
        return panel.unit
    first = next(_references(panel), None)
    return "none" if first is None else grafana_unit(first.unit)


def _panel_json(panel: Panel, panel_id: int, grid: dict[str, int]) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "color": {"mode": "palette-classic" if panel.type == "timeseries" else "thresholds"},
        "custom": panel.custom(),
        "mappings": [{"type": "value", "options": {value: {"text": text, "color": colour, "index": i}}}
                     for i, (value, text, colour) in enumerate(panel.mappings)],
        "thresholds": {"mode": "absolute", "steps": [{"color": colour, "value": value} for value, colour in panel.thresholds]},
        "unit": panel_unit(panel),
    }
    for key in ("min", "max", "decimals"):
        if getattr(panel, key) is not None:
            defaults[key] = getattr(panel, key)
    out: dict[str, Any] = {
        "datasource": DATASOURCE,
        "description": describe(panel),
        "fieldConfig": {"defaults": defaults, "overrides": panel.overrides()},
        "gridPos": grid,
        "id": panel_id,
        "options": panel.options(),
        "targets": [t.to_json(chr(ord("A") + i)) for i, t in enumerate(panel.targets)],
        "title": panel.title,
        "transformations": panel.transformations(),
        "type": panel.type,
    }
    if panel.repeat:
        out.update({"repeat": panel.repeat, "repeatDirection": "h", "maxPerRow": max(1, GRID_COLUMNS // panel.width)})
    return out


def layout(rows: tuple[Row, ...]) -> list[tuple[Row | Panel, dict[str, int]]]:
    """Grid positions: each row header on its own line, then its panels left to right, wrapping at 24 columns."""
    placed: list[tuple[Row | Panel, dict[str, int]]] = []
    y = 0
    for row in rows:
        placed.append((row, {"h": 1, "w": GRID_COLUMNS, "x": 0, "y": y}))
        y += 1
        x, line_height = 0, 0
        for panel in row.panels:
            if x + panel.width > GRID_COLUMNS:
                y, x, line_height = y + line_height, 0, 0
            placed.append((panel, {"h": panel.height, "w": panel.width, "x": x, "y": y}))
            x += panel.width
            line_height = max(line_height, panel.height)
        y += line_height
    return placed


def render_dashboard(board: Dashboard) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (a dict; see writer.render_json for the file text)."""
    panels = []
    for panel_id, (item, grid) in enumerate(layout(board.rows), start=1):
        if isinstance(item, Row):
            panels.append({"collapsed": False, "gridPos": grid, "id": panel_id, "panels": [], "title": item.title,
                           "type": "row"})
        else:
            panels.append(_panel_json(item, panel_id, grid))
    return {
        "annotations": {"list": [GRAFANA_ANNOTATIONS] + [a.to_json() for a in board.annotations]},
        "description": board.description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": board.graph_tooltip,
        "id": None,
        "links": [{"asDropdown": False, "icon": "external link", "includeVars": True, "keepTime": True,
                   "tags": ["rewardscope"], "targetBlank": False, "title": "rewardscope", "tooltip": "",
                   "type": "dashboards", "url": ""}],
        "panels": panels,
        "refresh": board.refresh,
        "schemaVersion": SCHEMA_VERSION,
        "tags": list(board.tags),
        "templating": {"list": [v.to_json() for v in board.variables]},
        "time": {"from": board.time_from, "to": "now"},
        "timepicker": {"refresh_intervals": list(REFRESH_INTERVALS)},
        "timezone": "browser",
        "title": board.title,
        "uid": board.uid,
        "version": 1,
        "weekStart": "",
    }
