"""Typed dashboard pieces and their Grafana JSON: targets, panels, rows, variables, annotations.

A dashboard is written as rows of typed panels (``TimeSeries``, ``Stat``, ``Gauge``,
``BarGauge``, ``Table``, ``Heatmap``). ``render_dashboard`` lays the rows out on
Grafana's 24-column grid (left to right, wrapping, one line per row header), numbers
the panels 1, 2, 3 ... in definition order (the same definitions always give the same
ids), points every query at the ``${datasource}`` variable and completes each panel:

* its description is the panel's own lead sentence followed by the catalogue help of
  every metric its queries name, so a reader sees the definition of the number;
* its unit is the explicit one, else the Grafana unit of its first metric's catalogue unit.

Rendering builds Grafana's own typed models (``grafana-foundation-sdk``, the 11.2 build of the
compose image): ``dashboard.Dashboard``, ``dashboard.Panel`` with each plugin's ``Options`` and
``FieldConfig``, ``prometheus.Dataquery``, so keys, enums and required options are Grafana's, and
serialises them with the SDK's encoder. Rendering never fails on a bad query: ``check`` reports those.

Usage::

    from rewardscope.dashboards.model import Dashboard, Row, TimeSeries, Target, render_dashboard
    kl = TimeSeries(title="KL", targets=(Target('grpo_kl{job=~"$job", run_id=~"$run_id"}'),))
    board = Dashboard(uid="demo", title="Demo", description="KL only.", rows=(Row("Training", (kl,)),))
    render_dashboard(board)["panels"][1]["fieldConfig"]["defaults"]["unit"]      # 'suffix: nats'
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import bargauge, common, dashboard, gauge, heatmap, prometheus, stat, table, timeseries

from .promql import PromQLSyntaxError, parse
from .references import REFERENCES
from .units import grafana_unit

GRID_COLUMNS = 24
DATASOURCE: dict[str, str] = {"type": "prometheus", "uid": "${datasource}"}
_DATASOURCE_REF = dashboard.DataSourceRef(type_val="prometheus", uid="${datasource}")
# The SDK writes interval-variable fields (auto, auto_min, auto_count) on every variable; Grafana 11.2's
# published schema has none of them, so they are left out of the others.
_NOT_AN_INTERVAL: dict[str, Any] = {"auto": None, "auto_min": None, "auto_count": None}
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

    def model(self, ref_id: str) -> prometheus.Dataquery:
        return prometheus.Dataquery(expr=self.expr, instant=self.instant, range_val=not self.instant,
                                    editor_mode=prometheus.QueryEditorMode.CODE,
                                    format_val=prometheus.PromQueryFormat(self.format),
                                    legend_format=self.legend, ref_id=ref_id, datasource=_DATASOURCE_REF)


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

    def options(self) -> Any:
        """The plugin's Options model."""
        raise NotImplementedError

    def custom(self) -> Any:
        """The plugin's FieldConfig model (fieldConfig.defaults.custom), or None."""
        return None

    def overrides(self) -> list[dict[str, Any]]:
        return []

    def transformations(self) -> list[dict[str, Any]]:
        return []


def _reduce(calcs: tuple[str, ...] = ("lastNotNull",)) -> common.ReduceDataOptions:
    return common.ReduceDataOptions(calcs=list(calcs), fields="", values=False)  # fields: a regex ("" = numeric fields)


@dataclass(frozen=True, kw_only=True)
class TimeSeries(Panel):
    """Lines over time; ``band=(upper, lower)`` fills between the two series with those legends."""

    type: ClassVar[str] = "timeseries"
    stack: bool = False
    fill: int = 10
    band: tuple[str, str] | None = None
    legend_calcs: tuple[str, ...] = ()  # e.g. ("lastNotNull", "max"): a table legend with those columns

    def custom(self) -> timeseries.FieldConfig:
        return timeseries.FieldConfig(
            draw_style=common.GraphDrawStyle.LINE, fill_opacity=self.fill, line_interpolation=common.LineInterpolation.LINEAR,
            line_width=1, point_size=4, show_points=common.VisibilityMode.NEVER, span_nulls=False,
            stacking=common.StackingConfig(group="A",
                                           mode=common.StackingMode.NORMAL if self.stack else common.StackingMode.NONE))

    def options(self) -> timeseries.Options:
        display = common.LegendDisplayMode.TABLE if self.legend_calcs else common.LegendDisplayMode.LIST
        legend = common.VizLegendOptions(calcs=list(self.legend_calcs), placement=common.LegendPlacement.BOTTOM, show_legend=True,
                                         display_mode=display)
        return timeseries.Options(legend=legend, tooltip=common.VizTooltipOptions(mode=common.TooltipDisplayMode.MULTI,
                                                                                  sort=common.SortOrder.DESCENDING))

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

    def options(self) -> stat.Options:
        return stat.Options(color_mode=common.BigValueColorMode.VALUE, justify_mode=common.BigValueJustifyMode.AUTO,
                            graph_mode=common.BigValueGraphMode.AREA if self.graph else common.BigValueGraphMode.NONE,
                            orientation=common.VizOrientation.AUTO,
                            percent_change_color_mode=common.PercentChangeColorMode.STANDARD,
                            reduce_options=_reduce(), show_percent_change=False, text_mode=common.BigValueTextMode.AUTO,
                            wide_layout=True)


@dataclass(frozen=True, kw_only=True)
class Gauge(Panel):
    """Dials of the last values against thresholds."""

    type: ClassVar[str] = "gauge"

    def options(self) -> gauge.Options:
        return gauge.Options(orientation=common.VizOrientation.AUTO, reduce_options=_reduce(), show_threshold_labels=False,
                             show_threshold_markers=True, sizing=common.BarGaugeSizing.AUTO)


@dataclass(frozen=True, kw_only=True)
class BarGauge(Panel):
    """Horizontal bars of the last values, one per series."""

    type: ClassVar[str] = "bargauge"

    def options(self) -> bargauge.Options:
        return bargauge.Options(display_mode=common.BarGaugeDisplayMode.GRADIENT,
                                name_placement=common.BarGaugeNamePlacement.AUTO,
                                orientation=common.VizOrientation.HORIZONTAL, reduce_options=_reduce(), show_unfilled=True,
                                sizing=common.BarGaugeSizing.AUTO, value_mode=common.BarGaugeValueMode.COLOR)


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

    def custom(self) -> table.FieldConfig:
        return table.FieldConfig(align=common.FieldTextAlignment.AUTO, cell_options=common.TableAutoCellOptions(), inspect=False)

    def options(self) -> table.Options:
        footer = common.TableFooterOptions(show=False, reducer=["sum"], fields=[])
        return table.Options(cell_height=common.TableCellHeight.SM, footer=footer,
                             frame_index=0, show_header=True)

    def transformations(self) -> list[dict[str, Any]]:
        steps: list[dict[str, Any]] = []
        if len(self.targets) > 1:
            steps.append({"id": "merge", "options": {}})
        steps.append({"id": "organize", "options": {"excludeByName": dict.fromkeys(self.hide, True),
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

    def custom(self) -> heatmap.FieldConfig:
        return heatmap.FieldConfig(hide_from=common.HideSeriesConfig(legend=False, tooltip=False, viz=False),
                                   scale_distribution=common.ScaleDistributionConfig(type_val=common.ScaleDistribution.LINEAR))

    def options(self) -> heatmap.Options:
        return heatmap.Options(
            calculate=False, cell_gap=1,
            color=heatmap.HeatmapColorOptions(exponent=0.5, fill="dark-orange", mode=heatmap.HeatmapColorMode.SCHEME,
                                              reverse=False,
                                              scale=heatmap.HeatmapColorScale.EXPONENTIAL, scheme="Oranges", steps=64),
            exemplars=heatmap.ExemplarConfig(color="rgba(255,0,255,0.7)"), filter_values=heatmap.FilterValueRange(le=1e-9),
            legend=heatmap.HeatmapLegend(show=True), rows_frame=heatmap.RowsHeatmapOptions(layout=common.HeatmapCellLayout.AUTO),
            show_value=common.VisibilityMode.AUTO,
            tooltip=heatmap.HeatmapTooltip(mode=common.TooltipDisplayMode.SINGLE, y_histogram=False),
            y_axis=heatmap.YAxisConfig(axis_placement=common.AxisPlacement.LEFT, reverse=False, unit=self.y_unit))


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

    def model(self) -> dashboard.VariableModel:
        return dashboard.VariableModel(
            type_val=dashboard.VariableType.DATASOURCE, name=self.name, label="Data source", query="prometheus",
            current=dashboard.VariableOption(selected=False, text=self.default_name, value=self.default_uid),
            hide=dashboard.VariableHide.DONT_HIDE, include_all=False, multi=False, options=[],
            refresh=dashboard.VariableRefresh.ON_DASHBOARD_LOAD, regex="", skip_url_sync=False, **_NOT_AN_INTERVAL)


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
    default: str | None = None  # the value selected when the dashboard opens (None: Grafana picks)

    def model(self) -> dashboard.VariableModel:
        current = None
        if self.default is not None:
            value: str | list[str] = [self.default] if self.multi else self.default
            current = dashboard.VariableOption(selected=True, text=value, value=value)
        return dashboard.VariableModel(current=current,
            type_val=dashboard.VariableType.QUERY, name=self.name, label=self.label, query=self.query, datasource=_DATASOURCE_REF,
            hide=dashboard.VariableHide.DONT_HIDE, include_all=self.include_all, multi=self.multi, options=[],
            refresh=dashboard.VariableRefresh.ON_TIME_RANGE_CHANGED, regex="", skip_url_sync=False,
            sort=dashboard.VariableSort(self.sort), all_value=self.all_value if self.include_all else None, **_NOT_AN_INTERVAL)


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
        """A Prometheus annotation query; its fields are the datasource's (the dashboard schema leaves them open)."""
        return {"datasource": DATASOURCE, "enable": True, "expr": self.expr, "hide": False, "iconColor": self.color,
                "name": self.name, "step": "", "tagKeys": ",".join(self.tags), "textFormat": self.text,
                "titleFormat": self.title, "useValueForTime": False}


Variable = DatasourceVariable | QueryVariable

GRAFANA_ANNOTATIONS = dashboard.AnnotationQuery(built_in=1,
                                               datasource=dashboard.DataSourceRef(type_val="grafana", uid="-- Grafana --"),
                                               enable=True, hide=True, icon_color="rgba(0, 211, 255, 1)",
                                               name="Annotations & Alerts", type_val="dashboard")


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
    runbook_url: str | None = None  # a link to the alert runbooks in the dashboard's header

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


def _overrides(panel: Panel) -> list[dashboard.DashboardFieldConfigSourceOverrides]:
    return [dashboard.DashboardFieldConfigSourceOverrides(
        matcher=dashboard.MatcherConfig(id_val=o["matcher"]["id"], options=o["matcher"]["options"]),
        properties=[dashboard.DynamicConfigValue(id_val=p["id"], value=p["value"]) for p in o["properties"]])
        for o in panel.overrides()]


def _panel_model(panel: Panel, panel_id: int, grid: dict[str, int]) -> dashboard.Panel:
    defaults = dashboard.FieldConfig(
        unit=panel_unit(panel), min_val=panel.min, max_val=panel.max, decimals=panel.decimals, custom=panel.custom(),
        color=dashboard.FieldColor(mode=dashboard.FieldColorModeId.PALETTE_CLASSIC if panel.type == "timeseries"
                                   else dashboard.FieldColorModeId.THRESHOLDS),
        mappings=[dashboard.ValueMap(options={value: dashboard.ValueMappingResult(text=text, color=colour, index=i)})
                  for i, (value, text, colour) in enumerate(panel.mappings)],
        thresholds=dashboard.ThresholdsConfig(
            mode=dashboard.ThresholdsMode.ABSOLUTE,
            steps=[dashboard.Threshold(value=value, color=colour) for value, colour in panel.thresholds]))
    repeat: dict[str, Any] = {}
    if panel.repeat:
        repeat = {"repeat": panel.repeat, "repeat_direction": "h", "max_per_row": max(1, GRID_COLUMNS // panel.width)}
    return dashboard.Panel(
        type_val=panel.type, id_val=panel_id, title=panel.title, description=describe(panel), datasource=_DATASOURCE_REF,
        grid_pos=_grid(grid), targets=[t.model(chr(ord("A") + i)) for i, t in enumerate(panel.targets)],
        transformations=[dashboard.DataTransformerConfig(id_val=t["id"], options=t["options"]) for t in panel.transformations()],
        options=panel.options(), field_config=dashboard.FieldConfigSource(defaults=defaults, overrides=_overrides(panel)),
        **repeat)


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


def _grid(grid: dict[str, int]) -> dashboard.GridPos:
    return dashboard.GridPos(h=grid["h"], w=grid["w"], x=grid["x"], y=grid["y"])


def dashboard_model(board: Dashboard) -> dashboard.Dashboard:
    """The dashboard as Grafana's typed model (grafana-foundation-sdk)."""
    # Prometheus annotation queries stay plain mappings: their fields are the datasource's (see Annotation.to_json).
    annotations: list[Any] = [GRAFANA_ANNOTATIONS, *(a.to_json() for a in board.annotations)]
    panels: list[dashboard.Panel | dashboard.RowPanel] = []
    for panel_id, (item, grid) in enumerate(layout(board.rows), start=1):
        if isinstance(item, Row):
            panels.append(dashboard.RowPanel(collapsed=False, grid_pos=_grid(grid), id_val=panel_id, panels=[],
                                             title=item.title))
        else:
            panels.append(_panel_model(item, panel_id, grid))
    return dashboard.Dashboard(
        uid=board.uid, title=board.title, description=board.description, editable=True, fiscal_year_start_month=0,
        graph_tooltip=dashboard.DashboardCursorSync(board.graph_tooltip), panels=panels, refresh=board.refresh,
        schema_version=SCHEMA_VERSION, tags=list(board.tags), timezone="browser", version=1, week_start="",
        annotations=dashboard.AnnotationContainer(list_val=annotations),
        templating=dashboard.DashboardDashboardTemplating(list_val=[v.model() for v in board.variables]),
        time=dashboard.DashboardDashboardTime(from_val=board.time_from, to="now"),
        timepicker=dashboard.TimePickerConfig(refresh_intervals=list(REFRESH_INTERVALS)),
        links=_links(board))


def _links(board: Dashboard) -> list[dashboard.DashboardLink]:
    links = [dashboard.DashboardLink(as_dropdown=False, icon="external link", include_vars=True, keep_time=True,
                                     tags=["rewardscope"], target_blank=False, title="rewardscope", tooltip="",
                                     type_val=dashboard.DashboardLinkType.DASHBOARDS, url="")]
    if board.runbook_url:
        links.append(dashboard.DashboardLink(as_dropdown=False, icon="doc", include_vars=False, keep_time=False, tags=[],
                                             target_blank=True, title="Alert runbooks",
                                             tooltip="What each alert means and what to do",
                                             type_val=dashboard.DashboardLinkType.LINK, url=board.runbook_url))
    return links


def render_dashboard(board: Dashboard) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (a dict; see writer.render_json for the file text)."""
    return json.loads(json.dumps(dashboard_model(board), cls=JSONEncoder))
