"""docker-compose.yml, the GPU override, the images and Grafana's provisioning, checked without a Docker engine.

Debian's ``docker-compose`` (1.29) validates and resolves the files without an engine;
it does not notice a missing bind-mount source, so the resolved mounts are checked here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from support import require_binary

from rewardscope.cli import build_parser
from rewardscope.dashboards.definitions import DATASOURCE_UID

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
GPU = REPO / "docker" / "docker-compose.gpu.yml"
ENV = {"GRAFANA_ADMIN_PASSWORD": "test-only-password"}
# What this stack mounts, agreed with the alerting issue: repository path -> container path.
CONTRACT = {
    "prometheus": {"prometheus/prometheus.yml": "/etc/prometheus/prometheus.yml", "prometheus/rules": "/etc/prometheus/rules"},
    "alertmanager": {"alerting/alertmanager.yml": "/etc/alertmanager/alertmanager.yml",
                     "alerting/templates": "/etc/alertmanager/templates",
                     "alerting/secrets/example": "/etc/alertmanager/secrets"},
    "grafana": {"grafana/provisioning/datasources": "/etc/grafana/provisioning/datasources",
                "grafana/provisioning/dashboards": "/etc/grafana/provisioning/dashboards",
                "grafana/dashboards": "/etc/grafana/dashboards/rewardscope"},
}
IMAGES = {"prometheus": r"prom/prometheus:v2\.\d+\.\d+", "alertmanager": r"prom/alertmanager:v0\.2\d\.\d+",
          "grafana": r"grafana/grafana:1\d\.\d+\.\d+"}


def compose(*args: str, files=(COMPOSE,), env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    binary = require_binary("docker-compose")
    clean = {k: v for k, v in os.environ.items()
             if k not in ("GRAFANA_ADMIN_PASSWORD", "SLACK_WEBHOOK_DIR", "COMPOSE_FILE", "COMPOSE_PROFILES")}
    command = [binary] + [a for f in files for a in ("-f", str(f))] + list(args)
    return subprocess.run(command, cwd=REPO, env={**clean, **(env or {})}, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def resolved() -> dict:
    result = compose("config", env=ENV)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def mounts(service: dict) -> dict[str, tuple[str, str]]:
    """Container path -> (source, mode) of a resolved service's volumes."""
    out = {}
    for volume in service.get("volumes", []):
        source, target, *mode = volume.split(":")
        out[target] = (source, mode[0] if mode else "rw")
    return out


def test_compose_file_is_valid():
    result = compose("config", "-q", env=ENV)
    assert (result.returncode, result.stderr) == (0, "")


def test_gpu_override_is_valid():
    result = compose("config", "-q", files=(COMPOSE, GPU), env=ENV)
    assert (result.returncode, result.stderr) == (0, "")


def test_admin_password_has_no_default():
    result = compose("config", "-q")
    assert result.returncode != 0
    assert "set GRAFANA_ADMIN_PASSWORD" in result.stderr
    raw = yaml.safe_load(COMPOSE.read_text())
    assert raw["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")


def test_every_mounted_path_exists_and_is_read_only(resolved):
    missing, writable = [], []
    declared = set(resolved["volumes"])
    for name, service in resolved["services"].items():
        for target, (source, mode) in mounts(service).items():
            if source.startswith("/"):
                if not Path(source).exists():
                    missing.append(f"{name}: {source} -> {target}")
                if mode != "ro":
                    writable.append(f"{name}: {source}")
            else:
                assert source in declared, f"{name}: volume {source} is not declared"
    assert missing == [], "mount sources that do not exist:\n" + "\n".join(missing)
    assert writable == []


def test_mounts_follow_the_agreed_contract(resolved):
    for name, expected in CONTRACT.items():
        got = {target: source for target, (source, _) in mounts(resolved["services"][name]).items()}
        for repo_path, target in expected.items():
            assert got.get(target) == str(REPO / repo_path), f"{name}: {target}"


def test_images_are_pinned_ports_local_and_services_healthchecked(resolved):
    services = resolved["services"]
    for name, pattern in IMAGES.items():
        assert re.fullmatch(pattern, services[name]["image"]), services[name]["image"]
    for name, service in services.items():
        assert all(port.startswith("127.0.0.1:") for port in service.get("ports", [])), name
        assert service["healthcheck"]["test"][0] == "CMD", name
    assert "host.docker.internal:host-gateway" in services["prometheus"]["extra_hosts"]
    assert {"prometheus_data", "alertmanager_data", "grafana_data"} <= set(resolved["volumes"])
    assert mounts(services["prometheus"])["/prometheus"][0] == "prometheus_data"
    assert mounts(services["grafana"])["/var/lib/grafana"][0] == "grafana_data"


def test_demo_runs_the_simulator_from_the_project_image(resolved):
    demo = resolved["services"]["demo"]
    assert demo["build"] == {"context": str(REPO)}
    args = build_parser().parse_args(demo["command"])
    assert (args.command, args.scenario, args.rate, args.host, args.port, args.steps) == (
        "simulate", "healthy", 2.0, "0.0.0.0", 19464, 1800)
    dockerfile = (REPO / "Dockerfile").read_text()
    assert dockerfile.splitlines()[[line.startswith("FROM") for line in dockerfile.splitlines()].index(True)] == "FROM python:3.11-slim"
    cmd = re.search(r"^CMD (.+)$", dockerfile, re.M).group(1)
    assert json.loads(cmd) == demo["command"]
    # The build context holds what `pip install` needs: pyproject.toml and the package.
    assert (REPO / ".dockerignore").read_text().splitlines()[1:5] == ["*", "!pyproject.toml", "!README.md", "!rewardscope/"]


def gpu_demo() -> dict:
    result = compose("config", files=(COMPOSE, GPU), env=ENV)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]["demo"]


def test_gpu_override_builds_the_cuda_trainer_and_reserves_nvidia_gpus():
    demo = gpu_demo()
    assert demo["build"] == {"context": str(REPO), "dockerfile": "docker/trainer.Dockerfile"}
    assert demo["deploy"]["resources"]["reservations"]["devices"] == [
        {"capabilities": ["gpu"], "count": "all", "driver": "nvidia"}]
    trainer = (REPO / "docker" / "trainer.Dockerfile").read_text()
    assert re.search(r"^FROM nvidia/cuda:\d+\.\d+\.\d+-runtime-ubuntu\d+\.\d+$", trainer, re.M)
    assert 'pip install "/tmp/src[train]"' in trainer


def test_gpu_trainer_command_parses_with_the_real_cli():
    args = build_parser().parse_args(gpu_demo()["command"])
    assert (args.command, args.device, args.prometheus_host, args.prometheus_port) == ("train", "cuda", "0.0.0.0", 19464)


def test_grafana_provisioning_matches_dashboards_and_compose(resolved):
    datasources = yaml.safe_load((REPO / "grafana/provisioning/datasources/rewardscope.yml").read_text())["datasources"]
    prometheus = next(d for d in datasources if d["type"] == "prometheus")
    assert (prometheus["uid"], prometheus["url"], prometheus["isDefault"]) == (DATASOURCE_UID, "http://prometheus:9090", True)
    providers = yaml.safe_load((REPO / "grafana/provisioning/dashboards/rewardscope.yml").read_text())["providers"]
    assert [(p["folder"], p["type"], p["options"]["path"]) for p in providers] == [
        ("rewardscope", "file", CONTRACT["grafana"]["grafana/dashboards"])]
    home = resolved["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == CONTRACT["grafana"]["grafana/dashboards"] + "/rewardscope-overview.json"
    assert (REPO / "grafana/dashboards/rewardscope-overview.json").is_file()


def test_prometheus_config_scrapes_what_the_stack_runs():
    config = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for s in job.get("static_configs", []) for t in s["targets"]}
    assert {"demo:19464", "host.docker.internal:19464"} <= targets
    alertmanagers = {t for a in config["alerting"]["alertmanagers"] for s in a["static_configs"] for t in s["targets"]}
    assert alertmanagers == {"alertmanager:9093"}
    assert all(f.startswith("/etc/prometheus/rules/") for f in config["rule_files"])
    # Grafana's $__rate_interval is four of the datasource's timeInterval: keep it the scrape interval.
    datasources = yaml.safe_load((REPO / "grafana/provisioning/datasources/rewardscope.yml").read_text())["datasources"]
    prometheus = next(d for d in datasources if d["type"] == "prometheus")
    assert prometheus["jsonData"]["timeInterval"] == config["global"]["scrape_interval"]
