r"""SGD with decoupled weight decay (SGDW): the decay shrinks the weights outside the gradient step.

Loshchilov & Hutter (2019), "Decoupled weight decay regularization", ICLR, Algorithm 1 (SGD with momentum and
decoupled weight decay), in torch's parameterisation (the one of `torch.optim.AdamW`):

.. math::
    b_t = \mu b_{t-1} + g_t \;(b_1 = g_1), \qquad w_t = (1 - \eta \lambda)\, w_{t-1} - \eta\, b_t .

Without momentum this is exactly SGD on f + lambda/2 ||w||^2 (`torch.optim.SGD(weight_decay=lambda)`), whose
step is w - eta (g + lambda w): the per-step decay eta lambda of SGDW is an L2 coefficient lambda (their
Prop. 1, lambda' = decay / eta). With momentum, or with a preconditioner as in Adam, the two differ: the L2
gradient is accumulated in the buffer (and divided by sqrt(v)), the decoupled decay is not.

Example:
    >>> import torch
    >>> sgdw_step(torch.tensor([1.0]), torch.tensor([0.5]), lr=0.1, weight_decay=2.0).tolist()
    [0.75]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from tdlab.optim._base import evaluate
from tdlab.optim._validation import check_in_interval, check_nonnegative, check_positive
from tdlab.optim.multi_tensor import sgdw


def sgdw_step(w: Tensor, direction: Tensor, lr: float, weight_decay: float) -> Tensor:
    r"""One SGDW step :math:`w \leftarrow (1 - \eta\lambda) w - \eta\, d`, with d the gradient or the momentum
    buffer (Loshchilov & Hutter 2019, Algorithm 1, line 9).

    Example:
        >>> import torch
        >>> sgdw_step(torch.tensor([2.0]), torch.tensor([0.0]), lr=0.5, weight_decay=0.5).tolist()
        [1.5]
    """
    check_positive("lr", lr)
    check_nonnegative("weight_decay", weight_decay)
    return (1.0 - lr * weight_decay) * w - lr * direction


class SGDW(torch.optim.Optimizer):
    r"""SGD (optionally with heavy-ball momentum) and decoupled weight decay.

    .. math::
        &\textbf{input}: \eta \text{ (lr)}, \lambda \text{ (weight\_decay)}, \mu \text{ (momentum)} \\
        &\textbf{for } t = 1, 2, \dots: \\
        &\quad b_t \leftarrow \mu b_{t-1} + g_t \quad (b_1 = g_1;\ b_t = g_t \text{ if } \mu = 0) \\
        &\quad w_t \leftarrow (1 - \eta\lambda)\, w_{t-1} - \eta\, b_t

    Loshchilov & Hutter (2019), Algorithm 1. The buffer is torch's (`torch.optim.SGD` with dampening 0), so
    with weight_decay = 0 this is `torch.optim.SGD(lr, momentum)` step for step. The step is the multi-tensor rule
    `tdlab.optim.multi_tensor.sgdw`, which the ensembles run on stacked members.

    Example:
        >>> import torch
        >>> w = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
        >>> opt = SGDW([w], lr=0.1, weight_decay=1.0)
        >>> (0.5 * (w**2).sum()).backward()
        >>> opt.step()
        >>> round(w.item(), 12)  # (1 - 0.1) * 1 - 0.1 * 1
        0.8
    """

    def __init__(self, params: Iterable[Any], lr: float, weight_decay: float = 0.0, momentum: float = 0.0):
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay, "momentum": momentum})

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group, validating its `lr`, `weight_decay` and `momentum` (the defaults' when unset)."""
        check_positive("lr", param_group.get("lr", self.defaults["lr"]))
        check_nonnegative("weight_decay", param_group.get("weight_decay", self.defaults["weight_decay"]))
        check_in_interval(
            "momentum", param_group.get("momentum", self.defaults["momentum"]), 0.0, 1.0, closed_high=False
        )
        super().add_param_group(param_group)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One step; `closure` re-evaluates the loss (and calls backward) if given."""
        loss = evaluate(closure)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                lrs = [group["lr"]] * len(params)
                slots = [self.state[p] for p in params]
                sgdw(params, [p.grad for p in params], slots, lrs, 0, group["weight_decay"], group["momentum"])
        return loss
