"""rewardscope: watch the reward signal of GRPO fine-tuning runs.

Usage::

    from rewardscope import RewardMonitor, RewardFunctionSpec

The API of the system rewardscope replaces is importable from here too:
RewardMetricsTracker, DashboardManager, RewardAnalyzer, RealtimeMonitor, AlertLevel.
"""

from ._version import __version__
from .metrics.functions import LEGACY_REWARD_FUNCTIONS, RewardFunctionSpec  # noqa: E402
from .metrics.layout import StepMetrics  # noqa: E402
from .metrics.step import StepInputError  # noqa: E402
from .monitor import RewardMonitor  # noqa: E402
from .analysis import RewardAnalyzer, RewardHackingDetector  # noqa: E402
from .compat import DashboardManager, RewardMetricsTracker  # noqa: E402
from .alerting import AlertLevel, RealtimeMonitor  # noqa: E402

__all__ = ["RewardMonitor", "RewardFunctionSpec", "StepMetrics", "StepInputError", "LEGACY_REWARD_FUNCTIONS",
           "RewardAnalyzer", "RewardHackingDetector", "RewardMetricsTracker", "DashboardManager", "RealtimeMonitor", "AlertLevel",
           "__version__"]
