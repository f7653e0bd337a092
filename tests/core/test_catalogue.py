"""The catalogue follows Prometheus naming, and everything generated from it is current."""

import re
from pathlib import Path

from rewardscope.metrics.catalogue import CATALOGUE, Kind, Scope
from rewardscope.metrics.reference import splice

ROOT = Path(__file__).resolve().parents[2]


def test_names_follow_prometheus_conventions():
    for spec in CATALOGUE:
        assert re.fullmatch(r"(grpo|rewardscope)_[a-z0-9_]+", spec.name), spec.name
        assert spec.help.strip(), spec.name
        if spec.kind is Kind.COUNTER:
            assert spec.name.endswith("_total"), spec.name
        else:
            assert not spec.name.endswith(("_total", "_sum", "_count", "_bucket")), spec.name
        if spec.kind is Kind.INFO:
            assert spec.name.endswith("_info")
        if spec.unit == "seconds":
            assert "_seconds" in spec.name, spec.name
        if spec.unit == "ratio" and spec.kind is Kind.GAUGE:
            assert spec.name.endswith(("_ratio", "signal_to_noise")) or (spec.scope is Scope.FUNCTION and "weight" in spec.name), spec.name


def test_every_stored_metric_has_a_legacy_key_or_is_new_by_design():
    keys = [s.legacy_key for s in CATALOGUE if s.legacy_key]
    assert len(keys) == len(set(keys))
    assert {"rewards/mean", "rewards/std", "rewards/functions/{fn}", "contributions/{fn}", "training/kl_divergence",
            "training/policy_entropy", "training/advantage_mean", "training/advantage_std"} <= set(keys)


def test_readme_metric_reference_is_current():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme == splice(readme), "README metric reference is stale: run `rewardscope reference`"


def test_readme_names_the_two_commands_and_they_exist():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for script in ("scripts/run-main.sh", "scripts/test.sh"):
        assert f"./{script}" in readme
        assert (ROOT / script).stat().st_mode & 0o111
    assert "./scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
