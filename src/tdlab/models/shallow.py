"""Models that are linear in their trainable parameters: the linear model and the random-features model.

Their training losses under the squared loss are quadratics, so the lectures' closed forms (GD convergence
rates, the minimum-norm interpolant, ridgeless risk and double descent) apply to them exactly.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from tdlab.models._checks import check_choice, check_int
from tdlab.models.activations import ACTIVATIONS, make_activation
from tdlab.models.init import SCHEMES, as_generator, initialise, random_like


class LinearModel(nn.Module):
    """f(x) = W x + b, with inputs (batch, *) flattened.

    `init` defaults to "zeros": gradient descent on the squared loss started at zero stays in the row space of
    the data and converges to the minimum-norm least-squares solution (as used by Hastie et al. 2022).

    Example:
        >>> model = LinearModel(5, 2)
        >>> model(torch.ones(3, 5)).abs().sum().item()
        0.0
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        init: str = "zeros",
        seed: int | torch.Generator | None = None,
    ):
        super().__init__()
        check_int("in_features", in_features, 1)
        check_int("out_features", out_features, 1)
        check_choice("init", init, SCHEMES)
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        initialise(self, init, generator=as_generator(seed))

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.flatten(x))

    def hidden_layers(self) -> list[nn.Module]:
        """No hidden representations (the same interface as `MLP.hidden_layers`).

        Example:
            >>> LinearModel(3, 1).hidden_layers()
            []
        """
        return []


class RandomFeatures(nn.Module):
    """Random-features model f(x) = a^T phi(F x) (+ b), with F fixed and only the readout a (, b) trained.

    F is a (num_features, in_features) matrix with i.i.d. N(0, 1/in_features) entries, i.e. rows w_j / sqrt(d)
    with w_j ~ N(0, I_d) (Rahimi & Recht 2007; Mei & Montanari 2022 draw w_j uniformly on the sphere of radius
    sqrt(d), which matches this in high dimension). It is a buffer, not a parameter:
    it moves with `.to()`, is saved in the state dict and is invisible to optimisers and the Objective.
    The readout defaults to "zeros" so that gradient descent on the squared loss converges to the minimum-norm
    interpolant, whose test risk shows double descent at num_features = n_train.

    Args:
        in_features, num_features, out_features: d, N and the output dimension.
        activation: phi, one of "relu", "tanh", "gelu", "linear", "sigmoid", "leaky_relu".
        bias: whether the readout has a bias.
        init: scheme of the readout (see `tdlab.models.init`).
        seed: int or torch.Generator for F (drawn first) and the readout; None uses torch's global generator.

    Example:
        >>> model = RandomFeatures(10, 300, 1, seed=0)
        >>> model.features(torch.randn(4, 10)).shape
        torch.Size([4, 300])
        >>> [name for name, _ in model.named_parameters()]
        ['readout.weight']
    """

    def __init__(
        self,
        in_features: int,
        num_features: int,
        out_features: int,
        activation: str = "relu",
        bias: bool = False,
        init: str = "zeros",
        seed: int | torch.Generator | None = None,
    ):
        super().__init__()
        check_int("in_features", in_features, 1)
        check_int("num_features", num_features, 1)
        check_int("out_features", out_features, 1)
        check_choice("activation", activation, ACTIVATIONS)
        check_choice("init", init, SCHEMES)
        generator = as_generator(seed)
        weight = random_like(torch.empty(num_features, in_features), generator) / math.sqrt(in_features)
        self.register_buffer("feature_weight", weight)
        self.activation = make_activation(activation)
        self.readout = nn.Linear(num_features, out_features, bias=bias)
        initialise(self.readout, init, generator=generator)

    def features(self, x: Tensor) -> Tensor:
        """phi(F x) for inputs (batch, *), shape (batch, num_features)."""
        return self.activation(x.flatten(1) @ self.feature_weight.T)

    def forward(self, x: Tensor) -> Tensor:
        return self.readout(self.features(x))

    def hidden_layers(self) -> list[nn.Module]:
        """[the activation module], whose output is the feature vector phi(F x).

        Example:
            >>> RandomFeatures(3, 7, 1, activation="tanh").hidden_layers()
            [Tanh()]
        """
        return [self.activation]
