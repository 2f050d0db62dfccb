"""The shared shell of tdlab's `torch.optim.Optimizer`s: the closure, the loop over groups and parameters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor


class PerTensorOptimizer(torch.optim.Optimizer):
    """An optimiser whose step replaces each parameter tensor by `self.update(p, p.grad, group)`.

    Subclasses write the update rule as a pure function of the parameter, its gradient and its group's
    hyperparameters (and `self.state[p]` where the rule keeps state); this class does the bookkeeping.
    """

    def update(self, p: Tensor, grad: Tensor, group: dict[str, Any]) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One step; `closure` re-evaluates the loss (and calls backward) if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.copy_(self.update(p, p.grad, group))
        return loss
