"""rewardscope.analysis."""
