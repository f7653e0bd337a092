"""Prometheus exposition of a run: a snapshot of the run's state, rendered to /metrics.

``snapshot`` copies the latest step's values, the counters and the histograms of one
RunState under the run's lock, so one scrape sees one step. Every family comes from a
catalogue entry (name, type, help); a test fails if anything else is emitted.

The families are rendered in the text format by TextRenderer, directly: the
general-purpose prometheus_client renderer validates and escapes every label of
every sample on every scrape, about 8x slower at F = 4. RunCollector hands the same
families to a prometheus_client registry for callers that bring their own.

Usage::

    from prometheus_client import CollectorRegistry, generate_latest
    registry = CollectorRegistry()
    registry.register(RunCollector(state))
    print(generate_latest(registry).decode())

    renderer = TextRenderer()
    server = MetricsServer(lambda: renderer.render(snapshot(state)), host="127.0.0.1", port=0)   # 0 = any free port
    print(server.port); server.stop()
"""

from __future__ import annotations

import gzip
import logging
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from dataclasses import dataclass, field
from typing import Iterator

from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.samples import Sample
from prometheus_client.core import Metric

from ..metrics.catalogue import CATALOGUE, Kind, Scope, metric
from ..metrics.histograms import HistogramBank
from ..metrics.state import RunState
from ..alerting.exposition import alert_state_families

log = logging.getLogger("rewardscope")

DEFAULT_PORT = 19464
DEFAULT_HOST = "127.0.0.1"

_ROW_GAUGES = tuple(s for s in CATALOGUE if s.kind is Kind.GAUGE and s.stored)


def _le(bound: float) -> str:
    return repr(float(bound)) if math.isfinite(bound) else "+Inf"


Labels = tuple[tuple[str, str], ...]


@dataclass
class Family:
    """One metric family as exposed: TYPE-line name, Prometheus type, help, samples (name, labels, value)."""

    name: str
    type: str
    help: str
    samples: list[tuple[str, Labels, float]] = field(default_factory=list)


def _histogram(name: str, bank: HistogramBank, label_sets: list[Labels], rows: range | None = None) -> Family:
    family = Family(name, "histogram", metric(name).help)
    cumulative_by_row = bank.cumulative_counts()
    for row, labels in zip(rows or range(len(label_sets)), label_sets):
        cumulative = cumulative_by_row[row].tolist()
        bounds = [_le(b) for b in bank.edges[row]] + ["+Inf"]
        family.samples += [(name + "_bucket", labels + (("le", le),), float(c)) for le, c in zip(bounds, cumulative)]
        # _sum and _count even with negative bounds (prometheus_client would drop them, an OpenMetrics rule):
        # rewards are often negative and rate(_sum)/rate(_count) is the exact mean we promise.
        family.samples.append((name + "_count", labels, float(cumulative[-1])))
        family.samples.append((name + "_sum", labels, float(bank.sums[row])))
    return family


def snapshot(state: RunState) -> list[Family]:
    """Every family of one run, copied under the run's lock so a scrape sees one step."""
    s = state
    with s.lock:
        s.counters["rewardscope_scrapes_total"] += 1
        latest = None if s.latest is None else s.latest.copy()
        counters = dict(s.counters)
        labelled = {k: dict(v) for k, v in s.labelled_counters.items()}
        nonfinite = s.nonfinite_totals.tolist()
        slopes = dict(s.slopes)
        firing = dict(s.alerts_firing)
        alert_instances = list(s.alert_instances)
        median_step_seconds = s.median_step_seconds
        run_ended = s.run_ended
        reward_bank = s.reward_histograms.copy()
        length_bank = s.length_histogram.copy()
        duration_bank = s.duration_histogram.copy()
    run: Labels = (("run_id", s.run_id),)
    fns = s.layout.reward_functions
    by_fn = [run + (("reward_fn", fn),) for fn in fns]
    families: list[Family] = []

    info_spec = metric("grpo_run_info")
    info_labels = run + tuple((k, s.run_info.get(k, "")) for k in info_spec.extra_labels)
    families.append(Family("grpo_run_info", "gauge", info_spec.help, [("grpo_run_info", info_labels, 1.0)]))

    if latest is not None:
        for spec in _ROW_GAUGES:
            family = Family(spec.name, "gauge", spec.help)
            if spec.scope is Scope.RUN:
                v = latest[s.layout.index(spec.name)]
                if not math.isnan(v):
                    family.samples.append((spec.name, run, float(v)))
            else:
                for labels, v in zip(by_fn, latest[s.layout.function_slots[spec.name]].tolist()):
                    if not math.isnan(v):
                        family.samples.append((spec.name, labels, v))
            if family.samples:
                families.append(family)

    families.append(Family("grpo_reward_fn_weight", "gauge", metric("grpo_reward_fn_weight").help,
                           [("grpo_reward_fn_weight", labels, spec.weight) for labels, spec in zip(by_fn, s.specs)]))
    if slopes:
        families.append(Family("grpo_metric_slope_per_step", "gauge", metric("grpo_metric_slope_per_step").help, [
            ("grpo_metric_slope_per_step", run + (("metric", name), ("reward_fn", fn), ("window_steps", str(window))), value)
            for (name, fn, window), value in sorted(slopes.items()) if value is not None and math.isfinite(value)]))
    families.append(Family("grpo_alert_firing", "gauge", metric("grpo_alert_firing").help, [
        ("grpo_alert_firing", run + (("alertname", name), ("severity", severity)), 1.0 if count else 0.0)
        for (name, severity), count in sorted(firing.items())]))

    families += [Family(name, kind, metric(name).help, samples)
                 for name, kind, samples in alert_state_families(s.run_id, alert_instances, median_step_seconds, run_ended)]

    for name in ("grpo_steps_total", "grpo_samples_total", "grpo_tokens_total", "rewardscope_record_seconds_total",
                 "rewardscope_scrapes_total"):
        families.append(Family(name, "counter", metric(name).help, [(name, run, counters.get(name, 0.0))]))
    for name in ("grpo_skipped_steps_total", "grpo_alerts_fired_total", "rewardscope_sink_errors_total"):
        spec = metric(name)
        families.append(Family(name, "counter", spec.help, [
            (name, run + tuple(zip(spec.extra_labels, values)), value) for values, value in sorted(labelled.get(name, {}).items())]))
    families.append(Family("grpo_reward_fn_nonfinite_total", "counter", metric("grpo_reward_fn_nonfinite_total").help,
                           [("grpo_reward_fn_nonfinite_total", labels, v) for labels, v in zip(by_fn, nonfinite)]))

    families.append(_histogram("grpo_reward_fn_value", reward_bank, by_fn))
    families.append(_histogram("grpo_reward_value", reward_bank, [run], rows=range(len(fns), len(fns) + 1)))
    families.append(_histogram("grpo_completion_length_tokens", length_bank, [run]))
    families.append(_histogram("grpo_step_duration_seconds", duration_bank, [run]))
    return families


# ---------------------------------------------------------------------------- text exposition
def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _format_value(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if value != value:
        return "NaN"
    return repr(float(value))


class TextRenderer:
    """The text exposition format (0.0.4), with label blocks cached: they repeat on every scrape."""

    def __init__(self) -> None:
        self._label_blocks: dict[Labels, str] = {}

    def _block(self, labels: Labels) -> str:
        block = self._label_blocks.get(labels)
        if block is None:
            block = "{" + ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels) + "}" if labels else ""
            if len(self._label_blocks) < 100_000:  # bounded: label sets are few and stable in practice
                self._label_blocks[labels] = block
        return block

    def render(self, families: list[Family]) -> bytes:
        lines: list[str] = []
        for family in families:
            lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
            lines.append(f"# TYPE {family.name} {family.type}")
            block = self._block
            lines += [f"{name}{block(labels)} {_format_value(value)}" for name, labels, value in family.samples]
        lines.append("")
        return "\n".join(lines).encode("utf-8")


class RunCollector:
    """prometheus_client collector for one run, for callers who bring their own registry."""

    def __init__(self, state: RunState) -> None:
        self.state = state

    def describe(self) -> list:
        return []  # the families depend on the run's state; an empty describe keeps registration lazy

    def collect(self) -> Iterator[Metric]:
        for family in snapshot(self.state):
            # prometheus_client names a counter family without its _total and adds it back when rendering.
            name = family.name[: -len("_total")] if family.type == "counter" else family.name
            out = Metric(name, family.help, family.type)
            out.samples = [Sample(name, dict(labels), value) for name, labels, value in family.samples]
            yield out


class _Handler(BaseHTTPRequestHandler):
    render: Callable[[], bytes]  # set on the per-server subclass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            body = self.render()
            content_type = CONTENT_TYPE_LATEST
            if "gzip" in self.headers.get("Accept-Encoding", ""):
                body = gzip.compress(body, compresslevel=1)
                encoding = "gzip"
            else:
                encoding = None
        elif path == "/":
            body, content_type, encoding = b"rewardscope exporter: see /metrics\n", "text/plain; charset=utf-8", None
        else:
            self.send_error(404, "only /metrics is served here")
            return
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("metrics server: " + format, *args)


class MetricsServer:
    """/metrics over HTTP from a background thread; ``stop()`` closes the socket.

    ``render`` returns the exposition body; it runs on the server's threads.
    """

    def __init__(self, render: Callable[[], bytes], host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
        handler = type("MetricsHandler", (_Handler,), {"render": staticmethod(render)})
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as error:
            raise OSError(error.errno, f"cannot serve /metrics on {host}:{port}: {error.strerror or error}; "
                                       f"pass another port (0 picks a free one)") from error
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="rewardscope-metrics", daemon=True)
        self._thread.start()
        self.host = host
        self.port = int(self._server.server_address[1])
        self._stopped = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def stop(self) -> None:
        if not self._stopped.is_set():
            self._stopped.set()
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
