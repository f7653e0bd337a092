"""RewardAnalyzer: the old API's calls, and the same answers from arrays, run-store steps and a run directory."""

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from rewardscope import LEGACY_REWARD_FUNCTIONS, RewardAnalyzer, RewardMonitor
from rewardscope.exporter.runstore import read_steps


def legacy_batches(steps=12, n=16, seed=1):
    rng = np.random.default_rng(seed)
    return [{
        "format_exact": 3.0 * (rng.random(n) < 0.5),
        "format_approx": np.round(rng.uniform(-2.5, 2.5, n), 1),
        "check_answer": rng.choice([-1.0, 0.25, 0.5, 1.5, 3.0], n),
        "check_numbers": 1.5 * (rng.random(n) < 0.3),
    } for _ in range(steps)]


def test_the_old_calls_work_on_the_old_shape():
    batches = legacy_batches()
    analyzer = RewardAnalyzer(LEGACY_REWARD_FUNCTIONS, group_size=4)
    report = analyzer.analyze_quality(batches, list(range(12)))
    assert 0.0 <= report.quality_score <= 100.0
    importance = analyzer.analyze_function_importance(batches, [s.name for s in LEGACY_REWARD_FUNCTIONS])
    assert sum(v["contribution"] for v in importance.values()) == pytest.approx(100.0)
    assert sum(v["variance_share"] for v in importance.values()) == pytest.approx(100.0)
    verdict = analyzer.detect_reward_hacking(batches, None, performance_metrics=[0.5] * 12).verdict
    assert verdict == "not_detected"


def test_arrays_run_store_steps_and_run_directory_agree(tmp_path):
    batches = legacy_batches()
    with RewardMonitor("legacy", LEGACY_REWARD_FUNCTIONS, group_size=4, run_dir=tmp_path, registry=CollectorRegistry()) as m:
        for step, batch in enumerate(batches):
            m.record_step(step, batch)
    analyzer = RewardAnalyzer(LEGACY_REWARD_FUNCTIONS, group_size=4)
    from_arrays = analyzer.analyze_quality(batches).dimension_scores
    from_dir = analyzer.analyze_quality(tmp_path / "legacy").dimension_scores
    from_steps = analyzer.analyze_quality(list(read_steps(tmp_path / "legacy"))).dimension_scores
    for name, value in from_arrays.items():
        # the run store keeps 6 significant digits
        assert from_dir[name] == pytest.approx(value, rel=1e-5), name
        assert from_steps[name] == from_dir[name], name
