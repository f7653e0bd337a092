"""The report's charts: Bokeh figures per section, as the Grafana dashboards group them.

Each ``Chart`` names catalogue metrics: run-level lines, per-function lines (one per
reward function), and an optional band (a lower and an upper metric, or mean +- std per
function). ``build_sections`` turns the charts into Bokeh figures for one or several runs:
one line per run (several runs are overlaid, one colour per run, or one colour per function
and one dash per run), long series downsampled by min-max decimation
(``rewardscope.htmlreport.downsample``), alert periods drawn as shaded vertical strips (red
critical, orange warning), and every time axis shared, so zooming one chart zooms all.
A chart with no data in any run is not drawn; its title is returned in ``missing``.

Usage::

    from rewardscope.htmlreport.charts import build_sections
    from rewardscope.htmlreport.runs import load_run
    sections, missing = build_sections([load_run("monitoring_data/my-run")])
    [(title, len(figures)) for title, figures in sections]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from bokeh.models import ColumnDataSource, HoverTool, LogColorMapper, Range1d
from bokeh.models.annotations import ColorBar
from bokeh.models.renderers import DataRenderer, GlyphRenderer
from bokeh.palettes import Category10_10, Viridis256
from bokeh.plotting import figure

from .downsample import DEFAULT_BUCKETS, envelope, minmax_indices
from .runs import RunData

SEVERITY_COLOURS = {"critical": "#d62728", "warning": "#ff7f0e"}
# Series colours leave out Category10's orange and red: those mean alerts here.
LINE_COLOURS = tuple(c for c in Category10_10 if c not in SEVERITY_COLOURS.values())
DASHES = ("solid", "dashed", "dotted", "dotdash", "dashdot")
TOOLS = "xpan,xwheel_zoom,box_zoom,reset,save"


@dataclass(frozen=True)
class Chart:
    title: str
    lines: tuple[tuple[str, str], ...] = ()  # (metric, label) of run-level lines
    per_function: tuple[tuple[str, str], ...] = ()  # (metric, label) drawn once per reward function
    band: tuple[str, str] | None = None  # (lower, upper) run-level metrics drawn as a filled band
    function_std_band: bool = False  # mean +- std band around each function's grpo_reward_fn_mean
    y_label: str = ""


SECTIONS: tuple[tuple[str, tuple[Chart, ...]], ...] = (
    ("Reward", (
        Chart("Combined reward: mean, min-max band", lines=(("grpo_reward_mean", "mean"),),
              band=("grpo_reward_min", "grpo_reward_max"), y_label="reward"),
        Chart("Reward per function: mean, +-1 std band", per_function=(("grpo_reward_fn_mean", ""),), function_std_band=True,
              y_label="reward"),
        Chart("Contribution share per function", per_function=(("grpo_reward_fn_contribution_ratio", ""),), y_label="share"),
        Chart("Reward range per function", per_function=(("grpo_reward_fn_min", "min"), ("grpo_reward_fn_max", "max")),
              y_label="reward"),
    )),
    ("Quality indicators", (
        Chart("Signal-to-noise", lines=(("grpo_reward_signal_to_noise", "signal-to-noise"),), y_label="ratio"),
        Chart("Reward entropy ratio", lines=(("grpo_reward_entropy_ratio", "entropy ratio"),), y_label="ratio"),
        Chart("Reward variance", lines=(("grpo_reward_variance", "variance"),), y_label="reward^2"),
        Chart("Reward hacking suspected", lines=(("grpo_reward_hacking_suspected", "suspected"),), y_label="0/1"),
    )),
    ("Group signals", (
        Chart("Groups with zero reward spread", lines=(("grpo_group_zero_std_ratio", "combined"),),
              per_function=(("grpo_reward_fn_group_zero_std_ratio", ""),), y_label="share of groups"),
        Chart("Within-group reward std", lines=(("grpo_group_reward_std_mean", "combined"),),
              per_function=(("grpo_reward_fn_group_std_mean", ""),), y_label="reward"),
        Chart("Groups saturated at the maximum", per_function=(("grpo_reward_fn_group_all_max_ratio", ""),),
              y_label="share of groups"),
        Chart("Groups all at the minimum", per_function=(("grpo_reward_fn_group_all_min_ratio", ""),), y_label="share of groups"),
    )),
    ("Training dynamics", (
        Chart("KL divergence from the reference", lines=(("grpo_kl", "KL"),), y_label="nats"),
        Chart("Policy entropy", lines=(("grpo_policy_entropy", "entropy"),), y_label="nats"),
        Chart("Advantages", lines=(("grpo_advantage_mean", "mean"), ("grpo_advantage_std", "std")), y_label="advantage"),
        Chart("Completion length", lines=(("grpo_completion_length_mean_tokens", "mean length"),), y_label="tokens"),
        Chart("Truncated completions", lines=(("grpo_completion_truncated_ratio", "truncated"),), y_label="share"),
        Chart("Gradient norm", lines=(("grpo_grad_norm", "grad norm"),), y_label="norm"),
        Chart("Learning rate", lines=(("grpo_learning_rate", "learning rate"),), y_label="rate"),
        Chart("Loss", lines=(("grpo_loss", "loss"),)),
        Chart("Clip ratio", lines=(("grpo_clip_ratio", "clip ratio"),), y_label="share"),
    )),
    ("Evaluation", (
        Chart("Eval accuracy", lines=(("grpo_eval_accuracy_ratio", "accuracy"),), y_label="accuracy"),
    )),
)


def _label(run: RunData, several: bool, *parts: str) -> str:
    text = " ".join(p for p in parts if p)
    return f"{text} ({run.run_id})" if several else text


def _new_figure(title: str, x_range: Range1d, y_label: str = "", height: int = 260, **options: Any) -> figure:
    fig = figure(title=title, x_range=x_range, height=height, **options, sizing_mode="stretch_width", tools=TOOLS,
                 active_drag="box_zoom", x_axis_label="step", y_axis_label=y_label or None, output_backend="canvas")
    fig.toolbar.logo = None
    return fig


def _alert_sources(runs: list[RunData]) -> list[ColumnDataSource | None]:
    """One strip source per run (shared by every chart of that run), None when it had no alerts."""
    sources: list[ColumnDataSource | None] = []
    for run in runs:
        periods = run.alert_periods
        if not periods:
            sources.append(None)
            continue
        sources.append(ColumnDataSource({
            "x0": [p.start for p in periods], "x1": [p.end + 1 for p in periods],
            "alert": [p.alertname for p in periods], "severity": [p.severity for p in periods],
            "colour": [SEVERITY_COLOURS.get(p.severity, "#7f7f7f") for p in periods]}))
    return sources


def _add_line(fig: figure, x: np.ndarray, y: np.ndarray, label: str, colour: str, dash: str,
              buckets: int) -> GlyphRenderer | None:
    kept = minmax_indices(y, buckets)
    if kept.size == 0:
        return None
    source = ColumnDataSource({"x": x[kept].astype(np.float64), "y": y[kept].astype(np.float32)})
    renderer = fig.line("x", "y", source=source, color=colour, line_dash=dash, line_width=1.6, legend_label=label, name=label)
    if kept.size <= 60:  # sparse series (evaluations) also get markers: a single point draws no line
        fig.scatter("x", "y", source=source, color=colour, size=5, legend_label=label)
    return renderer


def _add_band(fig: figure, x: np.ndarray, lower: np.ndarray, upper: np.ndarray, colour: str, label: str, buckets: int) -> None:
    bx, low, high = envelope(x, lower, upper, buckets)
    source = ColumnDataSource({"x": bx, "low": low.astype(np.float32), "high": high.astype(np.float32)})
    fig.varea("x", "low", "high", source=source, fill_color=colour, fill_alpha=0.18, legend_label=label)


def _draw_chart(chart: Chart, runs: list[RunData], x_range: Range1d, strips: list[ColumnDataSource | None],
                buckets: int) -> figure | None:
    fig = _new_figure(chart.title, x_range, chart.y_label)
    several = len(runs) > 1
    renderers: list[GlyphRenderer | None] = []
    for r, run in enumerate(runs):
        x = run.steps
        for i, (name, label) in enumerate(chart.lines):
            y = run.column(name)
            if y is not None:
                colour = LINE_COLOURS[(r if several else i) % len(LINE_COLOURS)]
                renderers.append(_add_line(fig, x, y, _label(run, several, label), colour, "solid", buckets))
        if chart.band is not None and chart.lines:
            low, high = run.column(chart.band[0]), run.column(chart.band[1])
            if low is not None and high is not None:
                _add_band(fig, x, low, high, LINE_COLOURS[r % len(LINE_COLOURS)], _label(run, several, "min-max"), buckets)
        offset = len(chart.lines)
        for f, fn in enumerate(run.reward_functions):
            colour = LINE_COLOURS[(offset + f) % len(LINE_COLOURS)]
            for m, (name, label) in enumerate(chart.per_function):
                y = run.column(name, fn)
                if y is None:
                    continue
                dash = DASHES[(r if several else m) % len(DASHES)]
                renderers.append(_add_line(fig, x, y, _label(run, several, fn, label), colour, dash, buckets))
            if chart.function_std_band:
                mean, std = run.column("grpo_reward_fn_mean", fn), run.column("grpo_reward_fn_std", fn)
                if mean is not None and std is not None:
                    _add_band(fig, x, mean - std, mean + std, colour, _label(run, several, fn, "+-std"), buckets)
    drawn: list[DataRenderer] = [r for r in renderers if r is not None]
    if not drawn:
        return None
    for run, source in zip(runs, strips):
        if source is not None:
            fig.vstrip(x0="x0", x1="x1", source=source, fill_color="colour", fill_alpha=0.13, line_alpha=0,
                       legend_label=_label(run, several, "alerts"))
    fig.add_tools(HoverTool(renderers=drawn, tooltips=[("series", "$name"), ("step", "@x{0}"), ("value", "@y{0.[0000]}")]))
    fig.legend.location = "top_left"
    fig.legend.click_policy = "hide"
    fig.legend.label_text_font_size = "9pt"
    fig.legend.background_fill_alpha = 0.6
    if len(fig.legend[0].items) > 3:  # a long legend inside the plot would hide the lines
        fig.add_layout(fig.legend[0], "right")
    return fig


def _distribution_figures(runs: list[RunData], x_range: Range1d, strips: list[ColumnDataSource | None]) -> list[figure]:
    figures = []
    several = len(runs) > 1
    for run, source in zip(runs, strips):
        for grid in run.distributions:
            if not np.isfinite(grid.shares).any():
                continue
            # Log colours: rewards are often discrete, and a linear scale shows only the most common value.
            shares = np.where(grid.shares > 0, grid.shares, np.nan).astype(np.float32)
            mapper = LogColorMapper(palette=Viridis256, low=max(float(np.nanmin(shares)), 1e-4), high=float(np.nanmax(shares)),
                                    nan_color=(0, 0, 0, 0))
            x0, x1 = float(grid.step_edges[0]), float(grid.step_edges[-1])
            y0, y1 = float(grid.value_edges[0]), float(grid.value_edges[-1])
            fig = _new_figure(f"Reward distribution over time: {_label(run, several, grid.reward_fn)}", x_range, "reward",
                              y_range=Range1d(start=y0, end=y1))
            fig.image(image=[shares], x=x0, y=y0, dw=x1 - x0, dh=y1 - y0, color_mapper=mapper)
            fig.add_layout(ColorBar(color_mapper=mapper, width=8, title="share"), "right")
            if source is not None:
                fig.vstrip(x0="x0", x1="x1", source=source, fill_color="colour", fill_alpha=0.0, line_color="colour",
                           line_alpha=0.9, line_width=1.5)
            figures.append(fig)
    return figures


def build_sections(runs: list[RunData], buckets: int = DEFAULT_BUCKETS) -> tuple[list[tuple[str, list[figure]]], list[str]]:
    """(section title, figures) for the runs, and the titles of charts no run had data for."""
    with_steps = [run for run in runs if run.steps.size]
    if not with_steps:
        return [], [chart.title for _, charts in SECTIONS for chart in charts]
    first = min(int(run.steps[0]) for run in with_steps)
    last = max(int(run.steps[-1]) for run in with_steps)
    x_range = Range1d(start=first, end=last + 1 if last == first else last)
    strips = _alert_sources(with_steps)
    sections: list[tuple[str, list[figure]]] = []
    missing: list[str] = []
    for title, charts in SECTIONS:
        figures = []
        for chart in charts:
            fig = _draw_chart(chart, with_steps, x_range, strips, buckets)
            if fig is None:
                missing.append(chart.title)
            else:
                figures.append(fig)
        if figures:
            sections.append((title, figures))
    distributions = _distribution_figures(with_steps, x_range, strips)
    if distributions:
        sections.append(("Reward distributions", distributions))
    else:
        missing.append("Reward distributions over time")
    return sections, missing
