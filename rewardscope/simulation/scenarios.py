"""Synthetic GRPO runs: pure, seeded generators of what a trainer passes to the monitor.

A simulated run draws, every step, a batch of ``prompts`` prompts with ``group_size``
completions each (ordered group by group) and scores every completion with the four
reward functions of the system we replace (``LEGACY_REWARD_FUNCTIONS``):

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
scenario is identical to ``healthy`` (same seed) at every step before its onset.

A failure develops over ``ramp`` steps from its onset: its severity is
``min(1, (step - onset + 1) / ramp)`` from the onset step on, and 0 before.
``SCENARIOS`` is the machine-readable table of what each scenario does and where it shows.

Usage::

    from rewardscope import RewardMonitor, LEGACY_REWARD_FUNCTIONS
    from rewardscope.simulation.scenarios import plan_run, simulate_steps

    plan = plan_run("reward_hacking", 100, seed=1)          # onset 40, ramp 30
    with RewardMonitor("sim", LEGACY_REWARD_FUNCTIONS, group_size=plan.group_size,
                       run_dir=None, max_completion_length=plan.max_completion_length) as monitor:
        for sim in simulate_steps("reward_hacking", 100, seed=1):
            metrics = monitor.record_step(sim.step, **sim.kwargs)
        print(metrics.value("grpo_reward_fn_group_all_max_ratio", "format_exact"))   # near 1
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any, Iterator

import numpy as np

from ..metrics.functions import LEGACY_REWARD_FUNCTIONS

REWARD_FUNCTIONS = LEGACY_REWARD_FUNCTIONS
DEFAULT_PROMPTS = 16
DEFAULT_GROUP_SIZE = 8
DEFAULT_MAX_COMPLETION_LENGTH = 512
DEFAULT_EVAL_EVERY = 10
DEFAULT_ONSET_FRACTION = 0.4
EVAL_PROBLEMS = 200
PEAK_LEARNING_RATE = 5e-6
KL_BETA = 0.04  # weight of the KL term in the GRPO loss


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


@dataclass(frozen=True)
class Signal:
    """One metric that shows a scenario's failure, and which way it moves after the onset."""

    metric: str  # a catalogue name
    direction: str  # "up", "down" or "stops" (stops changing: liveness)
    reward_fn: str | None = None


@dataclass(frozen=True)
class ScenarioInfo:
    """A row of the scenario table: what happens, from when, and where it shows."""

    scenario: Scenario
    description: str
    onset: str  # what the onset step means for this scenario
    signals: tuple[Signal, ...]
    stops_recording: bool = False  # True: no step is recorded from the onset on


_ONSET = "failure starts at the onset step and reaches full strength `ramp` steps later"

SCENARIOS: dict[Scenario, ScenarioInfo] = {info.scenario: info for info in (
    ScenarioInfo(Scenario.HEALTHY,
                 "A run that slowly improves: format is learned first, correctness later; KL grows slowly, policy entropy "
                 "falls slowly, eval accuracy rises.",
                 "no failure: the onset is ignored",
                 ()),
    ScenarioInfo(Scenario.REWARD_HACKING,
                 "The policy games the format rewards: they rise to saturation (every group at the maximum) while "
                 "correctness and eval accuracy fall.",
                 _ONSET,
                 (Signal("grpo_reward_fn_mean", "up", "format_exact"), Signal("grpo_reward_fn_mean", "up", "format_approx"),
                  Signal("grpo_reward_fn_group_all_max_ratio", "up", "format_exact"),
                  Signal("grpo_reward_fn_mean", "down", "check_answer"), Signal("grpo_reward_fn_mean", "down", "check_numbers"),
                  Signal("grpo_eval_accuracy_ratio", "down"))),
    ScenarioInfo(Scenario.ENTROPY_COLLAPSE,
                 "The policy collapses onto one completion per prompt: policy entropy falls towards 0, the G completions "
                 "of a prompt become identical, within-group reward spread vanishes and learning stops.",
                 _ONSET,
                 (Signal("grpo_policy_entropy", "down"), Signal("grpo_group_zero_std_ratio", "up"),
                  Signal("grpo_group_reward_std_mean", "down"), Signal("grpo_reward_signal_to_noise", "down"),
                  Signal("grpo_advantage_std", "down"))),
    ScenarioInfo(Scenario.KL_BLOWUP,
                 "The policy runs away from the reference (learning rate too high): KL grows fast past 1.0, grad norm "
                 "spikes, the clip ratio rises, entropy and completion lengths rise and rewards degrade.",
                 _ONSET,
                 (Signal("grpo_kl", "up"), Signal("grpo_grad_norm", "up"), Signal("grpo_clip_ratio", "up"),
                  Signal("grpo_policy_entropy", "up"), Signal("grpo_reward_mean", "down"))),
    ScenarioInfo(Scenario.ZERO_VARIANCE_GROUPS,
                 "Groups stop carrying a learning signal (sampling lost its diversity and the prompts are all too easy or "
                 "too hard): most groups have zero reward spread, advantages and grad norm fall to ~0 and learning stops, "
                 "while policy entropy stays normal (unlike entropy_collapse).",
                 _ONSET,
                 (Signal("grpo_group_zero_std_ratio", "up"), Signal("grpo_reward_fn_group_zero_std_ratio", "up", "check_answer"),
                  Signal("grpo_advantage_std", "down"), Signal("grpo_grad_norm", "down"),
                  Signal("grpo_reward_signal_to_noise", "down"))),
    ScenarioInfo(Scenario.LENGTH_EXPLOSION,
                 "Completions grow until they hit the generation limit: most are truncated, lose their closing tags and "
                 "with them their format and answer rewards.",
                 _ONSET,
                 (Signal("grpo_completion_length_mean_tokens", "up"), Signal("grpo_completion_truncated_ratio", "up"),
                  Signal("grpo_reward_fn_mean", "down", "format_exact"), Signal("grpo_reward_mean", "down"))),
    ScenarioInfo(Scenario.STALLED,
                 "The training process hangs: it records no step from the onset on but keeps serving /metrics, so only "
                 "liveness shows it (the last-step timestamp stops advancing, the step counter stops).",
                 "the last recorded step is onset - 1; the process keeps serving /metrics",
                 (Signal("grpo_last_step_timestamp_seconds", "stops"), Signal("grpo_steps_total", "stops"),
                  Signal("grpo_step", "stops")),
                 stops_recording=True),
    ScenarioInfo(Scenario.NONFINITE_REWARDS,
                 "Reward functions start failing on some completions: check_answer returns NaN and check_numbers +inf for "
                 "a share of samples (3% of samples each at the onset, growing to 15% NaN and 7.5% inf); they are excluded from statistics and counted.",
                 _ONSET,
                 (Signal("grpo_reward_fn_nonfinite_samples", "up", "check_answer"), Signal("grpo_reward_fn_nonfinite_samples", "up", "check_numbers"),
                  Signal("grpo_reward_fn_nonfinite_total", "up", "check_answer"), Signal("grpo_reward_nonfinite_samples", "up"))),
)}


def scenario(name: str | Scenario) -> Scenario:
    """The Scenario called ``name``; ValueError lists the known ones."""
    try:
        return Scenario(name)
    except ValueError:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(s.value for s in Scenario)}") from None


@dataclass(frozen=True)
class RunPlan:
    """The shape of one simulated run: sizes, onset, ramp. Built by ``plan_run``."""

    scenario: Scenario
    steps: int
    seed: int
    prompts: int
    group_size: int
    onset: int
    ramp: int
    max_completion_length: int
    eval_every: int

    @property
    def last_step(self) -> int:
        """The last step the run records (``onset - 1`` for a stalled run; 0 = none)."""
        return self.onset - 1 if SCENARIOS[self.scenario].stops_recording else self.steps

    @property
    def samples(self) -> int:
        return self.prompts * self.group_size

    def severity(self, step: int) -> float:
        """0 before the onset (and always for healthy), rising linearly to 1 over ``ramp`` steps."""
        if self.scenario is Scenario.HEALTHY or step < self.onset:
            return 0.0
        return min(1.0, (step - self.onset + 1) / self.ramp)


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


def default_onset(steps: int) -> int:
    """The default onset: 40% of the way through the run (at least step 1)."""
    return max(1, round(DEFAULT_ONSET_FRACTION * steps))


def default_ramp(steps: int, onset: int) -> int:
    """Half the steps left after the onset, between 5 and 50 steps."""
    return min(50, max(5, (steps - onset) // 2))


def plan_run(scenario_name: str | Scenario, steps: int, *, seed: int = 0, prompts: int = DEFAULT_PROMPTS,
             group_size: int = DEFAULT_GROUP_SIZE, onset: int | None = None, ramp: int | None = None,
             max_completion_length: int = DEFAULT_MAX_COMPLETION_LENGTH, eval_every: int = DEFAULT_EVAL_EVERY) -> RunPlan:
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
    return RunPlan(which, steps, seed, prompts, group_size, onset, ramp, max_completion_length, eval_every)


def simulate_steps(scenario_name: str | Scenario, steps: int, *, seed: int = 0, prompts: int = DEFAULT_PROMPTS,
                   group_size: int = DEFAULT_GROUP_SIZE, onset: int | None = None, ramp: int | None = None,
                   max_completion_length: int = DEFAULT_MAX_COMPLETION_LENGTH,
                   eval_every: int = DEFAULT_EVAL_EVERY) -> Iterator[SimulatedStep]:
    """Steps 1..plan.last_step of a simulated run (a stalled run ends before its onset)."""
    plan = plan_run(scenario_name, steps, seed=seed, prompts=prompts, group_size=group_size, onset=onset, ramp=ramp,
                    max_completion_length=max_completion_length, eval_every=eval_every)
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


def _learning_progress(plan: RunPlan, step: int, stops_learning: bool) -> float:
    """Training progress in [0, 1]; a failure that removes the learning signal slows it to a halt over the ramp."""
    if not stops_learning or step < plan.onset:
        return step / plan.steps
    # Progress accrues at rate (1 - severity): the integral of a linear ramp, then nothing.
    tau = min(step - plan.onset + 1, plan.ramp)
    return (plan.onset - 1 + tau - tau * tau / (2.0 * plan.ramp)) / plan.steps


def simulate_step(plan: RunPlan, step: int, eval_set: np.ndarray | None = None) -> SimulatedStep:
    """One step of a planned run, a pure function of (plan, step)."""
    if not 1 <= step <= plan.steps:
        raise ValueError(f"step {step} is outside 1..{plan.steps}")
    s = plan.scenario
    h = plan.severity(step)
    B, G = plan.prompts, plan.group_size
    rng = np.random.default_rng([plan.seed, 1, step])
    # Every draw of the step, in a fixed order and amount whatever the scenario.
    difficulty = rng.standard_normal(B)
    prompt_format = rng.standard_normal(B)
    prompt_length_factor = rng.standard_normal(B)
    prompt_tokens = rng.integers(40, 160, B)
    u_copy = rng.random((B, G))
    u_exact = rng.random((B, G))
    u_checks = rng.random((B, G, 5))
    skill_noise = rng.standard_normal((B, G))
    u_correct = rng.random((B, G))
    u_grade = rng.random((B, G))
    u_numbers = rng.random((B, G))
    length_noise = rng.standard_normal((B, G))
    u_nonfinite = rng.random((B, G))
    z = rng.standard_normal(7)  # scalar noises: kl, entropy, clip, grad norm, spike size, loss, eval accuracy
    u_spike = rng.random()

    progress = _learning_progress(plan, step, s in (Scenario.ENTROPY_COLLAPSE, Scenario.ZERO_VARIANCE_GROUPS))
    fmt_logit = _format_logit(progress)
    ans_logit = _answer_logit(progress)
    # Duplicate completions within a group: a sharper policy repeats itself more often.
    copy_p = 0.05 + 0.35 * progress
    entropy = 0.95 * math.exp(-0.5 * step / plan.steps) * math.exp(0.03 * z[1])
    kl = (0.001 + 0.05 * (step / plan.steps) ** 1.5) * math.exp(0.15 * z[0])
    clip = max(0.0, 0.001 + 0.004 * step / plan.steps + 0.001 * z[2])
    length_scale = 1.0 + 0.3 * progress
    spike_p, spike_size, grad_scale = 0.02, 1.0, 1.0

    if s is Scenario.REWARD_HACKING:
        fmt_logit += 8.0 * h
        ans_logit -= 5.0 * h
        kl *= 1.0 + 2.0 * h
        length_scale *= 1.0 - 0.5 * h  # short, well-formatted answers: nothing left to truncate
    elif s is Scenario.ENTROPY_COLLAPSE:
        copy_p += (1.0 - copy_p) * h
        entropy *= 1.0 - 0.97 * h
        kl *= 1.0 + 2.0 * h
    elif s is Scenario.KL_BLOWUP:
        kl += 3.0 * h * h * math.exp(0.1 * z[0])
        entropy += 0.8 * h
        clip += 0.3 * h
        fmt_logit -= 3.0 * h
        ans_logit -= 2.0 * h
        length_scale *= 1.0 + 1.0 * h
        spike_p, spike_size, grad_scale = 0.02 + 0.5 * h, 1.0 + 30.0 * h, 1.0 + 3.0 * h
    elif s is Scenario.ZERO_VARIANCE_GROUPS:
        copy_p += (0.97 - copy_p) * h
        difficulty = difficulty * (1.0 + 2.0 * h)
    elif s is Scenario.LENGTH_EXPLOSION:
        length_scale *= math.exp(h * math.log(8.0))
        kl *= 1.0 + h

    # Completion i of a group repeats the group's first completion with probability copy_p.
    source = np.where(u_copy < copy_p, 0, np.arange(G)[None, :])

    def same_as_source(draws: np.ndarray) -> np.ndarray:
        if draws.ndim == 3:
            return np.take_along_axis(draws, source[:, :, None], axis=1)
        return np.take_along_axis(draws, source, axis=1)

    u_exact, u_checks, skill_noise = same_as_source(u_exact), same_as_source(u_checks), same_as_source(skill_noise)
    u_correct, u_grade, u_numbers = same_as_source(u_correct), same_as_source(u_grade), same_as_source(u_numbers)
    length_noise = same_as_source(length_noise)

    # Completion lengths: per-prompt and per-completion log-normal factors; the limit truncates.
    median = 140.0 * length_scale
    raw_lengths = median * np.exp(0.35 * prompt_length_factor[:, None] + 0.3 * length_noise)
    lengths = np.clip(np.rint(raw_lengths), 8, plan.max_completion_length).astype(np.int64)
    truncated = lengths >= plan.max_completion_length

    # Format: exact layout, or each of the five tag checks passed with a probability that grows with skill.
    p_exact = _sigmoid(fmt_logit + 0.7 * prompt_format)[:, None]
    exact = (u_exact < p_exact) & ~truncated
    checks = exact[:, :, None] | (u_checks < (0.2 + 0.7 * p_exact)[:, :, None])
    checks[:, :, 3] &= ~truncated  # a truncated completion never closes </answer> ...
    checks[:, :, 4] &= ~truncated  # ... nor ends right after it
    format_exact = np.where(exact, 3.0, 0.0)
    format_approx = np.where(checks, 0.5, -0.5).sum(axis=2)

    # Answers: only an answer inside <answer>...</answer> can be graded.
    has_answer = checks[:, :, 2] & checks[:, :, 3]
    p_correct = _sigmoid(ans_logit - 2.2 * difficulty[:, None] + 0.5 * skill_noise)
    correct = has_answer & (u_correct < p_correct)
    near = has_answer & ~correct
    # A correct answer is written exactly (3) more often as the policy learns the expected form, else it only
    # matches after normalisation (1.5); a wrong one is sometimes a near miss (0.5, 0.25).
    p_exact_form = 0.8 + 0.18 * progress
    check_answer = np.where(correct, np.where(u_grade < p_exact_form, 3.0, 1.5),
                            np.where(near & (u_grade < 0.04), 0.5, np.where(near & (u_grade < 0.08), 0.25, -1.0)))
    number_match = (correct & (u_numbers < 0.97)) | (near & (u_numbers < 0.03))
    check_numbers = np.where(number_match, 1.5, 0.0)

    if s is Scenario.NONFINITE_REWARDS and h > 0:
        share = 0.03 + 0.12 * h
        check_answer = np.where(u_nonfinite < share, np.nan, check_answer)
        check_numbers = np.where(u_nonfinite > 1.0 - share / 2.0, np.inf, check_numbers)

    rewards = {"format_exact": format_exact, "format_approx": format_approx, "check_answer": check_answer,
               "check_numbers": check_numbers}

    # Group-normalised advantages from the combined reward (weights 1), as TRL computes them.
    combined = sum(np.where(np.isfinite(r), r, 0.0) for r in rewards.values())
    group_mean = combined.mean(axis=1, keepdims=True)
    group_std = combined.std(axis=1, ddof=1, keepdims=True)
    advantages = (combined - group_mean) / (group_std + 1e-4)
    signal_share = float((group_std[:, 0] > 0).mean())

    grad_norm = grad_scale * (0.02 + 0.4 * math.sqrt(signal_share) * math.exp(0.25 * z[3]))
    if u_spike < spike_p:
        grad_norm *= (3.0 + 5.0 * abs(z[4])) * spike_size
    loss = KL_BETA * kl + 0.02 * signal_share * z[5]

    eval_accuracy = None
    if step % plan.eval_every == 0:
        eval_set = _eval_difficulties(plan.seed) if eval_set is None else eval_set
        p_exact_eval = float(_sigmoid(fmt_logit))
        p_answer = p_exact_eval + (1.0 - p_exact_eval) * (0.2 + 0.7 * p_exact_eval) ** 2  # exact, or both answer tags
        p_right = float(np.mean(_sigmoid(ans_logit - 2.2 * eval_set)))
        truth = p_answer * p_right * (1.0 - float(truncated.mean()))
        noisy = truth + z[6] * math.sqrt(truth * (1.0 - truth) / EVAL_PROBLEMS)
        eval_accuracy = round(min(1.0, max(0.0, noisy)) * EVAL_PROBLEMS) / EVAL_PROBLEMS

    kwargs: dict[str, Any] = {
        "rewards_by_function": {name: rewards[name].reshape(-1) for name in (f.name for f in REWARD_FUNCTIONS)},
        "group_size": G,
        "kl": float(kl),
        "policy_entropy": float(max(entropy, 0.0)),
        "advantages": advantages.reshape(-1),
        "completion_lengths": lengths.reshape(-1),
        "max_completion_length": plan.max_completion_length,
        "clip_ratio": float(min(clip, 1.0)),
        "grad_norm": float(grad_norm),
        "loss": float(loss),
        "learning_rate": _learning_rate(step, plan.steps),
        "eval_accuracy": eval_accuracy,
        "tokens": int(G * prompt_tokens.sum() + lengths.sum()),
    }
    return SimulatedStep(step, kwargs, h)
