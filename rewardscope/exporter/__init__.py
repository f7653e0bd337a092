"""rewardscope.exporter."""
