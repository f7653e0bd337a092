"""What a failure does to a simulated step: the levers of the model and the effects that move them.

The simulator (rewardscope.simulation.scenarios) computes, every step, a handful of
*levers* from the healthy model (``Levers``: the log-odds of exact format and of a
correct answer, the share of duplicated completions, KL, entropy, the length scale,
...). A scenario is a row of effects (``Effect``) applied to those levers with the
failure's severity ``h`` (0 before the onset, up to the scenario's strength); then the
levers are turned into rewards, lengths and training scalars. Adding a scenario is
adding a row of effects, not a branch in the generator.

Operations, with ``h`` the severity at this step:

- ``add``:    lever + amount * h**power
- ``scale``:  lever * (1 + amount * h)
- ``grow``:   lever * amount**h         (a geometric growth: x8 at full strength)
- ``toward``: lever + (amount - lever) * h   (moves the lever to ``amount``)

``after_ramps`` delays an effect by that many ramps after the onset: a compound failure
(hacking, then entropy collapse) is two rows of effects, the second delayed.

Usage::

    from rewardscope.simulation.effects import Effect, Levers, apply_effects
    levers = Levers(fmt_logit=0.5, ans_logit=-1.0, copy_p=0.1, entropy=0.9, kl=0.01, clip=0.002, length_scale=1.0)
    apply_effects(levers, (Effect("kl", "add", 3.0, power=2),), lambda delay: 0.5)
    levers.kl   # 0.76
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

_OPS = ("add", "scale", "grow", "toward")


@dataclass
class Levers:
    """The quantities of one step that scenarios move (see the simulator for how each is used)."""

    fmt_logit: float  # log-odds of an exactly formatted completion (prompt of average format difficulty)
    ans_logit: float  # log-odds of a correct answer (prompt of average difficulty)
    copy_p: float  # probability that a completion repeats its group's first completion
    entropy: float  # policy entropy before its noise factor
    kl: float  # KL before its noise factor
    clip: float  # clip ratio
    length_scale: float  # multiplies the median completion length
    difficulty_scale: float = 1.0  # multiplies every prompt's latent difficulty
    spike_p: float = 0.02  # probability of a grad-norm spike
    spike_size: float = 1.0
    grad_scale: float = 1.0
    nonfinite_share: float = 0.0  # share of check_answer rewards that are NaN (half as many check_numbers are +inf)
    length_coupling: float = 0.0  # log-odds of exact format gained per standard deviation of completion length


@dataclass(frozen=True)
class Effect:
    """One change a scenario makes to one lever, scaled by the failure's severity."""

    lever: str
    op: str
    amount: float
    power: float = 1.0
    after_ramps: int = 0

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(f"unknown effect operation {self.op!r}; known: {', '.join(_OPS)}")
        if self.lever not in Levers.__dataclass_fields__:
            raise ValueError(f"unknown lever {self.lever!r}")

    def apply(self, levers: Levers, h: float) -> None:
        if h <= 0.0:
            return
        value = getattr(levers, self.lever)
        if self.op == "add":
            value += self.amount * h ** self.power
        elif self.op == "scale":
            value *= 1.0 + self.amount * h
        elif self.op == "grow":
            value *= self.amount ** h
        else:
            value += (self.amount - value) * h
        setattr(levers, self.lever, value)


def apply_effects(levers: Levers, effects: Sequence[Effect], severity: Callable[[int], float]) -> None:
    """Apply each effect with ``severity(after_ramps)``, the severity of the failure delayed that many ramps."""
    for effect in effects:
        effect.apply(levers, severity(effect.after_ramps))
