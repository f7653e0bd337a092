"""RewardMonitor: the one call per training step.

``record_step`` validates the step's arrays, computes every statistic once
(vectorised, pure), updates the bounded rolling window, the counters and
histograms behind /metrics, evaluates the alert rules and online detectors, and
fans the result out to the sinks (run store, mirrors). Memory is O(window).

Bad input never crashes deep inside: a step that cannot be used (step not
increasing, empty batch, arrays of different lengths, unknown or missing reward
function, batch not divisible by the group size, non-numeric values) is skipped,
counted in ``grpo_skipped_steps_total{reason}`` and logged, or raised as
StepInputError when the monitor was built with ``on_bad_input="raise"``.
Non-finite rewards are excluded from statistics and counted.

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
import numbers
import os
import time
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest

from . import __version__
from .alerting.engine import default_trend_requirements
from .alerting.events import AlertEvent, AlertState
from .exporter.base import FanOut, Sink
from .exporter.prometheus import DEFAULT_HOST, MetricsServer, RunCollector, TextRenderer, snapshot
from .exporter.runstore import RunStoreSink
from .metrics.catalogue import Scope, metric
from .metrics.functions import RewardFunctionSpec, as_specs
from .metrics.layout import StepMetrics
from .metrics.state import RunState
from .metrics.step import FunctionTable, StepInputError, compute_reward_statistics
from .metrics.training import compute_training_statistics
from .metrics.window import RollingWindow

log = logging.getLogger("rewardscope")

TrendKey = tuple[str, str, int]  # (metric, reward_fn or "", window in steps)


class AlertEvaluator(Protocol):
    """What the monitor needs of an alert engine (rewardscope.alerting.engine.AlertEngine)."""

    def bind(self, run_id: str, reward_functions: Sequence[str]) -> None: ...

    def trend_requirements(self) -> Iterable[tuple[str, int]]: ...

    def evaluate(self, metrics: StepMetrics, slopes: Mapping[TrendKey, float | None]) -> list[AlertEvent]: ...


class Detector(Protocol):
    """An online detector: reads each step, returns run-level gauges to add to it."""

    def update(self, metrics: StepMetrics) -> Mapping[str, float]: ...


class RewardMonitor:
    """Monitor one GRPO run: statistics, /metrics, run store, alerts. See the module docstring."""

    def __init__(self, run_id: str, reward_functions: Sequence[RewardFunctionSpec | str], *, group_size: int = 1,
                 run_dir: str | os.PathLike | None = "monitoring_data", prometheus_port: int | None = None,
                 prometheus_host: str = DEFAULT_HOST, registry: CollectorRegistry | None = None,
                 alerts: bool | AlertEvaluator = False, print_alerts: bool = False,
                 alert_printer: Callable[[str], None] | None = None, log_distributions: bool = False,
                 window_size: int = 100, run_info: Mapping[str, str] | None = None, config: Mapping[str, Any] | None = None,
                 max_completion_length: int | None = None, detectors: Sequence[Detector] | None = None,
                 extra_sinks: Sequence[Sink] = (), on_bad_input: str = "skip", resume_after_step: int | None = None) -> None:
        if not isinstance(run_id, str) or not run_id or "/" in run_id or run_id.startswith("."):
            raise ValueError(f"run_id must be a non-empty name without '/', got {run_id!r}")
        if on_bad_input not in ("skip", "raise"):
            raise ValueError("on_bad_input must be 'skip' or 'raise'")
        if not isinstance(group_size, numbers.Integral) or group_size < 1:
            raise ValueError(f"group_size must be a positive integer, got {group_size!r}")
        self.run_id = run_id
        self.specs = as_specs(reward_functions)
        self.group_size = int(group_size)
        self.on_bad_input = on_bad_input
        self.print_alerts = print_alerts
        # Where printed alerts go: a progress bar's writer (tqdm.write) keeps them from tearing the bar.
        self.alert_printer = alert_printer or (lambda line: print(line, flush=True))
        self.log_distributions = log_distributions
        self.max_completion_length = max_completion_length
        self._table = FunctionTable.build(self.specs)
        self._names = self._table.names
        self._name_set = frozenset(self._names)

        info = {"model": "", "trainer": "", **dict(run_info or {})}
        info.setdefault("reward_functions", ",".join(self._names))
        info.setdefault("version", __version__)
        self.state = RunState.create(run_id, self.specs, self._table.buckets, run_info=info,
                                     max_completion_length=max_completion_length)
        self.layout = self.state.layout

        self.alert_engine: AlertEvaluator | None = self._make_alert_engine(alerts)
        # The default pack's compiled Prometheus rules read these slopes, so they are published
        # whether or not alerts are evaluated in-process.
        requirements = list(default_trend_requirements())
        if self.alert_engine is not None:
            self.alert_engine.bind(run_id, self._names)
            requirements += [(name, int(window)) for name, window in self.alert_engine.trend_requirements()]
        self._trend_keys: list[TrendKey] = []
        for name, window in dict.fromkeys(requirements):
            self._trend_keys += self._expand_trend(name, window)
        # Trend keys grouped by window length, so each group's slopes come from one vectorised pass.
        self._trend_groups: dict[int, tuple[list[TrendKey], np.ndarray]] = {}
        for key in self._trend_keys:
            keys, _ = self._trend_groups.get(key[2], ([], None))
            keys.append(key)
            self._trend_groups[key[2]] = (keys, np.array([self.layout.index(k[0], k[1] or None) for k in keys]))
        capacity = max([window_size] + [w for _, _, w in self._trend_keys])
        self.window = RollingWindow(self.layout.width, capacity)
        # By default the online detectors of rewardscope.analysis.default_detectors() set their gauges
        # (reward hacking, function dominance, ...); pass detectors=[] to run none, or your own list.
        if detectors is None:
            from .analysis import default_detectors

            detectors = default_detectors()
        self.detectors = list(detectors)
        for detector in self.detectors:
            if hasattr(detector, "bind"):  # detectors that need the reward functions' weights
                detector.bind(self.specs)
        self.recent_alerts: list[AlertEvent] = []  # bounded below
        self._max_recent_alerts = 1000

        sinks: list[Sink] = []
        self.store: RunStoreSink | None = None
        self.last_step: int | None = None
        if run_dir is not None:
            manifest = {"reward_functions": [vars(s) for s in self.specs], "group_size": self.group_size,
                        "run_info": info, "config": dict(config or {})}
            self.store = RunStoreSink(run_dir, run_id, self.layout, manifest_extra=manifest,
                                      log_distributions=log_distributions, resume_after_step=resume_after_step)
            self.last_step = self.store.last_step
            sinks.append(self.store)
        sinks.extend(extra_sinks)
        self.fanout = FanOut(sinks, on_error=self._count_sink_error)

        self._renderer = TextRenderer()
        own_registry = registry is None
        self.registry = CollectorRegistry() if own_registry else registry
        self._collector = RunCollector(self.state)
        self.registry.register(self._collector)
        self.server: MetricsServer | None = None
        if prometheus_port is not None:
            self.server = MetricsServer(self._render if own_registry else lambda: generate_latest(self.registry),
                                        prometheus_host, prometheus_port)
            log.info("serving %s", self.server.url)
        self._last_monotonic: float | None = None
        self._steps_recorded = 0
        self._closed = False
        self._first_step: int | None = None
        self._last_metrics: StepMetrics | None = None

    # ------------------------------------------------------------------ set-up helpers
    def _make_alert_engine(self, alerts: bool | AlertEvaluator) -> AlertEvaluator | None:
        if alerts is False or alerts is None:
            return None
        if alerts is True:
            from .alerting.engine import AlertEngine

            return AlertEngine.default()
        return alerts

    def _expand_trend(self, name: str, window: int) -> list[TrendKey]:
        spec = metric(name)
        if window < 2:
            raise ValueError(f"trend window for {name} must be at least 2 steps")
        if spec.scope is Scope.FUNCTION:
            return [(name, fn, window) for fn in self._names]
        if not self.layout.has(name):
            raise ValueError(f"trend rule on {name}: only per-step stored metrics have trends")
        return [(name, "", window)]

    def _render(self) -> bytes:
        return self._renderer.render(snapshot(self.state))

    @property
    def prometheus_port(self) -> int | None:
        return None if self.server is None else self.server.port

    @property
    def run_directory(self):
        return None if self.store is None else self.store.directory

    def _count_sink_error(self, sink: str) -> None:
        with self.state.lock:
            self.state.labelled_counters["rewardscope_sink_errors_total"][(sink,)] += 1

    def _skip(self, reason: str, message: str, step: Any) -> None:
        with self.state.lock:
            self.state.labelled_counters["grpo_skipped_steps_total"][(reason,)] += 1
        if self.on_bad_input == "raise":
            raise StepInputError(reason, message)
        log.warning("rewardscope: skipped step %r of run %s (%s): %s", step, self.run_id, reason, message)

    # ------------------------------------------------------------------ the step
    def _reward_matrix(self, rewards_by_function: Mapping[str, Any]) -> np.ndarray:
        if not isinstance(rewards_by_function, Mapping):
            raise StepInputError("not_numeric", "rewards_by_function must map reward function names to arrays")
        unknown = [k for k in rewards_by_function if k not in self._name_set]
        if unknown:
            raise StepInputError("unknown_function", f"unknown reward function(s) {unknown}; this run declares {list(self._names)}")
        missing = [n for n in self._names if rewards_by_function.get(n) is None]
        if missing:
            raise StepInputError("missing_function", f"no rewards for {missing}; every declared function must be passed each step")
        matrix = None
        for row, name in enumerate(self._names):
            values = rewards_by_function[name]
            try:
                if not isinstance(values, np.ndarray):
                    values = np.asarray(values, dtype=np.float64)
                if values.ndim != 1:
                    raise StepInputError("not_numeric", f"rewards of {name!r} must be a 1-D array, got shape {values.shape}")
                if matrix is None:
                    matrix = np.empty((len(self._names), values.size))
                elif values.size != matrix.shape[1]:
                    sizes = ", ".join(f"{n}={np.size(rewards_by_function[n])}" for n in self._names)
                    raise StepInputError("length_mismatch", f"reward arrays have different lengths: {sizes}")
                matrix[row] = values
            except (TypeError, ValueError) as error:
                if isinstance(error, StepInputError):
                    raise
                raise StepInputError("not_numeric", f"rewards of {name!r} are not numbers: {error}") from None
        return matrix

    def record_step(self, step: int, rewards_by_function: Mapping[str, Any], *, group_size: int | None = None,
                    kl: float | None = None, policy_entropy: float | None = None, advantages: Any = None,
                    completion_lengths: Any = None, max_completion_length: int | None = None,
                    clip_ratio: float | None = None, grad_norm: float | None = None, loss: float | None = None,
                    learning_rate: float | None = None, eval_accuracy: float | None = None,
                    tokens: int | None = None) -> StepMetrics | None:
        """Record one training step; returns its StepMetrics, or None when the step was skipped."""
        if self._closed:
            raise RuntimeError(f"RewardMonitor {self.run_id!r} is closed")
        started = time.perf_counter()
        try:
            if isinstance(step, bool) or not isinstance(step, numbers.Integral):
                raise StepInputError("not_numeric", f"step must be an integer, got {step!r}")
            step = int(step)
            if self.last_step is not None and step <= self.last_step:
                raise StepInputError("step_not_increasing", f"step {step} is not after the last recorded step {self.last_step}")
            rewards = self._reward_matrix(rewards_by_function)
            g = self.group_size if group_size is None else int(group_size)
            stats = compute_reward_statistics(rewards, self._table, g)
            training, arrays, rejected = compute_training_statistics(
                n_samples=rewards.shape[1], advantages=advantages, completion_lengths=completion_lengths,
                max_completion_length=max_completion_length or self.max_completion_length, kl=kl,
                policy_entropy=policy_entropy, clip_ratio=clip_ratio, grad_norm=grad_norm, loss=loss,
                learning_rate=learning_rate, eval_accuracy=eval_accuracy)
            if tokens is not None and not (isinstance(tokens, numbers.Real) and math.isfinite(tokens) and tokens >= 0):
                raise StepInputError("not_numeric", f"tokens must be a non-negative number, got {tokens!r}")
        except StepInputError as error:
            self._skip(error.reason, str(error), step)
            return None
        if rejected:
            log.warning("rewardscope: step %d of run %s: dropped non-finite %s", step, self.run_id, ", ".join(rejected))

        now = time.time()
        row = self.layout.new_row()
        row[0] = step
        row[1] = now
        layout = self.layout
        row[layout.index("grpo_group_size")] = g
        for name, value in stats.run.items():
            row[layout.index(name)] = value
        for name, value in training.items():
            row[layout.index(name)] = value
        for name, values in stats.per_function.items():
            row[layout.function_slots[name]] = values
        metrics = StepMetrics(step, now, layout, row, rewards if self.log_distributions else None)
        for detector in self.detectors:
            if hasattr(detector, "observe_batch"):  # detectors that read the batch itself (length vs reward)
                detector.observe_batch(stats.combined, arrays["completion_lengths"], g)
            for name, value in detector.update(metrics).items():
                row[layout.index(name)] = value

        self.window.append(step, row)
        slopes: dict[TrendKey, float | None] = {}
        for window, (keys, columns) in self._trend_groups.items():
            slopes.update(zip(keys, self.window.slopes(columns, window)))
        events = self.alert_engine.evaluate(metrics, slopes) if self.alert_engine is not None else []

        monotonic = time.monotonic()
        duration = None if self._last_monotonic is None else monotonic - self._last_monotonic
        self._last_monotonic = monotonic
        self._update_state(metrics, stats, rewards.shape[1], arrays, slopes, events, tokens, duration)

        self.fanout.write_step(metrics)
        if events:
            self._handle_alerts(events)
        self.last_step = step
        self._steps_recorded += 1
        if self._first_step is None:
            self._first_step = step
        self._last_metrics = metrics
        with self.state.lock:
            self.state.counters["rewardscope_record_seconds_total"] += time.perf_counter() - started
        return metrics

    def _update_state(self, metrics: StepMetrics, stats, n_samples: int, arrays, slopes, events, tokens, duration) -> None:
        s = self.state
        with s.lock:
            s.latest = s.carry_sticky(metrics.row)
            s.counters["grpo_steps_total"] += 1
            s.counters["grpo_samples_total"] += n_samples
            if tokens is not None:
                s.counters["grpo_tokens_total"] += float(tokens)
            s.reward_histograms.add(stats.bucket_counts, stats.bucket_sums, stats.bucket_totals)
            s.nonfinite_totals += stats.per_function["grpo_reward_fn_nonfinite_samples"]
            if arrays["completion_lengths"] is not None:
                s.length_histogram.observe_row(0, arrays["completion_lengths"])
            if duration is not None:
                s.duration_histogram.observe_row(0, np.array([duration]))
            s.slopes = {k: v for k, v in slopes.items() if v is not None}
            for event in events:
                key = (event.alertname, event.severity)
                if event.state is AlertState.FIRING:
                    s.alerts_firing[key] = s.alerts_firing.get(key, 0) + 1
                    s.labelled_counters["grpo_alerts_fired_total"][key] += 1
                else:
                    s.alerts_firing[key] = max(s.alerts_firing.get(key, 0) - 1, 0)

    def _handle_alerts(self, events: list[AlertEvent]) -> None:
        self.recent_alerts.extend(events)
        del self.recent_alerts[:-self._max_recent_alerts]
        if self.print_alerts:
            for event in events:
                self.alert_printer(format_alert(event))
        self.fanout.write_alerts(events)

    # ------------------------------------------------------------------ reading back
    def recent(self, name: str, reward_fn: str | None = None, last: int | None = None) -> np.ndarray:
        """The last values of a stored metric from the rolling window, oldest first (NaN = absent)."""
        return self.window.column(self.layout.index(name, reward_fn), last)

    @property
    def latest(self) -> StepMetrics | None:
        return self._last_metrics

    def summary(self) -> dict:
        """Totals and the latest values: what summary.json holds."""
        with self.state.lock:
            counters = dict(self.state.counters)
            skipped = {k[0]: v for k, v in self.state.labelled_counters.get("grpo_skipped_steps_total", {}).items()}
            sink_errors = {k[0]: v for k, v in self.state.labelled_counters.get("rewardscope_sink_errors_total", {}).items()}
            alerts = {f"{k[0]}/{k[1]}": v for k, v in self.state.labelled_counters.get("grpo_alerts_fired_total", {}).items()}
            nonfinite = dict(zip(self._names, self.state.nonfinite_totals.tolist()))
        return {
            "run_id": self.run_id,
            "first_step": self._first_step,
            "last_step": self.last_step,
            "steps_recorded": self._steps_recorded,
            "samples": counters.get("grpo_samples_total", 0.0),
            "tokens": counters.get("grpo_tokens_total", 0.0),
            "nonfinite_rewards": nonfinite,
            "skipped_steps": skipped,
            "sink_errors": sink_errors,
            "alerts_fired": alerts,
            "record_seconds_total": counters.get("rewardscope_record_seconds_total", 0.0),
            "latest": {} if self._last_metrics is None else self._last_metrics.as_dict(),
            "closed": time.time(),
        }

    def close(self) -> None:
        """Write the summary, close the sinks, stop /metrics. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self.fanout.close(self.summary())
        finally:
            try:
                self.registry.unregister(self._collector)
            except KeyError:
                pass
            if self.server is not None:
                self.server.stop()

    def __enter__(self) -> "RewardMonitor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def format_alert(event: AlertEvent) -> str:
    """One line for a terminal: state, severity, alert, labels, value, step."""
    labels = ",".join(f"{k}={v}" for k, v in sorted(event.labels.items()))
    value = "" if event.value is None else f" value={event.value:.4g}"
    threshold = "" if event.threshold is None else f" threshold={event.threshold:.4g}"
    return (f"[rewardscope] {event.state.value.upper()} {event.severity} {event.alertname} {{{labels}}} step={event.step}"
            f"{value}{threshold}: {event.summary}")
