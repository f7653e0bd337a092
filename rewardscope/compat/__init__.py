"""The whole API of the system rewardscope replaces, in one place, on top of RewardMonitor.

- RewardMetricsTracker (tracker.py) and DashboardManager (dashboard.py): per-step tracking and logging;
- RealtimeMonitor and AlertLevel (realtime.py): the old alert rules, evaluated by the in-process engine;
- RewardAnalyzer (analyzer.py): quality score, function importance, reward hacking over a history;
- names.py: the one table of the old metric names.

Usage::

    from rewardscope import DashboardManager, RealtimeMonitor, RewardAnalyzer, RewardMetricsTracker
"""

from .analyzer import RewardAnalyzer
from .dashboard import DashboardManager
from .realtime import AlertLevel, RealtimeMonitor
from .tracker import RewardMetrics, RewardMetricsTracker

__all__ = ["AlertLevel", "DashboardManager", "RealtimeMonitor", "RewardAnalyzer", "RewardMetrics", "RewardMetricsTracker"]
