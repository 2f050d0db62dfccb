"""The shared shell of tdlab's `torch.optim.Optimizer`s: the closure, the loop over groups and parameters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor


def evaluate(closure: Callable[[], Any] | None) -> Any:
    """The loss from `closure` (which re-evaluates it and calls backward), with gradients on; None without one.

    torch.optim's convention: `step(closure)` calls the closure with autograd enabled, even inside `no_grad`.
    """
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


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
        loss = evaluate(closure)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.copy_(self.update(p, p.grad, group))
        return loss


def split_like(flat: Tensor, tensors: list[Tensor]) -> list[Tensor]:
    """A flat vector cut into pieces shaped as `tensors` (the inverse of concatenating their flattened copies)."""
    return [piece.view_as(t) for piece, t in zip(flat.split([t.numel() for t in tensors]), tensors, strict=True)]


class SecondOrderOptimizer(torch.optim.Optimizer):
    """The shell of tdlab's optimisers on Hessian-vector products: all parameters with a gradient form one flat
    vector w. `create_graph = True` asks the trainer (`tdlab.train.fit`) to call `loss.backward(create_graph=True)`,
    so that p.grad keeps its graph and H v is one more backward pass through it (Pearlmutter 1994):

        H v = d/dw (grad f(w)^T v).
    """

    create_graph = True

    def _curvature(self) -> tuple[list[Tensor], Tensor, Callable[[Tensor], Tensor]]:
        """The parameters with a gradient, the flat gradient g and v -> H v (flat)."""
        params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        grads = [p.grad for p in params]
        tracked = [i for i, g in enumerate(grads) if g.requires_grad]
        if params and not tracked:
            raise RuntimeError(
                f"{type(self).__name__}: the gradients carry no graph; call loss.backward(create_graph=True) "
                "(tdlab.train.fit does so for an optimiser with create_graph = True)"
            )

        def hvp(v: Tensor) -> Tensor:
            pieces = split_like(v, params)
            with torch.enable_grad():
                products = torch.autograd.grad(
                    [grads[i] for i in tracked],
                    params,
                    grad_outputs=[pieces[i] for i in tracked],
                    retain_graph=True,
                    allow_unused=True,
                )
            pairs = zip(params, products, strict=True)
            return torch.cat([(torch.zeros_like(p) if h is None else h).reshape(-1) for p, h in pairs])

        flat = torch.cat([g.detach().reshape(-1) for g in grads]) if params else torch.zeros(0)
        return params, flat, hvp
