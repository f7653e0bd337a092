"""The metric catalogue: one declarative table of every metric rewardscope exports.

Everything that names a metric derives from this table: the Prometheus collector,
the run store's columns, the W&B/TensorBoard keys, the generated dashboards, the
compiled alert rules and the README's metric reference. Tests fail when any of
them names a metric the catalogue does not define.

Each entry says *what the number means*: the help text is the definition, so a
reader of a dashboard can check that two runs with different batch sizes or
reward signs are comparable.

Usage::

    from rewardscope.metrics.catalogue import CATALOGUE, metric
    spec = metric("grpo_reward_mean")
    print(spec.kind, spec.help)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

# Every reason a step can be skipped for: the label values of grpo_skipped_steps_total (StepInputError.reason).
SKIP_REASONS: tuple[str, ...] = ("step_not_increasing", "empty_batch", "length_mismatch", "group_size_mismatch", "unknown_function",
                                 "missing_function", "not_numeric", "overflow", "group_split", "rank_mismatch")


class Kind(str, Enum):
    """Prometheus metric type of a catalogue entry."""

    GAUGE = "gauge"
    COUNTER = "counter"
    HISTOGRAM = "histogram"
    INFO = "info"


class Scope(str, Enum):
    """Which label set a series carries besides ``run_id``."""

    RUN = "run"  # run_id only
    FUNCTION = "function"  # run_id, reward_fn
    EXTRA = "extra"  # run_id plus the labels listed in ``extra_labels``


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its exposed name, type, unit, definition and labels.

    ``stored`` marks per-step gauges written to the run store's steps.jsonl;
    ``legacy_key`` is the W&B/TensorBoard key of the system we replace
    (``{fn}`` stands for the reward function name).
    """

    name: str
    kind: Kind
    unit: str
    help: str
    scope: Scope = Scope.RUN
    extra_labels: tuple[str, ...] = ()
    stored: bool = False
    legacy_key: str | None = None
    group: str = "reward"
    # Measured on some steps only (eval accuracy): /metrics keeps the last measured value.
    sticky: bool = False

    @property
    def labels(self) -> tuple[str, ...]:
        base: tuple[str, ...] = ("run_id",)
        if self.scope is Scope.FUNCTION:
            base += ("reward_fn",)
        return base + self.extra_labels

    def exposed_names(self) -> tuple[str, ...]:
        """Every sample name this metric produces in the exposition format."""
        if self.kind is Kind.HISTOGRAM:
            return (self.name + "_bucket", self.name + "_sum", self.name + "_count")
        return (self.name,)


def _gauge(name: str, unit: str, help: str, *, scope: Scope = Scope.RUN, legacy: str | None = None,
           group: str = "reward", stored: bool = True, extra_labels: tuple[str, ...] = ()) -> MetricSpec:
    return MetricSpec(name, Kind.GAUGE, unit, help, scope, extra_labels, stored, legacy, group)


def _counter(name: str, unit: str, help: str, *, scope: Scope = Scope.RUN, group: str = "reward",
             extra_labels: tuple[str, ...] = ()) -> MetricSpec:
    return MetricSpec(name, Kind.COUNTER, unit, help, scope, extra_labels, False, None, group)


def _histogram(name: str, unit: str, help: str, *, scope: Scope = Scope.RUN, group: str = "reward") -> MetricSpec:
    return MetricSpec(name, Kind.HISTOGRAM, unit, help, scope, (), False, None, group)


F = Scope.FUNCTION

CATALOGUE: tuple[MetricSpec, ...] = (
    # --- liveness and run identity -------------------------------------------------
    _gauge("grpo_step", "steps", "Training step of the latest recorded step.", group="liveness"),
    _gauge("grpo_last_step_timestamp_seconds", "seconds",
           "Unix time at which the latest step was recorded; time() minus this is the time since the run last made progress.",
           group="liveness"),
    _gauge("grpo_group_size", "completions", "Completions sampled per prompt (G) in the latest step.", group="liveness"),
    MetricSpec("grpo_run_info", Kind.INFO, "", "Constant 1 with the run's metadata as labels (model, trainer, reward functions, rewardscope version).",
               Scope.EXTRA, ("model", "trainer", "reward_functions", "version"), False, None, "liveness"),
    _gauge("grpo_run_ended", "bool",
           "0 while the run records steps, 1 once it ended cleanly (the monitor was closed); a target that disappears without "
           "reporting 1 died or was killed.", group="liveness", stored=False),
    _counter("grpo_steps_total", "steps", "Steps recorded by this process.", group="liveness"),
    _counter("grpo_samples_total", "samples", "Completions (samples) recorded by this process, finite or not.", group="liveness"),
    _counter("grpo_tokens_total", "tokens", "Tokens processed (prompt plus completion), as reported by the trainer.", group="liveness"),
    _counter("grpo_skipped_steps_total", "steps",
             "Steps rejected by record_step, by reason (" + ", ".join(SKIP_REASONS) + "); every reason is exported from 0 on, so a first skip is an increase.",
             extra_labels=("reason",), group="liveness"),
    _histogram("grpo_step_duration_seconds", "seconds",
               "Wall time between two consecutive recorded steps of this process.", group="liveness"),
    # --- combined reward ----------------------------------------------------------------
    _gauge("grpo_reward_mean", "reward",
           "Mean over the batch of the combined reward, the weighted sum over reward functions of each completion's rewards. Completions with a non-finite reward are excluded.",
           legacy="rewards/mean"),
    _gauge("grpo_reward_std", "reward", "Population standard deviation over the batch of the combined reward.", legacy="rewards/std"),
    _gauge("grpo_reward_min", "reward", "Smallest combined reward in the batch.", legacy="rewards/min"),
    _gauge("grpo_reward_max", "reward", "Largest combined reward in the batch.", legacy="rewards/max"),
    _gauge("grpo_reward_sum_of_batch", "reward", "Sum over the batch of the combined reward (grows with batch size; prefer the mean to compare runs).",
           legacy="rewards/total"),
    _gauge("grpo_reward_variance", "reward^2", "Population variance over the batch of the combined reward.", legacy="rewards/variance"),
    _gauge("grpo_reward_signal_to_noise", "ratio",
           "GRPO signal-to-noise: pooled within-group standard deviation of the combined reward divided by its batch standard deviation. "
           "GRPO learns only from differences between completions of the same prompt, so 1 means all reward spread is usable signal, "
           "0 means no completion is distinguished from its siblings (spread only between prompts, or none). "
           "Invariant to the reward's sign, offset, scale and the batch size; absent when G = 1 or the batch has no spread.",
           legacy="rewards/signal_to_noise"),
    _gauge("grpo_reward_entropy_ratio", "ratio",
           "Normalised Shannon entropy of the combined reward over 10 equal-width bins spanning the declared combined reward range "
           "(the batch's own min..max when a function declares no range), with the Miller-Madow small-sample correction, "
           "divided by ln 10. 0 = every completion gets the same reward, 1 = rewards spread evenly over the range. Does not grow with batch size.",
           legacy="rewards/entropy"),
    _gauge("grpo_reward_nonfinite_samples", "samples",
           "Completions in the latest step whose combined reward is not finite because at least one function returned NaN or infinity.",
           group="reward"),
    _histogram("grpo_reward_value", "reward",
               "Distribution of the combined reward per completion; buckets span the declared combined range. "
               "_sum and _count are exposed only when the combined reward cannot be negative (a counter must never decrease); "
               "use grpo_reward_positive_sum_total and grpo_reward_negative_sum_total for exact means."),
    _counter("grpo_reward_positive_sum_total", "reward",
             "Running sum of the positive parts of the finite combined rewards. Exact mean over a window: "
             "(rate(grpo_reward_positive_sum_total) - rate(grpo_reward_negative_sum_total)) / rate(grpo_reward_value_bucket{le=\"+Inf\"})."),
    _counter("grpo_reward_negative_sum_total", "reward",
             "Running sum of the absolute values of the negative finite combined rewards (monotone, unlike a histogram _sum)."),
    # --- per reward function ------------------------------------------------------------
    _gauge("grpo_reward_fn_mean", "reward", "Mean of the function's finite rewards in the batch (unweighted).", scope=F,
           legacy="rewards/functions/{fn}"),
    _gauge("grpo_reward_fn_std", "reward", "Population standard deviation of the function's finite rewards in the batch.", scope=F,
           legacy="rewards/functions/{fn}_std"),
    _gauge("grpo_reward_fn_min", "reward", "Smallest finite reward of the function in the batch.", scope=F),
    _gauge("grpo_reward_fn_max", "reward", "Largest finite reward of the function in the batch.", scope=F),
    _gauge("grpo_reward_fn_contribution_ratio", "ratio",
           "Share of the absolute weighted reward mass: |weight * sum of the function's rewards| divided by the sum of that over all functions. "
           "Between 0 and 1, sums to 1 over functions, defined for negative and zero totals (0 for every function when all rewards are 0).",
           scope=F, legacy="contributions/{fn}"),
    _gauge("grpo_reward_fn_weight", "ratio", "Weight of the function in the combined reward (0 = monitor-only 'gold' reward).", scope=F,
           stored=False),
    _gauge("grpo_reward_fn_nonfinite_samples", "samples", "Non-finite (NaN or infinite) rewards the function returned in the latest step.", scope=F),
    _counter("grpo_reward_fn_nonfinite_total", "samples", "Non-finite rewards the function returned, excluded from every statistic.", scope=F),
    _histogram("grpo_reward_fn_value", "reward",
               "Distribution of the function's finite rewards; buckets span the function's declared range. "
               "_sum and _count are exposed only for functions whose declared minimum is 0 or more (a counter must never decrease); "
               "use grpo_reward_fn_positive_sum_total and grpo_reward_fn_negative_sum_total for exact means.",
               scope=F),
    _counter("grpo_reward_fn_positive_sum_total", "reward",
             "Running sum of the positive parts of the function's finite rewards. Exact mean over a window: "
             "(rate(grpo_reward_fn_positive_sum_total) - rate(grpo_reward_fn_negative_sum_total)) / rate(grpo_reward_fn_value_bucket{le=\"+Inf\"}).",
             scope=F),
    _counter("grpo_reward_fn_negative_sum_total", "reward",
             "Running sum of the absolute values of the function's negative finite rewards (monotone, unlike a histogram _sum).",
             scope=F),
    # --- GRPO group signals ---------------------------------------------------------------
    _gauge("grpo_group_zero_std_ratio", "ratio",
           "Share of prompt groups whose G combined rewards are all equal: such groups get zero advantage and give no learning signal.",
           group="groups"),
    _gauge("grpo_group_reward_std_mean", "reward", "Mean over prompt groups of the within-group population standard deviation of the combined reward.",
           group="groups"),
    _gauge("grpo_reward_fn_group_zero_std_ratio", "ratio", "Share of prompt groups whose G rewards from this function are all equal.", scope=F,
           group="groups"),
    _gauge("grpo_reward_fn_group_std_mean", "reward", "Mean over prompt groups of the within-group standard deviation of this function's rewards.",
           scope=F, group="groups"),
    _gauge("grpo_reward_fn_group_all_max_ratio", "ratio",
           "Share of prompt groups in which every completion gets the function's declared maximum (saturated). Absent when no maximum is declared.",
           scope=F, group="groups"),
    _gauge("grpo_reward_fn_group_all_min_ratio", "ratio",
           "Share of prompt groups in which every completion gets the function's declared minimum. Absent when no minimum is declared.",
           scope=F, group="groups"),
    # --- training dynamics (when the trainer passes them) -----------------------------------
    _gauge("grpo_kl", "nats", "KL divergence of the policy from the reference policy, per token, as passed by the trainer.",
           legacy="training/kl_divergence", group="training"),
    _gauge("grpo_policy_entropy", "nats", "Mean per-token entropy of the policy over the completions, as passed by the trainer.",
           legacy="training/policy_entropy", group="training"),
    _gauge("grpo_advantage_mean", "advantage", "Mean of the per-completion advantages.", legacy="training/advantage_mean", group="training"),
    _gauge("grpo_advantage_std", "advantage", "Population standard deviation of the per-completion advantages.", legacy="training/advantage_std",
           group="training"),
    _gauge("grpo_clip_ratio", "ratio", "Share of tokens whose probability ratio was clipped by the surrogate objective.",
           legacy="training/clip_ratio", group="training"),
    _gauge("grpo_grad_norm", "norm", "Gradient norm before clipping.", legacy="training/grad_norm", group="training"),
    _gauge("grpo_loss", "loss", "Training loss of the step.", legacy="training/loss", group="training"),
    _gauge("grpo_learning_rate", "rate", "Learning rate used for the step.", legacy="training/learning_rate", group="training"),
    _gauge("grpo_completion_length_mean_tokens", "tokens", "Mean completion length in tokens.", legacy="training/completion_length",
           group="training"),
    _gauge("grpo_completion_truncated_ratio", "ratio",
           "Share of completions that reached the generation length limit (truncated before an end-of-sequence token).",
           legacy="training/truncated_ratio", group="training"),
    MetricSpec("grpo_eval_accuracy_ratio", Kind.GAUGE, "ratio",
               "Accuracy on the held-out evaluation split, from the latest step that ran an evaluation.",
               stored=True, legacy_key="eval/accuracy", group="training", sticky=True),
    _histogram("grpo_completion_length_tokens", "tokens", "Distribution of completion lengths in tokens.", group="training"),
    # --- trends and alerts ---------------------------------------------------------------------
    _gauge("grpo_metric_slope_per_step", "unit/step",
           "Least-squares slope, per training step, of another metric over its last window_steps recorded steps; published for every trend alert rule so that Prometheus and the in-process evaluator agree.",
           scope=Scope.EXTRA, extra_labels=("metric", "reward_fn", "window_steps"), stored=False, group="alerts"),
    _gauge("grpo_reward_hacking_suspected", "bool",
           "1 while the reward-hacking detector suspects the policy is gaming a reward (proxy rewards rising while correctness falls), else 0.",
           group="alerts"),
    # Online detectors (rewardscope.analysis.detectors): evidence as a fraction of the decision threshold (1 = reached),
    # and the held verdict. Definitions, thresholds and hold rules: docs/runbooks.md.
    _gauge("grpo_reward_hacking_evidence_ratio", "ratio",
           "Evidence of reward hacking as a fraction of the detector's threshold: for the strongest performance signal, the weaker of the proxy's rising and the signal's falling slope t-statistics over their one-sided 0.1% critical values, clipped to [0, 1] (1 = both significant).",
           group="alerts"),
    _gauge("grpo_function_dominance_evidence_ratio", "ratio",
           "The larger of two CUSUMs of the top reward function's share of the weighted within-group reward variance, each over its decision threshold: above 0.9 while another function is not solved (threshold 0.25), above 0.7 while another function sits at its minimum in at least 60% of the groups (threshold 0.5) (1 = one function carries the learning signal while the others stall).",
           group="alerts"),
    _gauge("grpo_function_dominance_suspected", "bool", "1 while one reward function is held to dominate the learning signal, else 0.",
           group="alerts"),
    _gauge("grpo_length_exploitation_evidence_ratio", "ratio",
           "CUSUM of the z-score of the within-group correlation between completion length and combined reward, over its decision threshold (1 = longer completions are paid more within their group).",
           group="alerts"),
    _gauge("grpo_length_exploitation_suspected", "bool", "1 while the length-exploitation verdict is held, else 0.", group="alerts"),
    _gauge("grpo_kl_acceleration_evidence_ratio", "ratio",
           "The smaller of the z-score of log KL's second difference (three consecutive 5-step block means) over 3.09 and KL's parabola 30 steps ahead over 0.3, clipped to [0, 1] (1 = KL accelerates towards the KL alert).",
           group="alerts"),
    _gauge("grpo_kl_acceleration_suspected", "bool", "1 while the KL-acceleration verdict is held, else 0.", group="alerts"),
    _gauge("grpo_zero_spread_takeover_evidence_ratio", "ratio",
           "The smaller of the rising slope t-statistic of the zero-spread group share over 30 steps over its one-sided 0.05% critical value and the line 60 steps ahead over 0.75, clipped to [0, 1] (1 = zero-spread groups are taking over).",
           group="alerts"),
    _gauge("grpo_zero_spread_takeover_suspected", "bool", "1 while the zero-spread-takeover verdict is held, else 0.", group="alerts"),
    _gauge("grpo_alert_firing", "bool", "1 while the in-process alert engine holds the alert firing for this run.", scope=Scope.EXTRA,
           extra_labels=("alertname", "severity"), stored=False, group="alerts"),
    _counter("grpo_alerts_fired_total", "alerts", "Alerts the in-process engine fired (transitions to firing).", extra_labels=("alertname", "severity"),
             group="alerts"),
    # --- alert state exported for the compiled Prometheus rules (rewardscope/alerting/exposition.py) ------------
    _gauge("grpo_alert_active", "bool",
           "1 while the in-process alert engine holds this alert instance firing (its condition held for the rule's for_steps "
           "recorded steps), else 0. The compiled Prometheus rules read it, so both evaluators agree at any step rate; "
           "after close() it keeps the state of the last step.",
           scope=Scope.EXTRA, extra_labels=("alert_id", "alert", "severity", "reward_fn"), stored=False, group="alerts"),
    _counter("grpo_alert_activations_total", "alerts",
             "Times this alert instance started firing in-process; an increase shows a firing that began and ended between two scrapes.",
             extra_labels=("alert_id", "alert", "severity", "reward_fn"), group="alerts"),
    _gauge("grpo_step_duration_median_seconds", "seconds",
           "Median wall time between the last (up to 100) recorded steps; GRPORunStalled waits max(5 min, 10 x this) without a step.",
           group="liveness", stored=False),
    # --- the exporter's own health ---------------------------------------------------------------
    _counter("rewardscope_sink_errors_total", "errors", "Errors raised by a sink (wandb, tensorboard, jsonl, ...); the run goes on.",
             extra_labels=("sink",), group="exporter"),
    _counter("rewardscope_record_seconds_total", "seconds", "Time spent inside record_step computing each step (validation, statistics, detectors, trends, alerts); the sinks' own time is not included.", group="exporter"),
    _counter("rewardscope_scrapes_total", "scrapes", "Times the Prometheus collector was collected.", group="exporter"),
    # --- several processes (torch.distributed): one series per rank, exported by rank 0 -------------
    _gauge("grpo_rank_work_seconds", "seconds",
           "Time the rank spent between leaving the monitor's gather of the previous step and entering this one: its own work on "
           "the step (generation, scoring, optimiser step), without the wait for the other ranks. The slowest rank sets the pace.",
           scope=Scope.EXTRA, extra_labels=("rank",), stored=False, group="liveness"),
    _gauge("grpo_rank_samples", "samples", "Completions in the rank's shard of the latest step.",
           scope=Scope.EXTRA, extra_labels=("rank",), stored=False, group="liveness"),
    _gauge("grpo_rank_last_step_timestamp_seconds", "seconds",
           "Unix time at which the rank handed its shard of the latest step to the monitor's gather.",
           scope=Scope.EXTRA, extra_labels=("rank",), stored=False, group="liveness"),
)

_BY_NAME = {spec.name: spec for spec in CATALOGUE}
if len(_BY_NAME) != len(CATALOGUE):  # pragma: no cover - guards edits of the table
    raise RuntimeError("duplicate metric name in the catalogue")


def metric(name: str) -> MetricSpec:
    """Return the catalogue entry called ``name``; KeyError names the unknown metric."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"metric {name!r} is not in the rewardscope catalogue") from None


def exposed_sample_names() -> frozenset[str]:
    """Every sample name (with _bucket/_sum/_count for histograms) the exporter can produce."""
    return frozenset(n for spec in CATALOGUE for n in spec.exposed_names())


def stored_metrics(scope: Scope) -> tuple[MetricSpec, ...]:
    """Per-step gauges of the given scope that the run store keeps, in catalogue order."""
    return tuple(s for s in CATALOGUE if s.stored and s.scope is scope and s.kind is Kind.GAUGE)
