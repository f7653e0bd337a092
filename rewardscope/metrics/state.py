"""What a run exposes between steps: latest values, counters, histograms, trend slopes.

The monitor updates a RunState once per step under its lock; the Prometheus
collector copies it under the same lock, so one scrape always sees one
consistent step. Counters and histograms only grow: ``rate(x_sum)/rate(x_count)``
gives exact averages over any time window whatever the scrape timing.

Usage::

    from rewardscope.metrics.state import RunState
    state = RunState.create("run-1", specs, FunctionTable.build(specs).buckets, run_info={"model": "tiny"})
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .catalogue import CATALOGUE
from .functions import RewardFunctionSpec
from .histograms import DEFAULT_LENGTH_EDGES, STEP_DURATION_EDGES, BucketLayout, HistogramBank
from .layout import StepLayout

STICKY = frozenset(s.name for s in CATALOGUE if s.sticky)


def length_edges(max_completion_length: int | None) -> np.ndarray:
    """16 linear buckets up to the generation limit when it is known, else powers of two."""
    if max_completion_length:
        return np.unique(np.round(np.linspace(max_completion_length / 16, max_completion_length, 16)))
    return DEFAULT_LENGTH_EDGES


@dataclass
class RunState:
    run_id: str
    specs: tuple[RewardFunctionSpec, ...]
    layout: StepLayout
    run_info: dict[str, str]
    reward_histograms: HistogramBank  # rows: each reward function, then the combined reward
    length_histogram: HistogramBank
    duration_histogram: HistogramBank
    lock: threading.Lock = field(default_factory=threading.Lock)
    latest: np.ndarray | None = None  # exported row: the latest step, sticky metrics carried forward
    counters: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    labelled_counters: dict[str, dict[tuple[str, ...], float]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(float)))
    nonfinite_totals: np.ndarray | None = None
    slopes: dict[tuple[str, str, int], float] = field(default_factory=dict)  # (metric, reward_fn or "", window) -> slope
    alerts_firing: dict[tuple[str, str], int] = field(default_factory=dict)  # (alertname, severity) -> instances firing

    @classmethod
    def create(cls, run_id: str, specs: Sequence[RewardFunctionSpec], reward_buckets: BucketLayout, *,
               run_info: dict[str, str] | None = None, max_completion_length: int | None = None) -> "RunState":
        specs = tuple(specs)
        state = cls(
            run_id=run_id,
            specs=specs,
            layout=StepLayout(tuple(s.name for s in specs)),
            run_info=dict(run_info or {}),
            reward_histograms=HistogramBank(reward_buckets),
            length_histogram=HistogramBank([length_edges(max_completion_length)]),
            duration_histogram=HistogramBank([STEP_DURATION_EDGES]),
        )
        state.nonfinite_totals = np.zeros(len(specs))
        return state

    def carry_sticky(self, row: np.ndarray) -> np.ndarray:
        """The row to export: sticky metrics absent this step keep their last value."""
        if self.latest is None:
            return row
        exported = row.copy()
        for name in STICKY:
            i = self.layout.index(name)
            if np.isnan(exported[i]):
                exported[i] = self.latest[i]
        return exported

