"""rewardscope.simulation."""
