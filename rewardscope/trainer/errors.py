"""Errors the trainer reports to the user as a one-line message rather than a traceback.

They live in one torch-free module so the command line can catch them all without
importing torch.
"""

from __future__ import annotations


class TrainerError(Exception):
    """Base of every error caused by the run's inputs (settings, files, models)."""


class ConfigError(TrainerError, ValueError):
    """A configuration that cannot be used: unknown key, wrong type, bad value."""


class RewardSpecError(TrainerError, ValueError):
    """A --reward-fn specification that cannot be parsed or imported."""


class DataError(TrainerError, ValueError):
    """A data source that cannot be read or holds malformed records."""


class CheckpointError(TrainerError, RuntimeError):
    """No usable checkpoint where one was asked for, or one that does not fit this run."""


class ModelLoadError(TrainerError, RuntimeError):
    """A model id that cannot be loaded."""
