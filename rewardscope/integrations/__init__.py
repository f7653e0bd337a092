"""rewardscope.integrations."""
