"""Optimiser updates on stacked parameters (leading dimension = ensemble member), one learning rate per member.

The formulas are those of `torch.optim` (same order of operations, so members match sequential runs to rounding):

SGD (Sutskever et al. 2013 form): g <- g + wd w;  b <- g (first step), b <- mu b + (1 - tau) g;
    d = g + mu b (Nesterov) or b;  w <- w - lr d.
Adam (Kingma and Ba 2015) / AdamW (Loshchilov and Hutter 2019): g <- g + wd w (Adam) or w <- w (1 - lr wd)
    (AdamW); m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
    w <- w - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

SUPPORTED = ("sgd", "adam", "adamw")


def per_member(values: Tensor, like: Tensor) -> Tensor:
    """A vector of per-member values (N,) viewed as (N, 1, ..., 1) to broadcast over the stacked tensor `like`."""
    return values.view(-1, *([1] * (like.ndim - 1)))


@dataclass
class StackedOptimizer:
    """The state and hyperparameters of one optimiser for all members; `lr` is a vector (one per member).

    Each rule updates all parameters with `torch._foreach_*` calls, one per operation rather than one per
    operation and parameter.
    """

    name: str
    hyper: dict[str, Any]
    state: dict[str, dict[str, Tensor]] = field(default_factory=dict)
    steps: int = 0

    def __post_init__(self) -> None:
        if self.name not in SUPPORTED:
            raise ValueError(f"optimizer.name: the ensemble trainer supports {', '.join(SUPPORTED)}, got {self.name!r}")
        if self.hyper.get("amsgrad"):
            raise ValueError("optimizer.amsgrad: not supported by the ensemble trainer")

    def step(self, params: dict[str, Tensor], grads: dict[str, Tensor], lr: Tensor) -> None:
        """Update `params` in place (no autograd) with learning rates `lr` (shape: members)."""
        self.steps += 1
        names = list(params)
        weights = [params[name] for name in names]
        lrs = [per_member(lr, w) for w in weights]
        slots = [self.state.setdefault(name, {}) for name in names]
        with torch.no_grad():
            update = _sgd if self.name == "sgd" else _adam
            update(weights, [grads[name] for name in names], slots, lrs, self.steps, self.name, **self.hyper)


def _sgd(ws, gs, slots, lrs, step, name, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, **_):
    if weight_decay:
        gs = torch._foreach_add(gs, ws, alpha=weight_decay)
    if momentum:
        if "momentum_buffer" not in slots[0]:
            for slot, g in zip(slots, gs, strict=True):
                slot["momentum_buffer"] = g.clone()
        else:
            buffers = [slot["momentum_buffer"] for slot in slots]
            torch._foreach_mul_(buffers, momentum)
            torch._foreach_add_(buffers, gs, alpha=1 - dampening)
        buffers = [slot["momentum_buffer"] for slot in slots]
        gs = torch._foreach_add(gs, buffers, alpha=momentum) if nesterov else buffers
    torch._foreach_sub_(ws, torch._foreach_mul(gs, lrs))


def _adam(ws, gs, slots, lrs, step, name, betas=(0.9, 0.999), eps=1e-8, weight_decay=None, **_):
    beta1, beta2 = betas
    if weight_decay is None:
        weight_decay = 0.01 if name == "adamw" else 0.0
    if name == "adamw":
        torch._foreach_mul_(ws, [1 - lr * weight_decay for lr in lrs])
    elif weight_decay:
        gs = torch._foreach_add(gs, ws, alpha=weight_decay)
    ms = [slot.setdefault("exp_avg", torch.zeros_like(w)) for slot, w in zip(slots, ws, strict=True)]
    vs = [slot.setdefault("exp_avg_sq", torch.zeros_like(w)) for slot, w in zip(slots, ws, strict=True)]
    torch._foreach_lerp_(ms, gs, 1 - beta1)
    torch._foreach_mul_(vs, beta2)
    torch._foreach_addcmul_(vs, gs, gs, value=1 - beta2)
    bias1 = 1 - beta1**step
    bias2 = 1 - beta2**step
    denominators = torch._foreach_sqrt(vs)
    torch._foreach_div_(denominators, bias2**0.5)
    torch._foreach_add_(denominators, eps)
    steps = torch._foreach_mul(ms, [lr / bias1 for lr in lrs])
    torch._foreach_div_(steps, denominators)
    torch._foreach_sub_(ws, steps)


def member_state(optimizer: StackedOptimizer, index: int, names: list[str]) -> dict[int, dict[str, Tensor]]:
    """Member `index`'s optimiser state in `torch.optim`'s layout (parameter position -> its state)."""
    out: dict[int, dict[str, Tensor]] = {}
    for position, name in enumerate(names):
        slot = optimizer.state.get(name, {})
        entry = {key: value[index].clone() for key, value in slot.items()}
        if optimizer.name != "sgd":
            entry["step"] = torch.tensor(float(optimizer.steps))
        if entry:
            out[position] = entry
    return out
