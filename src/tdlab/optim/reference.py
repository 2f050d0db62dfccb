r"""The first-order update rules exactly as the lectures write them, and their `torch.optim` equivalents.

Each rule is a pure function of one step: it takes the parameters `w` (any shape; all rules act coordinate by
coordinate), the gradient `g`, the rule's state (`None` before the first step) and its hyperparameters, and
returns the new parameters and the new state. Nothing is modified in place, so a trajectory is a plain loop:

    state = None
    for t in range(steps):
        w, state = adam_step(w, f.gradient(w), state, lr=0.1)

These references are the test oracle of the lectures' notation; for training use `torch.optim`, whose
hyperparameters `torch_optimizer` maps from the lecture's. The mapping is exact (same iterates up to rounding)
for every rule here; `tests/test_optim.py` and the `optimizer-zoo` experiment check it to 1e-6 over 200 steps.

Momentum: the lecture's smoothed gradient and torch's buffer
------------------------------------------------------------
The lectures write momentum as an exponentially smoothed gradient (a_0 = 0):

    a_t = (1 - beta) a_{t-1} + beta g_t,        w_t = w_{t-1} - eta a_t.

`torch.optim.SGD(lr, momentum=mu, dampening=tau)` keeps a buffer b initialised to the first gradient:

    b_1 = g_1,   b_t = mu b_{t-1} + (1 - tau) g_t  (t >= 2),        w_t = w_{t-1} - lr b_t.

Look for a constant c with a_t = c b_t. The recursions agree for t >= 2 iff mu = 1 - beta and c (1 - tau) = beta;
the first step agrees iff a_1 = beta g_1 = c b_1 = c g_1, i.e. c = beta, hence tau = 0. So

    lr = eta * beta,   momentum = 1 - beta,   dampening = 0      (a_t = beta b_t for all t >= 1)

reproduces the lecture's iterates exactly, also under a learning-rate schedule eta_t (take lr_t = eta_t beta).
It is not exact if beta changes during training (then b_t = a_t / beta_t needs momentum
(1 - beta_t) beta_{t-1} / beta_t at step t). The tempting choice lr = eta, momentum = dampening = 1 - beta
(c = 1) is NOT exact: torch skips the dampening on the first step, b_1 = g_1 instead of beta g_1, and the error
b_t - a_t = (1 - beta)^t g_1 leaves a permanent offset eta (1 - beta) / beta * g_1 in the parameters
(before the dynamics' own contraction).

Nesterov: look-ahead form and torch's reparameterisation
--------------------------------------------------------
In the same smoothed notation, Nesterov's accelerated gradient (Nesterov 1983, in the form of Sutskever et al.
2013) evaluates the gradient at the look-ahead point w~_t = w_{t-1} - eta (1 - beta) a_{t-1}:

    a_t = (1 - beta) a_{t-1} + beta grad f(w~_t),        w_t = w_{t-1} - eta a_t.

`SGD(lr, momentum=mu, nesterov=True)` does b_t = mu b_{t-1} + g_t, u_t = u_{t-1} - lr (g_t + mu b_t) with g_t the
gradient at its own iterate u_{t-1}. With u_t = w_t - eta mu a_t (the next look-ahead point), b_t = a_t / beta,
lr = eta beta and mu = 1 - beta, substituting gives back the lecture's recursion; so torch's parameters are the
look-ahead points `nesterov_lookahead(w_t, a_t)`, not w_t, and the mapping is exact for beta constant.

Example:
    >>> import torch
    >>> w = torch.tensor([1.0, -2.0], dtype=torch.float64)
    >>> w1, state = momentum_step(w, 2 * w, None, lr=0.1, beta=0.5)
    >>> w1.tolist(), state.a.tolist()
    ([0.9, -1.8], [1.0, -2.0])
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import torch
from torch import Tensor

from tdlab.optim._validation import check_in_interval, check_nonnegative, check_positive

METHODS = ("gd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")


class MomentumState(NamedTuple):
    """The smoothed gradient a (also the state of Nesterov's method)."""

    a: Tensor


class AdagradState(NamedTuple):
    """The accumulated squared gradients G = sum_s g_s^2."""

    sum_sq: Tensor


class RMSPropState(NamedTuple):
    """The decaying average of squared gradients v."""

    avg_sq: Tensor


class AdamState(NamedTuple):
    """The step count t and the first and second moment estimates m, v (before bias correction)."""

    step: int
    m: Tensor
    v: Tensor


def gd_step(w: Tensor, g: Tensor, lr: float) -> Tensor:
    r"""One step of gradient descent (Cauchy 1847).

    .. math:: w_t = w_{t-1} - \eta\, g_t

    Example:
        >>> gd_step(torch.tensor([1.0]), torch.tensor([2.0]), lr=0.25).tolist()
        [0.5]
    """
    check_positive("lr", lr)
    return w - lr * g


def momentum_step(
    w: Tensor, g: Tensor, state: MomentumState | None, lr: float, beta: float = 0.1
) -> tuple[Tensor, MomentumState]:
    r"""One step of momentum as a smoothed gradient (heavy ball, Polyak 1964, in the lectures' form).

    .. math::
        a_0 = 0, \qquad a_t = (1 - \beta)\, a_{t-1} + \beta\, g_t, \qquad w_t = w_{t-1} - \eta\, a_t

    beta = 1 is gradient descent; small beta averages over about 1/beta past gradients. Equivalent to
    `torch.optim.SGD(lr=eta * beta, momentum=1 - beta, dampening=0)` (see the module docstring).

    Example:
        >>> w, s = momentum_step(torch.tensor([1.0]), torch.tensor([1.0]), None, lr=1.0, beta=0.5)
        >>> w, s = momentum_step(w, torch.tensor([1.0]), s, lr=1.0, beta=0.5)
        >>> w.tolist(), s.a.tolist()
        ([-0.25], [0.75])
    """
    check_positive("lr", lr)
    check_in_interval("beta", beta, 0.0, 1.0, closed_high=True)
    if beta == 0:
        raise ValueError(f"beta: expected a number in (0, 1], got {beta!r}")
    a = beta * g if state is None else (1 - beta) * state.a + beta * g
    return w - lr * a, MomentumState(a)


def nesterov_lookahead(w: Tensor, state: MomentumState | None, lr: float, beta: float = 0.1) -> Tensor:
    r"""The point where Nesterov's method evaluates the next gradient: :math:`w - \eta (1 - \beta) a`.

    These look-ahead points are the iterates of `torch.optim.SGD(..., nesterov=True)`.

    Example:
        >>> w = torch.tensor([1.0])
        >>> nesterov_lookahead(w, MomentumState(torch.tensor([2.0])), lr=0.5, beta=0.5).tolist()
        [0.5]
    """
    if state is None:
        return w
    return w - lr * (1 - beta) * state.a


def nesterov_step(
    w: Tensor, g_lookahead: Tensor, state: MomentumState | None, lr: float, beta: float = 0.1
) -> tuple[Tensor, MomentumState]:
    r"""One step of Nesterov's accelerated gradient in smoothed form (Nesterov 1983; Sutskever et al. 2013).

    .. math::
        \tilde w_t = w_{t-1} - \eta (1 - \beta)\, a_{t-1}, \qquad
        a_t = (1 - \beta)\, a_{t-1} + \beta\, \nabla f(\tilde w_t), \qquad w_t = w_{t-1} - \eta\, a_t

    `g_lookahead` must be the gradient at `nesterov_lookahead(w, state, lr, beta)`. Equivalent to
    `torch.optim.SGD(lr=eta * beta, momentum=1 - beta, nesterov=True)`, whose iterates are the look-ahead points.

    Example:
        >>> grad = lambda w: 2 * w  # f(w) = |w|^2
        >>> w, s = torch.tensor([1.0]), None
        >>> for _ in range(2):
        ...     w, s = nesterov_step(w, grad(nesterov_lookahead(w, s, 0.25, 0.5)), s, lr=0.25, beta=0.5)
        >>> w.tolist()
        [0.46875]
    """
    return momentum_step(w, g_lookahead, state, lr, beta)


def adagrad_step(
    w: Tensor, g: Tensor, state: AdagradState | None, lr: float, eps: float = 1e-10
) -> tuple[Tensor, AdagradState]:
    r"""One step of Adagrad (Duchi, Hazan & Singer 2011, diagonal version).

    .. math::
        G_t = G_{t-1} + g_t \odot g_t, \qquad w_t = w_{t-1} - \eta\, \frac{g_t}{\sqrt{G_t} + \epsilon}

    (coordinate-wise, G_0 = 0). Under a constant gradient the step is eta |g| / (sqrt(t) |g| + eps): it shrinks
    as 1 / sqrt(t). Equivalent to `torch.optim.Adagrad(lr=eta, eps=eps)`.

    Example:
        >>> w, s = adagrad_step(torch.tensor([0.0]), torch.tensor([3.0]), None, lr=1.0, eps=0.0)
        >>> w, s = adagrad_step(w, torch.tensor([4.0]), s, lr=2.5, eps=0.0)
        >>> w.tolist(), s.sum_sq.tolist()
        ([-3.0], [25.0])
    """
    check_positive("lr", lr)
    check_nonnegative("eps", eps)
    sum_sq = g * g if state is None else state.sum_sq + g * g
    return w - lr * g / (sum_sq.sqrt() + eps), AdagradState(sum_sq)


def rmsprop_step(
    w: Tensor, g: Tensor, state: RMSPropState | None, lr: float, rho: float = 0.99, eps: float = 1e-8
) -> tuple[Tensor, RMSPropState]:
    r"""One step of RMSProp (Tieleman & Hinton 2012, Coursera NN lecture 6.5).

    .. math::
        v_t = \rho\, v_{t-1} + (1 - \rho)\, g_t \odot g_t, \qquad
        w_t = w_{t-1} - \eta\, \frac{g_t}{\sqrt{v_t} + \epsilon}

    (v_0 = 0). Equivalent to `torch.optim.RMSprop(lr=eta, alpha=rho, eps=eps)`.

    Example:
        >>> w, s = rmsprop_step(torch.tensor([0.0]), torch.tensor([2.0]), None, lr=0.25, rho=0.75, eps=0.0)
        >>> w.tolist(), s.avg_sq.tolist()
        ([-0.5], [1.0])
    """
    check_positive("lr", lr)
    check_in_interval("rho", rho, 0.0, 1.0, closed_high=False)
    check_nonnegative("eps", eps)
    previous = torch.zeros_like(g) if state is None else state.avg_sq
    avg_sq = rho * previous + (1 - rho) * g * g
    return w - lr * g / (avg_sq.sqrt() + eps), RMSPropState(avg_sq)


def adam_step(
    w: Tensor,
    g: Tensor,
    state: AdamState | None,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> tuple[Tensor, AdamState]:
    r"""One step of Adam with bias correction (Kingma & Ba 2015, Algorithm 1).

    .. math::
        m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t \odot g_t, \quad
        \hat m_t = \frac{m_t}{1 - \beta_1^t}, \quad \hat v_t = \frac{v_t}{1 - \beta_2^t}, \quad
        w_t = w_{t-1} - \eta\, \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}

    (m_0 = v_0 = 0). Multiplying the gradient coordinate-wise by d > 0 multiplies m_t by d and sqrt(v_t) by d, so
    the update is unchanged up to the epsilon: Adam is invariant to a diagonal rescaling of the gradient.
    Equivalent to `torch.optim.Adam(lr=eta, betas=betas, eps=eps)`.

    Example:
        >>> w, s = adam_step(torch.tensor([1.0]), torch.tensor([5.0]), None, lr=0.25, eps=0.0)
        >>> w.tolist(), s.step  # the first step is lr * sign(g)
        ([0.75], 1)
    """
    check_positive("lr", lr)
    beta1, beta2 = betas
    check_in_interval("betas[0]", beta1, 0.0, 1.0, closed_high=False)
    check_in_interval("betas[1]", beta2, 0.0, 1.0, closed_high=False)
    check_nonnegative("eps", eps)
    if state is None:
        state = AdamState(0, torch.zeros_like(g), torch.zeros_like(g))
    t = state.step + 1
    m = beta1 * state.m + (1 - beta1) * g
    v = beta2 * state.v + (1 - beta2) * g * g
    m_hat = m / (1 - beta1**t)
    v_hat = v / (1 - beta2**t)
    return w - lr * m_hat / (v_hat.sqrt() + eps), AdamState(t, m, v)


def torch_optimizer(
    method: str, params: Iterable[Tensor], lr: float, **hyperparameters: float
) -> torch.optim.Optimizer:
    """The `torch.optim` optimiser whose iterates equal the lecture rule `method` with these hyperparameters.

    `hyperparameters` are the lecture's: `beta` for momentum and Nesterov, `eps` for Adagrad, `rho` and `eps`
    for RMSProp, `betas` and `eps` for Adam (defaults as in the step functions). For Nesterov the torch
    iterates are the look-ahead points (see the module docstring).

    | lecture | torch.optim |
    | --- | --- |
    | gd(eta) | SGD(lr=eta) |
    | momentum(eta, beta) | SGD(lr=eta * beta, momentum=1 - beta, dampening=0) |
    | nesterov(eta, beta) | SGD(lr=eta * beta, momentum=1 - beta, nesterov=True) |
    | adagrad(eta, eps) | Adagrad(lr=eta, eps=eps) |
    | rmsprop(eta, rho, eps) | RMSprop(lr=eta, alpha=rho, eps=eps) |
    | adam(eta, betas, eps) | Adam(lr=eta, betas=betas, eps=eps) |

    Example:
        >>> w = torch.zeros(2, requires_grad=True)
        >>> opt = torch_optimizer("momentum", [w], lr=0.5, beta=0.1)
        >>> opt.param_groups[0]["lr"], opt.param_groups[0]["momentum"]
        (0.05, 0.9)
    """
    check_positive("lr", lr)
    allowed = {
        "gd": set(),
        "momentum": {"beta"},
        "nesterov": {"beta"},
        "adagrad": {"eps"},
        "rmsprop": {"rho", "eps"},
        "adam": {"betas", "eps"},
    }
    if method not in allowed:
        raise ValueError(f"method: expected one of {', '.join(map(repr, METHODS))}, got {method!r}")
    unknown = set(hyperparameters) - allowed[method]
    if unknown:
        raise ValueError(f"hyperparameters: {method} takes {sorted(allowed[method]) or 'none'}, got {sorted(unknown)}")
    params = list(params)
    h = hyperparameters
    if method == "gd":
        return torch.optim.SGD(params, lr=lr)
    if method in ("momentum", "nesterov"):
        beta = h.get("beta", 0.1)
        check_in_interval("beta", beta, 0.0, 1.0, closed_high=method == "momentum")
        return torch.optim.SGD(params, lr=lr * beta, momentum=1 - beta, dampening=0, nesterov=method == "nesterov")
    if method == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, eps=h.get("eps", 1e-10))
    if method == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=h.get("rho", 0.99), eps=h.get("eps", 1e-8))
    return torch.optim.Adam(params, lr=lr, betas=h.get("betas", (0.9, 0.999)), eps=h.get("eps", 1e-8))
