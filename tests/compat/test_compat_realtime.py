"""The old RealtimeMonitor API on top of the engine: the seed's README example and what it got wrong."""

import pytest

from rewardscope import AlertLevel, RealtimeMonitor
from rewardscope.alerting.events import AlertState
from rewardscope.compat.realtime import resolve_metric


def test_the_seed_readme_example_runs(capsys):
    monitor = RealtimeMonitor(print_alerts=True)
    monitor.add_threshold_alert(metric_name="signal_to_noise", threshold=0.5, condition="less", level=AlertLevel.WARNING)
    monitor.add_trend_alert(metric_name="mean_reward", min_slope=-0.01, window_size=10, level=AlertLevel.WARNING)
    for step in range(1, 13):
        monitor.check_metrics(step, {"signal_to_noise": 0.4 if step == 3 else 0.8, "mean_reward": 1.0 - 0.05 * step})
    summary = monitor.get_alert_summary()
    recent = summary.pop("recent_alerts")
    assert [(a["alertname"], a["state"], a["step"]) for a in recent] == [
        ("signal_to_noise_less_0_5", "firing", 3), ("signal_to_noise_less_0_5", "resolved", 4), ("mean_reward_trend_10", "firing", 10)]
    assert summary == {"total_alerts": 2, "by_level": {"info": 0, "warning": 2, "error": 0, "critical": 0},
                       "by_alert": {"signal_to_noise_less_0_5": 1, "mean_reward_trend_10": 1},
                       "firing": ["mean_reward_trend_10"], "last_step": 12}
    out = capsys.readouterr().out
    assert "[rewardscope] FIRING warning signal_to_noise_less_0_5 {run_id=realtime} step=3 value=0.4 threshold=0.5" in out
    assert "[rewardscope] FIRING warning mean_reward_trend_10 {run_id=realtime} step=10 value=-0.05 threshold=-0.01" in out


def test_check_metrics_returns_transitions_and_calls_back():
    received = []
    monitor = RealtimeMonitor(alert_callback=received.append, print_alerts=False)
    monitor.add_threshold_alert("kl_divergence", 0.5)
    monitor.add_threshold_alert("kl_divergence", 2.0, level=AlertLevel.CRITICAL)  # several rules per metric
    assert [(e.alertname, e.state) for e in monitor.check_metrics(1, {"kl_divergence": 3.0})] == [
        ("kl_divergence_greater_0_5", AlertState.FIRING), ("kl_divergence_greater_2", AlertState.FIRING)]
    assert monitor.check_metrics(2, {"kl_divergence": 3.0}) == []  # still firing: no repeat
    assert [(e.alertname, e.state) for e in monitor.check_metrics(3, {"kl_divergence": 1.0})] == [
        ("kl_divergence_greater_2", AlertState.RESOLVED)]
    assert len(received) == 3
    assert monitor.get_recent_alerts(2) == received[1:]


def test_none_nan_strings_and_unknown_keys_are_tolerated():
    monitor = RealtimeMonitor(print_alerts=False)
    monitor.add_threshold_alert("policy_entropy", 0.1, condition="less")
    monitor.add_trend_alert("policy_entropy", min_slope=-0.1, window_size=3)
    for step, value in enumerate([None, float("nan"), "n/a", 0.5, None], start=1):
        assert monitor.check_metrics(step, {"policy_entropy": value, "something_else": 1, "rewards/functions/f": None}) == []


def test_trend_windows_above_10_fire():
    monitor = RealtimeMonitor(print_alerts=False)
    monitor.add_trend_alert("mean_reward", min_slope=0.0, window_size=20)
    fired = [e.step for step in range(1, 31) for e in monitor.check_metrics(step, {"mean_reward": -0.1 * step})]
    assert fired == [20]


def test_repeat_suppression_is_counted_in_steps():
    monitor = RealtimeMonitor(print_alerts=False)
    monitor.add_threshold_alert("grpo_kl", 1.0, cooldown_steps=2)
    values = [2, 0, 2, 2, 2]  # fires 1, resolves 2, suppressed on step 3, fires again on 4 (two steps after resolving)
    events = [(e.step, e.state.value) for step, v in enumerate(values, 1) for e in monitor.check_metrics(step, {"kl": v})]
    assert events == [(1, "firing"), (2, "resolved"), (4, "firing")]


def test_per_function_legacy_keys_watch_that_function():
    monitor = RealtimeMonitor(print_alerts=False)
    monitor.add_threshold_alert("rewards/functions/check_answer", 0.0, condition="less")
    (event,) = monitor.check_metrics(1, {"rewards/functions/check_answer": -1.0, "rewards/functions/format_exact": -1.0})
    assert (event.alertname, event.labels) == ("rewards_functions_check_answer_less_0", {"run_id": "realtime", "reward_fn": "check_answer"})


def test_default_alerts_are_the_default_pack():
    monitor = RealtimeMonitor(print_alerts=False)
    monitor.setup_default_alerts()
    monitor.setup_default_alerts()
    events = []
    for step in range(1, 4):
        events += monitor.check_metrics(step, {"training/kl_divergence": 1.5, "rewards/functions/check_answer": 0.5})
    assert [(e.alertname, e.severity, e.step) for e in events] == [("GRPOKLTooHigh", "warning", 3), ("GRPOKLTooHigh", "critical", 3)]


def test_recent_alerts_are_bounded():
    monitor = RealtimeMonitor(print_alerts=False, max_recent=5)
    monitor.add_threshold_alert("loss", 0.0, cooldown_steps=0)
    for step in range(1, 101):
        monitor.check_metrics(step, {"loss": step % 2})
    assert len(monitor.recent) == 5 and monitor.get_alert_summary()["total_alerts"] == 50


@pytest.mark.parametrize("name, expected", [
    ("signal_to_noise", ("grpo_reward_signal_to_noise", None)),
    ("mean_reward", ("grpo_reward_mean", None)),
    ("kl_divergence", ("grpo_kl", None)),
    ("policy_entropy", ("grpo_policy_entropy", None)),
    ("rewards/mean", ("grpo_reward_mean", None)),
    ("training/kl_divergence", ("grpo_kl", None)),
    ("rewards/functions/format_exact", ("grpo_reward_fn_mean", "format_exact")),
    ("rewards/functions/format_exact_std", ("grpo_reward_fn_std", "format_exact")),
    ("contributions/check_answer", ("grpo_reward_fn_contribution_ratio", "check_answer")),
    ("grpo_group_zero_std_ratio", ("grpo_group_zero_std_ratio", None)),
])
def test_old_names_map_to_the_catalogue(name, expected):
    assert resolve_metric(name) == expected


def test_unknown_metric_and_non_gauges_are_clear_errors():
    monitor = RealtimeMonitor(print_alerts=False)
    with pytest.raises(KeyError, match="unknown metric 'reward_quality'"):
        monitor.add_threshold_alert("reward_quality", 0.5)
    with pytest.raises(ValueError, match="not a per-step gauge"):
        monitor.add_threshold_alert("grpo_steps_total", 5)
    with pytest.raises(ValueError, match="condition must be one of"):
        monitor.add_threshold_alert("kl", 5, condition="above")


def test_the_summary_keeps_the_old_recent_alerts_key():
    monitor = RealtimeMonitor()
    monitor.add_threshold_alert("kl_divergence", threshold=0.5, condition="greater", level=AlertLevel.WARNING)
    for step, kl in enumerate([0.1, 0.9, 0.1, 0.9], 1):
        monitor.check_metrics(step, {"kl_divergence": kl})
    recent = monitor.get_alert_summary()["recent_alerts"]
    assert [(a["step"], a["state"]) for a in recent] == [(2, "firing"), (3, "resolved")]  # then the cooldown holds it
