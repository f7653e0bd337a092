"""The GRPO trainer: torch + transformers + peft, feeding RewardMonitor every step.

Usage::

    from rewardscope.trainer import TrainConfig, train
    result = train(TrainConfig(num_steps=40, prometheus_port=0))
    print(result.run_directory, result.reward_mean[-1])

Importing this package does not import torch; ``train`` and the other torch-backed
names are loaded on first use.
"""

from __future__ import annotations

from typing import Any

from rewardscope.trainer.config import TrainConfig
from rewardscope.trainer.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    ModelLoadError,
    RewardSpecError,
    TrainerError,
)

_LAZY = {
    "train": "rewardscope.trainer.grpo",
    "TrainResult": "rewardscope.trainer.grpo",
    "StepEvent": "rewardscope.trainer.grpo",
    "StopTraining": "rewardscope.trainer.grpo",
    "GRPOTrainer": "rewardscope.trainer.grpo",
}

__all__ = [
    "TrainConfig",
    "TrainerError",
    "ConfigError",
    "DataError",
    "CheckpointError",
    "ModelLoadError",
    "RewardSpecError",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rewardscope.trainer' has no attribute {name!r}")
