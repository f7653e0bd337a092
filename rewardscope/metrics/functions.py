"""Reward function declarations: name, weight in the combined reward, declared range.

A declared range lets rewardscope fit histogram buckets to the function, compute
"all groups saturated at the maximum" signals and bin the combined reward's entropy
in absolute units. Weight 0 makes a monitor-only ("gold") reward: it is tracked
but does not enter the combined reward.

Usage::

    from rewardscope.metrics.functions import RewardFunctionSpec
    spec = RewardFunctionSpec("check_answer", weight=1.0, min_value=-1.0, max_value=3.0)
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]*")


@dataclass(frozen=True)
class RewardFunctionSpec:
    """One reward function as the monitor sees it."""

    name: str
    weight: float = 1.0
    min_value: float | None = None
    max_value: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ValueError(f"reward function name {self.name!r} must match {_NAME.pattern}")
        if not math.isfinite(float(self.weight)):
            raise ValueError(f"reward function {self.name!r}: weight must be finite, got {self.weight!r}")
        for bound in (self.min_value, self.max_value):
            if bound is not None and not math.isfinite(float(bound)):
                raise ValueError(f"reward function {self.name!r}: range bounds must be finite, got {bound!r}")
        if self.min_value is not None and self.max_value is not None and self.min_value >= self.max_value:
            raise ValueError(f"reward function {self.name!r}: min_value {self.min_value} must be below max_value {self.max_value}")

    @property
    def has_range(self) -> bool:
        return self.min_value is not None and self.max_value is not None


# The four reward functions of the system we replace, with their declared ranges.
LEGACY_REWARD_FUNCTIONS: tuple[RewardFunctionSpec, ...] = (
    RewardFunctionSpec("format_exact", 1.0, 0.0, 3.0),
    RewardFunctionSpec("format_approx", 1.0, -2.5, 2.5),
    RewardFunctionSpec("check_answer", 1.0, -1.0, 3.0),
    RewardFunctionSpec("check_numbers", 1.0, 0.0, 1.5),
)


def as_specs(functions: Iterable[RewardFunctionSpec | str]) -> tuple[RewardFunctionSpec, ...]:
    """Normalise a list of names or specs; names get weight 1 and no range."""
    specs = tuple(f if isinstance(f, RewardFunctionSpec) else RewardFunctionSpec(str(f)) for f in functions)
    if not specs:
        raise ValueError("at least one reward function is required")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate reward function names: {names}")
    return specs


def combined_range(specs: Sequence[RewardFunctionSpec]) -> tuple[float, float] | None:
    """Range of the weighted sum when every weighted function declares a range, else None."""
    low = high = 0.0
    for spec in specs:
        if spec.weight == 0:
            continue
        if not spec.has_range:
            return None
        a, b = spec.weight * spec.min_value, spec.weight * spec.max_value  # type: ignore[operator]
        low += min(a, b)
        high += max(a, b)
    return (low, high) if high > low else None
