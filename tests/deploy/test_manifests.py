"""deploy/kubernetes/: generated, up to date, and valid against the Kubernetes and Prometheus Operator schemas.

Offline, with schemas shipped in packages: core kinds (Job, ConfigMap) with `kubernetes-validate` in strict
mode (unknown fields are errors, as `kubectl apply --validate=strict`), the operator's kinds (PodMonitor,
ServiceMonitor, PrometheusRule) with the JSON schema of the `cloudcoil-models-prometheus-operator` models,
made strict the same way: every object that lists its properties rejects others, which is what the API
server's strict field validation does for a CRD's structural schema.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import jsonschema
import pytest
import yaml

from rewardscope.cli import main
from rewardscope.deploy.kubernetes import METRICS_PORT, PORT_NAME, SCRAPE_LABEL, manifests

kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install rewardscope[dev] (kubernetes-validate)")
operator_models = pytest.importorskip("cloudcoil.models.prometheus_operator.v1",
                                      reason="pip install rewardscope[dev] (cloudcoil-models-prometheus-operator)")

ROOT = Path(__file__).resolve().parents[2]
DIRECTORY = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.31"


def strict(schema):
    """The schema with additionalProperties: false on every object schema that lists its properties."""
    schema = copy.deepcopy(schema)

    def visit(node):
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(schema)
    return schema


@functools.cache
def operator_validator(kind: str) -> jsonschema.Draft202012Validator:
    model = getattr(operator_models, kind)
    return jsonschema.Draft202012Validator(strict(model.model_json_schema(by_alias=True, mode="validation")))


def validate(document: dict) -> None:
    """Raise on a document that the cluster's schemas reject."""
    if document["apiVersion"] == "monitoring.coreos.com/v1":
        operator_validator(document["kind"]).validate(document)
        getattr(operator_models, document["kind"]).model_validate(document)  # the models' own types and enums
    else:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def documents(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def checked_in() -> dict[str, list[dict]]:
    return {path.name: documents(path.read_text()) for path in sorted(DIRECTORY.glob("*.yaml"))}


def test_the_checked_in_manifests_are_the_generated_ones(capsys):
    assert main(["deploy", "--root", str(ROOT), "--check"]) == 0, capsys.readouterr().err
    assert sorted(checked_in()) == sorted(manifests())


def test_check_fails_when_a_manifest_is_stale(tmp_path, capsys):
    for name, text in manifests().items():
        (tmp_path / name).write_text(text)
    assert main(["deploy", "--root", str(ROOT), "--out", str(tmp_path), "--check"]) == 0
    (tmp_path / "podmonitor.yaml").write_text((tmp_path / "podmonitor.yaml").read_text().replace("5s", "30s"))
    assert main(["deploy", "--root", str(ROOT), "--out", str(tmp_path), "--check"]) == 1
    err = capsys.readouterr().err
    assert "stale:" in err and "podmonitor.yaml" in err
    assert main(["deploy", "--root", str(ROOT), "--out", str(tmp_path)]) == 0
    assert main(["deploy", "--root", str(ROOT), "--out", str(tmp_path), "--check"]) == 0


def test_every_manifest_is_valid_against_the_kubernetes_and_operator_schemas():
    kinds = []
    for docs in checked_in().values():
        for document in docs:
            validate(document)
            kinds.append(document["kind"])
    assert sorted(kinds) == sorted(["PodMonitor", "ServiceMonitor", "PrometheusRule", "Job"] + ["ConfigMap"] * 4)


@pytest.mark.parametrize("path, typo", [
    (("spec", "podMetricsEndpoints", 0), ("port", "prot")),
    (("spec", "selector"), ("matchLabels", "matchLabel")),
])
def test_a_planted_typo_in_an_operator_manifest_is_rejected(path, typo):
    (document,) = checked_in()["podmonitor.yaml"]
    node = document
    for key in path:
        node = node[key]
    node[typo[1]] = node.pop(typo[0])
    with pytest.raises((jsonschema.ValidationError, ValueError)):
        validate(document)


def test_a_planted_typo_in_a_core_manifest_is_rejected():
    (job,) = checked_in()["training-job.yaml"]
    job["spec"]["template"]["spec"]["containers"][0]["port"] = job["spec"]["template"]["spec"]["containers"][0].pop("ports")
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(job)
    (rule,) = checked_in()["prometheusrule.yaml"]
    rule["spec"]["groups"][0]["rules"][0]["keep_firing_fr"] = "30s"
    with pytest.raises(jsonschema.ValidationError):
        validate(rule)


def test_the_job_exposes_the_port_and_labels_the_pod_monitor_selects():
    (monitor,) = checked_in()["podmonitor.yaml"]
    (job,) = checked_in()["training-job.yaml"]
    pod = job["spec"]["template"]
    assert monitor["spec"]["selector"]["matchLabels"] == {SCRAPE_LABEL: "true"}
    assert pod["metadata"]["labels"][SCRAPE_LABEL] == "true"
    (container,) = pod["spec"]["containers"]
    assert container["ports"] == [{"name": PORT_NAME, "containerPort": METRICS_PORT, "protocol": "TCP"}]
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == PORT_NAME
    assert container["args"][container["args"].index("--prometheus-port") + 1] == str(METRICS_PORT)
    assert container["args"][container["args"].index("--prometheus-host") + 1] == "0.0.0.0"
    relabel = monitor["spec"]["podMetricsEndpoints"][0]["relabelings"][0]
    assert relabel == {"action": "replace", "targetLabel": "job", "replacement": "rewardscope"}  # the rules' job


def test_dashboards_are_config_maps_for_the_grafana_sidecar():
    maps = checked_in()["dashboards.yaml"]
    dashboards = sorted(p.name for p in (ROOT / "grafana" / "dashboards").glob("*.json"))
    assert sorted(name for m in maps for name in m["data"]) == dashboards
    for config_map in maps:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        (name, text), = config_map["data"].items()
        assert text == (ROOT / "grafana" / "dashboards" / name).read_text()


def test_the_rule_manifest_holds_the_checked_in_rules():
    (rule,) = checked_in()["prometheusrule.yaml"]
    rules = yaml.safe_load((ROOT / "prometheus" / "rules" / "rewardscope-alerts.yml").read_text())
    assert rule["spec"]["groups"] == rules["groups"]
