"""The in-process engine: for_steps, resolve, cooldown in steps, missing values, per-function instances,
windows of any length, overrides per run, and the monitor around it (counters, run store, printing)."""

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from rewardscope import RewardFunctionSpec, RewardMonitor
from rewardscope.alerting.engine import AlertEngine
from rewardscope.alerting.events import AlertState
from rewardscope.alerting.pack import AlertPack, Settings
from rewardscope.alerting.rules import Rule
from rewardscope.exporter.runstore import read_alerts

FIRING, RESOLVED = AlertState.FIRING, AlertState.RESOLVED


def rule(**changes):
    fields = dict(id="kl", alert="KLHigh", kind="threshold", severity="warning", summary="KL {value} > {threshold} in {run_id}",
                  description="d {reward_fn}", runbook="kl", metric="grpo_kl", condition="greater", threshold=0.5,
                  for_steps=1, cooldown_steps=0)
    fields.update(changes)
    return Rule(**fields)


def engine(*rules, functions=("a", "b"), run_id="r1", overrides=()):
    e = AlertEngine(AlertPack(Settings(), tuple(rules)), overrides)
    e.bind(run_id, functions)
    return e


def feed(e, values, metric="grpo_kl", fn=None, slopes=None):
    """Evaluate one step per value; returns [(step, state, labels-reward_fn, value, threshold)]."""
    out = []
    for step, value in enumerate(values, start=1):
        def value_of(name, reward_fn, v=value):
            if name != metric:
                return None
            return v.get(reward_fn) if isinstance(v, dict) else v
        for ev in e.evaluate_values(step, 1000.0 + step, value_of, lambda name, f, w, v=value: v if slopes else None):
            out.append((ev.step, ev.state, ev.labels.get("reward_fn"), ev.value, ev.threshold))
    return out


def test_fires_after_for_steps_consecutive_steps_and_resolves_once():
    e = engine(rule(for_steps=3))
    assert feed(e, [0.6, 0.6, 0.1, 0.6, 0.6, 0.6, 0.7, 0.2, 0.1]) == [
        (6, FIRING, None, 0.6, 0.5),  # steps 4, 5, 6: three in a row (the streak of 1-2 was broken at 3)
        (8, RESOLVED, None, 0.2, None),
    ]


def test_the_threshold_itself_does_not_fire():
    assert feed(engine(rule()), [0.5, 0.5]) == []
    assert feed(engine(rule(condition="less")), [0.5, 0.5]) == []


def test_outside_band_fires_on_either_side():
    e = engine(rule(condition="outside", threshold=[0.1, 0.9]))
    assert feed(e, [0.5, 0.05, 0.5, 0.95]) == [(2, FIRING, None, 0.05, 0.1), (3, RESOLVED, None, 0.5, None), (4, FIRING, None, 0.95, 0.9)]


def test_repeats_are_suppressed_for_cooldown_steps_after_resolving():
    e = engine(rule(cooldown_steps=3))
    # fires at 1, resolves at 2; steps 3 and 4 are within 3 steps of the resolve; 5 is the third step after it.
    assert feed(e, [0.6, 0.1, 0.6, 0.6, 0.6, 0.6]) == [(1, FIRING, None, 0.6, 0.5), (2, RESOLVED, None, 0.1, None),
                                                       (5, FIRING, None, 0.6, 0.5)]


def test_missing_values_never_fire_never_crash_and_resolve():
    e = engine(rule(for_steps=2))
    assert feed(e, [None, 0.6, None, 0.6, 0.6, None, None]) == [(5, FIRING, None, 0.6, 0.5), (6, RESOLVED, None, None, None)]


def test_sticky_metrics_keep_their_state_between_measurements():
    e = engine(rule(metric="grpo_eval_accuracy_ratio", condition="less", threshold=0.3, for_steps=2))
    got = feed(e, [0.2, None, None, 0.25, None, 0.5], metric="grpo_eval_accuracy_ratio")
    assert got == [(4, FIRING, None, 0.25, 0.3), (6, RESOLVED, None, 0.5, None)]


def test_per_function_metrics_give_one_instance_per_reward_function():
    e = engine(rule(id="nan", alert="NaNs", metric="grpo_reward_fn_nonfinite_samples", threshold=0))
    got = feed(e, [{"a": 0, "b": 2}, {"a": 1, "b": 2}, {"a": 0, "b": 0}], metric="grpo_reward_fn_nonfinite_samples")
    assert got == [(1, FIRING, "b", 2, 0), (2, FIRING, "a", 1, 0), (3, RESOLVED, "a", 0, None), (3, RESOLVED, "b", 0, None)]
    one = engine(rule(id="nan", alert="NaNs", metric="grpo_reward_fn_nonfinite_samples", threshold=0, reward_fn="b"))
    assert feed(one, [{"a": 5, "b": 0}, {"a": 5, "b": 1}], metric="grpo_reward_fn_nonfinite_samples") == [(2, FIRING, "b", 1, 0)]


def test_several_rules_per_metric_fire_independently():
    e = engine(rule(), rule(id="kl_critical", severity="critical", threshold=1.0))
    events = e.evaluate_values(1, 0.0, lambda name, fn: 1.5, lambda *a: None)
    assert [(ev.alertname, ev.severity, ev.threshold) for ev in events] == [("KLHigh", "warning", 0.5), ("KLHigh", "critical", 1.0)]


def test_event_texts_labels_and_links():
    e = engine(rule(id="nan", alert="NaNs", metric="grpo_reward_fn_nonfinite_samples", threshold=0,
                    summary="{reward_fn} of {run_id}: {value}", description="over {threshold}", runbook="grpononfiniterewards"))
    (event,) = e.evaluate_values(7, 123.5, lambda name, fn: 3.0 if fn == "a" else None, lambda *a: None)
    assert event.to_json() == {
        "alertname": "NaNs", "state": "firing", "severity": "warning", "step": 7, "timestamp": 123.5,
        "labels": {"run_id": "r1", "reward_fn": "a"}, "value": 3.0, "threshold": 0.0, "summary": "a of r1: 3",
        "description": "over 0", "runbook_url": "https://github.com/rewardscope/rewardscope/blob/main/docs/runbooks.md#grpononfiniterewards"}


def test_overrides_apply_to_their_run_only():
    scoped = {"run_id": "r2", "alerts": {"kl": {"threshold": 0.9}}}
    assert feed(engine(rule(), run_id="r1", overrides=[scoped]), [0.7]) == [(1, FIRING, None, 0.7, 0.5)]
    assert feed(engine(rule(), run_id="r2", overrides=[scoped]), [0.7, 0.95]) == [(2, FIRING, None, 0.95, 0.9)]
    disabled = engine(rule(), overrides=[{"alerts": {"kl": {"enabled": False}}}])
    assert feed(disabled, [5.0]) == []


def test_default_engine_accepts_overrides_and_lists_its_trend_windows(tmp_path):
    e = AlertEngine.default(overrides={"alerts": {"reward_falling": {"enabled": False}}})
    e.bind("r", ["a"])
    assert e.trend_requirements() == [("grpo_reward_fn_mean", 45), ("grpo_policy_entropy", 20)]
    assert AlertEngine.default().trend_requirements() == [("grpo_reward_mean", 20), ("grpo_reward_fn_mean", 45),
                                                          ("grpo_policy_entropy", 20)]
    assert all(r.kind != "promql" for r in e.rules)


# ---------------------------------------------------------------------- inside the RewardMonitor
SPECS = [RewardFunctionSpec("a", 1.0, 0.0, 1.0), RewardFunctionSpec("b", 1.0, 0.0, 1.0)]


def rewards(step):
    """Group size 2: groups (1, 0) carry signal until step 12, then every group is (1, 1)."""
    a = np.array([1.0, 0.0] * 4) if step <= 12 else np.ones(8)
    return {"a": a, "b": np.zeros(8)}


def test_trend_windows_longer_than_10_steps_fire_in_the_monitor():
    falling = rule(id="falling", alert="Falling", kind="trend", metric="grpo_reward_mean", condition=None, threshold=None,
                   window_steps=25, min_slope=-0.01, summary="slope {value} over {window_steps}")
    e = AlertEngine(AlertPack(Settings(), (falling,)))
    with RewardMonitor("r", SPECS, group_size=2, run_dir=None, registry=CollectorRegistry(), alerts=e) as m:
        fired = []
        for step in range(1, 41):
            n = 8
            value = 1.0 - 0.02 * step  # reward mean falls 0.02 per step
            m.record_step(step, {"a": np.full(n, value), "b": np.zeros(n)})
            fired += [(ev.step, round(ev.value, 6)) for ev in m.recent_alerts if ev.step == step]
    assert fired == [(25, -0.02)]  # the first step with 25 steps in the window


def test_monitor_counts_stores_and_prints_the_default_packs_alerts(tmp_path, capsys):
    registry = CollectorRegistry()
    # detectors=[]: the threshold rules only (the online detectors read this synthetic run as dominance and a KL jump).
    with RewardMonitor("r", SPECS, group_size=2, run_dir=tmp_path, registry=registry, alerts=True, print_alerts=True,
                       detectors=[]) as m:
        for step in range(1, 21):
            m.record_step(step, rewards(step), kl=1.5 if 5 <= step <= 9 else 0.01)
        sample = registry.get_sample_value
        assert sample("grpo_alerts_fired_total", {"run_id": "r", "alertname": "GRPOKLTooHigh", "severity": "critical"}) == 1.0
        assert sample("grpo_alert_firing", {"run_id": "r", "alertname": "GRPOKLTooHigh", "severity": "critical"}) == 0.0
        assert sample("grpo_alert_firing", {"run_id": "r", "alertname": "GRPONoLearningSignal", "severity": "warning"}) == 1.0
        directory = m.run_directory
    got = [(e["alertname"], e["severity"], e["state"], e["step"]) for e in read_alerts(directory)]
    assert got == [
        ("GRPOKLTooHigh", "warning", "firing", 7), ("GRPOKLTooHigh", "critical", "firing", 7),   # for_steps 3: steps 5, 6, 7
        ("GRPOKLTooHigh", "warning", "resolved", 10), ("GRPOKLTooHigh", "critical", "resolved", 10),
        ("GRPOWeakRewardSignal", "critical", "firing", 15),   # std 0 from step 13 (for_steps 3)
        ("GRPONoLearningSignal", "warning", "firing", 17),    # every group (1, 1) from step 13 (for_steps 5)
    ]
    out = capsys.readouterr().out
    assert "[rewardscope] FIRING critical GRPOKLTooHigh {run_id=r} step=7 value=1.5 threshold=1: KL blow-up in run r: 1.5 nats/token > 1" in out


def test_monitor_publishes_the_default_slopes_with_alerts_off():
    registry = CollectorRegistry()
    with RewardMonitor("r", SPECS, group_size=2, run_dir=None, registry=registry, alerts=False) as m:
        for step in range(1, 46):
            m.record_step(step, {"a": np.full(8, 0.01 * step), "b": np.zeros(8)}, policy_entropy=1.0 - 0.02 * step)
        slope = lambda metric, fn, w: registry.get_sample_value(  # noqa: E731
            "grpo_metric_slope_per_step", {"run_id": "r", "metric": metric, "reward_fn": fn, "window_steps": str(w)})
        assert slope("grpo_reward_mean", "", 20) == pytest.approx(0.01)
        assert slope("grpo_policy_entropy", "", 20) == pytest.approx(-0.02)
        assert slope("grpo_reward_fn_mean", "a", 45) == pytest.approx(0.01)
        assert slope("grpo_reward_fn_mean", "b", 45) == 0.0
        assert m.recent_alerts == []


def test_instance_states_list_every_instance_with_its_verdict_and_activations():
    e = engine(rule(for_steps=2), rule(id="fn", alert="FnLow", metric="grpo_reward_fn_mean", condition="less", threshold=0.0))
    before = [(s.alert_id, s.reward_fn, s.active, s.activations) for s in e.instance_states()]
    assert before == [("kl", "", False, 0), ("fn", "a", False, 0), ("fn", "b", False, 0)]  # exported from the start
    feed(e, [0.6, 0.6, 0.1, 0.6, 0.6])  # fires at 2, resolves at 3, fires again at 5
    (kl,) = [s for s in e.instance_states() if s.alert_id == "kl"]
    assert (kl.alert, kl.severity, kl.active, kl.activations) == ("KLHigh", "warning", True, 2)
    feed(e, [0.1])
    assert [s.active for s in e.instance_states() if s.alert_id == "kl"] == [False]


def test_median_step_seconds_from_the_recorded_steps():
    e = engine(rule())
    assert e.median_step_seconds() is None
    for step, timestamp in enumerate([100.0, 101.0, 103.0, 104.0, 110.0], start=1):
        e.evaluate_values(step, timestamp, lambda name, fn: None, lambda name, fn, w: None)
    assert e.median_step_seconds() == 1.5  # intervals 1, 2, 1, 6


def test_the_monitor_exports_the_default_packs_verdicts_even_without_in_process_alerts():
    m = RewardMonitor("quiet", ["a"], group_size=2, run_dir=None, registry=CollectorRegistry(), alerts=False)
    labels = {"run_id": "quiet", "alert_id": "kl_blowup", "alert": "GRPOKLTooHigh", "severity": "critical", "reward_fn": ""}
    assert m.registry.get_sample_value("grpo_alert_active", labels) == 0.0  # before the first step
    for step in range(1, 4):
        m.record_step(step, {"a": np.array([0.0, 1.0, 1.0, 0.0])}, kl=2.0)
    assert m.registry.get_sample_value("grpo_alert_active", labels) == 1.0
    assert m.registry.get_sample_value("grpo_alert_activations_total", labels) == 1.0
    assert m.recent_alerts == []  # alerts=False: nothing reported in-process
    m.close()
