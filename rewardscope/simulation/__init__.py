"""Simulated GRPO runs: named failure scenarios for testing alerts and dashboards.

``scenarios`` holds the pure, seeded generators and the scenario table (no I/O);
``run`` drives a RewardMonitor with them at a step rate; ``cli`` is ``rewardscope simulate``.

Usage::

    from rewardscope.simulation import SCENARIOS, Scenario, simulate_steps
    for sim in simulate_steps(Scenario.KL_BLOWUP, 50, seed=3):
        print(sim.step, sim.kwargs["kl"])
"""

from .scenarios import (
                        SCENARIOS,
                        RunPlan,
                        Scenario,
                        ScenarioInfo,
                        Signal,
                        SimulatedStep,
                        iter_plan,
                        plan_run,
                        simulate_step,
                        simulate_steps,
)

__all__ = ["SCENARIOS", "RunPlan", "Scenario", "ScenarioInfo", "Signal", "SimulatedStep", "iter_plan", "plan_run",
           "simulate_step", "simulate_steps"]
