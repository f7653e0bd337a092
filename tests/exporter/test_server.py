"""The /metrics server: content negotiation, gzip, HEAD, name[], 500s, many scrapers, idle sockets, TLS and basic auth
(checked against a real Prometheus)."""

from __future__ import annotations

import base64
import gzip
import http.client
import socket
import ssl
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text
from support import free_port, require_binary, stop_process

from rewardscope import RewardFunctionSpec, RewardMonitor
from rewardscope.exporter.server import MetricsServer, gzip_accepted
from rewardscope.exporter.webconfig import WebConfig, WebConfigError

SPECS = [RewardFunctionSpec("format", 1.0, 0.0, 3.0), RewardFunctionSpec("answer", 1.0, -1.0, 3.0)]


@pytest.fixture
def monitor():
    m = RewardMonitor("srv", SPECS, group_size=2, run_dir=None, prometheus_port=0)
    m.record_step(1, {"format": [0.0, 3.0, 3.0, 3.0], "answer": [-1.0, 3.0, 1.0, 1.0]}, tokens=10)
    yield m
    m.close()


def request(port, method="GET", path="/metrics", headers=None, tls=None):
    connection = (http.client.HTTPSConnection("127.0.0.1", port, context=tls, timeout=10) if tls
                  else http.client.HTTPConnection("127.0.0.1", port, timeout=10))
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_text_format_by_default_and_it_passes_promtool(monitor, promtool):
    status, headers, body = request(monitor.prometheus_port)
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in parse_text(body.decode())}
    assert families["grpo_reward_mean"].samples[0].value == 3.25
    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr.decode()


def test_openmetrics_when_asked_and_it_parses(monitor):
    status, headers, body = request(monitor.prometheus_port,
                                    headers={"Accept": "application/openmetrics-text; version=1.0.0,text/plain;q=0.5"})
    assert status == 200 and headers["Content-Type"].startswith("application/openmetrics-text")
    text = body.decode()
    assert text.endswith("# EOF\n")
    families = {f.name: f for f in parse_openmetrics(text)}
    assert families["grpo_steps"].type == "counter"
    assert {s.name: s.value for s in families["grpo_steps"].samples}["grpo_steps_total"] == 1.0
    assert families["grpo_run"].type == "info"
    answer = [s for s in families["grpo_reward_fn_value"].samples if s.labels.get("reward_fn") == "answer"]
    assert not any(s.name.endswith("_sum") for s in answer)  # can be negative: no _sum


def test_gzip_only_when_accepted():
    assert gzip_accepted("gzip") and gzip_accepted("deflate, gzip;q=0.5") and gzip_accepted("*")
    assert not gzip_accepted("gzip;q=0") and not gzip_accepted("identity") and not gzip_accepted(None)


def test_gzip_over_http(monitor):
    _, headers, body = request(monitor.prometheus_port, headers={"Accept-Encoding": "gzip"})
    assert headers.get("Content-Encoding") == "gzip" and b"grpo_reward_mean" in gzip.decompress(body)
    _status, headers, body = request(monitor.prometheus_port, headers={"Accept-Encoding": "gzip;q=0, identity"})
    assert "Content-Encoding" not in headers and b"grpo_reward_mean" in body


def test_head_get_other_methods_and_paths(monitor):
    status, headers, body = request(monitor.prometheus_port, method="HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 1000
    assert request(monitor.prometheus_port, method="POST")[0] == 405
    assert request(monitor.prometheus_port, path="/nope")[0] == 404
    assert request(monitor.prometheus_port, path="/")[0] == 200


def test_name_filter(monitor):
    _, _, body = request(monitor.prometheus_port, path="/metrics?name[]=grpo_reward_mean&name[]=grpo_steps_total")
    names = {s.name for f in parse_text(body.decode()) for s in f.samples}
    assert names == {"grpo_reward_mean", "grpo_steps_total"}


def test_process_metrics_on_by_default_and_switchable(monitor):
    _, _, body = request(monitor.prometheus_port)
    assert b"process_cpu_seconds_total" in body and b"python_info" in body
    with RewardMonitor("quiet", SPECS, run_dir=None, prometheus_port=0, process_metrics=False) as quiet:
        _, _, body = request(quiet.prometheus_port)
    assert b"process_cpu_seconds_total" not in body and b"grpo_run_info" in body


class Broken:
    def collect(self):
        raise RuntimeError("collector exploded")


def test_a_render_error_is_a_500_and_the_server_keeps_serving(caplog):
    registry = CollectorRegistry()
    broken = Broken()
    registry.register(broken)
    server = MetricsServer(registry, port=0)
    try:
        status, _, body = request(server.port)
        assert status == 500 and b"collector exploded" in body
        assert "rendering /metrics failed" in caplog.text
        registry.unregister(broken)
        assert request(server.port)[0] == 200
    finally:
        server.stop()


def test_run_info_values_are_checked_at_construction():
    with pytest.raises(ValueError, match="run_info"):
        RewardMonitor("r", SPECS, run_dir=None, run_info={"model": 3})
    with pytest.raises(ValueError, match="run_id"):
        RewardMonitor("bad\udcff", SPECS, run_dir=None)


def test_128_concurrent_scrapers_all_get_an_answer(monitor):
    def scrape(_):
        return request(monitor.prometheus_port)[0]

    with ThreadPoolExecutor(max_workers=128) as pool:
        statuses = list(pool.map(scrape, range(256)))
    assert statuses == [200] * 256


def test_idle_connections_are_closed_and_do_not_block_scrapes():
    registry = CollectorRegistry()
    server = MetricsServer(registry, port=0, workers=2, idle_timeout_seconds=0.5)
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(4)]
    try:
        for s in idle:
            s.settimeout(10)
            assert s.recv(1) == b""  # the server hung up on the idle client
        assert request(server.port)[0] == 200
    finally:
        for s in idle:
            s.close()
        server.stop()


# ---------------------------------------------------------------------------- TLS and basic auth
def _certificate(directory: Path) -> tuple[Path, Path]:
    openssl = require_binary("openssl")
    cert, key = directory / "tls.crt", directory / "tls.key"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture
def web_config(tmp_path):
    import bcrypt

    cert, key = _certificate(tmp_path)
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode().replace("$2b$", "$2y$")  # htpasswd writes $2y$
    path = tmp_path / "web.yml"
    path.write_text(yaml.safe_dump({"tls_server_config": {"cert_file": cert.name, "key_file": key.name},
                                    "basic_auth_users": {"prometheus": hashed}}))
    return path, cert


def test_tls_and_basic_auth(web_config):
    path, cert = web_config
    tls = ssl.create_default_context(cafile=str(cert))
    auth = {"Authorization": "Basic " + base64.b64encode(b"prometheus:s3cret").decode()}
    wrong = {"Authorization": "Basic " + base64.b64encode(b"prometheus:guess").decode()}
    with RewardMonitor("tls", SPECS, run_dir=None, prometheus_port=0, web_config_file=path) as m:
        assert m.server.url.startswith("https://")
        assert request(m.prometheus_port, headers=auth, tls=tls)[0] == 200
        status, headers, _ = request(m.prometheus_port, headers=wrong, tls=tls)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
        assert request(m.prometheus_port, tls=tls)[0] == 401
        with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
            request(m.prometheus_port, headers=auth)  # plain HTTP to a TLS port


def test_web_config_errors_are_clear(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("tls_server_config: {cert_file: a.crt}\n")
    with pytest.raises(WebConfigError, match="key_file"):
        WebConfig.load(bad)
    bad.write_text("basic_auth_users: {alice: plaintext}\n")
    with pytest.raises(WebConfigError, match="bcrypt"):
        WebConfig.load(bad)
    bad.write_text("basic_auth_user: {}\n")
    with pytest.raises(WebConfigError, match="unknown key"):
        WebConfig.load(bad)


def _prometheus(tmp_path: Path, port: int, cert: Path, password: str):
    binary = require_binary("prometheus")
    config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
              "scrape_configs": [{"job_name": "tls", "scheme": "https", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
                                  "tls_config": {"ca_file": str(cert), "server_name": "localhost"},
                                  "basic_auth": {"username": "prometheus", "password": password}}]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    web_port = free_port()
    process = subprocess.Popen([binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
                                f"--web.listen-address=127.0.0.1:{web_port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return process, web_port


def _target_health(web_port: int, timeout: float = 30.0) -> dict:
    import json
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/api/v1/targets", timeout=2) as response:
                targets = json.loads(response.read())["data"]["activeTargets"]
            if targets and targets[0]["health"] != "unknown":
                return targets[0]
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("Prometheus never scraped the target")


@pytest.mark.slow
@pytest.mark.parametrize("password, health", [("s3cret", "up"), ("guess", "down")])
def test_real_prometheus_scrapes_over_tls_with_basic_auth(tmp_path, web_config, password, health):
    path, cert = web_config
    with RewardMonitor("tls-run", SPECS, run_dir=None, prometheus_port=0, web_config_file=path) as m:
        m.record_step(1, {"format": np.array([0.0, 3.0]), "answer": np.array([1.0, 1.0])})
        process, web_port = _prometheus(tmp_path, m.prometheus_port, cert, password)
        try:
            target = _target_health(web_port)
        finally:
            stop_process(process)
    assert target["health"] == health, target
    if health == "down":
        assert "401" in target["lastError"]


def test_scrapes_while_recording_see_whole_steps(monitor):
    stop = threading.Event()
    seen: list[tuple[float, float]] = []

    def scrape():
        while not stop.is_set():
            families = {f.name: f for f in parse_text(request(monitor.prometheus_port)[2].decode())}
            step = families["grpo_step"].samples[0].value
            steps_total = {s.name: s.value for s in families["grpo_steps"].samples}["grpo_steps_total"]
            seen.append((step, steps_total))

    thread = threading.Thread(target=scrape)
    thread.start()
    for step in range(2, 200):
        monitor.record_step(step, {"format": [0.0, 3.0, 3.0, 3.0], "answer": [-1.0, 3.0, 1.0, 1.0]})
    stop.set()
    thread.join()
    assert seen and all(step == total for step, total in seen)  # one scrape = one step: the gauge and the counter agree
