r"""The first-order update rules exactly as the lectures write them, as pure functions and as optimisers.

Each rule is a pure function of one step: it takes the parameters `w` (any shape; all rules act coordinate by
coordinate), the gradient `g`, the rule's state (`None` before the first step) and its hyperparameters, and
returns the new parameters and the new state. Nothing is modified in place, so a trajectory is a plain loop:

    state = None
    for t in range(steps):
        w, state = adam_step(w, f.gradient(w), state, lr=0.1)

These references are the test oracle of the lectures' notation. `LectureMomentum`, `LectureNesterov`,
`LectureAdagrad`, `LectureRMSProp` and `LectureAdam` run them as `torch.optim` optimisers (registered as
"lecture-momentum", ... in `tdlab.optim.registry`), and each one's `torch_equivalent` builds the `torch.optim`
optimiser with the mapped hyperparameters. The mapping is exact (same iterates up to rounding) for every rule here;
`tests/test_optim.py` and the `optimizer-zoo` experiment check it to 1e-6 over 200 steps.

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
from typing import Any, NamedTuple

import torch
from torch import Tensor

from tdlab.optim._base import PerTensorOptimizer
from tdlab.optim._validation import check_in_interval, check_nonnegative, check_positive


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
    w: Tensor,
    g: Tensor,
    state: RMSPropState | None,
    lr: float,
    rho: float = 0.99,
    eps: float = 1e-8,
    eps_in_root: bool = False,
) -> tuple[Tensor, RMSPropState]:
    r"""One step of RMSProp (Tieleman & Hinton 2012, Coursera NN lecture 6.5).

    .. math::
        v_t = \rho\, v_{t-1} + (1 - \rho)\, g_t \odot g_t, \qquad
        w_t = w_{t-1} - \eta\, \frac{g_t}{\sqrt{v_t} + \epsilon}
        \quad \text{or} \quad w_t = w_{t-1} - \eta\, \frac{g_t}{\sqrt{\delta + v_t}} \ (\delta = \epsilon)

    (v_0 = 0; the second with `eps_in_root`). The first (epsilon outside the root) is Hinton's and
    `torch.optim.RMSprop(lr=eta, alpha=rho, eps=eps)`'s; the second, delta = `eps` inside the root, is the lectures'
    (Goodfellow, Bengio & Courville 2016, Alg. 8.5), which torch does not offer. They differ where v_t is of the
    order of eps or smaller.

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
    denominator = (eps + avg_sq).sqrt() if eps_in_root else avg_sq.sqrt() + eps
    return w - lr * g / denominator, RMSPropState(avg_sq)


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


# ------------------------------------------------------------------------------------------ as torch optimisers
class _Lecture(PerTensorOptimizer):
    """A pure rule `rule(w, g, state, lr, **hyperparameters) -> (w, state)` run as a `torch.optim.Optimizer`: each
    parameter tensor is one w, its rule state is kept in `self.state[p]` as plain tensors (the fields of the rule's
    state tuple), so `state_dict` and checkpoints work as for torch's optimisers."""

    rule: Any
    state_type: Any

    def __init__(self, params: Iterable[Any], lr: float, **hyperparameters: Any):
        self._keys = ("lr", *hyperparameters)  # the rule's arguments (torch adds keys of its own to the defaults)
        super().__init__(params, {"lr": lr, **hyperparameters})

    @classmethod
    def _validate(cls, lr: float, **hyperparameters: Any) -> None:
        """The rule's own checks ("lr: ...", "beta: ..."), run once on a dummy step."""
        cls.rule(torch.zeros(1), torch.zeros(1), None, lr, **hyperparameters)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group, validating its hyperparameters (the defaults' where the group does not set them)."""
        self._validate(**{key: param_group.get(key, self.defaults[key]) for key in self._keys})
        super().add_param_group(param_group)

    def update(self, p: Tensor, grad: Tensor, group: dict[str, Any]) -> Tensor:
        state = self.state[p]
        w, new = self.rule(p, grad, self.state_type(**state) if state else None, **self._hyper(group))
        state.update(new._asdict())
        return w

    def _hyper(self, group: dict[str, Any]) -> dict[str, Any]:
        return {key: group[key] for key in self._keys}


class LectureMomentum(_Lecture):
    r"""Momentum as the lectures write it, a smoothed gradient (`momentum_step`; Polyak 1964):

    .. math:: a_t = (1 - \beta)\, a_{t-1} + \beta\, g_t \ (a_0 = 0), \qquad w_t = w_{t-1} - \eta\, a_t

    torch's `SGD(lr=eta * beta, momentum=1 - beta, dampening=0)` has the same iterates (`torch_equivalent`; the
    module docstring derives the map): its buffer is a_t / beta.

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([1.0]))
        >>> opt = LectureMomentum([w], lr=1.0, beta=0.5)
        >>> w.grad = torch.tensor([1.0])
        >>> opt.step()
        >>> w.tolist(), opt.state[w]["a"].tolist()
        ([0.5], [0.5])
    """

    rule = staticmethod(momentum_step)
    state_type = MomentumState

    def __init__(self, params: Iterable[Any], lr: float, beta: float = 0.1):
        super().__init__(params, lr, beta=beta)

    @classmethod
    def torch_equivalent(cls, params: Iterable[Any], lr: float, beta: float = 0.1) -> torch.optim.Optimizer:
        cls._validate(lr, beta=beta)
        return torch.optim.SGD(params, lr=lr * beta, momentum=1 - beta, dampening=0)


class LectureNesterov(_Lecture):
    r"""Nesterov's accelerated gradient in the lectures' smoothed form (`nesterov_step`; Nesterov 1983,
    Sutskever et al. 2013):

    .. math::
        \tilde w_t = w_{t-1} - \eta (1 - \beta)\, a_{t-1}, \quad
        a_t = (1 - \beta)\, a_{t-1} + \beta\, \nabla f(\tilde w_t), \quad w_t = w_{t-1} - \eta\, a_t

    The gradient is taken at the look-ahead point, so the model's parameters hold the look-ahead points
    w~_{t+1} (where the next gradient is evaluated), and `self.state[p]["w"]` the lecture's iterate w_t. These
    look-ahead points are the iterates of torch's `SGD(lr=eta * beta, momentum=1 - beta, nesterov=True)`
    (`torch_equivalent`; exact for a constant eta, see the module docstring).

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([1.0]))
        >>> opt = LectureNesterov([w], lr=1.0, beta=0.5)
        >>> w.grad = torch.tensor([1.0])
        >>> opt.step()
        >>> opt.state[w]["w"].tolist(), w.tolist()  # w_1 = 1 - 0.5, look-ahead w_1 - 1 * 0.5 * 0.5
        ([0.5], [0.25])
    """

    rule = staticmethod(nesterov_step)
    state_type = MomentumState

    def __init__(self, params: Iterable[Any], lr: float, beta: float = 0.1):
        super().__init__(params, lr, beta=beta)

    def update(self, p: Tensor, grad: Tensor, group: dict[str, Any]) -> Tensor:
        state = self.state[p]
        previous = MomentumState(state["a"]) if state else None
        w, new = nesterov_step(state.get("w", p), grad, previous, **self._hyper(group))
        state.update(w=w, a=new.a)
        return nesterov_lookahead(w, new, **self._hyper(group))

    @classmethod
    def torch_equivalent(cls, params: Iterable[Any], lr: float, beta: float = 0.1) -> torch.optim.Optimizer:
        cls._validate(lr, beta=beta)
        return torch.optim.SGD(params, lr=lr * beta, momentum=1 - beta, nesterov=True)


class LectureAdagrad(_Lecture):
    r"""Adagrad as the lectures write it (`adagrad_step`; Duchi, Hazan & Singer 2011):

    .. math:: G_t = G_{t-1} + g_t \odot g_t, \qquad w_t = w_{t-1} - \eta\, g_t / (\sqrt{G_t} + \epsilon)

    The same rule as torch's `Adagrad(lr=eta, eps=eps)` (`torch_equivalent`; torch adds lr_decay and an initial
    accumulator, both 0 here).
    """

    rule = staticmethod(adagrad_step)
    state_type = AdagradState

    def __init__(self, params: Iterable[Any], lr: float, eps: float = 1e-10):
        super().__init__(params, lr, eps=eps)

    @classmethod
    def torch_equivalent(cls, params: Iterable[Any], lr: float, eps: float = 1e-10) -> torch.optim.Optimizer:
        cls._validate(lr, eps=eps)
        return torch.optim.Adagrad(params, lr=lr, eps=eps)


class LectureRMSProp(_Lecture):
    r"""RMSProp (`rmsprop_step`; Tieleman & Hinton 2012), with the epsilon outside or inside the root:

    .. math::
        r_t = \rho\, r_{t-1} + (1 - \rho)\, g_t \odot g_t, \qquad
        w_t = w_{t-1} - \eta\, \frac{g_t}{\sqrt{r_t} + \epsilon} \quad \text{or} \quad
        w_t = w_{t-1} - \eta\, \frac{g_t}{\sqrt{\delta + r_t}}

    The second, `eps_in_root=True` (delta = eps), is the lectures' form (Goodfellow, Bengio & Courville 2016,
    Alg. 8.5). torch's `RMSprop(lr=eta, alpha=rho, eps=eps)` uses the first (epsilon outside the root, Hinton's
    slides), the default here; `torch_equivalent` exists only for it.
    """

    rule = staticmethod(rmsprop_step)
    state_type = RMSPropState

    def __init__(
        self, params: Iterable[Any], lr: float, rho: float = 0.99, eps: float = 1e-8, eps_in_root: bool = False
    ):
        super().__init__(params, lr, rho=rho, eps=eps, eps_in_root=eps_in_root)

    @classmethod
    def torch_equivalent(
        cls, params: Iterable[Any], lr: float, rho: float = 0.99, eps: float = 1e-8, eps_in_root: bool = False
    ) -> torch.optim.Optimizer:
        cls._validate(lr, rho=rho, eps=eps)
        if eps_in_root:
            raise ValueError("eps_in_root: torch.optim.RMSprop puts eps outside the root; no equivalent")
        return torch.optim.RMSprop(params, lr=lr, alpha=rho, eps=eps)


class LectureAdam(_Lecture):
    r"""Adam as the lectures write it, with bias correction (`adam_step`; Kingma & Ba 2015, Algorithm 1):

    .. math::
        m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \quad v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2, \quad
        w_t = w_{t-1} - \eta\, \frac{m_t / (1 - \beta_1^t)}{\sqrt{v_t / (1 - \beta_2^t)} + \epsilon}

    The same rule as torch's `Adam(lr=eta, betas=betas, eps=eps)` (`torch_equivalent`), which orders the
    operations differently (equal to rounding).
    """

    rule = staticmethod(adam_step)
    state_type = AdamState

    def __init__(self, params: Iterable[Any], lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, lr, betas=tuple(betas), eps=eps)

    @classmethod
    def torch_equivalent(
        cls, params: Iterable[Any], lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
    ) -> torch.optim.Optimizer:
        cls._validate(lr, betas=betas, eps=eps)
        return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps)
