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
    return member_norms({name: t.unsqueeze(0) for name, t in tensors.items()}, prefix)[0]


def member_norms(stacked: Mapping[str, Tensor], prefix: str) -> list[dict[str, float]]:
    """`norms` of every member of stacked tensors (leading dimension = member), one dict per member.

    Example:
        >>> member_norms({"w": torch.tensor([[3.0, 4.0], [0.0, 1.0]])}, "param/norm")
        [{'param/norm/w': 5.0, 'param/norm': 5.0}, {'param/norm/w': 1.0, 'param/norm': 1.0}]
    """
    per_tensor = {name: torch.linalg.vector_norm(t.flatten(1), dim=1) for name, t in stacked.items()}
    total = torch.linalg.vector_norm(torch.stack(list(per_tensor.values()), dim=1), dim=1)
    columns = {f"{prefix}/{name}": values.tolist() for name, values in per_tensor.items()}
    columns[prefix] = total.tolist()
    return [{key: values[m] for key, values in columns.items()} for m in range(total.shape[0])]


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
