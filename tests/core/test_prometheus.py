"""The exposition: exact sample values, catalogue coverage, a golden file, promtool, the real HTTP endpoint."""

import errno
import re
import subprocess
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from support import free_port

from rewardscope import RewardFunctionSpec, RewardMonitor
from rewardscope.alerting.events import AlertEvent, AlertState
from rewardscope.metrics.catalogue import CATALOGUE, Kind

GOLDEN = Path(__file__).with_name("golden_exposition.txt")
SPECS = [RewardFunctionSpec("format_exact", 1.0, 0.0, 3.0), RewardFunctionSpec("check_answer", 1.0, -1.0, 3.0)]
# Samples whose values depend on the clock; the golden comparison masks them.
CLOCK_DEPENDENT = ("grpo_last_step_timestamp_seconds", "rewardscope_record_seconds_total", "grpo_step_duration_seconds",
                   "grpo_step_duration_median_seconds{")


class OneAlert:
    def bind(self, run_id, reward_functions):
        self.run_id = run_id

    def trend_requirements(self):
        return [("grpo_reward_mean", 2)]

    def evaluate(self, metrics, slopes):
        if metrics.step == 2:
            return [AlertEvent("RewardFalling", AlertState.FIRING, "warning", 2, 0.0, {"run_id": self.run_id})]
        return []


def fill(m):
    """Two steps that exercise every catalogue metric."""
    rewards = {"format_exact": np.array([0.0, 3.0, 3.0, 3.0]), "check_answer": np.array([-1.0, 0.25, 3.0, np.nan])}
    m.record_step(1, rewards, kl=0.5, policy_entropy=1.25, advantages=[1.0, -1.0, 0.5, -0.5], completion_lengths=[4, 8, 16, 16],
                  max_completion_length=16, clip_ratio=0.125, grad_norm=3.0, loss=0.75, learning_rate=0.001, eval_accuracy=0.5, tokens=100)
    m.record_step(2, {"format_exact": np.array([3.0, 3.0, 3.0, 3.0]), "check_answer": np.array([3.0, 3.0, -1.0, -1.0])}, tokens=60)


@pytest.fixture
def filled():
    m = RewardMonitor("golden-run", SPECS, group_size=2, run_dir=None, registry=CollectorRegistry(), alerts=OneAlert(),
                      run_info={"model": "tiny", "trainer": "rewardscope"}, max_completion_length=16)
    fill(m)
    yield m
    m.close()


def sample(m, name, **labels):
    return m.registry.get_sample_value(name, {"run_id": "golden-run", **labels})


def test_exact_sample_values(filled):
    assert sample(filled, "grpo_step") == 2.0
    assert sample(filled, "grpo_reward_mean") == 4.0  # combined [6, 6, 2, 2]
    assert sample(filled, "grpo_reward_fn_mean", reward_fn="check_answer") == 1.0
    assert sample(filled, "grpo_group_zero_std_ratio") == 1.0
    assert sample(filled, "grpo_steps_total") == 2.0
    assert sample(filled, "grpo_samples_total") == 8.0
    assert sample(filled, "grpo_tokens_total") == 160.0
    assert sample(filled, "grpo_reward_fn_nonfinite_total", reward_fn="check_answer") == 1.0
    assert sample(filled, "grpo_reward_fn_nonfinite_total", reward_fn="format_exact") == 0.0
    # check_answer histogram: finite values -1, 0.25, 3 then 3, 3, -1, -1
    assert sample(filled, "grpo_reward_fn_value_count", reward_fn="check_answer") is None  # _count pairs with _sum
    # check_answer can be negative: no _sum (a counter must not decrease), its parts are counters of their own
    assert sample(filled, "grpo_reward_fn_value_sum", reward_fn="check_answer") is None
    assert sample(filled, "grpo_reward_fn_positive_sum_total", reward_fn="check_answer") == 9.25
    assert sample(filled, "grpo_reward_fn_negative_sum_total", reward_fn="check_answer") == 3.0
    assert sample(filled, "grpo_reward_fn_value_sum", reward_fn="format_exact") == 21.0  # declared minimum 0
    assert sample(filled, "grpo_reward_fn_value_bucket", reward_fn="check_answer", le="-1.0") == 3.0
    assert sample(filled, "grpo_reward_fn_value_bucket", reward_fn="check_answer", le="0.4") == 4.0
    assert sample(filled, "grpo_reward_fn_value_bucket", reward_fn="check_answer", le="+Inf") == 7.0
    # combined reward: step 1 -> [-1, 3.25, 6, nan], step 2 -> [6, 6, 2, 2]
    assert sample(filled, "grpo_reward_value_bucket", le="+Inf") == 7.0
    assert sample(filled, "grpo_completion_length_tokens_bucket", le="8.0") == 2.0
    assert sample(filled, "grpo_completion_length_tokens_count") == 4.0
    assert sample(filled, "grpo_step_duration_seconds_count") == 1.0
    assert sample(filled, "grpo_eval_accuracy_ratio") == 0.5  # sticky from step 1
    assert sample(filled, "grpo_kl") is None  # not passed on step 2: absent, not stale
    assert sample(filled, "grpo_reward_fn_weight", reward_fn="format_exact") == 1.0
    assert sample(filled, "grpo_run_info", model="tiny", trainer="rewardscope", reward_functions="format_exact,check_answer",
                  version="0.1.0") == 1.0
    assert sample(filled, "grpo_alerts_fired_total", alertname="RewardFalling", severity="warning") == 1.0


def _families(registry):
    return {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}


def test_every_family_is_in_the_catalogue_with_its_type(filled):
    families = _families(filled.registry)
    # The text format has no info type: an info metric is exposed as a gauge named *_info.
    exposed_type = {Kind.COUNTER: "counter", Kind.GAUGE: "gauge", Kind.HISTOGRAM: "histogram", Kind.INFO: "gauge"}
    by_name = {s.name: s for s in CATALOGUE}
    for name, family in families.items():
        full = name + "_total" if family.type == "counter" else name
        assert full in by_name, f"{full} is exported but not in the catalogue"
        assert exposed_type[by_name[full].kind] == family.type
        for s in family.samples:
            assert set(s.labels) - {"le"} == set(by_name[full].labels), (full, s.labels)


def test_every_catalogue_metric_is_exported_after_a_full_step(filled):
    families = _families(filled.registry)
    exported = {f.name + ("_total" if f.type == "counter" else "") for f in families.values() if f.samples}
    # Set by detectors that this monitor doesn't run, or samples only present with a kind of step this fixture lacks.
    optional = {"grpo_reward_hacking_suspected", "grpo_skipped_steps_total", "rewardscope_sink_errors_total",
                "grpo_reward_signal_to_noise", "grpo_kl", "grpo_policy_entropy", "grpo_advantage_mean", "grpo_advantage_std",
                "grpo_clip_ratio", "grpo_grad_norm", "grpo_loss", "grpo_learning_rate", "grpo_completion_length_mean_tokens",
                "grpo_completion_truncated_ratio",
                # Exported by rank 0 of a multi-process run only (tests/distributed).
                "grpo_rank_work_seconds", "grpo_rank_samples", "grpo_rank_last_step_timestamp_seconds"}
    missing = {s.name for s in CATALOGUE} - exported - optional
    assert not missing, missing


def _masked(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if line.startswith(CLOCK_DEPENDENT):
            line = re.sub(r" \S+$", " <clock>", line)
        if line.startswith("rewardscope_scrapes_total{"):
            line = re.sub(r" \S+$", " <n>", line)
        lines.append(line)
    return "\n".join(lines) + "\n"


def test_exposition_matches_golden_file(filled, request):
    text = _masked(generate_latest(filled.registry).decode())
    if request.config.getoption("--update-golden", default=False) or not GOLDEN.exists():
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "exposition changed; review and rerun with --update-golden"


def test_real_endpoint_passes_promtool(tmp_path, promtool):
    m = RewardMonitor("http-run", SPECS, group_size=2, run_dir=tmp_path, prometheus_port=0, alerts=OneAlert())
    try:
        fill(m)
        body = urllib.request.urlopen(f"http://127.0.0.1:{m.prometheus_port}/metrics", timeout=5).read()
        assert b'grpo_reward_mean{run_id="http-run"} 4.0' in body
        result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=30)
        assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    finally:
        m.close()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{m.prometheus_port}/metrics", timeout=2)


def test_busy_port_is_a_clear_error():
    port = free_port()
    first = RewardMonitor("a", SPECS, run_dir=None, prometheus_port=port)
    try:
        with pytest.raises(OSError, match=f"cannot serve /metrics on 127.0.0.1:{port}") as error:
            RewardMonitor("b", SPECS, run_dir=None, prometheus_port=port)
        assert error.value.errno == errno.EADDRINUSE
    finally:
        first.close()


def test_two_runs_share_one_registry():
    registry = CollectorRegistry()
    with RewardMonitor("r1", SPECS, run_dir=None, registry=registry, group_size=2) as a, \
            RewardMonitor("r2", SPECS, run_dir=None, registry=registry, group_size=2) as b:
        fill(a)
        fill(b)
        assert registry.get_sample_value("grpo_steps_total", {"run_id": "r1"}) == 2.0
        assert registry.get_sample_value("grpo_steps_total", {"run_id": "r2"}) == 2.0
