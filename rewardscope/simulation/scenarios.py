"""Synthetic GRPO runs: pure, seeded generators of what a trainer passes to the monitor.

A simulated run draws, every step, a batch of ``prompts`` prompts with ``group_size``
completions each (ordered group by group) and scores every completion with the reward
functions of the system we replace (``LEGACY_REWARD_FUNCTIONS``; ``functions`` keeps
the first 2, 3 or 4 of format_approx, check_answer, format_exact, check_numbers):

- ``format_exact``: 3 when the completion has the exact ``<reasoning>``/``<answer>`` layout, else 0;
- ``format_approx``: five tag checks worth +0.5 each when passed, -0.5 when failed (-2.5..2.5);
- ``check_answer``: 3 exact answer, 1.5 normalised match, 0.5 / 0.25 near miss, -1 wrong or no answer;
- ``check_numbers``: 1.5 when the first number in the answer is the expected one, else 0.

The model behind it is small but causal, so that the statistics behave like a real run:

- each prompt has a latent difficulty shared by its G completions (rewards within a group
  are correlated: easy prompts give all-correct groups, hard ones all-wrong groups);
- each completion is formatted exactly with a probability that rises early in the run
  (format is learned first) and answers correctly with a probability that rises later and
  falls with the prompt's difficulty;
- as the policy sharpens, completions of the same prompt are more often identical, which
  raises the share of groups with zero reward spread;
- a completion that reaches ``max_completion_length`` is truncated: it loses its closing
  tags, so its format and answer rewards fail;
- advantages are group-normalised from the combined reward, ``(r - mean_g) / (std_g + 1e-4)``
  with the sample std as TRL computes them (a non-finite reward counts as 0 there, as TRL's
  nansum does); grad norm scales with the share of groups that carry signal; KL grows
  slowly, policy entropy falls slowly; the learning rate warms up then follows a cosine;
  eval accuracy, every ``eval_every`` steps, is the true correctness on a fixed eval set
  of 200 problems.

Every step draws its random numbers from its own generator seeded by ``(seed, step)``, in
the same order and amount whatever the scenario, and a scenario only changes how those
draws are turned into outcomes. So the same seed gives identical output, and a failure
scenario is identical to ``healthy`` (same seed and settings) at every step before its onset.

A failure's severity at a step is ``strength * shape(x)`` with ``x = (step - onset + 1) / ramp``
clipped to [0, 1] (0 before the onset): ``shape`` is ``linear`` (x, the default), ``abrupt``
(1 from the onset on) or ``smooth`` (3x² - 2x³, slow start and slow finish). What the
failure does is its row of effects in ``SCENARIOS`` (rewardscope.simulation.effects);
``noise`` scales every random perturbation of the scalars (KL, entropy, grad norm, eval
accuracy...) and of the per-completion skill. Three healthy runs differ in pace: ``healthy``,
``healthy_fast`` (learns twice as fast), ``healthy_slow`` (half as fast) and
``healthy_plateau`` (learns, then levels off at half of the healthy run's progress).

Usage::

    from rewardscope import RewardMonitor
    from rewardscope.simulation.scenarios import plan_run, iter_plan

    plan = plan_run("reward_hacking", 100, seed=1, shape="smooth", functions=3)   # onset 40, ramp 30
    with RewardMonitor("sim", plan.reward_functions, group_size=plan.group_size,
                       run_dir=None, max_completion_length=plan.max_completion_length) as monitor:
        for sim in iter_plan(plan):
            metrics = monitor.record_step(sim.step, **sim.kwargs)
        print(metrics.value("grpo_reward_fn_group_all_max_ratio", "format_exact"))   # near 1
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from ..metrics.functions import LEGACY_REWARD_FUNCTIONS, RewardFunctionSpec
from .effects import Effect, Levers, apply_effects

REWARD_FUNCTIONS = LEGACY_REWARD_FUNCTIONS
# The order in which ``functions=n`` keeps reward functions: a format and a correctness reward first.
FUNCTION_PRIORITY = ("format_approx", "check_answer", "format_exact", "check_numbers")
DEFAULT_PROMPTS = 16
DEFAULT_GROUP_SIZE = 8
DEFAULT_MAX_COMPLETION_LENGTH = 512
DEFAULT_EVAL_EVERY = 10
DEFAULT_ONSET_FRACTION = 0.4
EVAL_PROBLEMS = 200
PEAK_LEARNING_RATE = 5e-6
KL_BETA = 0.04  # weight of the KL term in the GRPO loss
SHAPES = ("linear", "abrupt", "smooth")


class Scenario(str, Enum):
    """The named simulated runs."""

    HEALTHY = "healthy"
    REWARD_HACKING = "reward_hacking"
    ENTROPY_COLLAPSE = "entropy_collapse"
    KL_BLOWUP = "kl_blowup"
    ZERO_VARIANCE_GROUPS = "zero_variance_groups"
    LENGTH_EXPLOSION = "length_explosion"
    STALLED = "stalled"
    NONFINITE_REWARDS = "nonfinite_rewards"
    FUNCTION_DOMINANCE = "function_dominance"
    LENGTH_EXPLOITATION = "length_exploitation"
    HACKING_THEN_COLLAPSE = "hacking_then_collapse"
    HEALTHY_FAST = "healthy_fast"
    HEALTHY_SLOW = "healthy_slow"
    HEALTHY_PLATEAU = "healthy_plateau"


@dataclass(frozen=True)
class Signal:
    """One metric that shows a scenario's failure, and which way it moves after the onset."""

    metric: str  # a catalogue name
    direction: str  # "up", "down" or "stops" (stops changing: liveness)
    reward_fn: str | None = None


@dataclass(frozen=True)
class ScenarioInfo:
    """A row of the scenario table: what happens, from when, where it shows, and the effects that make it."""

    scenario: Scenario
    description: str
    onset: str  # what the onset step means for this scenario
    signals: tuple[Signal, ...]
    effects: tuple[Effect, ...] = ()
    stops_recording: bool = False  # True: no step is recorded from the onset on
    stops_learning: bool = False  # True: the failure removes the learning signal, progress halts over the ramp
    pace: str = "normal"  # healthy learning pace: normal, fast, slow or plateau

    @property
    def is_failure(self) -> bool:
        return bool(self.effects) or self.stops_recording


_ONSET = "failure starts at the onset step and reaches full strength `ramp` steps later"
_HEALTHY_ONSET = "no failure: the onset is ignored"

_HACKING = (Effect("fmt_logit", "add", 8.0), Effect("ans_logit", "add", -5.0), Effect("kl", "scale", 2.0),
            Effect("length_scale", "scale", -0.5))  # short, well-formatted answers: nothing left to truncate
_COLLAPSE = (Effect("copy_p", "toward", 1.0), Effect("entropy", "scale", -0.97), Effect("kl", "scale", 2.0))
_HACKING_SIGNALS = (Signal("grpo_reward_fn_mean", "up", "format_approx"), Signal("grpo_reward_fn_mean", "down", "check_answer"),
                    Signal("grpo_eval_accuracy_ratio", "down"))

SCENARIOS: dict[Scenario, ScenarioInfo] = {info.scenario: info for info in (
    ScenarioInfo(Scenario.HEALTHY,
                 "A run that slowly improves: format is learned first, correctness later; KL grows slowly, policy entropy "
                 "falls slowly, eval accuracy rises.",
                 _HEALTHY_ONSET, ()),
    ScenarioInfo(Scenario.REWARD_HACKING,
                 "The policy games the format rewards: they rise to saturation (every group at the maximum) while "
                 "correctness and eval accuracy fall.",
                 _ONSET,
                 (Signal("grpo_reward_fn_mean", "up", "format_exact"), Signal("grpo_reward_fn_mean", "up", "format_approx"),
                  Signal("grpo_reward_fn_group_all_max_ratio", "up", "format_exact"),
                  Signal("grpo_reward_fn_mean", "down", "check_answer"), Signal("grpo_reward_fn_mean", "down", "check_numbers"),
                  Signal("grpo_eval_accuracy_ratio", "down")),
                 _HACKING),
    ScenarioInfo(Scenario.ENTROPY_COLLAPSE,
                 "The policy collapses onto one completion per prompt: policy entropy falls towards 0, the G completions "
                 "of a prompt become identical, within-group reward spread vanishes and learning stops.",
                 _ONSET,
                 (Signal("grpo_policy_entropy", "down"), Signal("grpo_group_zero_std_ratio", "up"),
                  Signal("grpo_group_reward_std_mean", "down"), Signal("grpo_reward_signal_to_noise", "down"),
                  Signal("grpo_advantage_std", "down")),
                 _COLLAPSE, stops_learning=True),
    ScenarioInfo(Scenario.KL_BLOWUP,
                 "The policy runs away from the reference (learning rate too high): KL accelerates past 1.0, grad norm "
                 "spikes, the clip ratio rises, entropy and completion lengths rise and rewards degrade.",
                 _ONSET,
                 (Signal("grpo_kl", "up"), Signal("grpo_kl_acceleration_evidence_ratio", "up"), Signal("grpo_grad_norm", "up"),
                  Signal("grpo_clip_ratio", "up"), Signal("grpo_policy_entropy", "up"), Signal("grpo_reward_mean", "down")),
                 (Effect("kl", "add", 3.0, power=2.0), Effect("entropy", "add", 0.8), Effect("clip", "add", 0.3),
                  Effect("fmt_logit", "add", -3.0), Effect("ans_logit", "add", -2.0), Effect("length_scale", "scale", 1.0),
                  Effect("spike_p", "add", 0.5), Effect("spike_size", "add", 30.0), Effect("grad_scale", "add", 3.0))),
    ScenarioInfo(Scenario.ZERO_VARIANCE_GROUPS,
                 "Groups stop carrying a learning signal (sampling lost its diversity and the prompts are all too easy or "
                 "too hard): most groups have zero reward spread, advantages and grad norm fall to ~0 and learning stops, "
                 "while policy entropy stays normal (unlike entropy_collapse).",
                 _ONSET,
                 (Signal("grpo_group_zero_std_ratio", "up"), Signal("grpo_reward_fn_group_zero_std_ratio", "up", "check_answer"),
                  Signal("grpo_zero_spread_takeover_evidence_ratio", "up"),
                  Signal("grpo_advantage_std", "down"), Signal("grpo_grad_norm", "down"),
                  Signal("grpo_reward_signal_to_noise", "down")),
                 (Effect("copy_p", "toward", 0.97), Effect("difficulty_scale", "add", 2.0)), stops_learning=True),
    ScenarioInfo(Scenario.LENGTH_EXPLOSION,
                 "Completions grow until they hit the generation limit: most are truncated, lose their closing tags and "
                 "with them their format and answer rewards.",
                 _ONSET,
                 (Signal("grpo_completion_length_mean_tokens", "up"), Signal("grpo_completion_truncated_ratio", "up"),
                  Signal("grpo_reward_fn_mean", "down", "format_exact"), Signal("grpo_reward_mean", "down")),
                 (Effect("length_scale", "grow", 8.0), Effect("kl", "scale", 1.0))),
    ScenarioInfo(Scenario.STALLED,
                 "The training process hangs: it records no step from the onset on but keeps serving /metrics, so only "
                 "liveness shows it (the last-step timestamp stops advancing, the step counter stops).",
                 "the last recorded step is onset - 1; the process keeps serving /metrics",
                 (Signal("grpo_last_step_timestamp_seconds", "stops"), Signal("grpo_steps_total", "stops"),
                  Signal("grpo_step", "stops")),
                 stops_recording=True),
    ScenarioInfo(Scenario.NONFINITE_REWARDS,
                 "Reward functions start failing on some completions: check_answer returns NaN and check_numbers +inf for "
                 "a share of samples (3% of samples each at the onset, growing to 15% NaN and 7.5% inf); they are excluded "
                 "from statistics and counted.",
                 _ONSET,
                 (Signal("grpo_reward_fn_nonfinite_samples", "up", "check_answer"),
                  Signal("grpo_reward_fn_nonfinite_samples", "up", "check_numbers"),
                  Signal("grpo_reward_fn_nonfinite_total", "up", "check_answer"), Signal("grpo_reward_nonfinite_samples", "up")),
                 (Effect("nonfinite_share", "add", 0.12),)),
    ScenarioInfo(Scenario.FUNCTION_DOMINANCE,
                 "One reward function carries the whole learning signal while the others stall: exact format and correct "
                 "answers stop happening (their rewards sit at the minimum in every group) and only format_approx's tag "
                 "checks still differ between the completions of a prompt.",
                 _ONSET,
                 (Signal("grpo_function_dominance_evidence_ratio", "up"),
                  Signal("grpo_reward_fn_group_zero_std_ratio", "up", "check_answer"),
                  Signal("grpo_reward_fn_mean", "down", "check_answer"), Signal("grpo_eval_accuracy_ratio", "down")),
                 (Effect("fmt_logit", "add", -9.0), Effect("ans_logit", "add", -6.0))),
    ScenarioInfo(Scenario.LENGTH_EXPLOITATION,
                 "The policy learns that longer completions score better: within a group the format reward rises with "
                 "completion length and completions grow, before truncation shows.",
                 _ONSET,
                 (Signal("grpo_length_exploitation_evidence_ratio", "up"), Signal("grpo_completion_length_mean_tokens", "up")),
                 (Effect("length_coupling", "add", 2.5), Effect("length_scale", "scale", 0.6))),
    ScenarioInfo(Scenario.HACKING_THEN_COLLAPSE,
                 "A compound failure: reward hacking from the onset, then, one ramp later, entropy collapse on top of it.",
                 "hacking starts at the onset; entropy collapse starts `ramp` steps later",
                 _HACKING_SIGNALS + (Signal("grpo_policy_entropy", "down"), Signal("grpo_group_zero_std_ratio", "up")),
                 _HACKING + tuple(Effect(e.lever, e.op, e.amount, e.power, after_ramps=1) for e in _COLLAPSE)),
    ScenarioInfo(Scenario.HEALTHY_FAST, "A healthy run that learns twice as fast as `healthy`.", _HEALTHY_ONSET, (),
                 pace="fast"),
    ScenarioInfo(Scenario.HEALTHY_SLOW, "A healthy run that learns half as fast as `healthy`.", _HEALTHY_ONSET, (),
                 pace="slow"),
    ScenarioInfo(Scenario.HEALTHY_PLATEAU,
                 "A healthy run that learns, then levels off: progress approaches half of the healthy run's and stays.",
                 _HEALTHY_ONSET, (), pace="plateau"),
)}


def scenario(name: str | Scenario) -> Scenario:
    """The Scenario called ``name``; ValueError lists the known ones."""
    try:
        return Scenario(name)
    except ValueError:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(s.value for s in Scenario)}") from None


@dataclass(frozen=True)
class RunPlan:
    """The shape of one simulated run: sizes, onset, ramp, strength. Built by ``plan_run``."""

    scenario: Scenario
    steps: int
    seed: int
    prompts: int
    group_size: int
    onset: int
    ramp: int
    max_completion_length: int
    eval_every: int
    shape: str = "linear"
    strength: float = 1.0
    noise: float = 1.0
    functions: int = 4

    @property
    def info(self) -> ScenarioInfo:
        return SCENARIOS[self.scenario]

    @property
    def last_step(self) -> int:
        """The last step the run records (``onset - 1`` for a stalled run; 0 = none)."""
        return self.onset - 1 if self.info.stops_recording else self.steps

    @property
    def samples(self) -> int:
        return self.prompts * self.group_size

    @property
    def reward_functions(self) -> tuple[RewardFunctionSpec, ...]:
        """The run's reward functions, in the legacy order: pass them to RewardMonitor."""
        kept = set(FUNCTION_PRIORITY[:self.functions])
        return tuple(f for f in REWARD_FUNCTIONS if f.name in kept)

    def severity(self, step: int, delay_ramps: int = 0) -> float:
        """0 before the onset (``delay_ramps`` ramps later) and always for a healthy run; up to ``strength`` after it."""
        start = self.onset + delay_ramps * self.ramp
        if not self.info.effects or step < start:
            return 0.0
        x = min(1.0, (step - start + 1) / self.ramp)
        if self.shape == "abrupt":
            x = 1.0
        elif self.shape == "smooth":
            x = x * x * (3.0 - 2.0 * x)
        return self.strength * x


@dataclass(frozen=True)
class SimulatedStep:
    """One step: ``monitor.record_step(sim.step, **sim.kwargs)`` records it.

    ``severity`` is the failure's strength at this step (0 before the onset), for tests and plots.
    """

    step: int
    kwargs: dict[str, Any]
    severity: float


def _positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _positive_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not 0 < value < math.inf:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def default_onset(steps: int) -> int:
    """The default onset: 40% of the way through the run (at least step 1)."""
    return max(1, round(DEFAULT_ONSET_FRACTION * steps))


def default_ramp(steps: int, onset: int) -> int:
    """Half the steps left after the onset, between 5 and 50 steps."""
    return min(50, max(5, (steps - onset) // 2))


def plan_run(scenario_name: str | Scenario, steps: int, *, seed: int = 0, prompts: int = DEFAULT_PROMPTS,
             group_size: int = DEFAULT_GROUP_SIZE, onset: int | None = None, ramp: int | None = None,
             max_completion_length: int = DEFAULT_MAX_COMPLETION_LENGTH, eval_every: int = DEFAULT_EVAL_EVERY,
             shape: str = "linear", strength: float = 1.0, noise: float = 1.0, functions: int = 4) -> RunPlan:
    """Validate the arguments of a simulated run; ValueError names the bad one."""
    which = scenario(scenario_name)
    steps = _positive_int("steps", steps)
    seed = _positive_int("seed", seed, 0)
    prompts = _positive_int("prompts", prompts)
    group_size = _positive_int("group_size", group_size, 2)  # advantages need at least two completions per prompt
    onset = default_onset(steps) if onset is None else _positive_int("onset", onset)
    if onset > steps:
        raise ValueError(f"onset {onset} is after the last step {steps}")
    ramp = default_ramp(steps, onset) if ramp is None else _positive_int("ramp", ramp)
    max_completion_length = _positive_int("max_completion_length", max_completion_length, 16)
    eval_every = _positive_int("eval_every", eval_every)
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {', '.join(SHAPES)}, got {shape!r}")
    strength = _positive_float("strength", strength)
    noise = _positive_float("noise", noise)
    functions = _positive_int("functions", functions, 2)
    if functions > len(FUNCTION_PRIORITY):
        raise ValueError(f"functions must be at most {len(FUNCTION_PRIORITY)}, got {functions}")
    return RunPlan(which, steps, seed, prompts, group_size, onset, ramp, max_completion_length, eval_every, shape,
                   strength, noise, functions)


def simulate_steps(scenario_name: str | Scenario, steps: int, *, seed: int = 0, prompts: int = DEFAULT_PROMPTS,
                   group_size: int = DEFAULT_GROUP_SIZE, onset: int | None = None, ramp: int | None = None,
                   max_completion_length: int = DEFAULT_MAX_COMPLETION_LENGTH,
                   eval_every: int = DEFAULT_EVAL_EVERY, **variation: Any) -> Iterator[SimulatedStep]:
    """Steps 1..plan.last_step of a simulated run (a stalled run ends before its onset).

    ``variation``: shape, strength, noise, functions (see ``plan_run``)."""
    plan = plan_run(scenario_name, steps, seed=seed, prompts=prompts, group_size=group_size, onset=onset, ramp=ramp,
                    max_completion_length=max_completion_length, eval_every=eval_every, **variation)
    return iter_plan(plan)


def iter_plan(plan: RunPlan) -> Iterator[SimulatedStep]:
    """Steps 1..plan.last_step of a planned run."""
    eval_set = _eval_difficulties(plan.seed)
    for step in range(1, plan.last_step + 1):
        yield simulate_step(plan, step, eval_set)


# --------------------------------------------------------------------------- the model
def _sigmoid(x: Any) -> Any:
    return 1.0 / (1.0 + np.exp(-x))


def _format_logit(progress: float) -> float:
    """Log-odds that a completion is exactly formatted: learned early (p ~0.3 at the start, ~0.85 at 40%)."""
    return -1.0 + 4.5 * float(_sigmoid((progress - 0.35) / 0.12))


def _answer_logit(progress: float) -> float:
    """Log-odds of a correct answer on a prompt of average difficulty: learned later than format."""
    return -1.5 + 2.5 * float(_sigmoid((progress - 0.6) / 0.15))


def _learning_rate(step: int, steps: int) -> float:
    """Linear warm-up over the first 5% of steps, then a cosine decay to 0 at the last step."""
    warmup = max(1, round(0.05 * steps))
    if step <= warmup:
        return PEAK_LEARNING_RATE * step / warmup
    decay = (step - warmup) / max(1, steps - warmup)
    return PEAK_LEARNING_RATE * 0.5 * (1.0 + math.cos(math.pi * decay))


def _eval_difficulties(seed: int) -> np.ndarray:
    return np.random.default_rng([seed, 2]).standard_normal(EVAL_PROBLEMS)


_PLATEAU = 0.5  # a plateauing learner's progress approaches this


def _paced(progress: float, pace: str) -> float:
    if pace == "fast":
        return min(1.0, 2.0 * progress)
    if pace == "slow":
        return 0.5 * progress
    if pace == "plateau":
        return _PLATEAU * math.tanh(progress / _PLATEAU)
    return progress


def _learning_progress(plan: RunPlan, step: int) -> float:
    """Training progress in [0, 1]; a failure that removes the learning signal slows it to a halt over the ramp."""
    if not plan.info.stops_learning or step < plan.onset:
        return _paced(step / plan.steps, plan.info.pace)
    # Progress accrues at rate (1 - severity): the integral of a linear ramp, then nothing.
    tau = min(step - plan.onset + 1, plan.ramp)
    return (plan.onset - 1 + tau - tau * tau / (2.0 * plan.ramp)) / plan.steps


def _healthy_levers(plan: RunPlan, step: int, progress: float, z: np.ndarray) -> Levers:
    return Levers(fmt_logit=_format_logit(progress), ans_logit=_answer_logit(progress),
                  copy_p=0.05 + 0.35 * progress,  # a sharper policy repeats itself more often
                  entropy=0.95 * math.exp(-0.5 * step / plan.steps),
                  kl=0.001 + 0.05 * (step / plan.steps) ** 1.5,
                  clip=max(0.0, 0.001 + 0.004 * step / plan.steps + 0.001 * z[2]),
                  length_scale=1.0 + 0.3 * progress)


@dataclass
class _Draws:
    """Every random number of one step, drawn in a fixed order and amount whatever the scenario."""

    difficulty: np.ndarray  # (B,) per prompt
    prompt_format: np.ndarray
    prompt_length_factor: np.ndarray
    prompt_tokens: np.ndarray
    u_copy: np.ndarray  # (B, G) per completion
    u_exact: np.ndarray
    u_checks: np.ndarray  # (B, G, 5)
    skill_noise: np.ndarray
    u_correct: np.ndarray
    u_grade: np.ndarray
    u_numbers: np.ndarray
    length_noise: np.ndarray
    u_nonfinite: np.ndarray
    z: np.ndarray  # scalar noises: kl, entropy, clip, grad norm, spike size, loss, eval accuracy
    u_spike: float

    @classmethod
    def draw(cls, plan: RunPlan, step: int) -> _Draws:
        B, G = plan.prompts, plan.group_size
        rng = np.random.default_rng([plan.seed, 1, step])
        return cls(rng.standard_normal(B), rng.standard_normal(B), rng.standard_normal(B), rng.integers(40, 160, B),
                   rng.random((B, G)), rng.random((B, G)), rng.random((B, G, 5)), plan.noise * rng.standard_normal((B, G)),
                   rng.random((B, G)), rng.random((B, G)), rng.random((B, G)), rng.standard_normal((B, G)),
                   rng.random((B, G)), plan.noise * rng.standard_normal(7), float(rng.random()))

    def repeat_sources(self, copy_p: float) -> None:
        """Completion i of a group repeats the group's first completion with probability copy_p."""
        source = np.where(self.u_copy < copy_p, 0, np.arange(self.u_copy.shape[1])[None, :])
        for name in ("u_exact", "skill_noise", "u_correct", "u_grade", "u_numbers", "length_noise"):
            setattr(self, name, np.take_along_axis(getattr(self, name), source, axis=1))
        self.u_checks = np.take_along_axis(self.u_checks, source[:, :, None], axis=1)


def _completions(plan: RunPlan, lv: Levers, d: _Draws, progress: float) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every legacy reward function's (B, G) rewards and the completion lengths, from the levers and draws."""
    difficulty = d.difficulty * lv.difficulty_scale
    # Completion lengths: per-prompt and per-completion log-normal factors; the limit truncates.
    median = 140.0 * lv.length_scale
    raw_lengths = median * np.exp(0.35 * d.prompt_length_factor[:, None] + 0.3 * d.length_noise)
    lengths = np.clip(np.rint(raw_lengths), 8, plan.max_completion_length).astype(np.int64)
    truncated = lengths >= plan.max_completion_length

    # Format: exact layout, or each of the five tag checks passed with a probability that grows with skill.
    # length_coupling pays longer completions (within their group) more often: length exploitation.
    p_exact = _sigmoid(lv.fmt_logit + 0.7 * d.prompt_format[:, None] + lv.length_coupling * d.length_noise)
    exact = (d.u_exact < p_exact) & ~truncated
    checks = exact[:, :, None] | (d.u_checks < (0.2 + 0.7 * p_exact)[:, :, None])
    checks[:, :, 3] &= ~truncated  # a truncated completion never closes </answer> ...
    checks[:, :, 4] &= ~truncated  # ... nor ends right after it

    # Answers: only an answer inside <answer>...</answer> can be graded.
    has_answer = checks[:, :, 2] & checks[:, :, 3]
    p_correct = _sigmoid(lv.ans_logit - 2.2 * difficulty[:, None] + 0.5 * d.skill_noise)
    correct = has_answer & (d.u_correct < p_correct)
    near = has_answer & ~correct
    # A correct answer is written exactly (3) more often as the policy learns the expected form, else it only
    # matches after normalisation (1.5); a wrong one is sometimes a near miss (0.5, 0.25).
    p_exact_form = 0.8 + 0.18 * progress
    check_answer = np.where(correct, np.where(d.u_grade < p_exact_form, 3.0, 1.5),
                            np.where(near & (d.u_grade < 0.04), 0.5, np.where(near & (d.u_grade < 0.08), 0.25, -1.0)))
    number_match = (correct & (d.u_numbers < 0.97)) | (near & (d.u_numbers < 0.03))
    check_numbers = np.where(number_match, 1.5, 0.0)
    if lv.nonfinite_share > 0:
        share = 0.03 + lv.nonfinite_share
        check_answer = np.where(d.u_nonfinite < share, np.nan, check_answer)
        check_numbers = np.where(d.u_nonfinite > 1.0 - share / 2.0, np.inf, check_numbers)
    rewards = {"format_exact": np.where(exact, 3.0, 0.0), "format_approx": np.where(checks, 0.5, -0.5).sum(axis=2),
               "check_answer": check_answer, "check_numbers": check_numbers}
    return rewards, lengths


def _eval_accuracy(lv: Levers, truncated_share: float, noise: float, eval_set: np.ndarray) -> float:
    """Accuracy on the fixed eval set: exact format or both answer tags, times a correct answer, untruncated."""
    p_exact_eval = float(_sigmoid(lv.fmt_logit))
    p_answer = p_exact_eval + (1.0 - p_exact_eval) * (0.2 + 0.7 * p_exact_eval) ** 2
    p_right = float(np.mean(_sigmoid(lv.ans_logit - 2.2 * lv.difficulty_scale * eval_set)))
    truth = p_answer * p_right * (1.0 - truncated_share)
    noisy = truth + noise * math.sqrt(truth * (1.0 - truth) / EVAL_PROBLEMS)
    return round(min(1.0, max(0.0, noisy)) * EVAL_PROBLEMS) / EVAL_PROBLEMS


def simulate_step(plan: RunPlan, step: int, eval_set: np.ndarray | None = None) -> SimulatedStep:
    """One step of a planned run, a pure function of (plan, step)."""
    if not 1 <= step <= plan.steps:
        raise ValueError(f"step {step} is outside 1..{plan.steps}")
    d = _Draws.draw(plan, step)
    progress = _learning_progress(plan, step)
    lv = _healthy_levers(plan, step, progress, d.z)
    apply_effects(lv, plan.info.effects, lambda delay: plan.severity(step, delay))
    d.repeat_sources(lv.copy_p)
    every, lengths = _completions(plan, lv, d, progress)
    rewards = {f.name: every[f.name] for f in plan.reward_functions}

    # Group-normalised advantages from the combined reward (weights 1), as TRL computes them.
    combined = np.sum([np.where(np.isfinite(r), r, 0.0) for r in rewards.values()], axis=0)
    group_mean = combined.mean(axis=1, keepdims=True)
    group_std = combined.std(axis=1, ddof=1, keepdims=True)
    advantages = (combined - group_mean) / (group_std + 1e-4)
    signal_share = float((group_std[:, 0] > 0).mean())

    z = d.z
    kl = lv.kl * math.exp(0.15 * z[0])
    grad_norm = lv.grad_scale * (0.02 + 0.4 * math.sqrt(signal_share) * math.exp(0.25 * z[3]))
    if d.u_spike < lv.spike_p:
        grad_norm *= (3.0 + 5.0 * abs(z[4])) * lv.spike_size
    eval_accuracy = None
    if step % plan.eval_every == 0:
        eval_set = _eval_difficulties(plan.seed) if eval_set is None else eval_set
        truncated_share = float((lengths >= plan.max_completion_length).mean())
        eval_accuracy = _eval_accuracy(lv, truncated_share, float(z[6]), eval_set)

    kwargs: dict[str, Any] = {
        "rewards_by_function": {name: values.reshape(-1) for name, values in rewards.items()},
        "group_size": plan.group_size,
        "kl": float(kl),
        "policy_entropy": float(max(lv.entropy * math.exp(0.03 * z[1]), 0.0)),
        "advantages": advantages.reshape(-1),
        "completion_lengths": lengths.reshape(-1),
        "max_completion_length": plan.max_completion_length,
        "clip_ratio": float(min(lv.clip, 1.0)),
        "grad_norm": float(grad_norm),
        "loss": float(KL_BETA * kl + 0.02 * signal_share * z[5]),
        "learning_rate": _learning_rate(step, plan.steps),
        "eval_accuracy": eval_accuracy,
        "tokens": int(plan.group_size * d.prompt_tokens.sum() + lengths.sum()),
    }
    return SimulatedStep(step, kwargs, plan.severity(step))
