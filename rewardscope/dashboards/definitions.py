"""The rewardscope dashboards: run overview, reward functions, training dynamics, run comparison.

Every query goes through ``sel`` (a selector of a catalogue metric filtered by the
``$job`` and ``$run_id`` variables) and, for counters and histograms, through
``rate``/``increase`` with ``[$__rate_interval]``. ``check`` verifies that against
the catalogue; ``tests/dashboards`` runs every query against a real Prometheus that
scraped a simulated run.

A panel that can legitimately be empty for a healthy run says why in
``may_be_empty``; the list is kept short on purpose (see the tests).

Usage::

    from rewardscope.dashboards.definitions import DASHBOARDS
    [d.uid for d in DASHBOARDS]
    # ['rewardscope-overview', 'rewardscope-reward-functions', 'rewardscope-training', 'rewardscope-compare']
"""

from __future__ import annotations

from pathlib import Path

from ..alerting.cli import resolve_pack
from ..alerting.pack import load_pack
from .model import (
    Annotation,
    BarGauge,
    Dashboard,
    DatasourceVariable,
    Gauge,
    Heatmap,
    QueryVariable,
    Row,
    Stat,
    Table,
    Target,
    TimeSeries,
)
from .references import reference

# The uid of the Prometheus datasource in grafana/provisioning/datasources/ (a test checks they agree).
DATASOURCE_UID = "rewardscope-prometheus"
RATE = "[$__rate_interval]"


def sel(name: str, *extra: str) -> str:
    """``name{job=~"$job", run_id=~"$run_id", extra...}``; KeyError for a name the catalogue lacks."""
    reference(name)
    matchers = ['job=~"$job"', 'run_id=~"$run_id"', *extra]
    return f"{name}{{{', '.join(matchers)}}}"


def rate(name: str, by: str = "run_id", *extra: str, fn: str = "rate") -> str:
    """``sum by (by) (rate(sel[$__rate_interval]))``: per-second rate of a counter, summed per run."""
    return f"sum by ({by}) ({fn}({sel(name, *extra)}{RATE}))"


def exact_reward_mean(prefix: str, by: str = "run_id", *extra: str) -> str:
    """Exact mean of every reward in the rate interval, negative rewards included:
    (rate(positive part) - rate(negative part)) / rate(observations). Each is a counter that only grows;
    a histogram's _sum would decrease with negative rewards and read as a counter reset."""
    positive = rate(f"{prefix}_positive_sum_total", by, *extra)
    negative = rate(f"{prefix}_negative_sum_total", by, *extra)
    observations = rate(f"{prefix}_value_bucket", by, *extra, 'le="+Inf"')
    return f"({positive} - {negative}) / {observations}"


def or_zero(expr: str, by: str = "run_id") -> str:
    """``expr``, or 0 for every selected run that has no such series (e.g. no alert ever fired)."""
    return f"{expr} or sum by ({by}) ({sel('grpo_step')}) * 0"


def series(name: str, legend: str = "{{run_id}}", *extra: str) -> Target:
    return Target(sel(name, *extra), legend)


def per_fn(name: str) -> Target:
    return Target(sel(name, 'reward_fn=~"$reward_fn"'), "{{run_id}} {{reward_fn}}")


RATIO = dict(unit="percentunit", min=0.0, max=1.0)

# --- variables and annotations shared by every dashboard -------------------------------------
DATASOURCE = DatasourceVariable(DATASOURCE_UID)
# Set once in alerting/alerts.yml (settings): the job the rules match is the one selected on opening,
# and the header links to the runbooks the alerts link to.
SETTINGS = load_pack(resolve_pack(Path(__file__).resolve().parents[2])).settings
RUNBOOKS = SETTINGS.runbook_url.split("#", 1)[0].replace("{anchor}", "")
JOB = QueryVariable("job", "Job", "label_values(grpo_run_info, job)", default=SETTINGS.job)
RUN = QueryVariable("run_id", "Run", 'label_values(grpo_run_info{job=~"$job"}, run_id)', include_all=False, sort=2)
ALL_RUNS = QueryVariable("run_id", "Runs", 'label_values(grpo_run_info{job=~"$job"}, run_id)', sort=2)
REWARD_FN = QueryVariable("reward_fn", "Reward function",
                          'label_values(grpo_reward_fn_weight{job=~"$job", run_id=~"$run_id"}, reward_fn)')

ALERT_ANNOTATIONS = (
    Annotation("Prometheus alerts", 'ALERTS{alertstate="firing", run_id=~"$run_id"}', "{{alertname}}",
               "{{severity}}: run {{run_id}} {{reward_fn}}", ("alertname", "severity", "run_id")),
    Annotation("In-process alerts", f"{sel('grpo_alert_firing')} == 1", "{{alertname}} (in-process)",
               "{{severity}}: run {{run_id}}", ("alertname", "severity", "run_id"), color="orange"),
)

# The online detectors (rewardscope/analysis): catalogue name stem and legend.
DETECTORS = (("reward_hacking", "hacking"), ("function_dominance", "dominance"), ("length_exploitation", "length"),
             ("kl_acceleration", "KL acceleration"), ("zero_spread_takeover", "zero spread"))

# --- run overview ---------------------------------------------------------------------------------
OVERVIEW = Dashboard(
    uid="rewardscope-overview",
    title="rewardscope: run overview",
    description="Is the reward signal of the selected GRPO runs healthy? Progress, reward, signal quality and alerts.",
    variables=(DATASOURCE, JOB, RUN),
    annotations=ALERT_ANNOTATIONS,
    runbook_url=RUNBOOKS,
    rows=(
        Row("Run", (
            Stat(title="Step", targets=(Target(f"max by (run_id) ({sel('grpo_step')})"),), decimals=0, graph=False),
            Stat(title="Steps per second", targets=(Target(rate("grpo_steps_total")),), unit="count:steps/s",
                 description="Steps recorded per second over the rate interval."),
            Stat(title="Time since last step",
                 targets=(Target(f"time() - max by (run_id) ({sel('grpo_last_step_timestamp_seconds')})"),),
                 unit="s", graph=False, thresholds=((None, "green"), (60.0, "orange"), (300.0, "red")),
                 description="Seconds since the run last recorded a step; a stalled run keeps growing here."),
            Stat(title="Alerts firing (in-process)",
                 targets=(Target(or_zero(f"sum by (run_id) ({sel('grpo_alert_firing')})")),), unit="short",
                 decimals=0, graph=False, thresholds=((None, "green"), (1.0, "red")),
                 description="Alerts the monitor's own engine holds firing for the run right now (0 when none)."),
            Gauge(title="Eval accuracy", targets=(series("grpo_eval_accuracy_ratio"),), width=4, height=4,
                  thresholds=((None, "red"), (0.5, "orange"), (0.8, "green")), **RATIO),
            Stat(title="Reward hacking suspected", targets=(series("grpo_reward_hacking_suspected"),), graph=False,
                 mappings=(("0", "no", "green"), ("1", "SUSPECTED", "red")),
                 may_be_empty="the reward-hacking detector is optional; runs without it have no such gauge"),
            Table(title="Run info", targets=(Target(sel("grpo_run_info"), instant=True, format="table"),),
                  width=24, height=5, unit="none", hide=("Time", "Value", "__name__"),
                  description="Metadata each run publishes once: model, trainer, reward functions, rewardscope version."),
        )),
        Row("Reward of each selected run", (
            TimeSeries(title="Reward of $run_id: mean with min-max band", repeat="run_id",
                       targets=(Target(sel("grpo_reward_mean"), "mean"), Target(sel("grpo_reward_max"), "max"),
                                Target(sel("grpo_reward_min"), "min")),
                       band=("max", "min"), fill=0,
                       description="Mean combined reward of each step, with the batch's smallest and largest reward as a band."),
        )),
        Row("Reward signal quality", (
            TimeSeries(title="Reward mean over the rate interval", targets=(Target(exact_reward_mean("grpo_reward")),),
                       unit="none", width=8,
                       description="Mean combined reward of every completion recorded in the rate interval, from the "
                                   "histogram's counters: exact whatever the step and scrape timing."),
            TimeSeries(title="Signal-to-noise", targets=(series("grpo_reward_signal_to_noise"),), width=8, **RATIO),
            TimeSeries(title="Reward entropy ratio", targets=(series("grpo_reward_entropy_ratio"),), width=8, **RATIO),
            TimeSeries(title="Reward variance", targets=(series("grpo_reward_variance"),), width=8),
            TimeSeries(title="Groups with zero reward spread", targets=(series("grpo_group_zero_std_ratio"),), width=8,
                       **RATIO),
            TimeSeries(title="Within-group reward std", targets=(series("grpo_group_reward_std_mean"),), width=8),
        )),
        Row("Detectors", (
            TimeSeries(title="Detector evidence",
                       targets=tuple(Target(sel(f"grpo_{name}_evidence_ratio"), f"{{{{run_id}}}} {label}")
                                     for name, label in DETECTORS),
                       width=16, description="Each online detector's evidence, 0 (none) to 1 (its trigger reached): reward "
                                             "hacking, one function dominating, length exploitation, KL accelerating, "
                                             "zero-spread groups taking over (docs/runbooks.md says how each is computed).",
                       **RATIO),
            TimeSeries(title="Verdicts held", targets=tuple(Target(sel(f"grpo_{name}_suspected"), f"{{{{run_id}}}} {label}")
                                                            for name, label in DETECTORS),
                       width=8, unit="none", min=0.0, max=1.0,
                       description="1 while a detector holds its verdict; a held verdict clears only on evidence of recovery."),
        )),
        Row("Alerts", (
            Stat(title="Alerts fired (in-process, total)",
                 targets=(Target(or_zero(f"sum by (run_id) ({sel('grpo_alerts_fired_total')})")),), unit="short",
                 decimals=0, height=8, graph=False,
                 description="Transitions to firing counted by the monitor's own alert engine since the process started."),
            Table(title="Alerts firing in Prometheus",
                  targets=(Target('ALERTS{alertstate="firing", run_id=~"$run_id"}', instant=True, format="table"),),
                  width=10, unit="none", hide=("Time", "Value", "__name__", "alertstate"),
                  description="Alert rules compiled from alerting/ that fire for the selected runs.",
                  may_be_empty="Prometheus writes ALERTS only while a rule is pending or firing; a healthy run has none"),
            Table(title="In-process alert states",
                  targets=(Target(f"max by (run_id, alertname, severity) ({sel('grpo_alert_firing')})",
                                  instant=True, format="table"),),
                  width=10, unit="none", rename=(("Value", "firing (1 = yes)"),),
                  description="Every alert the monitor's own engine has fired in this process, and whether it still fires.",
                  may_be_empty="a series appears only once an alert has fired; a healthy run has none"),
        )),
    ),
)

# --- reward-function breakdown --------------------------------------------------------------------
FN = 'reward_fn=~"$reward_fn"'
REWARD_FUNCTIONS = Dashboard(
    uid="rewardscope-reward-functions",
    title="rewardscope: reward functions",
    description="Each reward function on its own: level, spread, share of the combined reward, distribution, saturation.",
    variables=(DATASOURCE, JOB, RUN, REWARD_FN),
    annotations=ALERT_ANNOTATIONS,
    runbook_url=RUNBOOKS,
    rows=(
        Row("Per function", (
            TimeSeries(title="Mean reward per function", targets=(per_fn("grpo_reward_fn_mean"),)),
            TimeSeries(title="Reward std per function", targets=(per_fn("grpo_reward_fn_std"),)),
            TimeSeries(title="Contribution share per function", targets=(per_fn("grpo_reward_fn_contribution_ratio"),),
                       stack=True, fill=40, **RATIO),
            BarGauge(title="Contribution share now", targets=(per_fn("grpo_reward_fn_contribution_ratio"),), **RATIO),
            TimeSeries(title="Mean reward per function over the rate interval",
                       targets=(Target(exact_reward_mean("grpo_reward_fn", "run_id, reward_fn", FN),
                                       "{{run_id}} {{reward_fn}}"),),
                       unit="none",
                       description="Mean of every finite reward of the function in the rate interval, from the histogram's "
                                   "counters: exact whatever the step and scrape timing."),
            TimeSeries(title="Reward range per function",
                       targets=(Target(sel("grpo_reward_fn_min", FN), "{{run_id}} {{reward_fn}} min"),
                                Target(sel("grpo_reward_fn_max", FN), "{{run_id}} {{reward_fn}} max")),
                       description="Smallest and largest finite reward of each function in the latest step."),
        )),
        Row("Reward distributions", (
            Heatmap(title="Reward distribution: $reward_fn", repeat="reward_fn",
                    targets=(Target(f"sum by (le) (increase({sel('grpo_reward_fn_value_bucket', FN)}{RATE}))", "{{le}}",
                                    format="heatmap"),),
                    description="Rewards the function gave in each rate interval, by bucket (selected runs pooled)."),
        )),
        Row("Combined reward", (
            Heatmap(title="Combined reward distribution", width=24,
                    targets=(Target(f"sum by (le) (increase({sel('grpo_reward_value_bucket')}{RATE}))", "{{le}}",
                                    format="heatmap"),),
                    description="Combined rewards of each rate interval, by bucket (selected runs pooled)."),
        )),
        Row("Group spread", (
            TimeSeries(title="Groups with zero spread per function",
                       targets=(per_fn("grpo_reward_fn_group_zero_std_ratio"),), **RATIO),
            TimeSeries(title="Within-group std per function", targets=(per_fn("grpo_reward_fn_group_std_mean"),)),
            TimeSeries(title="Groups saturated at the maximum", targets=(per_fn("grpo_reward_fn_group_all_max_ratio"),),
                       **RATIO),
            TimeSeries(title="Groups all at the minimum", targets=(per_fn("grpo_reward_fn_group_all_min_ratio"),), **RATIO),
        )),
        Row("Health and weights", (
            TimeSeries(title="Non-finite rewards per second",
                       targets=(Target(rate("grpo_reward_fn_nonfinite_total", "run_id, reward_fn", FN),
                                       "{{run_id}} {{reward_fn}}"),),
                       unit="count:samples/s", description="NaN or infinite rewards per second, excluded from every statistic."),
            Table(title="Weights", targets=(Target(sel("grpo_reward_fn_weight", FN), instant=True, format="table"),),
                  unit="none", hide=("Time", "__name__"), rename=(("Value", "weight"),)),
        )),
    ),
)

# --- training dynamics -----------------------------------------------------------------------------
TRAINING = Dashboard(
    uid="rewardscope-training",
    title="rewardscope: training dynamics",
    description="What the trainer reports each step: KL, policy entropy, advantages, clipping, gradients, lengths, evaluation.",
    variables=(DATASOURCE, JOB, RUN),
    annotations=ALERT_ANNOTATIONS,
    runbook_url=RUNBOOKS,
    rows=(
        Row("Policy", (
            TimeSeries(title="KL divergence from the reference", targets=(series("grpo_kl"),)),
            TimeSeries(title="Policy entropy", targets=(series("grpo_policy_entropy"),)),
            TimeSeries(title="Advantages", targets=(series("grpo_advantage_mean", "{{run_id}} mean"),
                                                    series("grpo_advantage_std", "{{run_id}} std"))),
            TimeSeries(title="Clip ratio", targets=(series("grpo_clip_ratio"),), **RATIO),
        )),
        Row("Optimisation", (
            TimeSeries(title="Gradient norm", targets=(series("grpo_grad_norm"),)),
            TimeSeries(title="Loss", targets=(series("grpo_loss"),)),
            TimeSeries(title="Learning rate", targets=(series("grpo_learning_rate"),)),
            TimeSeries(title="Step duration",
                       targets=tuple(Target(f"histogram_quantile({q}, {rate('grpo_step_duration_seconds_bucket', 'le, run_id')})",
                                            f"{{{{run_id}}}} p{int(q * 100)}") for q in (0.5, 0.9)),
                       unit="s", description="Median and 90th percentile of the time between steps, over the rate interval."),
        )),
        Row("Completions", (
            TimeSeries(title="Completion length", targets=(series("grpo_completion_length_mean_tokens"),), width=8),
            TimeSeries(title="Truncated completions", targets=(series("grpo_completion_truncated_ratio"),), width=8,
                       **RATIO),
            Heatmap(title="Completion length distribution", width=8, y_unit="short",
                    targets=(Target(f"sum by (le) (increase({sel('grpo_completion_length_tokens_bucket')}{RATE}))",
                                    "{{le}}", format="heatmap"),),
                    description="Completions of each rate interval by length bucket (selected runs pooled)."),
        )),
        Row("Throughput and evaluation", (
            TimeSeries(title="Eval accuracy", targets=(series("grpo_eval_accuracy_ratio"),), width=8, **RATIO),
            TimeSeries(title="Tokens per second", targets=(Target(rate("grpo_tokens_total")),), width=8,
                       unit="count:tokens/s", description="Tokens processed per second over the rate interval."),
            TimeSeries(title="Completions per second", targets=(Target(rate("grpo_samples_total")),), width=8,
                       unit="count:samples/s", description="Completions recorded per second over the rate interval."),
        )),
        Row("Ranks (multi-process runs)", (
            TimeSeries(title="Work per step by rank", targets=(series("grpo_rank_work_seconds", "{{run_id}} rank {{rank}}"),),
                       unit="s", legend_calcs=("lastNotNull", "max"),
                       description="Each rank's own work per step, without waiting for the others: the highest line is the "
                                   "straggler every rank waits for (alert GRPORankStraggler).",
                       may_be_empty="exported by rank 0 of a multi-process run only"),
            TimeSeries(title="Completions by rank", targets=(series("grpo_rank_samples", "{{run_id}} rank {{rank}}"),),
                       unit="short", description="Completions in each rank's shard of the latest step: unequal shards make stragglers.",
                       may_be_empty="exported by rank 0 of a multi-process run only"),
        )),
        Row("Monitor", (
            TimeSeries(title="Time spent in record_step", targets=(Target(rate("rewardscope_record_seconds_total")),),
                       width=8, unit="percentunit",
                       description="Share of wall time the training process spends inside the monitor."),
            TimeSeries(title="Skipped steps",
                       targets=(Target(or_zero(rate("grpo_skipped_steps_total", "run_id, reason", fn="increase")),
                                       "{{run_id}} {{reason}}"),),
                       width=8, unit="short", description="Steps the monitor rejected per rate interval, by reason (0 when none)."),
            TimeSeries(title="Sink errors",
                       targets=(Target(or_zero(rate("rewardscope_sink_errors_total", "run_id, sink", fn="increase")),
                                       "{{run_id}} {{sink}}"),),
                       width=8, unit="short", description="Errors of W&B, TensorBoard or other sinks per rate interval (0 when none)."),
        )),
    ),
)

# --- multi-run comparison --------------------------------------------------------------------------
COMPARED = (  # (column, metric, unit) of the side-by-side table
    ("step", "grpo_step", "none"),
    ("reward mean", "grpo_reward_mean", "none"),
    ("signal-to-noise", "grpo_reward_signal_to_noise", "percentunit"),
    ("zero-spread groups", "grpo_group_zero_std_ratio", "percentunit"),
    ("KL", "grpo_kl", "none"),
    ("policy entropy", "grpo_policy_entropy", "none"),
    ("truncated", "grpo_completion_truncated_ratio", "percentunit"),
    ("eval accuracy", "grpo_eval_accuracy_ratio", "percentunit"),
)


def _compare(title: str, name: str, **options) -> TimeSeries:
    return TimeSeries(title=title, targets=(series(name),), legend_calcs=("lastNotNull", "max"), width=8, **options)


COMPARE = Dashboard(
    uid="rewardscope-compare",
    title="rewardscope: run comparison",
    description="Several runs side by side: latest values and the key signals over time, one line per run.",
    variables=(DATASOURCE, JOB, ALL_RUNS),
    annotations=ALERT_ANNOTATIONS,
    runbook_url=RUNBOOKS,
    rows=(
        Row("Latest values", (
            Table(title="Runs side by side", width=24, height=7, unit="none", decimals=3,
                  targets=tuple(Target(f"max by (run_id) ({sel(name)})", instant=True, format="table")
                                for _, name, _ in COMPARED),
                  hide=("Time",),
                  rename=tuple((f"Value #{chr(ord('A') + i)}", column) for i, (column, _, _) in enumerate(COMPARED)),
                  column_units=tuple((column, unit) for column, _, unit in COMPARED),
                  description="The latest value of each signal for every selected run."),
        )),
        Row("Reward", (
            _compare("Reward mean by run", "grpo_reward_mean"),
            _compare("Signal-to-noise by run", "grpo_reward_signal_to_noise", **RATIO),
            _compare("Zero-spread groups by run", "grpo_group_zero_std_ratio", **RATIO),
            _compare("Eval accuracy by run", "grpo_eval_accuracy_ratio", **RATIO),
            _compare("Reward entropy ratio by run", "grpo_reward_entropy_ratio", **RATIO),
            BarGauge(title="Reward mean now", targets=(series("grpo_reward_mean"),), width=8),
        )),
        Row("Dynamics", (
            _compare("KL by run", "grpo_kl"),
            _compare("Policy entropy by run", "grpo_policy_entropy"),
            _compare("Truncated completions by run", "grpo_completion_truncated_ratio", **RATIO),
            _compare("Completion length by run", "grpo_completion_length_mean_tokens"),
            TimeSeries(title="Steps per second by run", targets=(Target(rate("grpo_steps_total")),), width=8,
                       unit="count:steps/s", legend_calcs=("lastNotNull", "max"),
                       description="Steps recorded per second over the rate interval."),
            _compare("Step by run", "grpo_step"),
        )),
    ),
)

DASHBOARDS: tuple[Dashboard, ...] = (OVERVIEW, REWARD_FUNCTIONS, TRAINING, COMPARE)
