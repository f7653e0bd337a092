"""Offline and online analysis of a run's reward signal.

- history.py: StepHistory, built from a run directory, run-store steps or the old per-step reward dicts.
- quality.py, importance.py, hacking.py: the computations, each defined in its module docstring.
- Online detectors for RewardMonitor(detectors=[...]): RewardHackingDetector (hacking.py) and the detectors of
  detectors.py (function dominance, length exploitation, KL acceleration, zero-spread takeover);
  ``default_detectors()`` is the list a RewardMonitor runs when given none.

Usage::

    from rewardscope.analysis import assess_quality, load_run
    print(assess_quality(load_run("monitoring_data/my-run")).quality_score)
"""

from .detectors import FunctionDominanceDetector, KLAccelerationDetector, LengthExploitationDetector, ZeroSpreadTakeoverDetector
from .hacking import HackingReport, RewardHackingDetector, detect_reward_hacking
from .history import StepHistory, load_history, load_run
from .importance import function_importance
from .quality import QualityReport, assess_quality


def default_detectors() -> list:
    """Fresh instances of every online detector, with their documented defaults (one list per monitor)."""
    return [RewardHackingDetector(), FunctionDominanceDetector(), LengthExploitationDetector(), KLAccelerationDetector(),
            ZeroSpreadTakeoverDetector()]


__all__ = [
    "FunctionDominanceDetector",
    "HackingReport",
    "KLAccelerationDetector",
    "LengthExploitationDetector",
    "QualityReport",
    "RewardHackingDetector",
    "StepHistory",
    "ZeroSpreadTakeoverDetector",
    "assess_quality",
    "default_detectors",
    "detect_reward_hacking",
    "function_importance",
    "load_history",
    "load_run",
]

# The old RewardAnalyzer API lives in rewardscope.compat (import it from rewardscope).
