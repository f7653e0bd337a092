"""The old programmatic API (RewardMetricsTracker, DashboardManager), kept working on top of RewardMonitor.

Usage::

    from rewardscope.compat import DashboardManager, RewardMetricsTracker
"""

from .dashboard import DashboardManager
from .tracker import RewardMetrics, RewardMetricsTracker

__all__ = ["RewardMetricsTracker", "RewardMetrics", "DashboardManager"]
