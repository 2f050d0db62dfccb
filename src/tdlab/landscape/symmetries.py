"""Symmetries of fully connected networks, and aligning two networks' hidden units by weight matching.

A chain of linear maps z_l = W_l h_{l-1} + b_l, h_l = phi(z_l) (l = 1..L, then a readout W_{L+1}) computes the
same function after

- a permutation P of the units of a hidden layer l:  W_l -> P W_l,  b_l -> P b_l,  W_{l+1} -> W_{l+1} P^T
  (any elementwise phi; parameters of a normalisation of layer l's units are permuted along);
- a positive rescaling of a hidden layer's units, for a positively homogeneous phi (ReLU: phi(k z) = k phi(z),
  k > 0):  W_l -> diag(k) W_l,  b_l -> k b_l,  W_{l+1} -> W_{l+1} diag(1/k).

The rescaling theta' = D theta is linear with D diagonal, and L(D theta) = L(theta) for all theta gives the
Hessian at the rescaled point, H(D theta) = D^{-1} H(theta) D^{-1}: an equivalent minimum with any sharpness
(Dinh, Pascanu, Bengio & Bengio 2017, "Sharp minima can generalize for deep nets").

Weight matching (Ainsworth, Hayase & Srinivasa 2023, "Git Re-Basin", sec. 3.2 and Algorithm 1) permutes the
units of network B to bring its weights close to network A's:

    max_{P_1..P_L} sum_l < W_l^A, P_l W_l^B P_{l-1}^T >_F + < b_l^A, P_l b_l^B >      (P_0 = P_{L+1} = I),

by coordinate ascent: for each layer l in turn, with the others fixed, the problem is the linear assignment
max_P tr(P^T C_l) with C_l = W_l^A P_{l-1} (W_l^B)^T + b_l^A (b_l^B)^T + (W_{l+1}^A)^T P_{l+1} W_{l+1}^B,
solved exactly by the Hungarian method (scipy.optimize.linear_sum_assignment); sweeps in random order repeat
until no layer improves.

Parameters are dicts of named tensors (as `Objective.params`); a `Chain` names the linear maps in order.

Example:
    >>> import torch
    >>> from tdlab.models import MLP
    >>> model = MLP(3, 2, width=4, depth=1, seed=0)
    >>> chain = mlp_chain(model)
    >>> params = dict(model.named_parameters())
    >>> swapped = permute_units(params, chain, [torch.tensor([1, 0, 2, 3])])
    >>> x = torch.randn(5, 3)
    >>> bool(torch.allclose(torch.func.functional_call(model, swapped, (x,)), model(x)))
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from tdlab.oracles.flat import Params


class Chain(NamedTuple):
    """The layout of a fully connected chain.

    Attributes:
        linear: prefixes of the linear maps in forward order, weight f"{prefix}.weight" of shape (out, in) and
            optional bias f"{prefix}.bias"; the last one is the readout.
        attached: for each hidden layer (len(linear) - 1 of them), the names of the 1-D parameters indexed by
            its units (e.g. a LayerNorm's scale and shift), permuted with them.
    """

    linear: tuple[str, ...]
    attached: tuple[tuple[str, ...], ...]

    @property
    def num_hidden(self) -> int:
        """Number of hidden layers, whose units can be permuted or rescaled."""
        return len(self.linear) - 1


def mlp_chain(model: nn.Module) -> Chain:
    """The chain of a `tdlab.models.MLP` without residual connections or batch normalisation (whose running
    statistics are buffers, not parameters), or of an `nn.Sequential` of `nn.Linear` and elementwise layers.

    Example:
        >>> from tdlab.models import MLP
        >>> mlp_chain(MLP(3, 2, width=4, depth=2, norm="layernorm"))
        Chain(linear=('hidden.0.linear', 'hidden.1.linear', 'readout'), attached=(('hidden.0.norm.weight', \
'hidden.0.norm.bias'), ('hidden.1.norm.weight', 'hidden.1.norm.bias')))
    """
    if getattr(model, "residual_scale", None) is not None:
        raise ValueError("model: residual connections tie the units of all hidden layers; expected residual=None")
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise ValueError("model: batch normalisation keeps per-unit buffers; expected norm=None or 'layernorm'")
    names = dict(model.named_parameters())
    if hasattr(model, "hidden") and hasattr(model, "readout"):
        hidden = tuple(f"hidden.{l}" for l in range(len(model.hidden)))
        linear = tuple(f"{h}.linear" for h in hidden) + ("readout",)
        attached = tuple(tuple(n for n in names if n.startswith(f"{h}.norm.")) for h in hidden)
        return Chain(linear, attached)
    if isinstance(model, nn.Sequential):
        linear = tuple(name for name, m in model.named_children() if isinstance(m, nn.Linear))
        others = [m for m in model.children() if not isinstance(m, nn.Linear) and any(True for _ in m.parameters())]
        if not linear or others:
            raise ValueError("model: expected nn.Linear layers and parameter-free elementwise layers only")
        return Chain(linear, tuple(() for _ in linear[:-1]))
    raise TypeError(f"model: expected a tdlab.models.MLP or an nn.Sequential, got {type(model).__name__}")


def _check_layer(chain: Chain, layer: int) -> None:
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < chain.num_hidden:
        raise ValueError(f"layer: expected a hidden layer index in 0..{chain.num_hidden - 1}, got {layer!r}")


def _units(params: Mapping[str, Tensor], chain: Chain, layer: int) -> int:
    return params[f"{chain.linear[layer]}.weight"].shape[0]


def permute_units(params: Mapping[str, Tensor], chain: Chain, perms: Sequence[Tensor | None]) -> Params:
    """Permute the units of every hidden layer: unit i of layer l in the result is unit `perms[l][i]` of
    `params` (None leaves a layer as it is). The network's function is unchanged. Returns a new dict.

    Example:
        >>> import torch
        >>> chain = Chain(("a", "b"), ((),))
        >>> params = {"a.weight": torch.tensor([[1.0], [2.0]]), "b.weight": torch.tensor([[3.0, 4.0]])}
        >>> out = permute_units(params, chain, [torch.tensor([1, 0])])
        >>> out["a.weight"].flatten().tolist(), out["b.weight"].flatten().tolist()
        ([2.0, 1.0], [4.0, 3.0])
    """
    if len(perms) != chain.num_hidden:
        raise ValueError(
            f"perms: expected one permutation (or None) per hidden layer ({chain.num_hidden}), got {len(perms)}"
        )
    out = dict(params)
    for layer, perm in enumerate(perms):
        if perm is None:
            continue
        n = _units(params, chain, layer)
        perm = torch.as_tensor(perm, dtype=torch.long)
        if perm.shape != (n,) or not torch.equal(perm.sort().values, torch.arange(n)):
            raise ValueError(f"perms[{layer}]: expected a permutation of 0..{n - 1}")
        prefix, following = chain.linear[layer], chain.linear[layer + 1]
        rows = perm.to(params[f"{prefix}.weight"].device)
        for name in (f"{prefix}.weight", f"{prefix}.bias", *chain.attached[layer]):
            if name in out:
                out[name] = out[name][rows]
        out[f"{following}.weight"] = out[f"{following}.weight"][:, rows]
    return out


def rescale_units(params: Mapping[str, Tensor], chain: Chain, layer: int, scale: float | Tensor) -> Params:
    """Multiply the incoming weights and bias of hidden layer `layer` by k > 0 (a number, or one per unit) and
    the outgoing weights by 1/k. Leaves a ReLU (positively homogeneous) network's function unchanged; not a
    symmetry for other activations or with a normalisation in that layer. Returns a new dict.

    Example:
        >>> import torch
        >>> chain = Chain(("a", "b"), ((),))
        >>> params = {"a.weight": torch.ones(2, 1), "a.bias": torch.ones(2), "b.weight": torch.ones(1, 2)}
        >>> out = rescale_units(params, chain, 0, 4.0)
        >>> out["a.weight"].flatten().tolist(), out["a.bias"].tolist(), out["b.weight"].flatten().tolist()
        ([4.0, 4.0], [4.0, 4.0], [0.25, 0.25])
    """
    _check_layer(chain, layer)
    prefix, following = chain.linear[layer], chain.linear[layer + 1]
    weight = params[f"{prefix}.weight"]
    k = torch.as_tensor(scale, dtype=weight.dtype, device=weight.device).reshape(-1)
    if k.numel() not in (1, weight.shape[0]) or not bool((k > 0).all()) or not bool(torch.isfinite(k).all()):
        raise ValueError(f"scale: expected a positive number or {weight.shape[0]} positive numbers (one per unit)")
    k = k.expand(weight.shape[0])
    out = dict(params)
    out[f"{prefix}.weight"] = weight * k[:, None]
    if f"{prefix}.bias" in out:
        out[f"{prefix}.bias"] = out[f"{prefix}.bias"] * k
    out[f"{following}.weight"] = out[f"{following}.weight"] / k[None, :]
    return out


def random_permutations(
    params: Mapping[str, Tensor], chain: Chain, generator: torch.Generator | None = None
) -> list[Tensor]:
    """One uniformly random permutation per hidden layer (CPU long tensors), from `generator`.

    Example:
        >>> import torch
        >>> chain = Chain(("a", "b"), ((),))
        >>> perms = random_permutations({"a.weight": torch.ones(5, 2)}, chain, torch.Generator().manual_seed(0))
        >>> sorted(perms[0].tolist())
        [0, 1, 2, 3, 4]
    """
    return [torch.randperm(_units(params, chain, l), generator=generator) for l in range(chain.num_hidden)]


def _as_numpy(t: Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def weight_matching(
    params_a: Mapping[str, Tensor],
    params_b: Mapping[str, Tensor],
    chain: Chain,
    max_sweeps: int = 100,
    generator: torch.Generator | None = None,
) -> list[Tensor]:
    """Permutations of network B's hidden units that maximise sum_l <W_l^A, P_l W_l^B P_{l-1}^T> (biases and
    attached parameters included), by coordinate ascent over layers with an exact linear assignment per layer
    (Ainsworth et al. 2023, Algorithm 1; the module docstring has the cost matrix). With one hidden layer
    one assignment is the global optimum. Apply the result with `permute_units(params_b, chain, perms)`.

    Args:
        params_a, params_b: parameter dicts of two networks with the layout `chain`.
        chain: the layout (`mlp_chain`).
        max_sweeps: most sweeps over the layers (each visits every layer once, in random order).
        generator: source of the layer order of each sweep.

    Example:
        >>> import torch
        >>> chain = Chain(("a", "b"), ((),))
        >>> a = {"a.weight": torch.randn(4, 3), "b.weight": torch.randn(2, 4)}
        >>> perm = torch.tensor([2, 0, 3, 1])
        >>> b = permute_units(a, chain, [perm])
        >>> found = weight_matching(a, b, chain)[0]
        >>> torch.equal(permute_units(b, chain, [found])["a.weight"], a["a.weight"])
        True
    """
    if isinstance(max_sweeps, bool) or not isinstance(max_sweeps, int) or max_sweeps < 1:
        raise ValueError(f"max_sweeps: expected a positive integer, got {max_sweeps!r}")
    for name, t in params_a.items():
        if name not in params_b or params_b[name].shape != t.shape:
            raise ValueError(f"params_b: expected the names and shapes of params_a, {name!r} differs")
    L = chain.num_hidden
    W_a = [_as_numpy(params_a[f"{p}.weight"]) for p in chain.linear]
    W_b = [_as_numpy(params_b[f"{p}.weight"]) for p in chain.linear]
    unit_a = [_unit_features(params_a, chain, l) for l in range(L)]
    unit_b = [_unit_features(params_b, chain, l) for l in range(L)]
    perms = [np.arange(W_a[l].shape[0]) for l in range(L)]

    def cost(l: int) -> np.ndarray:
        incoming = W_b[l] if l == 0 else W_b[l][:, perms[l - 1]]
        outgoing = W_b[l + 1] if l == L - 1 else W_b[l + 1][perms[l + 1], :]
        return W_a[l] @ incoming.T + W_a[l + 1].T @ outgoing + unit_a[l] @ unit_b[l].T

    for _ in range(max_sweeps):
        improved = False
        for l in torch.randperm(L, generator=generator).tolist():
            C = cost(l)
            _, best = linear_sum_assignment(C, maximize=True)
            n = C.shape[0]
            if C[np.arange(n), best].sum() > C[np.arange(n), perms[l]].sum() + 1e-12 * np.abs(C).sum():
                perms[l], improved = best, True
        if not improved:
            break
    return [torch.as_tensor(p, dtype=torch.long) for p in perms]


def _unit_features(params: Mapping[str, Tensor], chain: Chain, layer: int) -> np.ndarray:
    """The 1-D per-unit parameters of a hidden layer (its bias, then attached ones) as columns, (units, k);
    k = 0 when there are none."""
    bias = f"{chain.linear[layer]}.bias"
    names = ([bias] if bias in params else []) + list(chain.attached[layer])
    columns = [_as_numpy(params[name]) for name in names]
    return np.stack(columns, 1) if columns else np.zeros((_units(params, chain, layer), 0))
