"""The checked-in dashboard JSON against the rules of Grafana's dashboard model that hold offline.

Grafana itself cannot run on these machines, so this reads each file the way Grafana's
dashboard loader would look at it: required keys and their types, known panel types,
grid positions inside 24 columns that do not overlap, every query with a refId, an
expression and the ``${datasource}`` datasource, Grafana unit ids, variables and
annotations. It does not render anything; see docs/stack.md for what was and was not
verified.
"""

import json
import re
from pathlib import Path

import pytest

from rewardscope.dashboards.definitions import DASHBOARDS, DATASOURCE_UID
from rewardscope.dashboards.units import grafana_unit, is_known_unit, unmapped_catalogue_units
from rewardscope.metrics.catalogue import metric

REPO = Path(__file__).resolve().parents[2]
FILES = sorted((REPO / "grafana" / "dashboards").glob("*.json"))
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PANEL_TYPES = {"timeseries", "stat", "gauge", "heatmap", "table", "bargauge", "text", "row"}
TOP_LEVEL = {"annotations": dict, "editable": bool, "panels": list, "refresh": str, "schemaVersion": int, "tags": list,
             "templating": dict, "time": dict, "timezone": str, "title": str, "uid": str, "version": int}


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def overlaps(a: dict, b: dict) -> bool:
    return a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]


def test_one_file_per_dashboard():
    assert [p.name for p in FILES] == sorted(f"{d.uid}.json" for d in DASHBOARDS)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_required_keys_and_types(path):
    board = load(path)
    for key, kind in TOP_LEVEL.items():
        assert isinstance(board.get(key), kind), f"{key} must be a {kind.__name__}"
    assert board["id"] is None  # provisioning assigns database ids
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", board["uid"]) and path.stem == board["uid"]
    assert board["schemaVersion"] >= 36
    assert set(board["time"]) == {"from", "to"}
    assert board["title"] and board["description"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_panels(path):
    panels = load(path)["panels"]
    ids = [p["id"] for p in panels]
    assert len(set(ids)) == len(ids) and all(isinstance(i, int) for i in ids)
    for i, panel in enumerate(panels):
        where = f"{path.stem} panel {panel['id']} {panel.get('title')!r}"
        assert panel["type"] in PANEL_TYPES, where
        assert isinstance(panel.get("title"), str) and panel["title"], where
        grid = panel["gridPos"]
        assert set(grid) == {"h", "w", "x", "y"} and all(isinstance(v, int) for v in grid.values()), where
        assert grid["x"] >= 0 and grid["y"] >= 0 and grid["h"] >= 1 and 1 <= grid["w"] and grid["x"] + grid["w"] <= 24, where
        for other in panels[:i]:
            assert not overlaps(grid, other["gridPos"]), f"{where} overlaps panel {other['id']}"
        if panel["type"] == "row":
            assert panel["panels"] == [] and panel["collapsed"] is False and grid["w"] == 24, where
            continue
        assert panel["description"], where
        assert panel["datasource"] == DATASOURCE, where
        assert is_known_unit(panel["fieldConfig"]["defaults"]["unit"]), where
        assert isinstance(panel["fieldConfig"]["overrides"], list) and isinstance(panel["options"], dict), where
        targets = panel["targets"]
        assert targets, where
        assert len({t["refId"] for t in targets}) == len(targets), where
        for target in targets:
            assert target["refId"] and target["expr"] and target["datasource"] == DATASOURCE, where
            if panel["type"] == "heatmap":
                assert target["format"] == "heatmap" and target["legendFormat"] == "{{le}}", where
            if panel["type"] == "table":
                assert target["instant"] is True and target["format"] == "table", where
        if panel["type"] == "heatmap":
            assert panel["options"]["calculate"] is False, where  # Prometheus buckets, not raw values
            assert is_known_unit(panel["options"]["yAxis"]["unit"]), where


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_range_is_the_rate_interval(path):
    board = load(path)
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    exprs += [a["expr"] for a in board["annotations"]["list"] if "expr" in a]
    ranges = [r for e in exprs for r in re.findall(r"\[([^\]]*)\]", e)]
    assert ranges and set(ranges) == {"$__rate_interval"}
    for expr in exprs:
        for call in re.finditer(r"\b(rate|increase|irate|delta|changes|deriv)\(", expr):
            assert expr[call.end():].split(")")[0].endswith("[$__rate_interval]"), expr


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_variables(path):
    board = load(path)
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert len(variables) == len(board["templating"]["list"])
    ds = variables["datasource"]
    assert (ds["type"], ds["query"], ds["current"]["value"]) == ("datasource", "prometheus", DATASOURCE_UID)
    job, run = variables["job"], variables["run_id"]
    assert (job["type"], job["query"], job["multi"], job["includeAll"]) == ("query", "label_values(grpo_run_info, job)", True, True)
    assert (run["type"], run["query"], run["multi"]) == ("query", 'label_values(grpo_run_info{job=~"$job"}, run_id)', True)
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE and variable["definition"] == variable["query"]
            assert variable["refresh"] == 2  # re-read when the time range changes: new runs appear
    used = set()
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            used |= set(re.findall(r"\$\{?(\w+)", target["expr"]))
        if panel.get("repeat"):
            assert variables[panel["repeat"]]["multi"] is True
    assert used - {"__rate_interval"} <= set(variables)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_alert_annotations(path):
    annotations = load(path)["annotations"]["list"]
    assert annotations[0]["builtIn"] == 1
    by_name = {a["name"]: a for a in annotations[1:]}
    assert by_name["Prometheus alerts"]["expr"] == 'ALERTS{alertstate="firing", run_id=~"$run_id"}'
    assert by_name["In-process alerts"]["expr"] == 'grpo_alert_firing{job=~"$job", run_id=~"$run_id"} == 1'
    for annotation in by_name.values():
        assert annotation["datasource"] == DATASOURCE and annotation["enable"] is True
        assert annotation["titleFormat"] == "{{alertname}}" or annotation["titleFormat"].startswith("{{alertname}} ")


def test_overview_has_the_uid_alert_links_point_to():
    # The alerting pack links Slack messages to /d/rewardscope-overview?var-run_id=<run>.
    assert (REPO / "grafana" / "dashboards" / "rewardscope-overview.json").is_file()
    assert "run_id" in {v["name"] for v in load(REPO / "grafana" / "dashboards" / "rewardscope-overview.json")["templating"]["list"]}


def test_descriptions_carry_the_catalogue_definition():
    panels = {p["title"]: p for p in load(REPO / "grafana" / "dashboards" / "rewardscope-training.json")["panels"]}
    assert panels["KL divergence from the reference"]["description"] == f"`grpo_kl`: {metric('grpo_kl').help}"
    assert panels["Completion length distribution"]["description"].endswith(
        f"`grpo_completion_length_tokens`: {metric('grpo_completion_length_tokens').help}")
    assert panels["KL divergence from the reference"]["fieldConfig"]["defaults"]["unit"] == grafana_unit("nats")


def test_every_catalogue_unit_has_a_grafana_unit():
    assert unmapped_catalogue_units() == []
    assert not is_known_unit("nats") and not is_known_unit("suffix:") and is_known_unit("percentunit")


def test_panels_allowed_to_be_empty_are_few_and_say_why():
    allowed = {(d.uid, p.title): p.may_be_empty for d in DASHBOARDS for p in d.panels() if p.may_be_empty}
    assert sorted(allowed) == [
        ("rewardscope-overview", "Alerts firing in Prometheus"),
        ("rewardscope-overview", "In-process alert states"),
        ("rewardscope-overview", "Reward hacking suspected"),
        ("rewardscope-training", "Completions by rank"),
        ("rewardscope-training", "Work per step by rank"),
    ]
    assert all(len(reason) > 30 for reason in allowed.values())
