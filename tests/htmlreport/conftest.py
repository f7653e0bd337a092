"""Run directories for the report tests: simulated runs (with and without alerts) recorded by a real RewardMonitor."""

from __future__ import annotations

from pathlib import Path

import pytest


def record_simulated_run(root: Path, run_id: str, scenario: str, steps: int, *, distributions: bool = True,
                         texts: bool = True, alerts: bool = True) -> Path:
    """Record a simulated run through RewardMonitor into ``root/run_id``; completions are placeholders with HTML in them."""
    from rewardscope import LEGACY_REWARD_FUNCTIONS, RewardMonitor
    from rewardscope.simulation.scenarios import simulate_steps

    with RewardMonitor(run_id, LEGACY_REWARD_FUNCTIONS, group_size=8, run_dir=root, alerts=alerts,
                       log_distributions=distributions, detectors=[]) as monitor:
        for sim in simulate_steps(scenario, steps):
            n = len(next(iter(sim.kwargs["rewards_by_function"].values())))
            extra = {}
            if texts:
                extra = {"prompts": [f"question {i // 8} of step {sim.step}" for i in range(n)],
                         "completions": [f"<script>alert({i})</script> answer {i} <b>step {sim.step}</b>" for i in range(n)]}
            monitor.record_step(sim.step, **sim.kwargs, **extra)
    return root / run_id


@pytest.fixture(scope="session")
def hacking_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 steps of the reward_hacking scenario: alerts fire, with evidence and distributions."""
    return record_simulated_run(tmp_path_factory.mktemp("runs"), "hacking", "reward_hacking", 300)


@pytest.fixture(scope="session")
def healthy_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """120 healthy steps, no distributions, no completion texts."""
    return record_simulated_run(tmp_path_factory.mktemp("runs"), "healthy", "healthy", 120, distributions=False, texts=False)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model, built once per session in a temp cache (as tests/trainer does)."""
    pytest.importorskip("torch", reason="the trainer needs torch (rewardscope[train])")
    from rewardscope.trainer.models import ensure_tiny_model

    return ensure_tiny_model(tmp_path_factory.mktemp("rewardscope-cache"))
