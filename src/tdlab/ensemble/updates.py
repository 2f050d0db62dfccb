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


def _per_member(lr: Tensor, like: Tensor) -> Tensor:
    return lr.view(-1, *([1] * (like.ndim - 1)))


@dataclass
class StackedOptimizer:
    """The state and hyperparameters of one optimiser for all members; `lr` is a vector (one per member)."""

    name: str
    hyper: dict[str, Any]
    state: dict[str, dict[str, Tensor]] = field(default_factory=dict)
    steps: int = 0

    def __post_init__(self) -> None:
        if self.name not in SUPPORTED:
            raise ValueError(f"optimizer.name: the ensemble trainer supports {', '.join(SUPPORTED)}, got {self.name!r}")

    def step(self, params: dict[str, Tensor], grads: dict[str, Tensor], lr: Tensor) -> None:
        """Update `params` in place (no autograd) with learning rates `lr` (shape: members)."""
        self.steps += 1
        with torch.no_grad():
            for name, w in params.items():
                slot = self.state.setdefault(name, {})
                update = _sgd if self.name == "sgd" else _adam
                update(w, grads[name], slot, _per_member(lr, w), self.steps, self.name, **self.hyper)


def _sgd(w, g, slot, lr, step, name, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, **_):
    if weight_decay:
        g = g + weight_decay * w
    if momentum:
        if "momentum_buffer" not in slot:
            slot["momentum_buffer"] = g.clone()
        else:
            slot["momentum_buffer"].mul_(momentum).add_(g, alpha=1 - dampening)
        buffer = slot["momentum_buffer"]
        g = g + momentum * buffer if nesterov else buffer
    w.sub_(lr * g)


def _adam(w, g, slot, lr, step, name, betas=(0.9, 0.999), eps=1e-8, weight_decay=None, amsgrad=False, **_):
    if amsgrad:
        raise ValueError("optimizer.amsgrad: not supported by the ensemble trainer")
    beta1, beta2 = betas
    if weight_decay is None:
        weight_decay = 0.01 if name == "adamw" else 0.0
    if name == "adamw":
        w.mul_(1 - lr * weight_decay)
    elif weight_decay:
        g = g + weight_decay * w
    m = slot.setdefault("exp_avg", torch.zeros_like(w))
    v = slot.setdefault("exp_avg_sq", torch.zeros_like(w))
    m.lerp_(g, 1 - beta1)
    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    bias1 = 1 - beta1**step
    bias2 = 1 - beta2**step
    denom = (v.sqrt() / (bias2**0.5)).add_(eps)
    w.sub_((lr / bias1) * m / denom)


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
