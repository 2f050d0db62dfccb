"""Activation functions by name, as modules, so that forward hooks can find them in a model.

Example:
    >>> make_activation("tanh")
    Tanh()
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from tdlab.models._checks import check_choice

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "linear": nn.Identity,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
}


def make_activation(name: str) -> nn.Module:
    """A fresh module computing the activation `name`, one of `ACTIVATIONS`.

    relu max(0, z); tanh; gelu z Phi(z) (Hendrycks & Gimpel 2016); linear z (identity); sigmoid 1/(1+e^-z);
    leaky_relu max(0.01 z, z) (Maas et al. 2013).

    Example:
        >>> make_activation("leaky_relu")
        LeakyReLU(negative_slope=0.01)
    """
    check_choice("activation", name, ACTIVATIONS)
    return ACTIVATIONS[name]()
