r"""Multi-tensor forms of update rules: one `torch._foreach_*` call per operation over all parameter tensors.

A rule is `rule(ws, gs, slots, lrs, step, **hyperparameters)`: it updates the tensors `ws` in place (no autograd)
from the gradients `gs`, keeping its state in the dicts `slots` (one per tensor, in `torch.optim`'s layout:
"momentum_buffer", "exp_avg", "exp_avg_sq"), with `lrs[i]` the learning rate of `ws[i]` and `step` = 1, 2, ... the
step being taken. `lrs[i]` is a float, or any tensor that broadcasts against `ws[i]`: the ensemble
(`tdlab.ensemble`) stacks N members along a leading dimension and passes one learning rate per member, shape
(N, 1, ..., 1). The registry (`tdlab.optim.registry`) attaches each rule to its optimiser; `tests/test_optim.py`
checks every rule against that optimiser member by member.

sgd (`torch.optim.SGD`, Sutskever et al. 2013 form):
    g <- g + lambda w;  b_1 = g_1, b_t = mu b_{t-1} + (1 - tau) g_t;  d = g + mu b (Nesterov) or b;  w <- w - eta d.
adam / adamw (`torch.optim.Adam`, Kingma & Ba 2015; `torch.optim.AdamW`, Loshchilov & Hutter 2019):
    g <- g + lambda w (Adam) or w <- (1 - eta lambda) w (AdamW);  m <- beta1 m + (1 - beta1) g;
    v <- beta2 v + (1 - beta2) g^2;  w <- w - eta / (1 - beta1^t) m / (sqrt(v) / sqrt(1 - beta2^t) + eps).
sgdw (`tdlab.optim.SGDW`, Loshchilov & Hutter 2019, Alg. 1): b as SGD's (tau = 0);  w <- (1 - eta lambda) w - eta b.
    This one is also the step of the `SGDW` class itself, so its ensemble form and its class are one definition.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

LR = float | Tensor


class MultiTensorRule(NamedTuple):
    """A multi-tensor rule and whether `torch.optim` keeps a "step" count in its per-parameter state (Adam does,
    SGD does not): the ensemble writes members' checkpoints in the optimiser's own layout."""

    update: Callable[..., None]
    step_in_state: bool = False


def _momentum(gs: list[Tensor], slots: list[dict[str, Tensor]], momentum: float, dampening: float) -> list[Tensor]:
    """torch's buffer b_1 = g_1, b_t = mu b_{t-1} + (1 - tau) g_t; returns the buffers."""
    if "momentum_buffer" not in slots[0]:
        for slot, g in zip(slots, gs, strict=True):
            slot["momentum_buffer"] = g.detach().clone()
    else:
        buffers = [slot["momentum_buffer"] for slot in slots]
        torch._foreach_mul_(buffers, momentum)
        torch._foreach_add_(buffers, gs, alpha=1 - dampening)
    return [slot["momentum_buffer"] for slot in slots]


def sgd(
    ws: list[Tensor],
    gs: list[Tensor],
    slots: list[dict[str, Tensor]],
    lrs: list[LR],
    step: int,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
) -> None:
    """`torch.optim.SGD` (see the module docstring)."""
    if weight_decay:
        gs = torch._foreach_add(gs, ws, alpha=weight_decay)
    if momentum:
        buffers = _momentum(gs, slots, momentum, dampening)
        gs = torch._foreach_add(gs, buffers, alpha=momentum) if nesterov else buffers
    torch._foreach_sub_(ws, torch._foreach_mul(gs, lrs))


def adam(
    ws: list[Tensor],
    gs: list[Tensor],
    slots: list[dict[str, Tensor]],
    lrs: list[LR],
    step: int,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
) -> None:
    """`torch.optim.Adam` (and AdamW with `decoupled_weight_decay`; see the module docstring)."""
    beta1, beta2 = betas
    if decoupled_weight_decay:
        torch._foreach_mul_(ws, [1 - lr * weight_decay for lr in lrs])
    elif weight_decay:
        gs = torch._foreach_add(gs, ws, alpha=weight_decay)
    ms = [slot.setdefault("exp_avg", torch.zeros_like(w)) for slot, w in zip(slots, ws, strict=True)]
    vs = [slot.setdefault("exp_avg_sq", torch.zeros_like(w)) for slot, w in zip(slots, ws, strict=True)]
    torch._foreach_lerp_(ms, gs, 1 - beta1)
    torch._foreach_mul_(vs, beta2)
    torch._foreach_addcmul_(vs, gs, gs, value=1 - beta2)
    bias1, bias2 = 1 - beta1**step, 1 - beta2**step
    denominators = torch._foreach_sqrt(vs)
    torch._foreach_div_(denominators, bias2**0.5)
    torch._foreach_add_(denominators, eps)
    steps = torch._foreach_mul(ms, [lr / bias1 for lr in lrs])
    torch._foreach_div_(steps, denominators)
    torch._foreach_sub_(ws, steps)


def adamw(
    ws: list[Tensor],
    gs: list[Tensor],
    slots: list[dict[str, Tensor]],
    lrs: list[LR],
    step: int,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.01,
) -> None:
    """`torch.optim.AdamW`: Adam with decoupled weight decay (default 0.01, as torch's)."""
    adam(ws, gs, slots, lrs, step, betas, eps, weight_decay, decoupled_weight_decay=True)


def sgdw(
    ws: list[Tensor],
    gs: list[Tensor],
    slots: list[dict[str, Tensor]],
    lrs: list[LR],
    step: int,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
) -> None:
    r"""SGD with decoupled weight decay: :math:`w \leftarrow (1 - \eta\lambda) w - \eta b` (`tdlab.optim.SGDW`)."""
    directions = _momentum(gs, slots, momentum, 0.0) if momentum else gs
    decayed = torch._foreach_mul(ws, [1.0 - lr * weight_decay for lr in lrs])
    updated = torch._foreach_sub(decayed, torch._foreach_mul(directions, lrs))
    torch._foreach_copy_(ws, updated)


def hyperparameters(rule: Callable[..., Any]) -> tuple[str, ...]:
    """The keyword hyperparameters a rule implements (after ws, gs, slots, lrs, step)."""
    return rule.__code__.co_varnames[5 : rule.__code__.co_argcount]
