"""What ``rewardscope evaluate`` runs: the scenarios, the grid of variations, and the alerts meant for each failure.

A *variation* changes one setting of the simulated run from the base (16 prompts x G = 8,
four reward functions, a linear onset over 30 steps at full strength, noise 1): the onset
shape, the ramp length, the strength, the noise, the batch size, the group size, the number
of reward functions. Each scenario runs ``seeds`` seeds, seed i with variation i modulo the
grid (24 seeds over the 12 variations of the full grid: each variation twice); a healthy run
cycles through the variations that change a healthy run (the failure's shape, ramp and
strength do not).

``MEANT`` is the detection contract: for each failure, the alerts (``alertname/severity``)
that are meant to catch it and, for a compound failure, how many ramps after the onset the
part they catch begins.

Usage::

    from rewardscope.evaluation.grid import FULL_GRID, MEANT, runs
    len(list(runs(FULL_GRID, seeds=24, steps=150, onset=50, healthy_steps=1000)))   # 13 scenarios x 24
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..simulation.scenarios import SCENARIOS, Scenario

SEED_RULE = "seed-system/hacking"  # the old system's reward-hacking rule, evaluated beside the alerts
BASE_RAMP = 30  # steps from a failure's onset to its full strength, unless a variation sets it


@dataclass(frozen=True)
class Variation:
    """One point of the grid: a name and the plan_run arguments it changes."""

    name: str
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def changes_healthy_runs(self) -> bool:
        return not set(self.settings) <= {"shape", "ramp", "strength"}


FULL_GRID: tuple[Variation, ...] = (
    Variation("base"),
    Variation("abrupt onset", {"shape": "abrupt"}),
    Variation("smooth onset", {"shape": "smooth"}),
    Variation("ramp 10", {"ramp": 10}),
    Variation("ramp 60", {"ramp": 60}),
    Variation("strength 0.6", {"strength": 0.6}),
    Variation("noise x2", {"noise": 2.0}),
    Variation("batch 8x8", {"prompts": 8}),
    Variation("batch 32x4", {"prompts": 32, "group_size": 4}),
    Variation("group 16", {"prompts": 8, "group_size": 16}),
    Variation("2 functions", {"functions": 2}),
    Variation("3 functions", {"functions": 3}),
)
SMALL_GRID: tuple[Variation, ...] = (FULL_GRID[0], FULL_GRID[1], FULL_GRID[7])


@dataclass(frozen=True)
class Meant:
    """An alert meant to catch a failure; ``after_ramps``: it catches the part that starts that many ramps later."""

    alert: str  # "alertname/severity"
    after_ramps: int = 0


MEANT: dict[Scenario, tuple[Meant, ...]] = {
    Scenario.REWARD_HACKING: (Meant("GRPORewardHackingSuspected/critical"), Meant("GRPORewardFunctionFalling/warning"),
                              Meant(SEED_RULE)),
    Scenario.ENTROPY_COLLAPSE: (Meant("GRPOPolicyEntropyCollapse/warning"), Meant("GRPOPolicyEntropyCollapse/critical"),
                                Meant("GRPOZeroSpreadTakeover/warning")),
    Scenario.KL_BLOWUP: (Meant("GRPOKLAccelerating/warning"), Meant("GRPOKLTooHigh/warning"), Meant("GRPOKLTooHigh/critical")),
    Scenario.ZERO_VARIANCE_GROUPS: (Meant("GRPOZeroSpreadTakeover/warning"), Meant("GRPONoLearningSignal/warning")),
    Scenario.LENGTH_EXPLOSION: (Meant("GRPOCompletionsTruncated/warning"),),
    Scenario.NONFINITE_REWARDS: (Meant("GRPONonFiniteRewards/error"),),
    Scenario.FUNCTION_DOMINANCE: (Meant("GRPOFunctionDominance/warning"),),
    Scenario.LENGTH_EXPLOITATION: (Meant("GRPOLengthExploitation/warning"),),
    Scenario.HACKING_THEN_COLLAPSE: (Meant("GRPORewardHackingSuspected/critical"), Meant(SEED_RULE),
                                     Meant("GRPOPolicyEntropyCollapse/critical", after_ramps=1)),
}
HEALTHY: tuple[Scenario, ...] = tuple(s for s, info in SCENARIOS.items() if not info.is_failure)


@dataclass(frozen=True)
class RunSpec:
    """One simulated run of the evaluation."""

    scenario: Scenario
    variation: Variation
    seed: int
    steps: int
    onset: int

    def plan_arguments(self) -> dict[str, Any]:
        return {"seed": self.seed, "onset": self.onset, "ramp": BASE_RAMP, **self.variation.settings}


def runs(grid: tuple[Variation, ...], *, seeds: int, steps: int, onset: int, healthy_steps: int,
         scenarios: tuple[Scenario, ...] | None = None) -> Iterator[RunSpec]:
    """``seeds`` runs of each scenario, seed i with variation i modulo the grid (a healthy run: of its variations)."""
    chosen = scenarios or tuple(MEANT) + HEALTHY
    healthy_grid = [grid[0]] + [v for v in grid[1:] if v.changes_healthy_runs]
    for scenario in chosen:
        for seed in range(seeds):
            if scenario in HEALTHY:
                yield RunSpec(scenario, healthy_grid[seed % len(healthy_grid)], seed, healthy_steps, healthy_steps)
            elif scenario in MEANT:
                yield RunSpec(scenario, grid[seed % len(grid)], seed, steps, onset)
