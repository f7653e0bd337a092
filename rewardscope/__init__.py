"""rewardscope: watch the reward signal of GRPO fine-tuning runs.

Usage::

    from rewardscope import RewardMonitor, RewardFunctionSpec

The API of the system rewardscope replaces is importable from here too:
RewardMetricsTracker, DashboardManager, RewardAnalyzer, RealtimeMonitor, AlertLevel.
"""

from ._version import __version__
from .analysis import RewardHackingDetector
from .compat import AlertLevel, DashboardManager, RealtimeMonitor, RewardAnalyzer, RewardMetricsTracker
from .metrics.functions import LEGACY_REWARD_FUNCTIONS, RewardFunctionSpec
from .metrics.layout import StepMetrics
from .metrics.step import StepInputError
from .monitor import RewardMonitor

__all__ = [
           "LEGACY_REWARD_FUNCTIONS",
           "AlertLevel",
           "DashboardManager",
           "RealtimeMonitor",
           "RewardAnalyzer",
           "RewardFunctionSpec",
           "RewardHackingDetector",
           "RewardMetricsTracker",
           "RewardMonitor",
           "StepInputError",
           "StepMetrics",
           "__version__",
]
