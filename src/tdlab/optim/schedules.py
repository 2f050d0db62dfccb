r"""Learning-rate schedules of the lectures, as functions of the step and as `LambdaLR` factors.

A schedule is a callable object `factor(t)` giving eta_t / eta_0 at step t = 0, 1, 2, ...; it is both

- a function of t (integers or NumPy arrays of them): `eta0 * schedule(t)`, or `learning_rates(schedule, eta0,
  steps)` for the whole sequence; and
- a `torch.optim.lr_scheduler.LambdaLR` factor: `LambdaLR(optimizer, schedule)` sets lr = base_lr * schedule(t)
  after t calls of `scheduler.step()`. Schedules are frozen dataclasses, so `LambdaLR.state_dict()` saves them.

| schedule | eta_t | torch equivalent |
| --- | --- | --- |
| `PowerDecay(t0, p)` | eta0 / (1 + t / t0)^p | none (Robbins & Monro 1951; Bottou et al. 2018) |
| `ExponentialDecay(gamma)` | eta0 gamma^t | `ExponentialLR(gamma)` |
| `PiecewiseConstant(milestones, factors)` | eta0 factors[#{m <= t}] | `MultiStepLR` (factors gamma^i) |
| `CosineDecay(steps)` | eta0 (1 + cos(pi min(t, T) / T)) / 2 | `CosineAnnealingLR(T, eta_min=0)` |
| `Constant()` | eta0 | none needed |

Example:
    >>> import torch
    >>> w = torch.zeros(1, requires_grad=True)
    >>> opt = torch.optim.SGD([w], lr=0.1)
    >>> scheduler = torch.optim.lr_scheduler.LambdaLR(opt, PowerDecay(t0=10.0, p=1.0))
    >>> for _ in range(10):
    ...     opt.step()
    ...     scheduler.step()
    >>> round(opt.param_groups[0]["lr"], 12)  # 0.1 / (1 + 10 / 10)
    0.05
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from tdlab.optim._validation import check_in_interval, check_nonnegative, check_positive


@dataclass(frozen=True)
class PowerDecay:
    r"""Power-law decay :math:`\eta_t = \eta_0 / (1 + t / t_0)^p`.

    Flat for t << t0, then eta0 (t0 / t)^p. With 1/2 < p <= 1 the steps satisfy the Robbins-Monro conditions
    sum eta_t = inf, sum eta_t^2 < inf (Robbins & Monro 1951; Bottou, Curtis & Nocedal 2018, Thm. 4.7 for p = 1).

    Example:
        >>> PowerDecay(t0=4.0, p=0.5)(12)
        0.5
    """

    t0: float
    p: float

    def __post_init__(self) -> None:
        check_positive("t0", self.t0)
        check_nonnegative("p", self.p)

    def __call__(self, t: ArrayLike) -> float | np.ndarray:
        return _scalar_or_array((1.0 + np.asarray(t, dtype=np.float64) / self.t0) ** (-self.p))


@dataclass(frozen=True)
class ExponentialDecay:
    r"""Exponential decay :math:`\eta_t = \eta_0 \gamma^t` (as `torch.optim.lr_scheduler.ExponentialLR`).

    Example:
        >>> ExponentialDecay(gamma=0.5)(3)
        0.125
    """

    gamma: float

    def __post_init__(self) -> None:
        check_in_interval("gamma", self.gamma, 0.0, 1.0, closed_high=True)

    def __call__(self, t: ArrayLike) -> float | np.ndarray:
        return _scalar_or_array(self.gamma ** np.asarray(t, dtype=np.float64))


@dataclass(frozen=True)
class PiecewiseConstant:
    r"""Step decay: :math:`\eta_t = \eta_0 \, c_k` with k = #{milestones m <= t}.

    `milestones` are increasing steps; `factors` has one more entry than `milestones` (c_0 for t below the first
    milestone, usually 1). With factors gamma^0, gamma^1, ... this is `torch.optim.lr_scheduler.MultiStepLR`
    (see `PiecewiseConstant.multistep`).

    Example:
        >>> schedule = PiecewiseConstant(milestones=(10, 20), factors=(1.0, 0.1, 0.01))
        >>> [schedule(t) for t in (0, 9, 10, 25)]
        [1.0, 1.0, 0.1, 0.01]
    """

    milestones: tuple[int, ...]
    factors: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        object.__setattr__(self, "factors", tuple(float(c) for c in self.factors))
        if any(b <= a for a, b in zip(self.milestones, self.milestones[1:], strict=False)) or any(
            m < 0 for m in self.milestones
        ):
            raise ValueError(f"milestones: expected strictly increasing steps >= 0, got {self.milestones}")
        if len(self.factors) != len(self.milestones) + 1:
            raise ValueError(
                f"factors: expected {len(self.milestones) + 1} values (one more than milestones), "
                f"got {len(self.factors)}"
            )
        for c in self.factors:
            check_nonnegative("factors", c)

    @classmethod
    def multistep(cls, milestones: tuple[int, ...], gamma: float = 0.1) -> PiecewiseConstant:
        """The schedule of `MultiStepLR(milestones, gamma)`: factors gamma^0, gamma^1, ...

        Example:
            >>> PiecewiseConstant.multistep((5,), gamma=0.5).factors
            (1.0, 0.5)
        """
        return cls(tuple(milestones), tuple(gamma**k for k in range(len(milestones) + 1)))

    def __call__(self, t: ArrayLike) -> float | np.ndarray:
        k = np.searchsorted(np.asarray(self.milestones), np.asarray(t), side="right")
        return _scalar_or_array(np.asarray(self.factors)[k])


@dataclass(frozen=True)
class CosineDecay:
    r"""Cosine decay to zero over `steps` steps: :math:`\eta_t = \eta_0 (1 + \cos(\pi \min(t, T) / T)) / 2`
    (Loshchilov & Hutter 2017, SGDR without restarts).

    Example:
        >>> CosineDecay(steps=10)(5)
        0.5
    """

    steps: int

    def __post_init__(self) -> None:
        check_positive("steps", self.steps)

    def __call__(self, t: ArrayLike) -> float | np.ndarray:
        t = np.minimum(np.asarray(t, dtype=np.float64), self.steps)
        return _scalar_or_array(0.5 * (1.0 + np.cos(np.pi * t / self.steps)))


@dataclass(frozen=True)
class Constant:
    """The constant schedule eta_t = eta_0.

    Example:
        >>> Constant()(7)
        1.0
    """

    def __call__(self, t: ArrayLike) -> float | np.ndarray:
        return _scalar_or_array(np.ones_like(np.asarray(t, dtype=np.float64)))


Schedule = PowerDecay | ExponentialDecay | PiecewiseConstant | CosineDecay | Constant


def learning_rates(schedule: Schedule, eta0: float, steps: int) -> np.ndarray:
    """The learning rates eta_0, ..., eta_{steps - 1} of `schedule` started at `eta0`.

    Example:
        >>> learning_rates(ExponentialDecay(0.5), eta0=1.0, steps=3).tolist()
        [1.0, 0.5, 0.25]
    """
    check_positive("eta0", eta0)
    if steps < 0:
        raise ValueError(f"steps: expected an integer >= 0, got {steps}")
    return eta0 * np.asarray(schedule(np.arange(steps)), dtype=np.float64)


def _scalar_or_array(x: np.ndarray) -> float | np.ndarray:
    return float(x) if x.ndim == 0 else x
