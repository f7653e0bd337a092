"""RewardAnalyzer: the old analysis API, on top of the step histories of this package.

Every method takes a history in any shape ``load_history`` accepts: a run
directory, run-store step dicts (``read_steps``), or the old list of per-step
``{function: rewards array or mean}``. Weights and declared ranges come from the
run's manifest, or from the ``reward_functions`` given to the analyzer (names
alone get weight 1 and no range).

Usage::

    import numpy as np
    from rewardscope import RewardAnalyzer
    analyzer = RewardAnalyzer(group_size=2)
    history = [{"format": np.array([0.0, 1.0, 1.0, 1.0]), "answer": np.array([1.0, 1.0, 0.0, 1.0])}] * 20
    report = analyzer.analyze_quality(history, list(range(20)))
    print(f"{report.quality_score:.1f}/100", report.issues)
    analyzer.analyze_function_importance(history, ["format", "answer"])["format"]["contribution"]   # 50.0
    analyzer.detect_reward_hacking(history, ["format", "answer"], performance_metrics=[0.5] * 20).verdict  # 'not_detected'
    analyzer.analyze_run("monitoring_data/my-run")   # all three for a recorded run
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from ..analysis.hacking import HackingReport, detect_reward_hacking
from ..analysis.history import StepHistory, load_history, load_run
from ..analysis.importance import function_importance
from ..analysis.quality import QualityReport, assess_quality
from ..metrics.functions import RewardFunctionSpec


class RewardAnalyzer:
    """Quality score, function importance and reward-hacking detection over a run's history."""

    def __init__(self, reward_functions: Sequence[RewardFunctionSpec | str] | None = None, *, group_size: int = 1,
                 hacking_window: int = 50, alpha: float = 0.01) -> None:
        self.reward_functions = None if reward_functions is None else list(reward_functions)
        self.group_size = group_size
        self.hacking_window = hacking_window
        self.alpha = alpha

    def history(self, reward_history: Any, function_names: Sequence[str] | None = None,
                steps: Sequence[int] | None = None) -> StepHistory:
        """The StepHistory the other methods analyse."""
        return load_history(reward_history, function_names, steps=steps, reward_functions=self.reward_functions,
                            group_size=self.group_size)

    def analyze_quality(self, reward_history: Any, steps: Sequence[int] | None = None) -> QualityReport:
        """Quality score 0..100 with its four dimensions, issues and recommendations (rewardscope.analysis.quality)."""
        return assess_quality(self.history(reward_history, steps=steps))

    def analyze_function_importance(self, reward_history: Any,
                                    function_names: Sequence[str] | None = None) -> dict[str, dict[str, float | None]]:
        """{function: {"contribution": %, "correlation", "variance_share": %, "mean_reward", "weight"}}."""
        return function_importance(self.history(reward_history, function_names))

    def detect_reward_hacking(self, reward_history: Any, function_names: Sequence[str] | None = None,
                              performance_metrics: Sequence[float | None] | Mapping[int, float] | None = None, *,
                              gold_function: str | None = None) -> HackingReport:
        """Proxy reward rising while performance falls (rewardscope.analysis.hacking)."""
        return detect_reward_hacking(self.history(reward_history, function_names), performance_metrics,
                                     gold_function=gold_function, window=self.hacking_window, alpha=self.alpha)

    def analyze_run(self, run_dir: str | os.PathLike) -> dict[str, Any]:
        """Quality, importance and hacking verdict of a recorded run directory, as plain dicts."""
        history = load_run(run_dir)
        return {
            "steps": len(history),
            "quality": assess_quality(history).to_dict(),
            "importance": function_importance(history),
            "reward_hacking": detect_reward_hacking(history, window=self.hacking_window, alpha=self.alpha).to_dict(),
        }
