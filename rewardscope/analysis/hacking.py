"""Reward-hacking detection: the proxy reward rises while a measure of real performance falls.

A policy that games its reward (a format reward paid for tags around a wrong
answer, a judge fooled by length) shows one signature: the reward it is trained
on, the *proxy* (the combined reward), keeps rising while a *performance* signal
it cannot game falls. Performance signals, each used when present:

- held-out eval accuracy (grpo_eval_accuracy_ratio, measured on some steps only);
- a "gold" reward function: one with weight 0, tracked but not trained on, or a weighted
  one such as answer correctness whose weighted part is then taken out of the proxy;
- (``watch_functions``, on by default) each weighted reward function: one of them
  falling while the combined reward rises means the policy trades it for the others.

The trigger, over the latest ``window`` recorded steps: the proxy's least-squares
slope per step is positive AND a performance signal's slope is negative (for a watched
function, the proxy is the combined reward without that function's weighted part), each at
one-sided significance ``alpha`` (t-test on the slope: a one-sided confidence interval
that excludes zero), with at least ``min_steps`` proxy points and ``min_evals`` eval
points (or ``min_steps`` points of a per-step signal). Eval accuracy counts only on the
steps that measured it. The rule is also tested over the latest ``short_window`` steps (20,
when shorter than ``window``), once that window is full: a short window reacts sooner to a
strong onset, the long one keeps the power to see a weak or slow one; each is a test at
``alpha``, so the two together fire on a healthy run with probability at most 2 x alpha
per step (Bonferroni). The slopes come from running sums (O(1) per step,
rewardscope.analysis.online.MultiTrend and SlidingTrend).

The verdict has memory (``hold``, on by default): once suspected, hacking stays
suspected, even when the proxy saturates and its slope stops being significant, until
there is evidence of recovery from the performance signal that fired: its fitted level
at the latest step has made up at least half of the fall measured when the verdict
fired (from the fitted level where the window that fired began to the fitted level at the
firing step, on that window's line): performance back up, the proxy-performance gap closing. A slope merely turning
positive on a plateau is not recovery (by chance it does so now and then). A hacked
plateau stays flagged; a recovered run clears.

Defaults (chosen on ``rewardscope evaluate``: no false alarm on healthy runs of 1,000
steps): window 30 steps and short_window 20, alpha 0.001, min_steps 10; eval accuracy over ``eval_window``
(2 x window) steps with at least ``min_evals`` = 5 evaluations (a slope through 3 points
has 1 degree of freedom: three noisy evaluations on a line are not evidence).

``RewardHackingDetector`` applies this online as a RewardMonitor detector and sets
grpo_reward_hacking_suspected (the verdict) and grpo_reward_hacking_evidence_ratio
(for the strongest signal, the weaker of the two slope t statistics over its critical
value, clipped to [0, 1]).
``detect_reward_hacking`` replays the same rule over a recorded history and adds
whole-run slopes, correlations, the functions that rose and a verdict.

Usage::

    from rewardscope import RewardMonitor, RewardFunctionSpec
    from rewardscope.analysis.hacking import RewardHackingDetector
    specs = [RewardFunctionSpec("format", 1.0, 0.0, 1.0), RewardFunctionSpec("gold", 0.0, 0.0, 1.0)]
    monitor = RewardMonitor("run", specs, run_dir=None, detectors=[RewardHackingDetector(gold_function="gold")])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..metrics.functions import RewardFunctionSpec
from ..metrics.layout import StepMetrics
from .history import StepHistory
from .online import MultiTrend, SlidingTrend
from .trends import fit_trend, pearson, t_critical

FLAG = "grpo_reward_hacking_suspected"
EVIDENCE = "grpo_reward_hacking_evidence_ratio"


class RewardHackingDetector:
    """Online reward-hacking detector (the ``Detector`` protocol of rewardscope.monitor); see the module docstring.

    ``gold_weight`` is the gold function's weight in the combined reward (0 for a
    monitor-only gold reward): its weighted part is removed from the proxy so a
    falling gold cannot hide inside the combined reward.
    """

    def __init__(self, gold_function: str | None = None, *, gold_weight: float = 0.0, use_eval_accuracy: bool = True,
                 watch_functions: bool = True, window: int = 30, short_window: int | None = 20,
                 eval_window: int | None = None, alpha: float = 0.001, min_steps: int = 10, min_evals: int = 5,
                 hold: bool = True) -> None:
        if window < 3 or not 3 <= min_steps <= window or min_evals < 3:
            raise ValueError("need window >= min_steps >= 3 and min_evals >= 3: a slope needs three points")
        if short_window is not None and short_window < 3:
            raise ValueError(f"short_window must be at least 3 steps, got {short_window}")
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        self.gold_function = gold_function
        self.gold_weight = float(gold_weight)
        self.use_eval_accuracy = use_eval_accuracy
        self.watch_functions = watch_functions
        self.window = window
        self.short_window = short_window if short_window is not None and short_window < window else None  # else unused
        self.alpha = alpha
        self.min_steps = min_steps
        self.min_evals = min_evals
        self.hold = hold
        # Evaluations are sparse (every 10 steps is common): their slope needs a longer window to hold min_evals points.
        self.eval_window = 2 * window if eval_window is None else eval_window
        self._eval = SlidingTrend(self.eval_window)
        self._eval_falling = 0.0  # the eval slope's falling evidence, recomputed when its points change
        # Per-step series share their steps: one vectorised trend of [proxy, gold?, f_1..f_F, proxy - w_f f_1..F].
        self._trends: MultiTrend | None = None
        self._short: MultiTrend | None = None  # the same series over the last short_window steps
        self._watched: tuple[str, ...] = ()
        self._weights: dict[str, float] = {}  # weighted reward functions, from bind()
        self._watched_weights: tuple[float, ...] = ()
        # Column indices of the metrics read, looked up on the first step of a layout.
        self._layout: object = None
        self._gold_index: int | None = None
        self._eval_index: int | None = None
        self._combined_index = 0
        self._function_names: tuple[str, ...] = ()  # the watched functions and their row columns
        self._function_columns: list[int] = []
        # The signal that fired ("eval" or a column of the per-step trends) and the level that counts as recovered:
        # halfway back from its fitted level at the firing step to its fitted level where the window began.
        # The window that fired is kept with it: recovery is read on that window's line.
        self._fired: tuple[str | int, float, MultiTrend | None] | None = None
        self.suspected = False
        self.evidence = 0.0
        # The critical values are looked up every step: compute them now (importing scipy takes a second or so),
        # not in the middle of a training step.
        for dof in range(1, max(window, self.eval_window)):
            t_critical(alpha, dof)
        # The per-step trends' critical value by number of points (looked up every step, twice with a short window).
        self._critical = [math.nan] * 3 + [t_critical(alpha, n - 2) for n in range(3, window + 1)]

    def bind(self, reward_functions: Sequence[RewardFunctionSpec]) -> None:
        """Called by RewardMonitor with the run's reward functions: the weighted ones are watched."""
        self._weights = {spec.name: spec.weight for spec in reward_functions if spec.weight != 0.0}
        self._layout = None  # the watched functions' columns are looked up again on the next step

    def update(self, metrics: StepMetrics) -> dict[str, float]:
        layout = metrics.layout
        if layout is not self._layout:  # column indices looked up once per run, not every step
            self._layout = layout
            self._gold_index = None if self.gold_function is None else layout.index("grpo_reward_fn_mean", self.gold_function)
            self._eval_index = layout.index("grpo_eval_accuracy_ratio") if self.use_eval_accuracy else None
            self._combined_index = layout.index("grpo_reward_mean")
            watched: list[tuple[str, int]] = []
            if self.watch_functions and self._weights:
                slots = layout.function_slots["grpo_reward_fn_mean"].tolist()
                watched = [(fn, i) for fn, i in zip(metrics.reward_functions, slots)
                           if fn in self._weights and fn != self.gold_function]
            self._function_names = tuple(fn for fn, _ in watched)
            self._function_columns = [i for _, i in watched]
        row = metrics.row
        gold = None if self._gold_index is None else _present(row.item(self._gold_index))
        eval_accuracy = None if self._eval_index is None else _present(row.item(self._eval_index))
        names = self._function_names
        own = [row.item(i) for i in self._function_columns]
        if self._trends is not None and names != self._watched:  # watched from an earlier layout: match by name
            own = [dict(zip(names, own)).get(fn, math.nan) for fn in self._watched]
            names = self._watched
        suspected = self._observe(float(metrics.step), self.proxy(_present(row.item(self._combined_index)), gold),
                                  eval_accuracy, gold, names, own)
        return {FLAG: 1.0 if suspected else 0.0, EVIDENCE: self.evidence}

    def proxy(self, combined_mean: float | None, gold_mean: float | None) -> float | None:
        """The combined reward mean without the gold function's weighted part (None when unknown)."""
        if combined_mean is None or (self.gold_weight != 0.0 and gold_mean is None):
            return None
        return combined_mean - self.gold_weight * (gold_mean or 0.0)

    def _add_step(self, x: float, proxy: float, gold_mean: float | None, names: tuple[str, ...], own: list[float]) -> None:
        """``own``: the means of the watched functions ``names`` (fixed by the first step)."""
        if self._trends is None:
            self._watched = names
            self._watched_weights = tuple(self._weights.get(fn, 1.0) for fn in names)
            k = 1 + (self.gold_function is not None) + 2 * len(names)
            self._trends = MultiTrend(self.window, k)
            if self.short_window is not None:
                self._short = MultiTrend(self.short_window, k)
        values = [proxy]
        if self.gold_function is not None:
            values.append(math.nan if gold_mean is None else gold_mean)
        values += own
        values += [proxy - w * m for w, m in zip(self._watched_weights, own)]
        total = sum(values)  # NaN when a value is NaN: a step missing one of the series is left out of all of them
        if total == total:
            self._trends.add(x, values)
            if self._short is not None:
                self._short.add(x, values)

    def observe(self, step: int, proxy: float | None, eval_accuracy: float | None, gold_mean: float | None,
                function_means: Mapping[str, float] | None = None) -> bool:
        """Add one step's values (None = not measured this step); True while hacking is suspected.

        ``function_means``: the means of the watched weighted functions; each is compared with the
        proxy without its own weighted part (the other functions)."""
        means = function_means or {}
        names = tuple(means) if self._trends is None else self._watched
        return self._observe(float(step), proxy, eval_accuracy, gold_mean, names,
                             [means.get(fn, math.nan) for fn in names])

    def _observe(self, x: float, proxy: float | None, eval_accuracy: float | None, gold_mean: float | None,
                 names: tuple[str, ...], own: list[float]) -> bool:
        if proxy is not None:
            self._add_step(x, proxy, gold_mean, names, own)
        trend = self._eval
        points = trend.n
        if eval_accuracy is not None:
            trend.add(x, eval_accuracy)
        trend.drop_before(x - self.eval_window + 1)
        if trend.n != points or eval_accuracy is not None:
            self._eval_falling = trend.evidence(self.alpha, rising=False) if trend.n >= self.min_evals else 0.0
        fired, window = self._trigger()
        if self.suspected and self.hold:
            if self._recovered(x):
                self.suspected, self._fired = False, None
        elif fired is not None:
            self.suspected = True
            start = window.oldest_x if window is not None else x - self.eval_window + 1
            before, now = self._fitted(fired, start, window), self._fitted(fired, x, window)
            self._fired = (fired, before - 0.5 * (before - now), window)
        else:
            self.suspected = False
        return self.suspected

    def _fitted(self, signal: str | int, x: float, window: MultiTrend | None) -> float:
        if signal == "eval":
            return self._eval.fitted(x)
        return window.fitted_of(signal, x)  # type: ignore[union-attr,arg-type]

    def _trigger(self) -> tuple[str | int | None, MultiTrend | None]:
        """The performance signal for which the rule holds now (the strongest) and the window it holds on, or
        (None, None); sets the evidence (the larger of the two windows')."""
        self.evidence = 0.0
        trends = self._trends
        if trends is None or trends.n < self.min_steps:
            return None, None
        strongest, signal = self._strongest(trends)
        window = trends
        short = self._short
        if strongest <= 1.0 and short is not None and short.n == short.window:
            # The long window has not fired: the short one reacts sooner to a strong onset.
            short_strongest, short_signal = self._strongest(short)
            if short_strongest > strongest:
                strongest, signal, window = short_strongest, short_signal, short
        self.evidence = max(0.0, min(1.0, strongest))
        return (signal, window) if strongest > 1.0 else (None, None)

    def _strongest(self, trends: MultiTrend) -> tuple[float, str | int]:
        """The strongest candidate on one window and its signal.

        A candidate is the weaker of the proxy's rising and the signal's falling t over the critical value; a
        series whose slope has the wrong sign makes its candidate <= 0, which can neither fire nor raise the
        evidence above 0, so its t is not computed."""
        critical = self._critical[trends.n]
        rising = trends.t_of(0) / critical if trends.sxy_of(0) > 0.0 else 0.0
        strongest = min(rising, self._eval_falling)
        signal: str | int = "eval"
        column = 1
        if self.gold_function is not None:
            gold = -trends.t_of(1) / critical if rising > 0.0 and trends.sxy_of(1) < 0.0 else 0.0
            if min(rising, gold) > strongest:
                strongest, signal = min(rising, gold), 1
            column = 2
        f = len(self._watched)
        best, best_column = 0.0, None
        if f:
            mean_x, sy, sxy = trends.sx / trends.n, trends.sy, trends.sxy
            for i in range(column, column + f):
                # the function falls (centred Sxy < 0) while the proxy without it rises (> 0)
                if sxy[i] - mean_x * sy[i] >= 0.0 or sxy[i + f] - mean_x * sy[i + f] <= 0.0:
                    continue
                both = min(trends.t_of(i + f), -trends.t_of(i)) / critical
                if best_column is None or both > best:
                    best, best_column = both, i
        if best_column is not None and best > strongest:
            strongest, signal = best, best_column
        return strongest, signal

    def _recovered(self, x: float) -> bool:
        if self._fired is None:
            return False
        signal, halfway, window = self._fired
        if signal == "eval" and self._eval.n < 3:
            return False
        return self._fitted(signal, x, window) >= halfway


def _present(value: float) -> float | None:
    """A row's value, None when absent (NaN)."""
    return None if value != value else value


@dataclass(frozen=True)
class HackingReport:
    """Verdict of an offline reward-hacking analysis.

    ``verdict`` is ``"suspected"`` (the rule fired on at least one step),
    ``"not_detected"`` (a performance signal was there and the rule never fired) or
    ``"insufficient_data"`` (no performance signal, or too few points for the rule).
    Trends are over the whole history: slope per step, t, n and one-sided p-values.
    """

    verdict: str
    performance_source: str | None
    first_flagged_step: int | None
    flagged_steps: int
    steps_analyzed: int
    proxy_trend: dict | None
    performance_trend: dict | None
    proxy_performance_correlation: float | None
    function_trends: dict[str, dict | None] = field(default_factory=dict)
    rising_functions: list[str] = field(default_factory=list)
    explanation: str = ""

    @property
    def hacking_suspected(self) -> bool:
        return self.verdict == "suspected"

    def to_dict(self) -> dict:
        return {"verdict": self.verdict, "hacking_suspected": self.hacking_suspected,
                "performance_source": self.performance_source, "first_flagged_step": self.first_flagged_step,
                "flagged_steps": self.flagged_steps, "steps_analyzed": self.steps_analyzed,
                "proxy_trend": self.proxy_trend, "performance_trend": self.performance_trend,
                "proxy_performance_correlation": self.proxy_performance_correlation,
                "function_trends": self.function_trends, "rising_functions": list(self.rising_functions),
                "explanation": self.explanation}


def _performance_series(history: StepHistory, performance: Sequence[float | None] | Mapping[int, float] | None) -> np.ndarray:
    if isinstance(performance, Mapping):
        by_step = {int(k): v for k, v in performance.items()}
        unknown = sorted(set(by_step) - set(history.steps.tolist()))
        if unknown:
            raise ValueError(f"performance metrics for steps {unknown[:5]} that the history does not have")
        values = [by_step.get(int(s)) for s in history.steps]
    else:
        values = list(performance)  # type: ignore[arg-type]
        if len(values) != len(history):
            raise ValueError(f"{len(values)} performance values for {len(history)} steps: give one per step "
                             "(None where not measured) or a {step: value} mapping")
    try:
        return np.array([math.nan if v is None else float(v) for v in values])
    except (TypeError, ValueError):
        raise ValueError("performance metrics must be numbers (or None where not measured)") from None


def _default_gold(history: StepHistory) -> str | None:
    gold = [spec.name for spec in history.functions if spec.weight == 0.0]
    return gold[0] if len(gold) == 1 else None


def _trend_dict(steps: np.ndarray, values: np.ndarray) -> dict | None:
    trend = fit_trend(steps, values)
    return None if trend is None else trend.to_dict()


def detect_reward_hacking(history: StepHistory, performance_metrics: Sequence[float | None] | Mapping[int, float] | None = None,
                          *, gold_function: str | None = None, window: int = 50, alpha: float = 0.01, min_steps: int = 10,
                          min_evals: int = 3) -> HackingReport:
    """Replay the online rule over a history; see the module docstring.

    Performance comes from ``performance_metrics`` (one value per step, None where not
    measured, or a {step: value} mapping), else the history's eval accuracy, else
    ``gold_function`` (default: the history's only weight-0 function, if there is one).
    """
    steps = history.steps
    if performance_metrics is not None:
        performance, source = _performance_series(history, performance_metrics), "performance_metrics"
    elif history.has("grpo_eval_accuracy_ratio"):
        performance, source = history.column("grpo_eval_accuracy_ratio"), "eval_accuracy"
    else:
        performance, source = None, None
    gold = gold_function if gold_function is not None else (_default_gold(history) if performance is None else None)
    gold_mean = history.column("grpo_reward_fn_mean", gold) if gold is not None else None
    if gold is not None:
        source = f"{source}+gold:{gold}" if source else f"gold:{gold}"
    gold_weight = history.spec(gold).weight if gold is not None else 0.0
    min_steps = min(min_steps, window)
    detector = RewardHackingDetector(gold, gold_weight=gold_weight, window=window, short_window=None, eval_window=window,
                                     alpha=alpha, min_steps=min_steps, min_evals=min_evals, watch_functions=False)

    def present(values: np.ndarray | None, i: int) -> float | None:
        return None if values is None or math.isnan(values[i]) else float(values[i])

    combined = history.column("grpo_reward_mean")
    proxies = [detector.proxy(present(combined, i), present(gold_mean, i)) for i in range(len(history))]
    flagged = [step for i, step in enumerate(steps.tolist())
               if detector.observe(step, proxies[i], present(performance, i), present(gold_mean, i))]
    proxy = np.array([math.nan if p is None else p for p in proxies])

    weighted = [spec.name for spec in history.functions if spec.weight != 0.0 and spec.name != gold]
    function_trends = {fn: _trend_dict(steps, history.column("grpo_reward_fn_mean", fn)) for fn in weighted}
    rising = [fn for fn, t in function_trends.items() if t is not None and t["slope"] > 0 and t["p_rising"] < alpha]
    perf_values = performance if performance is not None else gold_mean
    perf_trend = None if perf_values is None else _trend_dict(steps, perf_values)
    proxy_trend = _trend_dict(steps, proxy)
    correlation = None if perf_values is None else pearson(proxy, perf_values)

    if flagged:
        verdict = "suspected"
        explanation = (f"The proxy reward rose while {source} fell over a {window}-step window, first at step {flagged[0]} "
                       f"and at {len(flagged)} of {len(history)} steps"
                       + (f"; rising functions: {', '.join(rising)}." if rising else "."))
    elif perf_values is None:
        verdict = "insufficient_data"
        explanation = ("No performance signal: pass performance_metrics, record eval_accuracy, or declare a weight-0 "
                       "gold reward function.")
    elif (np.count_nonzero(~np.isnan(perf_values)) < (min_evals if performance is not None else min_steps)
          or np.count_nonzero(~np.isnan(proxy)) < min_steps):
        verdict = "insufficient_data"
        explanation = f"Too few points for the rule: at least {min_steps} proxy steps and {min_evals} evaluations are needed."
    else:
        verdict = "not_detected"
        explanation = f"The proxy reward never rose while {source} fell (alpha {alpha}, window {window} steps)."
    return HackingReport(verdict, source, flagged[0] if flagged else None, len(flagged), len(history), proxy_trend,
                         perf_trend, correlation, function_trends, rising, explanation)
