r"""Proximal gradient descent for L1-regularised objectives (ISTA), and the subgradient method it improves on.

For F(w) = f(w) + lambda ||w||_1 with f smooth and L-smooth, the proximal gradient step is

.. math::
    w_{t+1} = \operatorname{prox}_{\eta \lambda \|\cdot\|_1}\bigl(w_t - \eta \nabla f(w_t)\bigr), \qquad
    \operatorname{prox}_{\tau \|\cdot\|_1}(u)_i = \operatorname{sign}(u_i) \max(|u_i| - \tau, 0)

(ISTA; Daubechies, Defrise & De Mol 2004; Beck & Teboulle 2009, Sec. 2). With eta = 1/L it decreases F
monotonically and F(w_t) - F* <= L ||w_0 - w*||^2 / (2 t) (Beck & Teboulle 2009, Thm. 3.1). Soft thresholding
sets every coordinate with |u_i| <= eta lambda to exactly zero, so the iterates are sparse; the subgradient
method w - eta (grad f + lambda sign(w)) only oscillates around zero and (generically) never lands on it.

Example:
    >>> import torch
    >>> soft_threshold(torch.tensor([-3.0, 0.5, 2.0]), 1.0).tolist()
    [-2.0, 0.0, 1.0]
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from tdlab.optim._base import PerTensorOptimizer
from tdlab.optim._validation import check_nonnegative, check_positive


def soft_threshold(u: Tensor, threshold: float) -> Tensor:
    r"""The proximal operator of :math:`\tau \|\cdot\|_1`: :math:`\operatorname{sign}(u) \max(|u| - \tau, 0)`.

    Coordinates with |u_i| <= tau become exactly 0.

    Example:
        >>> soft_threshold(torch.tensor([0.5, 3.0]), 1.0).tolist()
        [0.0, 2.0]
    """
    check_nonnegative("threshold", threshold)
    return torch.sign(u) * torch.clamp(u.abs() - threshold, min=0.0)


def proximal_gradient_step(w: Tensor, g: Tensor, lr: float, l1: float) -> Tensor:
    r"""One ISTA step for f(w) + l1 ||w||_1 (Beck & Teboulle 2009, eq. 1.4 / Sec. 2).

    .. math:: w_{t+1} = \operatorname{sign}(u) \max(|u| - \eta \lambda, 0), \qquad u = w_t - \eta \nabla f(w_t)

    Example:
        >>> proximal_gradient_step(torch.tensor([1.0]), torch.tensor([1.0]), lr=0.5, l1=1.0).tolist()
        [0.0]
    """
    check_positive("lr", lr)
    check_nonnegative("l1", l1)
    return soft_threshold(w - lr * g, lr * l1)


def subgradient_l1_step(w: Tensor, g: Tensor, lr: float, l1: float) -> Tensor:
    r"""One subgradient step for f(w) + l1 ||w||_1, with the subgradient sign(0) = 0 at zero.

    .. math:: w_{t+1} = w_t - \eta \bigl(\nabla f(w_t) + \lambda \operatorname{sign}(w_t)\bigr)

    The comparison for ISTA: a coordinate whose optimum is 0 jumps across zero by about eta lambda each step
    instead of settling on it (Boyd, Xiao & Mutapcic 2003, "Subgradient methods").

    Example:
        >>> subgradient_l1_step(torch.tensor([0.125]), torch.tensor([0.0]), lr=1.0, l1=0.25).tolist()
        [-0.125]
    """
    check_positive("lr", lr)
    check_nonnegative("l1", l1)
    return w - lr * (g + l1 * torch.sign(w))


class ProximalGD(PerTensorOptimizer):
    r"""Proximal gradient descent with an L1 penalty (ISTA), usable in any training loop.

    .. math::
        &\textbf{input}: \eta \text{ (lr)}, \lambda \text{ (l1)}, \text{ parameters } w, \text{ smooth loss } f \\
        &\textbf{for } t = 1, 2, \dots: \\
        &\quad u \leftarrow w - \eta \nabla f(w) \\
        &\quad w \leftarrow \operatorname{sign}(u) \odot \max(|u| - \eta\lambda, 0)

    Beck & Teboulle (2009), "A fast iterative shrinkage-thresholding algorithm for linear inverse problems",
    SIAM J. Imaging Sci. 2(1). Call `loss.backward()` on the smooth part f only: the penalty lambda ||w||_1
    enters through the proximal step. With lr = 1/L (L the Lipschitz constant of grad f) each step decreases
    f + lambda ||w||_1. `l1` may differ between parameter groups (e.g. 0 for biases).

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([2.0, 0.1]))
        >>> opt = ProximalGD([w], lr=0.5, l1=0.5)
        >>> (0.5 * (w**2).sum()).backward()
        >>> opt.step()
        >>> w.detach().tolist()
        [0.75, 0.0]
    """

    def __init__(self, params: Iterable[Any], lr: float, l1: float = 0.0):
        super().__init__(params, {"lr": lr, "l1": l1})

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group, validating its `lr` and `l1` (the defaults' when the group does not set them)."""
        check_positive("lr", param_group.get("lr", self.defaults["lr"]))
        check_nonnegative("l1", param_group.get("l1", self.defaults["l1"]))
        super().add_param_group(param_group)

    def update(self, p: Tensor, grad: Tensor, group: dict[str, Any]) -> Tensor:
        return proximal_gradient_step(p, grad, group["lr"], group["l1"])
