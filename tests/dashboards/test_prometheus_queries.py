"""Every dashboard query against a real Prometheus that scraped a real simulated run.

Debian's ``prometheus`` runs on 127.0.0.1 with the repository's own
prometheus/prometheus.yml, adapted only in addresses (its :19464 targets become the
test's monitor, its self-scrape this Prometheus; rule files and Alertmanager dropped)
and in the scrape interval (1 s). A RewardMonitor serves a simulated healthy run while
Prometheus scrapes it; then each panel query, with the dashboard variables substituted
as Grafana would (``$__rate_interval`` = 4 scrape intervals), must return data,
unless the panel says why it may be empty.
"""

from __future__ import annotations

import json
import math
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from rewardscope import LEGACY_REWARD_FUNCTIONS, RewardMonitor
from rewardscope.alerting.events import AlertEvent, AlertState
from rewardscope.dashboards.definitions import DASHBOARDS
from rewardscope.dashboards.model import Dashboard, Panel
from rewardscope.simulation.scenarios import plan_run, simulate_steps

from support import free_port, require_binary, stop_process

pytestmark = pytest.mark.slow  # real servers or training runs

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_YML = REPO / "prometheus" / "prometheus.yml"
RUN_ID = "dashboards_healthy"
RATE_INTERVAL = "4s"  # Grafana's $__rate_interval for a 1 s scrape interval: 4 x 1 s
MONITOR_PORT = 19464  # the port prometheus.yml scrapes on the demo and the host
FUNCTIONS = [spec.name for spec in LEGACY_REWARD_FUNCTIONS]


class AlertAtStep3:
    """An alert engine that fires one alert at step 3 and holds it: gives the alert panels data."""

    def bind(self, run_id, reward_functions):
        self.run_id = run_id

    def trend_requirements(self):
        return []

    def evaluate(self, metrics, slopes):
        if metrics.step == 3:
            return [AlertEvent("DashboardTestAlert", AlertState.FIRING, "warning", 3, time.time(), {"run_id": self.run_id})]
        return []


def adapt_config(config: dict, monitor: str, prometheus: str) -> tuple[dict, list[str]]:
    """prometheus.yml with its :19464 targets pointed at ``monitor`` and :9090 at ``prometheus``.

    Other targets (Alertmanager) are dropped, and so are rule files and the Alertmanager
    address. Returns the config and the jobs that scrape the monitor.
    """
    config = json.loads(json.dumps(config))  # a deep copy
    config.pop("rule_files", None)
    config.pop("alerting", None)
    config.setdefault("global", {}).update({"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"})
    jobs, kept = [], []
    for job in config.get("scrape_configs", []):
        job.pop("scrape_interval", None)
        job.pop("scrape_timeout", None)
        statics = []
        for static in job.get("static_configs", []):
            targets = []
            for target in static.get("targets", []):
                port = target.rsplit(":", 1)[-1]
                new = {str(MONITOR_PORT): monitor, "9090": prometheus}.get(port)
                if new is not None and new not in targets:
                    targets.append(new)
            if targets:
                statics.append({**static, "targets": targets})
        if statics:
            kept.append({**job, "static_configs": statics})
            if any(monitor in s["targets"] for s in statics):
                jobs.append(job["job_name"])
    config["scrape_configs"] = kept
    return config, jobs


def api(base: str, path: str, **params) -> dict:
    query = urllib.parse.urlencode(params, doseq=True)
    with urllib.request.urlopen(f"{base}{path}?{query}", timeout=10) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return body["data"]


def instant(base: str, expr: str) -> list[dict]:
    return api(base, "/api/v1/query", query=expr)["result"]


def wait_for(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@dataclass
class ScrapedRun:
    base: str
    job: str
    jobs: list[str]
    monitor: RewardMonitor
    stop: threading.Event
    stepper: threading.Thread


@pytest.fixture(scope="module")
def scraped_run(tmp_path_factory):
    binary = require_binary("prometheus")
    if not PROMETHEUS_YML.is_file():
        pytest.fail(f"{PROMETHEUS_YML} is missing (the alerting issue writes it)", pytrace=False)
    tmp = tmp_path_factory.mktemp("prometheus")
    plan = plan_run("healthy", 2000, seed=3, prompts=4, group_size=8, eval_every=2)
    monitor = RewardMonitor(RUN_ID, LEGACY_REWARD_FUNCTIONS, group_size=plan.group_size, run_dir=tmp / "runs",
                            prometheus_port=0, alerts=AlertAtStep3(), max_completion_length=plan.max_completion_length,
                            run_info={"model": "simulated", "trainer": "rewardscope simulate"})
    port = free_port()
    config, jobs = adapt_config(yaml.safe_load(PROMETHEUS_YML.read_text()), f"127.0.0.1:{monitor.prometheus_port}",
                                f"127.0.0.1:{port}")
    assert jobs, f"{PROMETHEUS_YML} has no scrape target on port {MONITOR_PORT}"
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = tmp / "prometheus.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen([binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                                    f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=log_file)
    stop = threading.Event()

    def step_forever() -> None:
        for sim in simulate_steps("healthy", plan.steps, seed=plan.seed, prompts=plan.prompts,
                                  group_size=plan.group_size, eval_every=plan.eval_every):
            if stop.wait(0.1):
                return
            monitor.record_step(sim.step, **sim.kwargs)

    stepper = threading.Thread(target=step_forever, daemon=True)
    try:
        base = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"prometheus exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            return _ready(base)

        wait_for(ready, "Prometheus to be ready")
        stepper.start()
        job = jobs[0]
        # Enough scrapes that every [4s] window holds several samples of a moving run.
        wait_for(lambda: _value(base, f'count_over_time(grpo_steps_total{{job="{job}"}}[1m])') >= 6,
                 "six scrapes of the run", timeout=40)
        yield ScrapedRun(base, job, jobs, monitor, stop, stepper)
    finally:
        stop.set()
        if stepper.is_alive():
            stepper.join(timeout=10)
        stop_process(process)
        monitor.close()


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/-/ready", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def _value(base: str, expr: str) -> float:
    result = instant(base, expr)
    return float(result[0]["value"][1]) if result else float("nan")


def substitute(expr: str, job: str, **values: str) -> str:
    """The query Grafana sends: variables replaced by the selected values."""
    out = expr.replace("$__rate_interval", RATE_INTERVAL).replace("$job", job).replace("$run_id", RUN_ID)
    return out.replace("$reward_fn", values.get("reward_fn", ".*"))


def panel_queries(board: Dashboard, panel: Panel, job: str) -> list[tuple[str, str]]:
    """(label, query) for every target of the panel, once per value of a repeat variable."""
    repeats = {"reward_fn": FUNCTIONS, "run_id": [RUN_ID]}.get(panel.repeat or "", [""])
    out = []
    for value in repeats:
        for target in panel.targets:
            label = f"{board.uid} / {panel.title}" + (f" [{value}]" if value else "")
            out.append((label, substitute(target.expr, job, reward_fn=value or ".*")))
    return out


def test_every_panel_query_returns_data(scraped_run):
    empty, not_finite = [], []
    for board in DASHBOARDS:
        for panel in board.panels():
            for label, query in panel_queries(board, panel, scraped_run.job):
                result = instant(scraped_run.base, query)  # raises on a query Prometheus rejects
                if panel.may_be_empty:
                    continue
                if not result:
                    empty.append(f"{label}: {query}")
                not_finite += [f"{label}: {r['metric']} = {r['value'][1]}" for r in result
                               if not math.isfinite(float(r["value"][1]))]
    assert empty == [], "panels without data:\n" + "\n".join(empty)
    assert not_finite == [], "panels with non-finite values:\n" + "\n".join(not_finite)


def test_annotation_queries_run_and_show_the_in_process_alert(scraped_run):
    results = {a.name: instant(scraped_run.base, substitute(a.expr, scraped_run.job))
               for a in DASHBOARDS[0].annotations}
    assert [r["metric"]["alertname"] for r in results["In-process alerts"]] == ["DashboardTestAlert"]
    assert results["Prometheus alerts"] == []  # no rule files are loaded here, so Prometheus has no ALERTS


def test_variables_list_the_run_its_job_and_its_functions(scraped_run):
    base, job = scraped_run.base, scraped_run.job
    # The queries Grafana's label_values() variables send.
    assert sorted(api(base, "/api/v1/label/job/values", **{"match[]": "grpo_run_info"})) == sorted(scraped_run.jobs)
    assert api(base, "/api/v1/label/run_id/values", **{"match[]": f'grpo_run_info{{job=~"{job}"}}'}) == [RUN_ID]
    fn_match = f'grpo_reward_fn_weight{{job=~"{job}", run_id=~"{RUN_ID}"}}'
    assert api(base, "/api/v1/label/reward_fn/values", **{"match[]": fn_match}) == sorted(FUNCTIONS)


def test_exact_values_after_the_run_stops(scraped_run):
    scraped_run.stop.set()
    scraped_run.stepper.join(timeout=10)
    last = scraped_run.monitor.last_step
    overview = {p.title: p for p in DASHBOARDS[0].panels()}
    step_query = substitute(overview["Step"].targets[0].expr, scraped_run.job)
    wait_for(lambda: _value(scraped_run.base, step_query) == last, f"Prometheus to scrape step {last}")

    info = instant(scraped_run.base, substitute(overview["Run info"].targets[0].expr, scraped_run.job))
    assert [{k: r["metric"][k] for k in ("run_id", "model", "trainer", "reward_functions")} for r in info] == [
        {"run_id": RUN_ID, "model": "simulated", "trainer": "rewardscope simulate",
         "reward_functions": ",".join(FUNCTIONS)}]
    firing = instant(scraped_run.base, substitute(overview["Alerts firing (in-process)"].targets[0].expr, scraped_run.job))
    assert [(r["metric"]["run_id"], r["value"][1]) for r in firing] == [(RUN_ID, "1")]

    functions = {p.title: p for p in DASHBOARDS[1].panels()}
    heatmap = functions["Reward distribution: $reward_fn"].targets[0].expr
    buckets = instant(scraped_run.base, substitute(heatmap, scraped_run.job, reward_fn="format_exact"))
    # format_exact declares 0..3: 20 equal buckets, so 21 upper bounds plus +Inf.
    assert len(buckets) == 22
    assert {r["metric"]["le"] for r in buckets} >= {"0.0", "3.0", "+Inf"}
