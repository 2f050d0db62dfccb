"""Optimiser updates on stacked parameters (leading dimension = ensemble member), one learning rate per member.

The update of each optimiser is the multi-tensor form its registry entry carries (`tdlab.optim.registry`,
`tdlab.optim.multi_tensor`: `torch.optim`'s formulas in the same order of operations, so members match sequential
runs to rounding); the optimisers the ensemble trains are exactly those with such a form (`stacked_names()`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from tdlab.optim.multi_tensor import MultiTensorRule, hyperparameters
from tdlab.optim.registry import lookup, stacked_names

PERFORMANCE_ONLY = {"foreach", "fused", "capturable", "differentiable"}
"""Arguments of torch's optimisers that change how, not what, they compute: ignored on stacked members."""


def unsupported(name: str, hyper: dict[str, Any]) -> str | None:
    """Why the ensemble cannot train optimiser `name` with `hyper` ("optimizer.field: ..."), or None if it can.

    Example:
        >>> unsupported("adam", {"amsgrad": True})
        'optimizer.amsgrad: not supported by the ensemble trainer'
        >>> unsupported("sgd", {"momentum": 0.9}) is None
        True
    """
    rule = lookup(name).stacked
    if rule is None:
        return f"optimizer.name: the ensemble trainer supports {', '.join(stacked_names())}, got {name!r}"
    implemented = hyperparameters(rule.update)
    for key, value in hyper.items():
        if key not in implemented and key not in PERFORMANCE_ONLY and value:
            return f"optimizer.{key}: not supported by the ensemble trainer"
    return None


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
        reason = unsupported(self.name, self.hyper)
        if reason is not None:
            raise ValueError(reason)
        self.rule: MultiTensorRule = lookup(self.name).stacked  # type: ignore[assignment]
        implemented = hyperparameters(self.rule.update)
        self.arguments = {key: value for key, value in self.hyper.items() if key in implemented}

    def step(self, params: dict[str, Tensor], grads: dict[str, Tensor], lr: Tensor) -> None:
        """Update `params` in place (no autograd) with learning rates `lr` (shape: members)."""
        self.steps += 1
        names = list(params)
        weights = [params[name] for name in names]
        lrs = [per_member(lr, w) for w in weights]
        slots = [self.state.setdefault(name, {}) for name in names]
        with torch.no_grad():
            self.rule.update(weights, [grads[name] for name in names], slots, lrs, self.steps, **self.arguments)


def member_state(optimizer: StackedOptimizer, index: int, names: list[str]) -> dict[int, dict[str, Tensor]]:
    """Member `index`'s optimiser state in `torch.optim`'s layout (parameter position -> its state)."""
    out: dict[int, dict[str, Tensor]] = {}
    for position, name in enumerate(names):
        slot = optimizer.state.get(name, {})
        entry = {key: value[index].clone() for key, value in slot.items()}
        if optimizer.rule.step_in_state:
            entry["step"] = torch.tensor(float(optimizer.steps))
        if entry:
            out[position] = entry
    return out
