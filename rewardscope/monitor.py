"""RewardMonitor: the one call per training step.

``record_step`` validates the step's input, computes one complete StepRecord (every
statistic, vectorised and pure; the online detectors' gauges; the trend slopes; the
alert transitions) and fans it out to the sinks: the run store first, then Prometheus,
then any mirror (W&B, TensorBoard, OpenTelemetry, your own). Memory is O(window).

Bad input never crashes deep inside: a step that cannot be used (step not increasing,
empty batch, arrays of different lengths, unknown or missing reward function, batch
not divisible by the group size, values that are not real numbers) is skipped,
counted in ``grpo_skipped_steps_total{reason}`` and logged, or raised as
StepInputError when the monitor was built with ``on_bad_input="raise"``. Non-finite
rewards are excluded from statistics and counted. torch tensors are accepted as they
are (detached, moved to the CPU, bfloat16 widened).

When the run store cannot write a step, record_step raises and nothing else sees the
step: /metrics and the store never disagree, and the same step can be recorded again.

Usage::

    import numpy as np
    from rewardscope import RewardMonitor, RewardFunctionSpec

    with RewardMonitor("demo", [RewardFunctionSpec("correct", 1.0, 0.0, 1.0)], group_size=4,
                       run_dir=None, prometheus_port=None) as monitor:
        m = monitor.record_step(1, {"correct": np.array([0, 1, 1, 1, 0, 0, 0, 0.0])})
        print(m.value("grpo_reward_mean"), m.value("grpo_group_zero_std_ratio"))   # 0.375 0.5
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from prometheus_client import CollectorRegistry

from ._version import __version__
from .alerting.engine import default_trend_requirements
from .alerting.events import AlertEvent, format_alert
from .alerting.exposition import alert_state
from .distributed import DEFAULT_TIMEOUT_SECONDS, SCALARS, GlobalBatch, LocalShard, RankSignals, ShardGatherer, distributed_world
from .exporter.base import FanOut, Sink
from .exporter.console import AlertPrinter
from .exporter.evidence import EvidenceSink
from .exporter.prometheus import DEFAULT_HOST, PrometheusSink
from .exporter.record import StepRecord, TrendKey
from .exporter.runstore import RunStoreSink
from .exporter.state import RunState
from .exporter.webconfig import WebConfig
from .metrics.catalogue import Scope, metric
from .metrics.functions import RewardFunctionSpec, as_specs
from .metrics.inputs import as_float, as_float_array, as_step, as_texts
from .metrics.layout import StepLayout, StepMetrics
from .metrics.step import FunctionTable, RewardStatistics, StepInputError, compute_reward_statistics
from .metrics.training import SCALAR_INPUTS, compute_training_statistics
from .metrics.window import TrendSet
from .provenance import record_provenance

__all__ = ["AlertEvaluator", "Detector", "RewardMonitor", "format_alert"]

log = logging.getLogger("rewardscope")


class AlertEvaluator(Protocol):
    """What the monitor needs of an alert engine (rewardscope.alerting.engine.AlertEngine)."""

    def bind(self, run_id: str, reward_functions: Sequence[str]) -> None: ...

    def trend_requirements(self) -> Iterable[tuple[str, int]]: ...

    def evaluate(self, metrics: StepMetrics, slopes: Mapping[TrendKey, float | None]) -> list[AlertEvent]: ...


class Detector(Protocol):
    """An online detector: reads each step, returns run-level gauges to add to it.

    Optional hooks, called when the detector has them: ``bind(specs)`` once with the run's
    reward functions, ``observe_batch(combined, lengths, group_size)`` before each ``update``
    with the step's combined rewards and completion lengths (rewardscope.analysis.detectors).
    """

    def update(self, metrics: StepMetrics) -> Mapping[str, float]: ...


@dataclass(frozen=True)
class _StepInput:
    """A validated step: the (F, N) rewards and the statistics that validation already needed."""

    step: int
    rewards: np.ndarray
    group_size: int
    stats: RewardStatistics
    training: dict[str, float]
    lengths: np.ndarray | None
    advantages: np.ndarray | None
    tokens: float | None
    prompts: list[str] | None
    completions: list[str] | None


class RewardMonitor:
    """Monitor one GRPO run: statistics, /metrics, run store, alerts. See the module docstring.

    Outputs: ``run_dir`` (the run store; None for none), ``prometheus_port`` (None: no
    server, 0: any free port), ``web_config_file`` (TLS and basic auth for /metrics, the
    exporter-toolkit format), ``linger_seconds`` (keep /metrics up after close so
    Prometheus sees the run end), ``extra_sinks``. Evaluation: ``alerts`` (True for the
    default pack, or an engine), ``detectors`` (None for the defaults, [] for none).
    """

    def __init__(self, run_id: str, reward_functions: Sequence[RewardFunctionSpec | str], *, group_size: int = 1,
                 run_dir: str | os.PathLike | None = "monitoring_data", prometheus_port: int | None = None,
                 prometheus_host: str = DEFAULT_HOST, registry: CollectorRegistry | None = None,
                 web_config_file: str | os.PathLike | None = None, process_metrics: bool = True,
                 linger_seconds: float = 0.0, alerts: bool | AlertEvaluator = False, print_alerts: bool = False,
                 alert_printer: Callable[[str], None] | None = None, log_distributions: bool = False,
                 window_size: int = 100, run_info: Mapping[str, str] | None = None, config: Mapping[str, Any] | None = None,
                 max_completion_length: int | None = None, detectors: Sequence[Detector] | None = None,
                 extra_sinks: Sequence[Sink] = (), on_bad_input: str = "skip", resume_after_step: int | None = None,
                 provenance: Mapping[str, Any] | None = None, distributed: bool = True, process_group: Any = None,
                 distributed_timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        _check_run_id(run_id)
        if on_bad_input not in ("skip", "raise"):
            raise ValueError("on_bad_input must be 'skip' or 'raise'")
        self.run_id = run_id
        self.specs = as_specs(reward_functions)
        self.group_size = _positive_int("group_size", group_size)
        self.max_completion_length = None if max_completion_length is None else _positive_int(
            "max_completion_length", max_completion_length)
        self.on_bad_input = on_bad_input
        self.log_distributions = log_distributions
        self._table = FunctionTable.build(self.specs)
        self._names = self._table.names
        self._name_set = frozenset(self._names)
        self.layout = StepLayout(self._names)
        self._row_index = {name: self.layout.index(name) for name in self.layout.run_metrics}
        self.run_info = _run_info(run_info, self._names)
        # Under torch.distributed every rank gathers its shard to rank 0, the only one that keeps
        # alerts, sinks, a store and a server (rewardscope/distributed.py).
        self.gatherer: ShardGatherer | None = None
        if distributed and distributed_world() is not None:
            self.gatherer = ShardGatherer(len(self._names), process_group, distributed_timeout)
            if not self.gatherer.is_writer:
                alerts, run_dir, prometheus_port, extra_sinks, print_alerts = False, None, None, (), False
        self._set_up_evaluation(alerts, window_size, detectors, serves_metrics=prometheus_port is not None or registry is not None)
        # /metrics first: a busy port fails before anything is written to the run directory.
        self._open_prometheus(registry, prometheus_port, prometheus_host, web_config_file, process_metrics, linger_seconds)
        self.store: RunStoreSink | None = None
        self.last_step: int | None = None
        sinks: list[Sink] = []
        if run_dir is not None:
            sinks = self._open_run_store(run_dir, config, log_distributions, resume_after_step, provenance)
        self.alert_printer = AlertPrinter(alert_printer, enabled=print_alerts)
        self.fanout = FanOut([*sinks, self.prometheus, self.alert_printer, *extra_sinks])
        self._last_monotonic: float | None = None
        self._steps_recorded = 0
        self._closed = False
        self._first_step: int | None = None
        self._last_record: StepRecord | None = None

    # ------------------------------------------------------------------ set-up helpers
    def _set_up_evaluation(self, alerts: bool | AlertEvaluator, window_size: int, detectors: Sequence[Detector] | None, *,
                           serves_metrics: bool) -> None:
        """The alert engine, the engine whose verdicts /metrics exports, the trend slopes and the detectors."""
        self.alert_engine: AlertEvaluator | None = _make_alert_engine(alerts)
        if self.alert_engine is not None:
            self.alert_engine.bind(self.run_id, self._names)
        # The compiled Prometheus rules read the engine's per-instance verdicts (rewardscope/alerting/exposition.py),
        # so the default pack is evaluated for /metrics even when alerts are not reported in-process (when /metrics is read).
        if hasattr(self.alert_engine, "instance_states"):
            self._state_engine = self.alert_engine
        else:
            self._state_engine = _default_state_engine() if serves_metrics else None
        if self._state_engine is not None and self._state_engine is not self.alert_engine:
            self._state_engine.bind(self.run_id, self._names)
        self._trends = self._make_trends(window_size)
        self.window = self._trends.window
        self.detectors = list(_default_detectors() if detectors is None else detectors)
        for detector in self.detectors:
            if hasattr(detector, "bind"):  # detectors that need the reward functions' weights
                detector.bind(self.specs)

    def _open_prometheus(self, registry: CollectorRegistry | None, port: int | None, host: str,
                         web_config_file: str | os.PathLike | None, process_metrics: bool, linger_seconds: float) -> None:
        state = RunState.create(self.run_id, self.specs, self._table.buckets, run_info=self.run_info,
                                max_completion_length=self.max_completion_length)
        state.set_alert_state(*alert_state(self._state_engine))  # every instance at 0 from the first scrape on
        web_config = None if web_config_file is None else WebConfig.load(web_config_file)
        self.prometheus = PrometheusSink(state, registry=registry, port=port, host=host, web_config=web_config,
                                         process_metrics=process_metrics, linger_seconds=linger_seconds)
        self.registry = self.prometheus.registry
        self.server = self.prometheus.server
        self._ranks = RankSignals(self.run_id)
        if self.gatherer is not None:
            self.registry.register(self._ranks)

    def _open_run_store(self, run_dir: str | os.PathLike, config: Mapping[str, Any] | None, log_distributions: bool,
                        resume_after_step: int | None, provenance: Mapping[str, Any] | None) -> list[Sink]:
        """The run store and the evidence beside it; if either cannot open, /metrics is stopped again."""
        manifest = {"reward_functions": [vars(s) for s in self.specs], "group_size": self.group_size,
                    "run_info": self.run_info, "config": dict(config or {})}
        try:
            self.store = RunStoreSink(run_dir, self.run_id, self.layout, manifest_extra=manifest,
                                      log_distributions=log_distributions, resume_after_step=resume_after_step)
            if provenance is not None:
                record_provenance(self.store.directory, provenance, self.store.last_step)
            evidence = EvidenceSink(self.store.directory, self._names, [s.weight for s in self.specs],
                                    resume_after_step=resume_after_step)
        except BaseException:
            self.prometheus.linger_seconds = 0.0
            self.prometheus.close({})
            raise
        self.last_step = self.store.last_step
        return [self.store, evidence]

    def _make_trends(self, window_size: int) -> TrendSet:
        # The default pack's compiled Prometheus rules read these slopes, so they are published
        # whether or not alerts are evaluated in-process.
        requirements = list(default_trend_requirements())
        if self.alert_engine is not None:
            requirements += [(name, int(window)) for name, window in self.alert_engine.trend_requirements()]
        keys: list[TrendKey] = []
        for name, window in dict.fromkeys(requirements):
            keys += self._expand_trend(name, window)
        columns = [self.layout.index(name, fn or None) for name, fn, _ in keys]
        return TrendSet(self.layout.width, keys, columns, _positive_int("window_size", window_size))

    def _expand_trend(self, name: str, window: int) -> list[TrendKey]:
        spec = metric(name)
        if window < 2:
            raise ValueError(f"trend window for {name} must be at least 2 steps")
        if spec.scope is Scope.FUNCTION:
            return [(name, fn, window) for fn in self._names]
        if not self.layout.has(name):
            raise ValueError(f"trend rule on {name}: only per-step stored metrics have trends")
        return [(name, "", window)]

    @property
    def prometheus_port(self) -> int | None:
        return None if self.server is None else self.server.port

    @property
    def run_directory(self) -> Path | None:
        return None if self.store is None else self.store.directory

    @property
    def recent_alerts(self) -> list[AlertEvent]:
        """The latest alert transitions, oldest first (at most 1,000)."""
        return list(self.alert_printer.recent)

    @property
    def alerts_firing(self) -> list[AlertEvent]:
        """The alerts firing now: the FIRING event of each instance that has not resolved."""
        return self.alert_printer.firing()

    def _skip(self, reason: str, message: str, step: Any) -> None:
        self.fanout.write_skip(step, reason, message)
        if self.on_bad_input == "raise":
            raise StepInputError(reason, message)
        log.warning("rewardscope: skipped step %r of run %s (%s): %s", step, self.run_id, reason, message)

    # ------------------------------------------------------------------ the step
    def record_step(self, step: int, rewards_by_function: Mapping[str, Any], *, group_size: int | None = None,
                    kl: float | None = None, policy_entropy: float | None = None, advantages: Any = None,
                    completion_lengths: Any = None, max_completion_length: int | None = None,
                    clip_ratio: float | None = None, grad_norm: float | None = None, loss: float | None = None,
                    learning_rate: float | None = None, eval_accuracy: float | None = None,
                    tokens: int | None = None, prompts: Sequence[str] | None = None,
                    completions: Sequence[str] | None = None) -> StepRecord | None:
        """Record one training step; returns its StepRecord, or None when the step was skipped.

        ``rewards_by_function`` maps every declared function to its N rewards (arrays, lists or
        tensors), samples ordered group by group. ``prompts``/``completions`` (N strings, optional)
        are kept as evidence when an alert fires.

        Under torch.distributed each rank passes its own shard: rank 0 records the global batch
        (prompts and completions are not gathered) and returns its StepRecord; the other ranks return None.
        """
        if self._closed:
            raise RuntimeError(f"RewardMonitor {self.run_id!r} is closed")
        inputs = {"group_size": group_size, "kl": kl, "policy_entropy": policy_entropy, "advantages": advantages,
                  "completion_lengths": completion_lengths, "max_completion_length": max_completion_length,
                  "clip_ratio": clip_ratio, "grad_norm": grad_norm, "loss": loss, "learning_rate": learning_rate,
                  "eval_accuracy": eval_accuracy, "tokens": tokens}
        if self.gatherer is None:
            return self._record_step(step, rewards_by_function, inputs, prompts, completions)
        batch = self._gather(step, rewards_by_function, inputs)
        if batch is None:
            return None
        return self._record_step(batch.step, dict(zip(self._names, batch.rewards)), batch.record_step_inputs())

    def _gather(self, step: Any, rewards_by_function: Mapping[str, Any], inputs: dict[str, Any]) -> GlobalBatch | None:
        """Take part in the step's gather with this rank's shard (a bad shard goes with a flag, keeping the
        ranks in step); the global batch on rank 0 when it can be recorded, else None."""
        assert self.gatherer is not None
        try:
            g = self.group_size if inputs["group_size"] is None else _step_int("group_size", inputs["group_size"])
            arrays = {k: None if inputs[k] is None else as_float_array(k, inputs[k]) for k in ("advantages", "completion_lengths")}
            scalars = {k: None if inputs[k] is None else as_float(k, inputs[k]) for k in SCALARS}
            shard = LocalShard.build(as_step(step), self._reward_matrix(rewards_by_function)[:-1], g, arrays["advantages"],
                                     arrays["completion_lengths"], **scalars)
        except (StepInputError, TypeError, ValueError) as error:
            shard = LocalShard.invalid(step, len(self._names), getattr(error, "reason", "not_numeric"), str(error))
        batch = self.gatherer.gather(shard)
        if shard.reason and not self.gatherer.is_writer:
            self._skip(shard.reason, shard.message, step)
        if batch is None:
            return None
        self._ranks.update(batch)
        if batch.skip is not None:
            self._skip(batch.skip[0], batch.skip[1] + (f"; rank 0: {shard.message}" if shard.message else ""), batch.step)
            return None
        return batch

    def _record_step(self, step: Any, rewards_by_function: Mapping[str, Any], inputs: Mapping[str, Any],
                     prompts: Sequence[str] | None = None, completions: Sequence[str] | None = None) -> StepRecord | None:
        """record_step of one process (or of rank 0, with the global batch); ``inputs`` are its keyword arguments."""
        started = time.perf_counter()
        scalars = {name: inputs.get(name) for name in SCALAR_INPUTS}
        try:
            checked = self._validate(step, rewards_by_function, inputs.get("group_size"), scalars, inputs.get("advantages"),
                                     inputs.get("completion_lengths"), inputs.get("max_completion_length"), inputs.get("tokens"),
                                     prompts, completions)
        except StepInputError as error:
            self._skip(error.reason, str(error), step)
            return None
        record = self._compute(checked, started)
        try:
            self.fanout.write_step(record)
        except BaseException:
            self._trends.drop_last()  # the step was not stored: a retry must find the window as it was
            raise
        self._commit(record)
        return record

    def _validate(self, step: Any, rewards_by_function: Mapping[str, Any], group_size: Any, scalars: dict[str, Any],
                  advantages: Any, completion_lengths: Any, max_completion_length: Any, tokens: Any,
                  prompts: Any, completions: Any) -> _StepInput:
        step = as_step(step)
        if self.last_step is not None and step <= self.last_step:
            raise StepInputError("step_not_increasing", f"step {step} is not after the last recorded step {self.last_step}")
        matrix = self._reward_matrix(rewards_by_function)
        rewards = matrix[:-1]
        g = self.group_size if group_size is None else _step_int("group_size", group_size)
        limit = self.max_completion_length if max_completion_length is None else _step_int(
            "max_completion_length", max_completion_length)
        stats = compute_reward_statistics(matrix, self._table, g, spare_row=True)
        n = rewards.shape[1]
        adv = None if advantages is None else as_float_array("advantages", advantages)
        lengths = None if completion_lengths is None else as_float_array("completion_lengths", completion_lengths)
        numbers = {k: as_float(k, v) for k, v in scalars.items() if v is not None}
        training, arrays, rejected = compute_training_statistics(
            n_samples=n, advantages=adv, completion_lengths=lengths, max_completion_length=limit, **numbers)
        if tokens is not None:
            tokens = as_float("tokens", tokens)
            if not (math.isfinite(tokens) and tokens >= 0):
                raise StepInputError("not_numeric", f"tokens must be a non-negative number, got {tokens!r}")
        texts = as_texts("prompts", prompts, n), as_texts("completions", completions, n)
        if rejected:
            log.warning("rewardscope: step %d of run %s: dropped non-finite %s", step, self.run_id, ", ".join(rejected))
        return _StepInput(step, rewards, g, stats, training, arrays["completion_lengths"], adv, tokens, *texts)

    def _reward_matrix(self, rewards_by_function: Mapping[str, Any]) -> np.ndarray:
        if not isinstance(rewards_by_function, Mapping):
            raise StepInputError("not_numeric", "rewards_by_function must map reward function names to arrays")
        unknown = [k for k in rewards_by_function if k not in self._name_set]
        if unknown:
            raise StepInputError("unknown_function", f"unknown reward function(s) {unknown}; this run declares {list(self._names)}")
        missing = [n for n in self._names if rewards_by_function.get(n) is None]
        if missing:
            raise StepInputError("missing_function", f"no rewards for {missing}; every declared function must be passed each step")
        rows = [as_float_array(f"rewards of {name!r}", rewards_by_function[name]) for name in self._names]
        if any(row.size != rows[0].size for row in rows):
            sizes = ", ".join(f"{n}={row.size}" for n, row in zip(self._names, rows))
            raise StepInputError("length_mismatch", f"reward arrays have different lengths: {sizes}")
        # One row more, for the combined reward (compute_reward_statistics' spare_row): a large batch is copied once.
        matrix = np.empty((len(rows) + 1, rows[0].size))
        for i, row in enumerate(rows):
            matrix[i] = row
        return matrix

    def _compute(self, inputs: _StepInput, started: float) -> StepRecord:
        """The step's record: stored row, detectors, slopes, alert events, counter increments."""
        now = time.time()
        row = self._row(inputs, now)
        stats = inputs.stats
        metrics = StepMetrics(inputs.step, now, self.layout, row, inputs.rewards if self.log_distributions else None)
        for detector in self.detectors:
            if hasattr(detector, "observe_batch"):  # detectors that read the batch itself (length vs reward)
                detector.observe_batch(stats.combined, inputs.lengths, inputs.group_size)
            for name, value in detector.update(metrics).items():
                row[self._row_index[name]] = value
        slopes = self._trends.append(inputs.step, row)
        events = self.alert_engine.evaluate(metrics, slopes) if self.alert_engine is not None else []
        if self._state_engine is not None and self._state_engine is not self.alert_engine:
            self._state_engine.evaluate(metrics, slopes)  # for /metrics only: its events are not reported
        instances, median_step_seconds = alert_state(self._state_engine)
        monotonic = time.monotonic()
        duration = None if self._last_monotonic is None else monotonic - self._last_monotonic
        self._last_monotonic = monotonic
        return StepRecord(
            inputs.step, now, self.layout, row, metrics.rewards,
            samples=inputs.rewards.shape[1], tokens=inputs.tokens, duration_seconds=duration,
            compute_seconds=time.perf_counter() - started, bucket_layout=self._table.buckets,
            reward_bucket_counts=stats.bucket_counts,
            reward_positive_sums=stats.positive_sums, reward_negative_sums=stats.negative_sums,
            reward_finite_counts=stats.bucket_totals,
            nonfinite_by_function=stats.per_function["grpo_reward_fn_nonfinite_samples"],
            completion_lengths=inputs.lengths, slopes=slopes, events=events, alert_instances=instances,
            median_step_seconds=median_step_seconds, batch_rewards=inputs.rewards,
            advantages=inputs.advantages, prompts=inputs.prompts, completions=inputs.completions)

    def _row(self, inputs: _StepInput, now: float) -> np.ndarray:
        row = self.layout.new_row()
        index = self._row_index
        row[0] = inputs.step
        row[1] = now
        row[index["grpo_group_size"]] = inputs.group_size
        for name, value in inputs.stats.run.items():
            row[index[name]] = value
        for name, value in inputs.training.items():
            row[index[name]] = value
        slots = self.layout.function_slots
        for name, values in inputs.stats.per_function.items():
            row[slots[name]] = values
        return row

    def _commit(self, record: StepRecord) -> None:
        self.last_step = record.step
        self._steps_recorded += 1
        if self._first_step is None:
            self._first_step = record.step
        self._last_record = record

    # ------------------------------------------------------------------ reading back
    def recent(self, name: str, reward_fn: str | None = None, last: int | None = None) -> np.ndarray:
        """The last values of a stored metric from the rolling window, oldest first (NaN = absent)."""
        return self.window.column(self.layout.index(name, reward_fn), last)

    @property
    def latest(self) -> StepRecord | None:
        return self._last_record

    def summary(self) -> dict:
        """Totals and the latest values: what summary.json holds."""
        state = self.prometheus.state
        with state.lock:
            counters = dict(state.run_counters)
            labelled = {k: dict(v) for k, v in state.labelled_counters.items()}
            nonfinite = dict(zip(self._names, state.function_counters["grpo_reward_fn_nonfinite_total"].tolist()))
        return {
            "run_id": self.run_id,
            "first_step": self._first_step,
            "last_step": self.last_step,
            "steps_recorded": self._steps_recorded,
            "samples": counters["grpo_samples_total"],
            "tokens": counters["grpo_tokens_total"],
            "nonfinite_rewards": nonfinite,
            "skipped_steps": {k[0]: v for k, v in labelled["grpo_skipped_steps_total"].items() if v},
            "sink_errors": {k[0]: v for k, v in labelled["rewardscope_sink_errors_total"].items()},
            "alerts_fired": {f"{k[0]}/{k[1]}": v for k, v in labelled["grpo_alerts_fired_total"].items()},
            "alerts_firing_at_end": [event.to_json() for event in self.alerts_firing],
            "record_seconds_total": counters["rewardscope_record_seconds_total"],
            "latest": {} if self._last_record is None else self._last_record.as_dict(),
            "closed": time.time(),
        }

    def close(self, linger_seconds: float | None = None) -> None:
        """Write the summary, close the sinks, stop /metrics. Safe to call twice.

        /metrics first reports ``grpo_run_ended 1`` for ``linger_seconds`` (default: the constructor's), so
        Prometheus sees a run that ended rather than one that vanished.
        """
        if self._closed:
            return
        self._closed = True
        if linger_seconds is not None:
            if linger_seconds < 0:
                raise ValueError(f"linger_seconds must be 0 or more, got {linger_seconds!r}")
            self.prometheus.linger_seconds = float(linger_seconds)
        if self.gatherer is not None:
            self.registry.unregister(self._ranks)
        self.fanout.close(self.summary())

    def __enter__(self) -> RewardMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------- argument checks
def _check_run_id(run_id: Any) -> None:
    if not isinstance(run_id, str) or not run_id or "/" in run_id or run_id.startswith(".") or not run_id.isprintable():
        raise ValueError(f"run_id must be a non-empty printable name without '/', got {run_id!r}")
    try:
        run_id.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"run_id must be valid text (no lone surrogates), got {run_id!r}") from None


def _positive_int(name: str, value: Any) -> int:
    """A constructor argument that must be a positive integer: ValueError otherwise."""
    try:
        return _step_int(name, value)
    except StepInputError as error:
        raise ValueError(str(error)) from None


def _step_int(name: str, value: Any) -> int:
    """A per-step argument that must be a positive integer: StepInputError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise StepInputError("not_numeric", f"{name} must be a positive integer, got {type(value).__name__}: {value!r}")
    return int(value)


def _run_info(run_info: Mapping[str, Any] | None, names: Sequence[str]) -> dict[str, str]:
    """The run's metadata labels; values must be text, checked now rather than failing every scrape."""
    info: dict[str, str] = {"model": "", "trainer": "", "reward_functions": ",".join(names), "version": __version__}
    for key, value in dict(run_info or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError(f"run_info maps label names to strings, got {key!r}: {value!r}")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"run_info[{key!r}] is not valid text (lone surrogates)") from None
        info[key] = value
    return info


def _make_alert_engine(alerts: bool | AlertEvaluator | None) -> AlertEvaluator | None:
    if alerts is False or alerts is None:
        return None
    if alerts is True:
        from .alerting.engine import AlertEngine

        return AlertEngine.default()
    return alerts


def _default_state_engine() -> AlertEvaluator | None:
    """The default pack's engine, whose verdicts /metrics exports; None when the engine is not installed."""
    try:
        return _make_alert_engine(True)
    except ImportError:
        return None


def _default_detectors() -> list[Detector]:
    # The online detectors of rewardscope.analysis (reward hacking, function dominance, length exploitation,
    # KL acceleration, zero-spread takeover) set their gauges; detectors=[] runs none.
    from .analysis import default_detectors

    return default_detectors()
