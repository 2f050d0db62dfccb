"""Multi-layer perceptron with the knobs that training-dynamics studies turn: depth, width, activation,
normalisation, residual connections, initialisation.

With h_0 = x (flattened), L = depth hidden layers of width n and readout W_out:

    h_1 = phi(norm(W_1 h_0 + b_1))
    h_l = phi(norm(W_l h_{l-1} + b_l))                     l = 2..L, residual=None
    h_l = h_{l-1} + alpha * phi(norm(W_l h_{l-1} + b_l))   l = 2..L, residual="plain" (alpha = 1)
                                                           or "scaled" (alpha = 1/sqrt(L), Hayou et al. 2021)
    f(x) = W_out h_L + b_out

or, with a pre-activation branch (residual="preact", alpha = 1, or "preact-scaled", alpha = 1/sqrt(L)):

    h_1 = W_1 h_0 + b_1
    h_l = h_{l-1} + alpha * (W_l phi(norm(h_{l-1})) + b_l)  l = 2..L

(residual connections of He et al. 2016a, with a one-layer branch where theirs has two; the pre-activation
form is that of He et al. 2016b, "Identity mappings in deep residual networks", whose branch ends with a linear
map: it adds a zero-mean vector to the stream, where the post-activation branch phi(...) >= 0 of ReLU adds a
common positive direction to every input's representation and speeds up their collapse).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from tdlab.models._checks import check_choice, check_int
from tdlab.models.activations import ACTIVATIONS, make_activation
from tdlab.models.init import SCHEMES, as_generator, initialise

NORMS = (None, "batchnorm", "layernorm")
RESIDUALS = (None, "plain", "scaled", "preact", "preact-scaled")


def _norm(name: str | None, width: int) -> nn.Module:
    if name == "batchnorm":
        return nn.BatchNorm1d(width)
    if name == "layernorm":
        return nn.LayerNorm(width)
    return nn.Identity()


MAX_DEPTH = 10_000
"""The deepest MLP built: ten times the deepest network of the signal-propagation lectures, and a bound that refuses
a mistyped depth (10^6 layers) at once instead of spending minutes creating modules before any memory check."""


class HiddenLayer(nn.Module):
    """One hidden layer, h -> phi(norm(W h + b)), or h -> h + alpha * phi(norm(W h + b)) when `alpha` is set;
    with `preact`, h -> h + alpha * (W phi(norm(h)) + b) (alpha must be set).

    Its output is the post-activation representation h_l. Submodules: `linear`, `norm` (Identity when none)
    and `activation`, whose input is the (normalised) pre-activation, for probes that hook on it.

    Example:
        >>> layer = HiddenLayer(4, 4, "tanh", norm=None, bias=True, alpha=0.5)
        >>> layer(torch.zeros(2, 4)).shape
        torch.Size([2, 4])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        activation_name: str,
        norm: str | None,
        bias: bool,
        alpha: float | None,
        preact: bool = False,
    ):
        super().__init__()
        if preact and alpha is None:
            raise ValueError("alpha: a pre-activation layer is a residual block; expected a number, got None")
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        self.norm = _norm(norm, in_features if preact else out_features)
        self.activation = make_activation(activation_name)
        self.alpha = alpha
        self.preact = preact

    def forward(self, h: Tensor) -> Tensor:
        if self.preact:
            return h + self.alpha * self.linear(self.activation(self.norm(h)))
        z = self.activation(self.norm(self.linear(h)))
        return z if self.alpha is None else h + self.alpha * z

    def extra_repr(self) -> str:
        if self.alpha is None:
            return ""
        return f"alpha={self.alpha:.4g}" + (", preact" if self.preact else "")


class MLP(nn.Module):
    """Fully connected network f: R^in -> R^out with `depth` hidden layers of `width` units (formulas in the
    module docstring).

    Args:
        in_features, out_features: input and output sizes; inputs (batch, *) are flattened to (batch, in).
        width: units per hidden layer.
        depth: number of hidden layers L (0 gives a linear model).
        activation: one of "relu", "tanh", "gelu", "linear", "sigmoid", "leaky_relu".
        norm: None, "batchnorm" or "layernorm", applied to the pre-activations of every hidden layer.
        residual: None, "plain" (alpha = 1) or "scaled" (alpha = 1/sqrt(depth)) for a post-activation branch,
            "preact" or "preact-scaled" for a pre-activation branch (see the module docstring); hidden layers
            2..L only, the first changes the dimension (and is linear in the pre-activation form).
        bias: whether every linear map has a bias.
        init: "he", "xavier", "normal", "default" or "zeros", applied to every linear map, readout included
            (see `tdlab.models.init`); `init_scale` multiplies the weights' standard deviation and
            `bias_init_std` is the standard deviation of the biases.
        seed: int or torch.Generator for the initial weights (same seed, same weights); None uses torch's
            global generator.

    Parameters are named `hidden.{l}.linear.weight`, ..., `readout.weight`; `hidden_layers()` lists the
    modules whose outputs are h_1..h_L, for forward hooks.

    Example:
        >>> model = MLP(40, 10, width=64, depth=2, residual="scaled", seed=0)
        >>> model(torch.randn(8, 40)).shape
        torch.Size([8, 10])
        >>> [type(m).__name__ for m in model.hidden_layers()]
        ['HiddenLayer', 'HiddenLayer']
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        width: int = 128,
        depth: int = 3,
        activation: str = "relu",
        norm: str | None = None,
        residual: str | None = None,
        bias: bool = True,
        init: str = "he",
        init_scale: float = 1.0,
        bias_init_std: float = 0.0,
        seed: int | torch.Generator | None = None,
    ):
        super().__init__()
        check_int("in_features", in_features, 1)
        check_int("out_features", out_features, 1)
        check_int("width", width, 1)
        check_int("depth", depth, 0, MAX_DEPTH)
        check_choice("activation", activation, ACTIVATIONS)
        check_choice("norm", norm, NORMS)
        check_choice("residual", residual, RESIDUALS)
        check_choice("init", init, SCHEMES)
        self.in_features, self.out_features, self.width, self.depth = in_features, out_features, width, depth
        scaled = 1.0 / math.sqrt(max(depth, 1))
        self.residual_scale = {None: None, "plain": 1.0, "scaled": scaled, "preact": 1.0, "preact-scaled": scaled}[
            residual
        ]
        preact = residual in ("preact", "preact-scaled")
        self.flatten = nn.Flatten()
        self.hidden = nn.ModuleList(
            HiddenLayer(in_features, width, "linear" if preact else activation, None if preact else norm, bias, None)
            if l == 0
            else HiddenLayer(width, width, activation, norm, bias, self.residual_scale, preact)
            for l in range(depth)
        )
        self.readout = nn.Linear(width if depth else in_features, out_features, bias=bias)
        initialise(self, init, scale=init_scale, bias_std=bias_init_std, generator=as_generator(seed))

    def forward(self, x: Tensor) -> Tensor:
        h = self.flatten(x)
        for layer in self.hidden:
            h = layer(h)
        return self.readout(h)

    def hidden_layers(self) -> list[HiddenLayer]:
        """The hidden layers in order; a forward hook on the l-th receives h_l as its output.

        Example:
            >>> model = MLP(3, 1, width=5, depth=2)
            >>> outputs = []
            >>> for layer in model.hidden_layers():
            ...     _ = layer.register_forward_hook(lambda module, inputs, output: outputs.append(output))
            >>> _ = model(torch.randn(4, 3))
            >>> [tuple(h.shape) for h in outputs]
            [(4, 5), (4, 5)]
        """
        return list(self.hidden)
