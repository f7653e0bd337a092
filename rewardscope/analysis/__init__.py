"""Offline and online analysis of a run's reward signal.

- history.py: StepHistory, built from a run directory, run-store steps or the old per-step reward dicts.
- quality.py, importance.py, hacking.py: the computations, each defined in its module docstring.
- RewardHackingDetector: the online detector to pass to RewardMonitor(detectors=[...]).

Usage::

    from rewardscope.analysis import assess_quality, load_run
    print(assess_quality(load_run("monitoring_data/my-run")).quality_score)
"""

from .hacking import HackingReport, RewardHackingDetector, detect_reward_hacking
from .history import StepHistory, load_history, load_run
from .importance import function_importance
from .quality import QualityReport, assess_quality

__all__ = ["RewardHackingDetector", "HackingReport", "QualityReport", "StepHistory", "load_history",
           "load_run", "assess_quality", "function_importance", "detect_reward_hacking"]

# The old RewardAnalyzer API lives in rewardscope.compat (import it from rewardscope).
