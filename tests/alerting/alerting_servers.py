"""Real Prometheus, Alertmanager and a Slack-format HTTP sink on 127.0.0.1 for the alerting tests.

The test configurations are the repository's own files (prometheus/prometheus.yml,
alerting/alertmanager.yml, alerting/templates/) with only addresses, paths and timing
knobs rewritten: scrape targets, rule file and template paths, the Alertmanager address,
the webhook URL file, and shorter intervals (1 s scrape and evaluation, 1 s group
waits) so that a test takes seconds. Routes, inhibition, receivers and templates are
used as written. Every server runs on a free port in a temp directory and is stopped by
the fixture that started it.

Usage (in a test module)::

    from alerting_servers import SlackSink, start_alertmanager, start_prometheus
    sink = SlackSink(); am = start_alertmanager(tmp_path, sink.webhook_files(tmp_path / "secrets"))
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml
from support import free_port, require_binary, stop_process

ROOT = Path(__file__).resolve().parents[2]
RECEIVERS = ("slack-critical", "slack-warning", "slack-info", "slack-demo")


class Server:
    """A server process started by a test; ``stop()`` terminates it by its PID."""

    def __init__(self, name: str, args: list[str], url: str, log_path: Path, timeout: float = 30.0) -> None:
        self.name, self.url, self.log_path = name, url, log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - open as long as the server runs; stop() closes it
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"{name} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url + "/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{name} not ready after {timeout} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def get(self, path: str, **params: str) -> dict:
        query = ("?" + urllib.parse.urlencode(params)) if params else ""
        with urllib.request.urlopen(self.url + path + query, timeout=10) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        stop_process(self.process)
        self._log.close()


def prometheus_config(targets: list[str], rules_dir: Path, alertmanager: str | None, interval: str = "1s",
                      evaluation_interval: str | None = None) -> str:
    """prometheus/prometheus.yml with local targets, rule files and Alertmanager, and short timings."""
    config = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval=interval, scrape_timeout=interval, evaluation_interval=evaluation_interval or interval)
    config["rule_files"] = [str(rules_dir / "*.yml")]
    if alertmanager is None:
        del config["alerting"]
    else:
        config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [alertmanager]
    # Only the runs' job: the stack's own targets (prometheus, alertmanager, grafana) are compose host names.
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "rewardscope"]
    job["static_configs"][0]["targets"] = targets
    config["scrape_configs"] = [job]
    return yaml.safe_dump(config, sort_keys=False)


def alertmanager_config(secrets: Path, wait: str | None = "1s") -> str:
    """alerting/alertmanager.yml with the repository's templates and webhook URL files read from ``secrets``
    (``SlackSink.webhook_files``); ``wait`` shortens the group timings, None keeps the production ones."""
    config = yaml.safe_load((ROOT / "alerting" / "alertmanager.yml").read_text())
    config["templates"] = [str(ROOT / "alerting" / "templates" / "*.tmpl")]
    for receiver in config["receivers"]:
        for slack in receiver["slack_configs"]:
            slack["api_url_file"] = str(secrets / Path(slack["api_url_file"]).name)
    for route in [config["route"], *config["route"]["routes"]]:
        for key in ("group_wait", "group_interval"):
            if key in route and wait is not None:
                route[key] = wait
    return yaml.safe_dump(config, sort_keys=False)


def start_prometheus(directory: Path, targets: list[str], rules_dir: Path, alertmanager: str | None = None,
                     interval: str = "1s", evaluation_interval: str | None = None) -> Server:
    binary = require_binary("prometheus")
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "prometheus.yml"
    config.write_text(prometheus_config(targets, rules_dir, alertmanager, interval, evaluation_interval))
    port = free_port()
    return Server("prometheus", [binary, f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}",
                                 f"--web.listen-address=127.0.0.1:{port}", f"--web.external-url=http://127.0.0.1:{port}",
                                 "--log.level=warn"],
                  f"http://127.0.0.1:{port}", directory / "prometheus.log")


def start_alertmanager(directory: Path, secrets: Path, wait: str | None = "1s") -> Server:
    binary = require_binary("prometheus-alertmanager")
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "alertmanager.yml"
    config.write_text(alertmanager_config(secrets, wait))
    port = free_port()
    return Server("alertmanager", [binary, f"--config.file={config}", f"--storage.path={directory / 'data'}",
                                   f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
                                   f"--web.external-url=http://127.0.0.1:{port}", "--log.level=warn"],
                  f"http://127.0.0.1:{port}", directory / "alertmanager.log")


class SlackSink:
    """A tiny HTTP server that records what Alertmanager posts to Slack: (arrival time, JSON payload)."""

    def __init__(self) -> None:
        self.messages: list[tuple[float, dict]] = []  # each payload also has "_path": the URL path it was posted to
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with sink._lock:
                    payload = json.loads(body)
                    payload["_path"] = self.path
                    sink.messages.append((time.time(), payload))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.url = self.base + "/services/T0/B0/test"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def webhook_files(self, directory: Path, receivers: tuple[str, ...] = RECEIVERS) -> Path:
        """A secrets directory whose webhook URL files (api_url_file) all point at this sink, with the
        receiver's name in the path (``/services/<receiver>``), so a test sees which receiver posted."""
        directory.mkdir(parents=True, exist_ok=True)
        for receiver in receivers:
            (directory / f"{receiver}.url").write_text(f"{self.base}/services/{receiver}\n")
        return directory

    def received(self) -> list[tuple[float, dict]]:
        with self._lock:
            return list(self.messages)

    def wait_for(self, predicate, timeout: float) -> tuple[float, dict] | None:
        """The first message satisfying ``predicate(payload)``, waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for arrival, payload in self.received():
                if predicate(payload):
                    return arrival, payload
            time.sleep(0.1)
        return None

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def firing_alerts(prometheus: Server, selector: str, lookback: str = "10m", at: float | None = None) -> set[tuple[str, ...]]:
    """Every (alertname, severity, run_id, reward_fn) that fired in Prometheus within ``lookback`` (before time ``at``)."""
    params = {"query": f'max_over_time(ALERTS{{alertstate="firing",{selector}}}[{lookback}])'}
    if at is not None:
        params["time"] = repr(at)
    result = prometheus.get("/api/v1/query", **params)
    return {(m["metric"]["alertname"], m["metric"]["severity"], m["metric"].get("run_id", ""), m["metric"].get("reward_fn", ""))
            for m in result["data"]["result"]}
