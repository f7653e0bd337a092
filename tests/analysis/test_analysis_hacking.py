"""Reward hacking: the online detector through a real RewardMonitor, and the offline verdict on recorded histories."""

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from scipy import stats

from rewardscope import RewardAnalyzer, RewardFunctionSpec, RewardHackingDetector, RewardMonitor
from rewardscope.analysis.hacking import detect_reward_hacking
from rewardscope.analysis.history import load_history

SPECS = [RewardFunctionSpec("format", 1.0, 0.0, 1.0), RewardFunctionSpec("gold", 0.0, 0.0, 1.0)]
N = 40


def ones(k):
    return np.array([1.0] * k + [0.0] * (N - k))


def run(detector, gold_ones, steps=30, run_dir=None, eval_every=None, eval_value=None):
    """Format rewards rise by one completion per step; gold follows gold_ones(k). Returns the flags and the monitor."""
    monitor = RewardMonitor("run", SPECS, group_size=4, run_dir=run_dir, registry=CollectorRegistry(), detectors=[detector])
    flags = []
    with monitor:
        for k in range(1, steps + 1):
            evaluated = eval_every is not None and k % eval_every == 0
            m = monitor.record_step(k, {"format": ones(k), "gold": ones(gold_ones(k))},
                                    eval_accuracy=eval_value(k) if evaluated else None)
            flags.append(m.value("grpo_reward_hacking_suspected"))
        gauge = monitor.registry.get_sample_value("grpo_reward_hacking_suspected", {"run_id": "run"})
    return flags, gauge


def test_online_detector_flags_a_falling_gold_reward_from_the_tenth_step():
    # Both means are exact lines: the slopes are significant as soon as min_steps = 10 points are in.
    flags, gauge = run(RewardHackingDetector(gold_function="gold"), lambda k: N - k)
    assert flags == [0.0] * 9 + [1.0] * 21
    assert gauge == 1.0


def test_online_detector_stays_quiet_when_gold_rises_with_the_proxy():
    flags, gauge = run(RewardHackingDetector(gold_function="gold"), lambda k: k)
    assert flags == [0.0] * 30 and gauge == 0.0


def test_eval_accuracy_counts_on_eval_steps_and_the_verdict_holds_between_them():
    detector = RewardHackingDetector(min_evals=3)
    flags, _ = run(detector, lambda k: 0, eval_every=5, eval_value=lambda k: 0.9 - 0.01 * k)
    # The third evaluation (step 15) completes the rule; steps 16..30 keep it between evaluations.
    assert flags == [0.0] * 14 + [1.0] * 16


def test_the_window_forgets_old_evaluations_without_the_hold():
    detector = RewardHackingDetector(window=10, eval_window=10, min_steps=5, min_evals=3, hold=False)
    flags, _ = run(detector, lambda k: 0, steps=14, eval_every=1,
                   eval_value=lambda k: 0.9 - 0.01 * k if k <= 3 else None)
    # evaluations only at steps 1-3: flagged once 5 proxy steps exist, cleared when step 1 leaves the 10-step window
    assert flags == [0.0] * 4 + [1.0] * 6 + [0.0] * 4


def test_with_the_hold_a_verdict_outlives_its_evidence_until_recovery():
    # Same run: the evaluations leave the window, but nothing shows recovery, so the verdict stays.
    detector = RewardHackingDetector(window=10, eval_window=10, min_steps=5, min_evals=3)
    flags, _ = run(detector, lambda k: 0, steps=14, eval_every=1,
                   eval_value=lambda k: 0.9 - 0.01 * k if k <= 3 else None)
    assert flags == [0.0] * 4 + [1.0] * 10


def plateau_run(detector, gold, steps):
    """Proxy rises then saturates at 1.0 (hacked plateau); gold follows gold(k). Flags per step."""
    flags = []
    for k in range(1, steps + 1):
        proxy = min(1.0, 0.05 * k)
        flags.append(detector.observe(k, proxy, None, gold(k)))
    return flags


def test_a_hacked_plateau_stays_flagged():
    # Gold falls from step 1 to 20 (0.8 -> 0.2) and stays at 0.2; the proxy saturates at step 20, after which
    # neither slope is significant any more. Without the hold the verdict is lost once the window is flat.
    def gold(k):
        return 0.8 - 0.03 * min(k, 20) + (0.01 if k % 2 else -0.01)

    held = plateau_run(RewardHackingDetector(gold_function="gold", window=10, min_steps=5, alpha=0.01), gold, 60)
    forgetful = plateau_run(RewardHackingDetector(gold_function="gold", window=10, min_steps=5, alpha=0.01, hold=False), gold, 60)
    first = held.index(True)
    assert first == 4 and all(held[first:])  # fired at the 5th step (min_steps) and held to the end
    assert forgetful.index(True) == 4 and not any(forgetful[35:])


def test_a_recovered_run_clears():
    # Gold falls 0.8 -> 0.5 over steps 1-10 (0.03 a step), then climbs back 0.02 a step to 0.8 (step 25).
    def gold(k):
        return 0.8 - 0.03 * k if k <= 10 else min(0.8, 0.5 + 0.02 * (k - 10))

    detector = RewardHackingDetector(gold_function="gold", window=10, min_steps=5, alpha=0.01)
    flags = plateau_run(detector, gold, 40)
    # Fires at step 5 (min_steps): the line through steps 1-5 is exact, fitted 0.77 at step 1 and 0.65 at step 5,
    # so recovery is a fitted gold back at 0.71. From step 20 the 10-step window lies on the climb: fitted 0.70 at
    # step 20, 0.72 at step 21 -> cleared at step 21, and the gold never falls again.
    assert flags.index(True) == 4
    assert all(flags[4:20]) and not any(flags[20:])


def test_online_rule_agrees_with_scipy_linregress_on_noisy_data():
    rng = np.random.default_rng(3)
    window, alpha = 20, 0.01
    detector = RewardHackingDetector(gold_function="gold", window=window, alpha=alpha, min_steps=10, hold=False)
    proxy = 0.004 * np.arange(120) + rng.normal(0, 0.05, 120)
    gold = np.concatenate([0.5 + rng.normal(0, 0.05, 60), 0.5 - 0.006 * np.arange(60) + rng.normal(0, 0.05, 60)])

    def one_sided(x, y, rising):
        fit = stats.linregress(x, y)
        p = fit.pvalue / 2 if (fit.slope > 0) == rising else 1 - fit.pvalue / 2
        return p < alpha

    flags = []
    for t in range(120):
        flags.append(detector.observe(t, float(proxy[t]), None, float(gold[t])))
        lo = max(0, t - window + 1)
        x = np.arange(lo, t + 1)
        expected = len(x) >= 10 and one_sided(x, proxy[lo:t + 1], True) and one_sided(x, gold[lo:t + 1], False)
        assert flags[-1] == expected, t
    assert any(flags[60:]) and not any(flags[:60])


def test_detector_settings_are_checked():
    with pytest.raises(ValueError, match="three points"):
        RewardHackingDetector(min_steps=2)
    with pytest.raises(ValueError, match="alpha"):
        RewardHackingDetector(alpha=1.5)


def hacked_history(steps=80, onset=40, seed=0):
    """Old-API means: format keeps rising; check_answer (weighted) rises until onset, then falls."""
    rng = np.random.default_rng(seed)
    history = []
    for t in range(steps):
        answer = 0.3 + 0.005 * t if t < onset else 0.3 + 0.005 * onset - 0.01 * (t - onset)
        history.append({"format": 0.2 + 0.01 * t + rng.normal(0, 0.02), "check_answer": answer + rng.normal(0, 0.02)})
    return history


def test_offline_verdict_on_a_hacked_history_with_a_weighted_gold():
    report = detect_reward_hacking(load_history(hacked_history()), gold_function="check_answer")
    assert report.verdict == "suspected" and report.hacking_suspected
    assert report.performance_source == "gold:check_answer"
    assert 40 < report.first_flagged_step < 80
    assert report.rising_functions == ["format"]
    assert report.proxy_trend["slope"] == pytest.approx(0.01, abs=0.001)
    assert report.to_dict()["verdict"] == "suspected"


def test_offline_verdict_with_performance_metrics_on_eval_steps_only():
    history = hacked_history()
    accuracy = [None if t % 5 else (0.4 + 0.002 * t if t < 40 else 0.48 - 0.01 * (t - 40)) for t in range(80)]
    analyzer = RewardAnalyzer()
    report = analyzer.detect_reward_hacking(history, ["format", "check_answer"], performance_metrics=accuracy)
    assert report.verdict == "suspected" and report.performance_source == "performance_metrics"
    healthy = [None if t % 5 else 0.4 + 0.002 * t for t in range(80)]
    assert analyzer.detect_reward_hacking(history, ["format", "check_answer"], performance_metrics=healthy).verdict == "not_detected"
    by_step = {t: v for t, v in enumerate(accuracy) if v is not None}
    assert analyzer.detect_reward_hacking(history, performance_metrics=by_step).first_flagged_step == report.first_flagged_step


def test_offline_without_a_performance_signal_is_insufficient_data():
    report = detect_reward_hacking(load_history(hacked_history()))
    assert report.verdict == "insufficient_data" and report.performance_source is None
    with pytest.raises(ValueError, match="2 performance values for 80 steps"):
        detect_reward_hacking(load_history(hacked_history()), [0.5, 0.4])


def test_offline_replays_the_online_rule_on_a_recorded_run(tmp_path):
    flags, _ = run(RewardHackingDetector(gold_function="gold"), lambda k: N - k, run_dir=tmp_path)
    result = RewardAnalyzer().analyze_run(tmp_path / "run")
    hacking = result["reward_hacking"]
    assert hacking["verdict"] == "suspected" and hacking["performance_source"] == "gold:gold"
    assert hacking["first_flagged_step"] == 1 + flags.index(1.0) == 10
    assert hacking["flagged_steps"] == 21
    assert result["importance"]["gold"]["correlation"] == pytest.approx(-1.0)
    assert result["steps"] == 30 and 0 <= result["quality"]["quality_score"] <= 100
