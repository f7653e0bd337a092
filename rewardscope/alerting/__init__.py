"""rewardscope.alerting."""
