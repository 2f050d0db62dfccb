"""Statistics of hidden representations: scale, dead units, how alike the representations of inputs are."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from tdlab.oracles.data import Inputs, call_with
from tdlab.probes.base import Probe, ProbeContext, to_model

ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Softplus,
    nn.Tanh,
    nn.Hardtanh,
    nn.Sigmoid,
)
"""Module types hooked by default when a model neither names its hidden layers nor is given `layers`."""


def activation_statistics(h: Tensor) -> dict[str, float]:
    """Statistics of a layer's representations h (n inputs x units; further axes are flattened into units).

        mean    = (1/(n U)) sum_{i,u} h_iu
        var     = (1/(n U)) sum_{i,u} (h_iu - mean)^2              (over inputs and units together)
        dead    = fraction of units u with h_iu = 0 for every input i   (dead ReLUs)
        cosine  = 1/(n(n-1)) sum_{i != j} <h_i, h_j> / (||h_i|| ||h_j||)
        rel_var = mean over units with E_i h_iu^2 > 0 of Var_i(h_iu) / E_i(h_iu^2)   (in [0, 1])

    cosine near 1 is the rank collapse of deep representations (inputs become indistinguishable, Poole et al.
    2016, Schoenholz et al. 2017); it is computed in O(n U) as (||sum_i u_i||^2 - sum_i ||u_i||^2) / (n(n-1))
    with u_i = h_i / ||h_i||, an all-zero representation counting as cosine 0. rel_var = 1 - mean_i(h_u)^2 /
    E_i(h_u^2) is 0 for a unit constant across inputs and 1 for a zero-mean one; it is nan if every unit is
    zero on every input.

    Example:
        >>> stats = activation_statistics(torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
        >>> stats["dead"], stats["cosine"], stats["rel_var"]
        (0.5, 1.0, 0.0)
    """
    n = h.shape[0]
    if n < 2:
        raise ValueError(f"h: expected representations of at least 2 inputs, got {n}")
    h = h.reshape(n, -1)
    unit = h / torch.linalg.vector_norm(h, dim=1, keepdim=True).clamp_min(torch.finfo(h.dtype).tiny)
    pair_sum = unit.sum(dim=0).square().sum() - unit.square().sum()
    second = h.square().mean(dim=0)
    alive = second > 0
    variance = h.var(dim=0, correction=0)
    rel_var = float((variance[alive] / second[alive]).mean()) if bool(alive.any()) else math.nan
    return {
        "mean": float(h.mean()),
        "var": float(h.var(correction=0)),
        "dead": float((h == 0).all(dim=0).to(h.dtype).mean()),
        "cosine": float(pair_sum / (n * (n - 1))),
        "rel_var": rel_var,
    }


def hidden_modules(model: nn.Module, layers: Sequence[str] | None = None) -> dict[str, nn.Module]:
    """The modules whose outputs are the hidden representations, by name.

    In order of preference: the modules named in `layers`; `model.hidden_layers()` when the model has it (as
    `tdlab.models.MLP` does); every activation module of the types in `ACTIVATIONS`.

    Example:
        >>> model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1))
        >>> list(hidden_modules(model))
        ['1', '3']
    """
    named = dict(model.named_modules())
    if layers is not None:
        unknown = [name for name in layers if name not in named]
        if unknown:
            available = [name for name in named if name]
            raise ValueError(f"layers: no module named {unknown} in the model; modules: {available}")
        return {name: named[name] for name in layers}
    if hasattr(model, "hidden_layers"):
        name_of = {id(module): name for name, module in named.items()}
        return {name_of[id(module)]: module for module in model.hidden_layers()}
    found = {name: module for name, module in named.items() if isinstance(module, ACTIVATIONS)}
    if not found:
        raise ValueError(
            "model: no activation module found to hook; pass `layers` (module names) or give the model a "
            "`hidden_layers()` method"
        )
    return found


def representations(model: nn.Module, modules: dict[str, nn.Module], inputs: Inputs) -> dict[str, Tensor]:
    """Outputs of `modules` on one forward pass of `inputs`, by forward hooks removed afterwards.

    A module called k > 1 times in the forward pass (a shared activation module) gives k entries
    "<name>[0]" .. "<name>[k-1]".

    Example:
        >>> model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
        >>> representations(model, {"1": model[1]}, torch.randn(5, 2))["1"].shape
        torch.Size([5, 4])
    """
    outputs: dict[str, list[Tensor]] = {name: [] for name in modules}

    def hook_for(name: str):
        def hook(module: nn.Module, args: object, output: object) -> None:
            if not isinstance(output, Tensor):
                raise TypeError(f"layers: module {name!r} returns {type(output).__name__}, expected a tensor")
            outputs[name].append(output.detach())

        return hook

    handles = [module.register_forward_hook(hook_for(name)) for name, module in modules.items()]
    try:
        with torch.no_grad():
            call_with(model, to_model(inputs, model))
    finally:
        for handle in handles:
            handle.remove()
    result: dict[str, Tensor] = {}
    for name, calls in outputs.items():
        if len(calls) == 1:
            result[name] = calls[0]
        else:
            result.update({f"{name}[{i}]": h for i, h in enumerate(calls)})
    return result


class ActivationStats(Probe):
    """Statistics of the hidden representations on a fixed probe batch (see `activation_statistics`).

    The probe batch is the first `num_inputs` train points. The hooked layers are chosen by `hidden_modules`:
    the module names in `layers`, else `model.hidden_layers()`, else every activation module. Metrics, per
    layer l: "act/<l>/mean", "act/<l>/var", "act/<l>/dead", "act/<l>/cosine", "act/<l>/rel_var".

    Cost: one forward pass over the probe batch (no backward); memory of its hidden representations.

    Example:
        >>> model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
        >>> ctx = ProbeContext(0, model, nn.MSELoss(), train=(torch.randn(16, 2), torch.randn(16, 1)))
        >>> sorted(ActivationStats().measure(ctx))[:2]
        ['act/1/cosine', 'act/1/dead']
    """

    name = "activations"

    def __init__(self, every: int = 1, layers: Sequence[str] | None = None, num_inputs: int = 256):
        super().__init__(every)
        if layers is not None and (isinstance(layers, str) or not all(isinstance(n, str) for n in layers)):
            raise TypeError(f"layers: expected a list of module names or None, got {layers!r}")
        if num_inputs < 2:
            raise ValueError(f"num_inputs: expected an integer >= 2, got {num_inputs}")
        self.layers = None if layers is None else list(layers)
        self.num_inputs = num_inputs

    def measure(self, ctx: ProbeContext) -> dict[str, float]:
        modules = hidden_modules(ctx.model, self.layers)
        hidden = representations(ctx.model, modules, ctx.train.first(self.num_inputs)[0])
        return {
            f"act/{layer}/{key}": value
            for layer, h in hidden.items()
            for key, value in activation_statistics(h).items()
        }
