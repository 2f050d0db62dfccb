"""Many networks of one architecture as one: stacked parameters (leading dimension = member) and their forward.

`torch.func.vmap(functional_call)` evaluates any model over stacked parameters. For models built only from the
layers below, the layers themselves can take the member dimension, and calling them on stacked tensors skips
vmap's batching rules (on 2 CPU threads, the gradient of 32 small MLPs takes 1.4-1.9 ms this way against
2.3-2.5 ms through vmap: vmap's batched linear map is a matmul, a broadcast bias add and copies where one
`baddbmm` does):

    Linear        y[m] = x[m] W[m]^T + b[m]                  (x: (N, batch, in) -> (N, batch, out))
    LayerNorm     y[m] = (x[m] - mu) / sqrt(var + eps) * gamma[m] + beta[m]
    Flatten(s, e) acts on the dimensions after the member dimension
    activations, Identity and the containers of `tdlab.models` (NTKMLP and MeanFieldMLP too): element-wise or
    written for any number of leading dimensions, unchanged.

A model holding any other module gets no stacked form (`stacked_module` returns None) and is run through vmap.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from tdlab.models import MLP, HiddenLayer, LinearModel
from tdlab.models.activations import ACTIVATIONS
from tdlab.models.ntk import NTKMLP, MeanFieldMLP


class StackedLinear(nn.Linear):
    """nn.Linear whose weight (N, out, in) and bias (N, out) hold N members; inputs (N, *, in).

    Computed as (W X^T)^T: the output is a transposed view whose layout (N, out, batch) the next layer's X^T reads
    without a copy; forward and backward of a 40-64-64-10 MLP of 32 members take ~20% less time than X W^T."""

    def forward(self, x: Tensor) -> Tensor:
        columns = x.reshape(x.shape[0], -1, x.shape[-1]).transpose(1, 2)
        out = (
            torch.bmm(self.weight, columns)
            if self.bias is None
            else torch.baddbmm(self.bias.unsqueeze(2), self.weight, columns)
        )
        return out.transpose(1, 2).reshape(*x.shape[:-1], out.shape[1])


class StackedLayerNorm(nn.LayerNorm):
    """nn.LayerNorm whose weight and bias (N, *normalized_shape) hold N members; inputs (N, *, *normalized_shape)."""

    def forward(self, x: Tensor) -> Tensor:
        normalised = nn.functional.layer_norm(x, self.normalized_shape, eps=self.eps)
        if self.weight is None:
            return normalised
        middle = x.ndim - 1 - len(self.normalized_shape)
        shape = (self.weight.shape[0], *([1] * middle), *self.normalized_shape)
        return torch.addcmul(self.bias.view(shape), normalised, self.weight.view(shape))


_UNCHANGED = (
    nn.Identity,
    MLP,
    NTKMLP,
    MeanFieldMLP,
    HiddenLayer,
    LinearModel,
    nn.Sequential,
    nn.ModuleList,
    *ACTIVATIONS.values(),
)


def _stacked_layer(module: nn.Module) -> nn.Module | None:
    """The stacked form of one module (itself when it needs none), or None."""
    kind = type(module)
    if kind is nn.Linear:
        return StackedLinear(module.in_features, module.out_features, bias=module.bias is not None, device="meta")
    if kind is nn.LayerNorm:
        return StackedLayerNorm(
            module.normalized_shape,
            eps=module.eps,
            elementwise_affine=module.elementwise_affine,
            bias=module.bias is not None,
            device="meta",
        )
    if kind is nn.Flatten:
        start, end = module.start_dim, module.end_dim
        return nn.Flatten(start + 1 if start >= 0 else start, end + 1 if end >= 0 else end)
    if kind in _UNCHANGED:
        return module
    return None


def stacked_module(model: nn.Module) -> nn.Module | None:
    """A copy of `model` on the meta device whose layers act on a leading member dimension, for
    `functional_call` with stacked parameters; None when a module has no stacked form (see the module docstring).

    Example:
        >>> models = [MLP(3, 2, width=4, depth=2, norm="layernorm", seed=s) for s in range(5)]
        >>> params, buffers = stack_module_state(models)
        >>> x = torch.randn(5, 7, 3)
        >>> out = functional_call(stacked_module(models[0]), (params, buffers), (x,))
        >>> torch.allclose(out[3], models[3](x[3]), atol=1e-6)
        True
    """
    stacked = copy.deepcopy(model).to("meta")
    for name, module in list(stacked.named_modules()):
        replacement = _stacked_layer(module)
        if replacement is None:
            return None
        if replacement is not module:
            parent, _, child = name.rpartition(".")
            setattr(stacked.get_submodule(parent), child, replacement)
    return stacked


def _install(module: nn.Module, name: str, tensor: Tensor, parameter: bool) -> Tensor:
    """Put `tensor` into the meta `module` as its parameter or buffer `name`; returns what the module holds."""
    owner, _, leaf = name.rpartition(".")
    sub = module.get_submodule(owner)
    if parameter:
        setattr(sub, leaf, nn.Parameter(tensor, requires_grad=tensor.requires_grad))
    else:
        sub._buffers[leaf] = tensor
    return getattr(sub, leaf)


@dataclass
class StackedModels:
    """N networks of one architecture evaluated together: `models(x)` maps inputs (N, batch, *) to outputs
    (N, batch, out), member m's slice through member m's parameters.

    `params` and `buffers` are the stacked tensors (N, *shape), trainable leaves that an optimiser can update in
    place; `template` is one member's architecture on the meta device (for `functional_call` with one member's
    parameters); `stacked` is the stacked form of the architecture holding `params` and `buffers` as its own, or
    None when it has none and the members run through vmap.

    Example:
        >>> ensemble = StackedModels.of([MLP(3, 2, width=4, depth=1, seed=s) for s in range(5)])
        >>> ensemble.outputs(torch.randn(7, 3)).shape
        torch.Size([5, 7, 2])
    """

    template: nn.Module
    params: dict[str, Tensor]
    buffers: dict[str, Tensor]
    stacked: nn.Module | None

    @classmethod
    def of(
        cls, models: Sequence[nn.Module], device: torch.device | str | None = None, vmap: bool = False
    ) -> StackedModels:
        """Stack `models` (same architecture) as trainable leaves on `device` (the models' by default); with
        `vmap`, evaluate them through vmap even when the architecture has stacked layers."""
        if not models:
            raise ValueError("models: expected at least one network, got none")
        params, buffers = stack_module_state([m.to(device) if device is not None else m for m in models])
        template = copy.deepcopy(models[0]).to("meta")
        stacked = None if vmap else stacked_module(models[0])
        if stacked is not None:
            params = {name: _install(stacked, name, p, parameter=True) for name, p in params.items()}
            buffers = {name: _install(stacked, name, b, parameter=False) for name, b in buffers.items()}
        return cls(template, params, buffers, stacked)

    def __len__(self) -> int:
        return next(iter(self.params.values())).shape[0]

    def __call__(self, x: Tensor) -> Tensor:
        """Outputs (N, batch, out) of the members on their own inputs x (N, batch, *)."""
        if self.stacked is not None:
            return self.stacked(x)
        return vmap(self._member)(self.params, self.buffers, x)

    def _member(self, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(self.template, (params, buffers), (x,))

    def outputs(self, X: Tensor, rows: Tensor | None = None) -> Tensor:
        """All members' outputs (N, n, out) on shared inputs X (n, *); with `rows` (indices), those members' only
        (len(rows), n, out), through the rows of the stacked parameters (so gradients reach `params`)."""
        if rows is None:
            return self(X.expand(len(self), *X.shape))
        params = {name: p[rows] for name, p in self.params.items()}
        buffers = {name: b[rows] for name, b in self.buffers.items()}
        x = X.expand(rows.shape[0], *X.shape)
        if self.stacked is not None:
            return functional_call(self.stacked, (params, buffers), (x,))
        return vmap(self._member)(params, buffers, x)

    def member(self, index: int) -> dict[str, Tensor]:
        """The parameters of member `index` (detached clones)."""
        return {name: p[index].detach().clone() for name, p in self.params.items()}


def member_losses(loss_fn: nn.Module) -> Callable[[Tensor, Tensor], Tensor]:
    """Per-member losses (N,) from outputs (N, batch, *) and targets (N, batch, *), each member's `loss_fn`.

    nn.CrossEntropyLoss and nn.MSELoss (mean reduction, no class weights) are evaluated for all members at once
    with reduction "none" and averaged per member (the cross-entropy with the classes in dimension 1, its
    layout for extra dimensions, 2x faster than on the flattened members); any other loss goes through vmap.

    Example:
        >>> losses = member_losses(nn.MSELoss())(torch.zeros(2, 3, 4), torch.ones(2, 3, 4))
        >>> losses.tolist()
        [1.0, 1.0]
    """
    if type(loss_fn) is nn.CrossEntropyLoss and loss_fn.reduction == "mean" and loss_fn.weight is None:

        def cross_entropy(outputs: Tensor, targets: Tensor) -> Tensor:
            classes_second = targets.movedim(-1, 1) if targets.is_floating_point() else targets
            each = nn.functional.cross_entropy(
                outputs.movedim(-1, 1), classes_second, reduction="none", label_smoothing=loss_fn.label_smoothing
            )
            return each.flatten(1).mean(dim=1)

        return cross_entropy
    if type(loss_fn) is nn.MSELoss and loss_fn.reduction == "mean":

        def squared_error(outputs: Tensor, targets: Tensor) -> Tensor:
            return nn.functional.mse_loss(outputs, targets, reduction="none").flatten(1).mean(dim=1)

        return squared_error
    return vmap(loss_fn)
