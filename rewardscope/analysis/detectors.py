"""Online detectors of GRPO failures that thresholds on one metric miss: RewardMonitor(detectors=[...]).

Each detector reads one step (``update(metrics) -> gauges``; the length detector also
reads the batch through ``observe_batch``), costs O(1) time and memory per step, and
sets two catalogue gauges: ``..._evidence_ratio`` (the evidence gathered, as a fraction of
its decision threshold, clipped to [0, 1]) and ``..._suspected`` (the held verdict, 0/1).
Verdicts have memory (rewardscope.analysis.online.HeldVerdict): once on, a verdict stays
on until the detector sees recovery, so a failure that plateaus stays flagged.

- ``FunctionDominanceDetector``: the share of the learning signal carried by the top reward
  function, ``max_f (w_f s_f)^2 / sum_f (w_f s_f)^2`` with ``s_f`` the mean within-group std of
  function f (grpo_reward_fn_group_std_mean) and ``w_f`` its weight (from ``bind``; 1 without it),
  counted only while another weighted function has something left to learn (it is at its
  declared maximum in fewer than half of the groups: grpo_reward_fn_group_all_max_ratio < 0.5,
  or no maximum declared); a solved format reward leaving correctness alone to vary is a
  healthy late run. CUSUM of the share above k = 0.9, signal at h = 0.25 (three steps at share
  1, five at 0.95); needs two weighted functions and some spread. A second CUSUM reads the
  share while another weighted function sits at its declared *minimum* in at least 60% of the
  groups (grpo_reward_fn_group_all_min_ratio >= 0.6: it has stopped being learned, the
  failure's own mark), above k = 0.7, signal at h = 0.5: a share of 0.8 there is dominance
  (a partial failure never reaches 0.9), while healthy runs reach 0.8 only while no function
  is stuck at its minimum. The verdict fires when either CUSUM signals. Recovery: both CUSUMs
  have drained to 0.
- ``LengthExploitationDetector``: the pooled within-group correlation r between completion
  length and combined reward (both centred on their group means), as a z-score
  ``atanh(r) * sqrt(n - groups - 3)`` (n: the distinct lengths summed over groups, so that identical
  completions count once); CUSUM with k = 0.5, h = 8 (one false signal in ~10^4 steps when r = 0).
  Recovery: the CUSUM has drained to 0.
- ``KLAccelerationDetector``: the second difference of the means of three consecutive 5-step
  blocks of log KL, ``a = l3 - 2 l2 + l1``, over its standard error ``sqrt(6 sigma^2 / 5)`` (sigma^2:
  the noise variance of log KL, half the EWMA of squared first differences, half-life 50 steps)
  is a z-score; evidence is the smaller of z / z_crit (alpha = 0.001 one-sided: 3.09) and the
  parabola through the three block means of KL, 30 steps ahead, over 0.3 (the level of
  GRPOKLTooHigh warning): KL accelerates beyond its noise AND heads for the alert. The verdict
  needs 3 consecutive steps at evidence 1. Recovery: the latest block mean of KL is back below
  the block mean at the moment the verdict fired.
- ``ZeroSpreadTakeoverDetector``: least-squares slope of grpo_group_zero_std_ratio over the last
  30 steps; evidence is the smaller of t / t_crit(alpha = 0.0005, one-sided) and the line's value
  60 steps ahead over 0.75 (the level of GRPONoLearningSignal): the share rises beyond its
  noise AND heads for a takeover within 60 steps; the verdict needs 3 consecutive steps at
  evidence 1. Recovery: the fitted share is back below halfway between the fitted share where
  the window began and the fitted share when the verdict fired.

Thresholds were chosen on ``rewardscope evaluate`` (docs/runbooks.md, "Detection measured over
many runs"): false alarms in at most a few % of healthy runs of 1,000 steps (checked on a second
set of 48 seeds per scenario too), the shortest delay that allows.

Usage::

    from rewardscope import RewardMonitor
    from rewardscope.analysis import default_detectors
    from rewardscope.simulation.scenarios import plan_run, iter_plan

    plan = plan_run("kl_blowup", 200, seed=1)
    with RewardMonitor("sim", plan.reward_functions, group_size=8, run_dir=None, detectors=default_detectors()) as monitor:
        for sim in iter_plan(plan):
            metrics = monitor.record_step(sim.step, **sim.kwargs)
    print(metrics.value("grpo_kl_acceleration_suspected"))   # 1.0
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

from ..metrics.functions import RewardFunctionSpec
from ..metrics.layout import StepMetrics
from .online import Cusum, HeldVerdict, SlidingTrend
from .trends import t_critical


def _flag(on: bool) -> float:
    return 1.0 if on else 0.0


class FunctionDominanceDetector:
    """One reward function carries the learning signal while the others stall; see the module docstring.

    Two CUSUMs of the top function's share, one per way the others can stall: ``cusum`` (the share above ``k``
    while another weighted function is not solved) and ``floor_cusum`` (the share above ``floor_k`` while another
    weighted function sits at its declared minimum in at least ``floor`` of the groups: it stopped being learned).
    The verdict fires when either reaches its threshold and clears when both have drained to 0.
    """

    def __init__(self, k: float = 0.9, h: float = 0.25, solved: float = 0.5, floor_k: float = 0.7,
                 floor_h: float = 0.5, floor: float = 0.6) -> None:
        self.cusum = Cusum(k, h)
        self.floor_cusum = Cusum(floor_k, floor_h)
        self.solved = solved
        self.floor = floor
        self.verdict = HeldVerdict()
        self.share: float | None = None  # the share while another function is not solved (None otherwise)
        self.floor_share: float | None = None  # the share while another function sits at its minimum
        self.weights: list[float] | None = None
        self._layout: object = None
        self._columns: list[tuple[int, int, int]] = []  # (spread, solved share, at-minimum share) row columns

    def bind(self, reward_functions: Sequence[RewardFunctionSpec]) -> None:
        """Called by RewardMonitor with the run's reward functions (their weights scale the spreads)."""
        self.weights = [spec.weight for spec in reward_functions]

    def update(self, metrics: StepMetrics) -> dict[str, float]:
        layout = metrics.layout
        if layout is not self._layout:  # column indices looked up once per run, not every step
            self._layout = layout
            slots = layout.function_slots
            self._columns = list(zip(slots["grpo_reward_fn_group_std_mean"].tolist(),
                                     slots["grpo_reward_fn_group_all_max_ratio"].tolist(),
                                     slots["grpo_reward_fn_group_all_min_ratio"].tolist()))
        row = metrics.row
        columns = self._columns
        weights = self.weights if self.weights is not None and len(self.weights) == len(columns) else [1.0] * len(columns)
        # The weighted functions with a spread: their total weighted squared spread, the first largest, the others'
        # solved and at-minimum shares.
        total, top, top_at = 0.0, -1.0, -1
        others: list[tuple[int, int]] = []
        for w, (spread_at, solved_at, minimum_at) in zip(weights, columns):
            if w:
                s = row.item(spread_at)
                if s == s:  # not NaN
                    v = (w * s) ** 2
                    total += v
                    if v > top:
                        top, top_at = v, len(others)
                    others.append((solved_at, minimum_at))
        self.share = self.floor_share = None
        # No spread at all is the zero-spread detector's business; one weighted function cannot dominate others.
        if len(others) >= 2 and total > 0:
            del others[top_at]
            # The others stall only if one of them has something left to learn: it is not at its declared maximum
            # in most groups (a solved format reward leaving correctness alone to vary is a healthy late run).
            if any(not row.item(solved_at) >= self.solved for solved_at, _ in others):  # NaN: no maximum declared
                self.share = top / total
            # A function at its declared minimum in most groups has stopped being learned (NaN: no minimum declared).
            if any(row.item(minimum_at) >= self.floor for _, minimum_at in others):
                self.floor_share = top / total
        triggered = self.cusum.add(self.share if self.share is not None else 0.0)
        triggered = self.floor_cusum.add(self.floor_share if self.floor_share is not None else 0.0) or triggered
        recovered = self.cusum.s == 0.0 and self.floor_cusum.s == 0.0
        held = self.verdict.update(metrics.step, triggered, recovered=recovered)
        return {"grpo_function_dominance_evidence_ratio": max(self.cusum.evidence, self.floor_cusum.evidence),
                "grpo_function_dominance_suspected": _flag(held)}


class LengthExploitationDetector:
    """Reward rising with completion length within groups; see the module docstring."""

    def __init__(self, k: float = 0.5, h: float = 8.0) -> None:
        self.cusum = Cusum(k, h)
        self.verdict = HeldVerdict()
        self.z: float | None = None
        self._pair: np.ndarray | None = None  # rewards and lengths of a step, side by side (reused every step)
        self._ones = np.ones(2)

    def observe_batch(self, combined: np.ndarray, lengths: np.ndarray | None, group_size: int) -> None:
        """Called by RewardMonitor before ``update`` with the step's combined rewards and lengths."""
        self.z = None
        if lengths is None or group_size < 2 or combined.size != lengths.size or combined.size % group_size:
            return
        n = combined.size
        pair = self._pair
        if pair is None or pair.shape[1] != n:
            pair = self._pair = np.empty((2, n))
        pair[0] = combined  # one (2, n) array: every sum below is one matrix product for rewards and lengths at once
        pair[1] = lengths
        raw = pair.dot(pair.T).tolist()  # [[sum r^2, sum r*l], [., sum l^2]]
        if not math.isfinite(raw[0][0]):  # a non-finite combined reward: leave its groups out
            rewards, group_lengths = combined.reshape(-1, group_size), lengths.reshape(-1, group_size)
            keep = np.isfinite(rewards).all(axis=1)
            pair = np.stack([rewards[keep].ravel(), group_lengths[keep].ravel().astype(np.float64)])
            raw = pair.dot(pair.T).tolist()
            n = pair.shape[1]
        if n == 0:
            self.z = 0.0
            return
        # Within-group (centred) sums of products from raw sums: sum(x*y) - sum_g(sum_g x * sum_g y) / G.
        if self._ones.size != group_size:
            self._ones = np.ones(group_size)
        # (2, groups): each group's sum of rewards, of lengths (a 2-D product: numpy's 3-D one is three times slower)
        sums = pair.reshape(-1, group_size).dot(self._ones).reshape(2, -1)
        between = sums.dot(sums.T).tolist()
        raw_rr = raw[0][0]
        s_rl = raw[0][1] - between[0][1] / group_size
        s_rr = raw_rr - between[0][0] / group_size
        s_ll = raw[1][1] - between[1][1] / group_size
        if s_rr <= 1e-12 * raw_rr or s_ll <= 0.0:  # no spread within groups, but for rounding
            self.z = 0.0
            return
        correlation = min(0.999999, max(-0.999999, s_rl / math.sqrt(s_rr * s_ll)))
        # With the CUSUM at 0, a z below k leaves it at 0 whatever the degrees of freedom: skip counting them when
        # even the most there can be (every length distinct: n - groups - 3) keeps z below k.
        most = n - n // group_size - 3
        if self.cusum.s == 0.0 and (correlation <= 0.0
                                    or (most >= 1 and math.atanh(correlation) * math.sqrt(most) <= self.cusum.k)):
            self.z = 0.0
            return
        # Identical completions (same length) repeat one observation: count the distinct lengths of each group,
        # less one for its mean, as the degrees of freedom of the pooled within-group correlation.
        ordered = np.sort(pair[1].reshape(-1, group_size), axis=1)
        dof = int(np.count_nonzero(ordered[:, 1:] != ordered[:, :-1])) - 3
        self.z = math.atanh(correlation) * math.sqrt(dof) if dof >= 1 else None

    def update(self, metrics: StepMetrics) -> dict[str, float]:
        triggered = self.cusum.add(self.z) if self.z is not None else self.cusum.s >= self.cusum.h
        held = self.verdict.update(metrics.step, triggered, recovered=self.cusum.s == 0.0)
        return {"grpo_length_exploitation_evidence_ratio": self.cusum.evidence, "grpo_length_exploitation_suspected": _flag(held)}


class KLAccelerationDetector:
    """KL accelerating towards the KL alert's level; see the module docstring."""

    def __init__(self, block: int = 5, alpha: float = 0.001, level: float = 0.3, horizon: int = 30, confirm: int = 3,
                 noise_half_life: float = 50.0) -> None:
        if block < 2:
            raise ValueError(f"a block needs at least 2 steps, got {block}")
        self.block = block
        self.z_critical = float(NormalDist().inv_cdf(1.0 - alpha))
        self.level = level
        self.horizon = horizon
        self.values: deque[float] = deque(maxlen=3 * block)
        self.logs: deque[float] = deque(maxlen=3 * block)
        self._decay = 0.5 ** (1.0 / noise_half_life)
        self.noise_variance: float | None = None  # of log KL around its trend, from squared first differences
        self.verdict = HeldVerdict(confirm)
        self.z: float | None = None
        self.projected: float | None = None
        self.evidence = 0.0
        self._level_at_fire: float | None = None
        # Sums of the three blocks of log KL then of KL, once 3 blocks are held (slid by one value a step).
        self._sums: list[float] | None = None
        self._slides = 0
        self._layout: object = None
        self._column = 0

    def _observe(self, kl: float) -> None:
        log_kl = math.log(max(kl, 1e-12))
        values, logs = self.values, self.logs
        if logs:
            half_square = 0.5 * (log_kl - logs[-1]) ** 2  # Var(y_t - y_t-1) = 2 sigma^2 for independent noise
            v = self.noise_variance
            self.noise_variance = half_square if v is None else self._decay * v + (1.0 - self._decay) * half_square
        sums = self._sums
        if sums is not None and self._slides < 64:
            # Full: every block moves one step on; its sum gains the value entering it and loses the one leaving it.
            b, b2 = self.block, 2 * self.block
            sums[0] += logs[b] - logs[0]
            sums[1] += logs[b2] - logs[b]
            sums[2] += log_kl - logs[b2]
            sums[3] += values[b] - values[0]
            sums[4] += values[b2] - values[b]
            sums[5] += kl - values[b2]
            self._slides += 1
            values.append(kl)
            logs.append(log_kl)
            return
        values.append(kl)
        logs.append(log_kl)
        if len(values) == values.maxlen:  # the sums from the values themselves (every 64 steps: no rounding drift)
            self._sums = [*self._block_sums(logs), *self._block_sums(values)]
            self._slides = 0

    def _block_sums(self, values: deque[float]) -> tuple[float, float, float]:
        b, data = self.block, list(values)
        return sum(data[:b]), sum(data[b:2 * b]), sum(data[2 * b:])

    def update(self, metrics: StepMetrics) -> dict[str, float]:
        if metrics.layout is not self._layout:
            self._layout = metrics.layout
            self._column = metrics.layout.index("grpo_kl")
        kl: float | None = metrics.row.item(self._column)
        if kl != kl:  # NaN: not measured this step
            kl = None
        self.z = self.projected = None
        self.evidence = 0.0
        latest = None
        if kl is not None:
            self._observe(kl)
        if kl is not None and self._sums is not None and self.noise_variance:
            b = float(self.block)
            l1, l2, l3, m1, m2, m3 = (v / b for v in self._sums)
            self.z = (l3 - 2.0 * l2 + l1) / math.sqrt(6.0 * self.noise_variance / b)
            tau = float(self.horizon)
            # The parabola through the three block means (centres -2b, -b, 0), evaluated `horizon` steps ahead.
            slope, curvature = (3.0 * m3 - 4.0 * m2 + m1) / (2.0 * b), (m3 - 2.0 * m2 + m1) / (b * b)
            self.projected = m3 + slope * tau + 0.5 * curvature * tau * tau
            self.evidence = max(0.0, min(1.0, self.z / self.z_critical, self.projected / self.level))
            latest = m3
        was_on = self.verdict.on
        recovered = latest is not None and self._level_at_fire is not None and latest < self._level_at_fire
        held = self.verdict.update(metrics.step, self.evidence >= 1.0, recovered)
        if held and not was_on:
            self._level_at_fire = latest
        return {"grpo_kl_acceleration_evidence_ratio": self.evidence, "grpo_kl_acceleration_suspected": _flag(held)}


class ZeroSpreadTakeoverDetector:
    """Zero-spread groups taking over gradually; see the module docstring."""

    def __init__(self, window: int = 30, alpha: float = 0.0005, level: float = 0.75, horizon: int = 60, confirm: int = 3) -> None:
        self.trend = SlidingTrend(window)
        self.alpha = alpha
        self.level = level
        self.horizon = horizon
        self.verdict = HeldVerdict(confirm)
        self.evidence = 0.0
        self._recovery_level: float | None = None
        # Computed now (scipy's import takes a second), not in a training step; the window is full when it is read.
        self._t_critical = t_critical(alpha, window - 2)
        self._layout: object = None
        self._column = 0

    def update(self, metrics: StepMetrics) -> dict[str, float]:
        if metrics.layout is not self._layout:
            self._layout = metrics.layout
            self._column = metrics.layout.index("grpo_group_zero_std_ratio")
        share = metrics.row.item(self._column)
        trend = self.trend
        x = float(metrics.step)
        if share == share:  # NaN: not measured this step
            trend.add(x, share)
        self.evidence = 0.0
        fitted_now = None
        if trend.n >= trend.window:
            slope, t, fitted_now = trend.fit(x)
            ahead = fitted_now + slope * self.horizon
            self.evidence = max(0.0, min(1.0, t / self._t_critical, ahead / self.level))
        triggered = self.evidence >= 1.0
        was_on = self.verdict.on
        recovered = fitted_now is not None and self._recovery_level is not None and fitted_now < self._recovery_level
        held = self.verdict.update(metrics.step, triggered, recovered)
        if held and not was_on and fitted_now is not None:
            # Recovered once the fitted share is back below halfway between the window's start and the firing step.
            start = trend.fitted(trend.points[0][0])
            self._recovery_level = fitted_now - 0.5 * (fitted_now - start)
        return {"grpo_zero_spread_takeover_evidence_ratio": self.evidence, "grpo_zero_spread_takeover_suspected": _flag(held)}
