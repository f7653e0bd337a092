"""Alert packs and per-run overrides: reading the YAML definitions, with clear errors.

A pack is a YAML file with ``settings`` and a list of ``alerts`` (see
``alerting/alerts.yml``, the default pack; a copy ships inside the package so an
installed rewardscope has it). Each alert is a ``Rule`` written with its field
names (``for`` for the Prometheus duration); an unknown key is an error.

``settings``:

- ``dashboard_url``: the Grafana link put in every alert, ``{run_id}`` filled in;
- ``runbook_url``: where runbooks live, ``{anchor}`` filled with a rule's ``runbook``
  (a rule whose ``runbook`` is a full URL keeps it);
- ``cooldown_steps``: the repeat suppression of rules that do not set their own;
- ``job``: the Prometheus job that scrapes the exporters; every compiled selector and
  every dashboard query matches it (set it once for your scrape config);
- ``keep_firing_for``: how long a step rule's alert outlives its verdict in Prometheus.

Overrides change thresholds per run without editing the pack. An overrides file::

    run_id: my-run            # optional: compiled rules are scoped to this run only
    settings:                 # optional, only without run_id
      dashboard_url: https://grafana.example.com/d/rewardscope-overview?var-run_id={run_id}
    alerts:
      kl_too_high: {threshold: 0.5, for_steps: 3, for: 2m}
      reward_falling: {enabled: false}

The in-process engine applies overrides without ``run_id``, and those whose
``run_id`` is the monitored run. ``rewardscope rules --overrides`` applies the same
file: without ``run_id`` it changes the rule for every run; with one, the rule is
compiled twice, ``run_id="my-run"`` with the override and ``run_id!~"my-run"``
with the pack's values.

Usage::

    from rewardscope.alerting.pack import load_pack, load_overrides
    pack = load_pack()                       # the default pack
    pack = pack.with_overrides(load_overrides({"alerts": {"kl_too_high": {"threshold": 0.5}}}))
    print(pack.rule("kl_too_high").threshold)    # 0.5
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .rules import Rule, RuleError, rule_fields

DEFAULT_PACK_PATH = Path(__file__).with_name("alerts.yml")
OVERRIDABLE = ("threshold", "min_slope", "max_slope", "for_steps", "for", "cooldown_steps", "enabled")
_RUN_ID = re.compile(r"^[^/\s\"\\]+$")


@dataclass(frozen=True)
class Settings:
    """Pack-wide settings: where links point, and the default repeat suppression."""

    dashboard_url: str = "http://localhost:3000/d/rewardscope-overview?var-run_id={run_id}"
    runbook_url: str = "https://github.com/rewardscope/rewardscope/blob/main/docs/runbooks.md#{anchor}"
    cooldown_steps: int = 10
    job: str = "rewardscope"  # the Prometheus job of the exporters: every compiled selector and dashboard query uses it
    keep_firing_for: str = "30s"  # step rules: bridges a run's end (see rewardscope/alerting/compiler.py)

    def __post_init__(self) -> None:
        if not isinstance(self.job, str) or not re.match(r"^[A-Za-z0-9_.:/-]+$", self.job):
            raise RuleError(f"settings: job must be a Prometheus job name, got {self.job!r}")
        if not isinstance(self.keep_firing_for, str) or not re.match(r"^(?:[0-9]+(?:ms|s|m|h))+$", self.keep_firing_for):
            raise RuleError(f"settings: keep_firing_for must be a duration like 30s, got {self.keep_firing_for!r}")
        if not isinstance(self.dashboard_url, str) or "{run_id}" not in self.dashboard_url:
            raise RuleError(f"settings: dashboard_url must contain {{run_id}}, got {self.dashboard_url!r}")
        if not isinstance(self.runbook_url, str) or "{anchor}" not in self.runbook_url:
            raise RuleError(f"settings: runbook_url must contain {{anchor}}, got {self.runbook_url!r}")
        if isinstance(self.cooldown_steps, bool) or not isinstance(self.cooldown_steps, int) or self.cooldown_steps < 0:
            raise RuleError(f"settings: cooldown_steps must be an integer >= 0, got {self.cooldown_steps!r}")

    def runbook_link(self, rule: Rule) -> str:
        if rule.runbook.startswith(("http://", "https://")):
            return rule.runbook
        return self.runbook_url.replace("{anchor}", rule.runbook)

    def dashboard_link(self, run_id: str) -> str:
        return self.dashboard_url.replace("{run_id}", run_id)


@dataclass(frozen=True)
class Overrides:
    """Changes to a pack: per-alert fields, optionally for one run only, and link settings."""

    alerts: Mapping[str, Mapping[str, Any]]
    run_id: str | None = None
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    source: str = "overrides"


@dataclass(frozen=True)
class AlertPack:
    """Validated settings and rules of one pack."""

    settings: Settings
    rules: tuple[Rule, ...]
    source: str = "<memory>"

    def __post_init__(self) -> None:
        ids = [r.id for r in self.rules]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise RuleError(f"{self.source}: duplicate alert ids {duplicates}")
        keys = [(r.alert, r.severity) for r in self.rules]
        clashes = sorted({k for k in keys if keys.count(k) > 1})
        if clashes:
            raise RuleError(f"{self.source}: alert name and severity must identify one rule, repeated: {clashes}")

    def rule(self, rule_id: str) -> Rule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(f"no alert {rule_id!r} in {self.source}; alerts: {', '.join(r.id for r in self.rules)}")

    def with_overrides(self, overrides: Overrides) -> AlertPack:
        """This pack with ``overrides`` applied (to every run: its run_id is not looked at here)."""
        settings = dataclasses.replace(self.settings, **dict(overrides.settings)) if overrides.settings else self.settings
        changed = {}
        for rule_id, changes in overrides.alerts.items():
            rule = self.rule(rule_id)
            kwargs: dict[str, Any] = {("for_" if k == "for" else k): (tuple(v) if isinstance(v, list) else v) for k, v in changes.items()}
            try:
                changed[rule_id] = dataclasses.replace(rule, **kwargs)
            except TypeError as error:
                raise RuleError(f"{overrides.source}: alert {rule_id}: {error}") from None
        rules = tuple(changed.get(r.id, r) for r in self.rules)
        return AlertPack(settings, rules, f"{self.source} + {overrides.source}")


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise RuleError(f"{where} must be a mapping, got {type(value).__name__}")
    return value


def _read_yaml(path: str | os.PathLike) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except yaml.YAMLError as error:
        raise RuleError(f"{path}: not valid YAML ({error})") from None


def parse_pack(data: Any, source: str = "<memory>") -> AlertPack:
    """Build a pack from parsed YAML; every problem raises RuleError naming the alert and field."""
    data = _mapping(data, source)
    unknown = set(data) - {"settings", "alerts"}
    if unknown:
        raise RuleError(f"{source}: unknown top-level keys {sorted(unknown)}; expected settings and alerts")
    try:
        settings = Settings(**_mapping(data.get("settings") or {}, f"{source}: settings"))
    except TypeError as error:
        raise RuleError(f"{source}: settings: {error}") from None
    alerts = data.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        raise RuleError(f"{source}: alerts must be a non-empty list")
    known = set(rule_fields())
    rules = []
    for position, entry in enumerate(alerts):
        entry = _mapping(entry, f"{source}: alert #{position + 1}")
        name = entry.get("id", f"#{position + 1}")
        unknown_keys = sorted(set(entry) - known)
        if unknown_keys:
            raise RuleError(f"{source}: alert {name}: unknown keys {unknown_keys}; known keys: {', '.join(sorted(known))}")
        kwargs: dict[str, Any] = {("for_" if k == "for" else k): (tuple(v) if isinstance(v, list) else v) for k, v in entry.items()}
        kwargs.setdefault("cooldown_steps", settings.cooldown_steps)
        try:
            rules.append(Rule(**kwargs))
        except TypeError as error:
            raise RuleError(f"{source}: alert {name}: {error}") from None
    return AlertPack(settings, tuple(rules), source)


def load_pack(path: str | os.PathLike | None = None) -> AlertPack:
    """Read a pack file; the default pack when ``path`` is None."""
    path = DEFAULT_PACK_PATH if path is None else Path(path)
    return parse_pack(_read_yaml(path), str(path))


OverridesSource = Overrides | Mapping[str, Any] | str | os.PathLike


def load_overrides(source: OverridesSource) -> Overrides:
    """Overrides from a mapping, a YAML file path, or an Overrides (returned as is)."""
    if isinstance(source, Overrides):
        return source
    name = "overrides"
    if isinstance(source, (str, os.PathLike)):
        name = str(source)
        source = _read_yaml(source) or {}
    data = _mapping(source, name)
    unknown = set(data) - {"run_id", "settings", "alerts"}
    if unknown:
        raise RuleError(f"{name}: unknown top-level keys {sorted(unknown)}; expected run_id, settings, alerts")
    run_id = data.get("run_id")
    if run_id is not None and (not isinstance(run_id, str) or not _RUN_ID.match(run_id)):
        raise RuleError(f"{name}: run_id must be a run name, got {run_id!r}")
    settings = dict(_mapping(data.get("settings") or {}, f"{name}: settings"))
    if settings and run_id is not None:
        raise RuleError(f"{name}: settings apply to every run; put them in an overrides file without run_id")
    bad = set(settings) - {"dashboard_url", "runbook_url"}
    if bad:
        raise RuleError(f"{name}: only dashboard_url and runbook_url can be overridden in settings, got {sorted(bad)}")
    alerts = {}
    for rule_id, changes in _mapping(data.get("alerts") or {}, f"{name}: alerts").items():
        changes = _mapping(changes, f"{name}: alerts.{rule_id}")
        bad = set(changes) - set(OVERRIDABLE)
        if bad:
            raise RuleError(f"{name}: alerts.{rule_id}: cannot override {sorted(bad)}; overridable: {', '.join(OVERRIDABLE)}")
        alerts[str(rule_id)] = dict(changes)
    return Overrides(alerts, run_id, settings, name)


def applicable(overrides: Sequence[Overrides], run_id: str) -> list[Overrides]:
    """The overrides that apply to ``run_id`` in-process: global ones and its own."""
    return [o for o in overrides if o.run_id is None or o.run_id == run_id]
