"""Size of the parameters and of one optimiser step's update."""

from __future__ import annotations

import math
from collections.abc import Mapping

from torch import Tensor

from tdlab.oracles import trainable_parameters
from tdlab.probes.base import Probe, ProbeContext
from tdlab.probes.gradient import member_norms, norms


def update_norms(current: Mapping[str, Tensor], previous: Mapping[str, Tensor]) -> dict[str, float]:
    """Update size ||w_t - w_{t-1}|| and relative update ||w_t - w_{t-1}|| / ||w_{t-1}||, per tensor, total.

    Keys "update/norm/<name>", "update/ratio/<name>", "update/norm", "update/ratio"; the totals use the
    Euclidean norms of the flattened vectors. A ratio is inf (or nan for a zero update) when ||w_{t-1}|| = 0,
    e.g. for a bias initialised at zero. The relative update is the quantity of LARS (You et al., 2017) and of
    the "update/weight ratio ~ 1e-3" rule of thumb (Karpathy, CS231n).

    Example:
        >>> import torch
        >>> update_norms({"w": torch.tensor([3.0, 4.5])}, {"w": torch.tensor([3.0, 4.0])})
        {'update/norm/w': 0.5, 'update/norm': 0.5, 'update/ratio/w': 0.1, 'update/ratio': 0.1}
    """
    missing = set(current) - set(previous)
    if missing:
        raise ValueError(f"previous_params: missing parameters {sorted(missing)}")
    return member_update_norms(
        {name: t.unsqueeze(0) for name, t in current.items()},
        {name: previous[name].to(t.device).unsqueeze(0) for name, t in current.items()},
    )[0]


def member_update_norms(current: Mapping[str, Tensor], previous: Mapping[str, Tensor]) -> list[dict[str, float]]:
    """`update_norms` of every member of stacked parameters (leading dimension = member), one dict per member."""
    updates = member_norms({name: current[name] - previous[name] for name in current}, "update/norm")
    before = member_norms({name: previous[name] for name in current}, "norm")
    for out, norm in zip(updates, before, strict=True):
        for name in current:
            out[f"update/ratio/{name}"] = _ratio(out[f"update/norm/{name}"], norm[f"norm/{name}"])
        out["update/ratio"] = _ratio(out["update/norm"], norm["norm"])
    return updates


def _ratio(numerator: float, denominator: float) -> float:
    if denominator == 0.0:
        return math.nan if numerator == 0.0 else math.inf
    return numerator / denominator


class UpdateNorm(Probe):
    """Norm of the last update, ||w_t - w_{t-1}||, and its size relative to the weights, per tensor and total.

    Metrics from `update_norms`: "update/norm/<name>", "update/ratio/<name>", "update/norm", "update/ratio".
    For plain SGD ||w_t - w_{t-1}|| = eta ||g_t|| with g_t the mini-batch gradient.

    Cost: no forward or backward pass; one copy of the parameters before each measured step.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Linear(2, 1)
        >>> before = {k: v.clone() for k, v in trainable_parameters(model).items()}
        >>> ctx = ProbeContext(1, model, nn.MSELoss(), train=(torch.randn(4, 2), torch.randn(4, 1)),
        ...                    previous_params=before)
        >>> UpdateNorm().measure(ctx)["update/norm"]
        0.0
    """

    name = "update-norm"
    needs_previous_params = True

    def measure(self, ctx: ProbeContext) -> dict[str, float]:
        if ctx.previous_params is None:
            raise ValueError("previous_params: the update-norm probe needs the parameters before the step")
        return update_norms(trainable_parameters(ctx.model), ctx.previous_params)


class ParameterNorm(Probe):
    """Frobenius norm ||w||_F of each parameter tensor and Euclidean norm of all parameters ||theta||_2.

    Metrics: "param/norm/<name>" and "param/norm".

    Cost: no forward or backward pass.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Linear(2, 1)
        >>> ctx = ProbeContext(0, model, nn.MSELoss(), train=(torch.randn(4, 2), torch.randn(4, 1)))
        >>> sorted(ParameterNorm().measure(ctx))
        ['param/norm', 'param/norm/bias', 'param/norm/weight']
    """

    name = "parameter-norm"

    def measure(self, ctx: ProbeContext) -> dict[str, float]:
        return norms(trainable_parameters(ctx.model), "param/norm")
