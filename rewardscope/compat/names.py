"""The one table of the old API's metric names: each old short name and the catalogue metric it means.

The old tracker's RewardMetrics fields (``mean_reward``, ``kl_divergence``, ...), the
names RealtimeMonitor rules accept (those plus a few spellings people used, ``snr``,
``kl``), and the old per-function dict fields all come from here.

Usage::

    from rewardscope.compat.names import OLD_NAMES
    OLD_NAMES["signal_to_noise"]     # 'grpo_reward_signal_to_noise'
"""

from __future__ import annotations

# Old name -> catalogue metric (run level). The first block is, in order, the old RewardMetrics fields.
OLD_NAMES: dict[str, str] = {
    "mean_reward": "grpo_reward_mean",
    "std_reward": "grpo_reward_std",
    "min_reward": "grpo_reward_min",
    "max_reward": "grpo_reward_max",
    "total_reward": "grpo_reward_sum_of_batch",
    "signal_to_noise": "grpo_reward_signal_to_noise",
    "entropy": "grpo_reward_entropy_ratio",
    "variance": "grpo_reward_variance",
    "kl_divergence": "grpo_kl",
    "policy_entropy": "grpo_policy_entropy",
    "advantage_mean": "grpo_advantage_mean",
    "advantage_std": "grpo_advantage_std",
    # Other spellings RealtimeMonitor rules accept.
    "reward_mean": "grpo_reward_mean",
    "reward_std": "grpo_reward_std",
    "reward_variance": "grpo_reward_variance",
    "snr": "grpo_reward_signal_to_noise",
    "reward_entropy": "grpo_reward_entropy_ratio",
    "kl": "grpo_kl",
    "clip_ratio": "grpo_clip_ratio",
    "grad_norm": "grpo_grad_norm",
    "loss": "grpo_loss",
    "learning_rate": "grpo_learning_rate",
    "completion_length": "grpo_completion_length_mean_tokens",
    "truncated_ratio": "grpo_completion_truncated_ratio",
    "zero_std_ratio": "grpo_group_zero_std_ratio",
    "eval_accuracy": "grpo_eval_accuracy_ratio",
}

# The fields of the old RewardMetrics, in the old order (the tracker's series and summary keys).
METRIC_FIELDS: tuple[str, ...] = ("mean_reward", "std_reward", "min_reward", "max_reward", "total_reward", "signal_to_noise",
                                  "entropy", "variance", "kl_divergence", "policy_entropy", "advantage_mean", "advantage_std")

# Old per-function dict field -> catalogue metric (per reward function).
FUNCTION_FIELDS: dict[str, str] = {
    "function_rewards": "grpo_reward_fn_mean",
    "function_stds": "grpo_reward_fn_std",
    "contributions": "grpo_reward_fn_contribution_ratio",
}
