"""Flat-vector views of parameter dictionaries.

Curvature algorithms (Lanczos, Hutchinson, ...) work on vectors in R^n; models carry their parameters as a
dictionary of named tensors. These helpers move between the two views in a fixed order (the dictionary's order),
without copying more than once and without touching the model.

Example:
    >>> import torch
    >>> params = {"w": torch.ones(2, 3), "b": torch.zeros(3)}
    >>> vec = flatten(params)
    >>> vec.shape
    torch.Size([9])
    >>> unflatten(vec, params)["w"].shape
    torch.Size([2, 3])
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

Params = dict[str, Tensor]


def flatten(tensors: Mapping[str, Tensor]) -> Tensor:
    """Concatenate the tensors of a dictionary, in its order, into one 1-D vector."""
    return torch.cat([t.reshape(-1) for t in tensors.values()])


def unflatten(vector: Tensor, like: Mapping[str, Tensor]) -> Params:
    """Split a 1-D vector into tensors shaped as the values of `like` (views into `vector`, in order)."""
    expected = sum(t.numel() for t in like.values())
    if vector.ndim != 1 or vector.numel() != expected:
        raise ValueError(
            f"vector: expected a 1-D tensor with {expected} entries (the number of parameters), "
            f"got shape {tuple(vector.shape)}"
        )
    out: Params = {}
    offset = 0
    for name, t in like.items():
        out[name] = vector[offset : offset + t.numel()].view_as(t)
        offset += t.numel()
    return out


def assign(tensors: Mapping[str, Tensor], vector: Tensor) -> None:
    """Copy the 1-D `vector` into the tensors of a dictionary, in its order, in place: with `Objective.params` or
    `trainable_parameters(model)` (which share storage with the model) this sets the model's parameters to a
    flat vector, e.g. the start of a run of `tdlab.train.fit`.

    Example:
        >>> params = {"w": torch.zeros(2, 2), "b": torch.zeros(2)}
        >>> assign(params, torch.arange(6.0))
        >>> params["b"].tolist()
        [4.0, 5.0]
    """
    with torch.no_grad():
        for target, value in zip(tensors.values(), unflatten(vector, tensors).values(), strict=True):
            target.copy_(value)


def trainable_parameters(model: torch.nn.Module) -> Params:
    """The model's trainable parameters as a detached dictionary (shares storage with the model)."""
    return {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}


def num_parameters(tensors: Mapping[str, Tensor]) -> int:
    """Total number of scalar entries."""
    return sum(t.numel() for t in tensors.values())
