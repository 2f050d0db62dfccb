"""Norm of the full-batch gradient, in total and per parameter tensor."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from tdlab.probes.base import Probe, ProbeContext


def norms(tensors: Mapping[str, Tensor], prefix: str) -> dict[str, float]:
    """Frobenius norms ||t||_F of each tensor ("<prefix>/<name>") and of all of them together ("<prefix>").

    The total is sqrt(sum_name ||t_name||_F^2), the Euclidean norm of the flattened vector.

    Example:
        >>> norms({"w": torch.tensor([3.0, 4.0]), "b": torch.tensor([12.0])}, "grad/norm")
        {'grad/norm/w': 5.0, 'grad/norm/b': 12.0, 'grad/norm': 13.0}
    """
    per_tensor = {name: torch.linalg.vector_norm(t) for name, t in tensors.items()}
    total = torch.linalg.vector_norm(torch.stack(list(per_tensor.values())))
    out = {f"{prefix}/{name}": float(value) for name, value in per_tensor.items()}
    out[prefix] = float(total)
    return out


class GradientNorm(Probe):
    """Norm of the full-batch gradient of the train loss, ||grad f(theta)||, total and per parameter tensor.

    f(theta) = (1/N) sum_i l(f(x_i; theta), y_i) on the context's train split (`ctx.objective("train")`).
    Metrics: "grad/norm" and "grad/norm/<parameter name>".

    Cost: one forward and one backward pass over the train split.

    Example:
        >>> from torch import nn
        >>> model = nn.Linear(3, 1)
        >>> ctx = ProbeContext(0, model, nn.MSELoss(), train=(torch.randn(8, 3), torch.randn(8, 1)))
        >>> sorted(GradientNorm().measure(ctx))
        ['grad/norm', 'grad/norm/bias', 'grad/norm/weight']
    """

    name = "gradient-norm"

    def measure(self, ctx: ProbeContext) -> dict[str, float]:
        objective = ctx.objective("train")
        return norms(objective.gradient(objective.params), "grad/norm")
