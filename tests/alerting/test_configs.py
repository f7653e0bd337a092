"""The configs with the real tools: promtool checks and unit tests, amtool checks, routes and Slack templates."""

import json
import subprocess

import pytest
import yaml
from alerting_servers import ROOT, alertmanager_config, prometheus_config
from support import require_binary


def run(args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, timeout=60, **kwargs)


@pytest.fixture
def amtool():
    return require_binary("amtool")


def test_promtool_checks_the_config_and_the_rules(promtool, tmp_path):
    result = run([promtool, "check", "config", str(ROOT / "prometheus" / "prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    # The same config with the repository's rule files where compose mounts them: the rules load with it.
    local = tmp_path / "prometheus.yml"
    local.write_text(prometheus_config(["127.0.0.1:19464"], ROOT / "prometheus" / "rules", "127.0.0.1:9093", interval="5s"))
    result = run([promtool, "check", "config", str(local)])
    assert result.returncode == 0 and "SUCCESS: 19 rules found" in result.stdout, result.stdout + result.stderr
    result = run([promtool, "check", "rules", *map(str, sorted((ROOT / "prometheus" / "rules").glob("*.yml")))])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_cover_every_rule(promtool):
    tests = sorted((ROOT / "prometheus" / "tests").glob("*.yml"))
    result = run([promtool, "test", "rules", *map(str, tests)], cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(tests) == 3
    names = [t["name"].split(":")[0] for path in tests for t in yaml.safe_load(path.read_text())["tests"]]
    pack_ids = [r["id"] for r in yaml.safe_load((ROOT / "alerting" / "alerts.yml").read_text())["alerts"]]
    assert sorted(names) == sorted(pack_ids)


def test_prometheus_config_is_the_one_compose_mounts():
    config = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "rewardscope"  # GRPOExporterDown watches up{job="rewardscope"}
    assert job["static_configs"][0]["targets"] == ["demo:19464", "host.docker.internal:19464"]
    assert (config["global"]["scrape_interval"], config["global"]["evaluation_interval"]) == ("5s", "5s")


def test_amtool_checks_the_alertmanager_config(amtool, tmp_path):
    result = run([amtool, "check-config", str(ROOT / "alerting" / "alertmanager.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    local = tmp_path / "alertmanager.yml"
    local.write_text(alertmanager_config(tmp_path / "url"))
    result = run([amtool, "check-config", str(local)])  # with the templates found: they parse
    assert result.returncode == 0 and " - 1 templates" in result.stdout, result.stdout + result.stderr


def test_the_webhook_url_never_sits_in_the_repository():
    text = (ROOT / "alerting" / "alertmanager.yml").read_text()
    config = yaml.safe_load(text)
    slack = [s for r in config["receivers"] for s in r["slack_configs"]]
    assert len(slack) == 4
    assert all(s["api_url_file"] == "/etc/alertmanager/secrets/slack_webhook_url" and "api_url" not in s for s in slack)
    assert "hooks.slack.com" not in text and "slack_api_url" not in text
    assert (ROOT / "alerting" / "secrets" / "slack_webhook_url.example").read_text().startswith("https://hooks.slack.com/services/")
    assert config["inhibit_rules"] == [{"source_matchers": ['severity="critical"'], "target_matchers": ['severity="warning"'],
                                        "equal": ["alertname", "run_id"]}]
    assert config["route"]["group_by"] == ["alertname", "run_id"]


@pytest.mark.parametrize("labels, receiver", [
    (["alertname=GRPOKLTooHigh", "severity=critical", "run_id=big-run"], "slack-critical"),
    (["alertname=GRPORunStalled", "severity=error", "run_id=big-run"], "slack-critical"),
    (["alertname=GRPOKLTooHigh", "severity=warning", "run_id=big-run"], "slack-warning"),
    (["alertname=Something", "severity=info", "run_id=big-run"], "slack-info"),
    (["alertname=GRPOKLTooHigh", "severity=critical", "run_id=demo"], "slack-demo"),
    (["alertname=GRPOKLTooHigh", "severity=warning", "run_id=sim-kl-1"], "slack-demo"),
    (["alertname=GRPOExporterDown", "severity=warning", "instance=trainer:19464"], "slack-warning"),
])
def test_amtool_routes_each_severity_and_run(amtool, labels, receiver):
    result = run([amtool, "config", "routes", "test", f"--config.file={ROOT / 'alerting' / 'alertmanager.yml'}",
                  f"--verify.receivers={receiver}", *labels])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def alert(alertname, severity, run_id, value, threshold, summary, reward_fn=None, status="firing"):
    labels = {"alertname": alertname, "severity": severity, "run_id": run_id}
    if reward_fn:
        labels["reward_fn"] = reward_fn
    return {"status": status, "labels": labels, "startsAt": "2025-01-01T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://127.0.0.1:9090/graph", "fingerprint": alertname + (reward_fn or ""),
            "annotations": {"summary": summary, "description": f"About {run_id}.", "value": value, "threshold": threshold,
                            "runbook_url": f"https://runbooks.example/docs/runbooks.md#{alertname.lower()}",
                            "dashboard": f"http://localhost:3000/d/rewardscope-overview?var-run_id={run_id}"}}


def render(amtool, tmp_path, data, name):
    path = tmp_path / "data.json"
    path.write_text(json.dumps(data))
    result = run([amtool, "template", "render", f"--template.glob={ROOT / 'alerting' / 'templates' / '*.tmpl'}",
                  f"--template.data={path}", f'--template.text={{{{ template "rewardscope.slack.{name}" . }}}}'])
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def group(status, alerts, **common):
    labels = {"alertname": alerts[0]["labels"]["alertname"], "run_id": alerts[0]["labels"]["run_id"]}
    return {"receiver": "slack-warning", "status": status, "alerts": alerts, "groupLabels": labels,
            "commonLabels": {**labels, **common}, "commonAnnotations": {}, "externalURL": "http://127.0.0.1:9093"}


def test_slack_template_names_run_function_value_threshold_and_links(amtool, tmp_path):
    nan = "GRPONonFiniteRewards"
    data = group("firing", [
        alert(nan, "error", "run-7", "3", "0", "check_answer returns non-finite rewards", reward_fn="check_answer"),
        alert(nan, "error", "run-7", "1", "0", "check_numbers returns non-finite rewards", reward_fn="check_numbers"),
        alert(nan, "error", "run-7", "2", "0", "format_exact returned non-finite rewards", reward_fn="format_exact", status="resolved"),
    ], severity="error")
    assert render(amtool, tmp_path, data, "title") == "[FIRING:2] GRPONonFiniteRewards in run run-7 (error)"
    assert render(amtool, tmp_path, data, "title_link") == "http://localhost:3000/d/rewardscope-overview?var-run_id=run-7"
    assert render(amtool, tmp_path, data, "color") == "danger"
    assert render(amtool, tmp_path, data, "text") == (
        "*check_answer returns non-finite rewards*\n"
        "About run-7.\n"
        "• Run: `run-7`  • Reward function: `check_answer`\n"
        "• Value: 3  • Threshold: 0  • Severity: error\n"
        "<http://localhost:3000/d/rewardscope-overview?var-run_id=run-7|Dashboard>  "
        "• <https://runbooks.example/docs/runbooks.md#grpononfiniterewards|Runbook>\n"
        "• Charts and the completions behind it: `rewardscope report monitoring_data/run-7 -o report.html`\n"
        "*check_numbers returns non-finite rewards*\n"
        "About run-7.\n"
        "• Run: `run-7`  • Reward function: `check_numbers`\n"
        "• Value: 1  • Threshold: 0  • Severity: error\n"
        "<http://localhost:3000/d/rewardscope-overview?var-run_id=run-7|Dashboard>  "
        "• <https://runbooks.example/docs/runbooks.md#grpononfiniterewards|Runbook>\n"
        "• Charts and the completions behind it: `rewardscope report monitoring_data/run-7 -o report.html`\n"
        "Resolved: GRPONonFiniteRewards (format_exact)")


def test_slack_template_for_a_resolved_warning(amtool, tmp_path):
    data = group("resolved", [alert("GRPOKLTooHigh", "warning", "run-8", "0.41", "0.3", "KL too high", status="resolved")],
                 severity="warning")
    assert render(amtool, tmp_path, data, "title") == "[RESOLVED] GRPOKLTooHigh in run run-8 (warning)"
    assert render(amtool, tmp_path, data, "color") == "good"
    assert render(amtool, tmp_path, data, "text") == "Resolved: GRPOKLTooHigh"
    firing = group("firing", [alert("GRPOKLTooHigh", "warning", "run-8", "0.41", "0.3", "KL too high")], severity="warning")
    assert render(amtool, tmp_path, firing, "color") == "warning"
