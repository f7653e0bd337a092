"""rewardscope.metrics."""
