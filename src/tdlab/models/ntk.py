"""An MLP in the neural-tangent-kernel parameterisation, the network of the NTK theory, and its one-hidden-layer
mean-field sibling (`MeanFieldMLP`, the readout divided by the width instead of its square root).

With h_0 = x (flattened), L = depth hidden layers of width n_l, standard normal weights and no biases (Jacot,
Gabriel & Hongler 2018; Lee et al. 2019, "Wide neural networks of any depth evolve as linear models under gradient
descent", eq. 1):

    h_l = phi(W_l h_{l-1} / sqrt(n_{l-1})),   W_l ~ N(0, 1) entrywise,   l = 1..L
    f(x) = W_out h_L / sqrt(n_L)

The 1/sqrt(fan-in) sits in the forward pass instead of the initialisation, so a gradient-descent step of the same
size moves every layer's pre-activations by O(1/sqrt(width)) and the tangent kernel has a finite limit as the
width grows; at initialisation the outputs are those of an MLP with N(0, 1/fan-in) weights.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from tdlab.models._checks import check_choice, check_int
from tdlab.models.activations import ACTIVATIONS, make_activation
from tdlab.models.init import as_generator


class NTKMLP(nn.Module):
    """f: R^in -> R^out in the NTK parameterisation (module docstring).

    Args:
        in_features, out_features: input and output sizes; inputs (batch, *) are flattened.
        width: units per hidden layer.
        depth: number of hidden layers L >= 1.
        activation: phi, one of `tdlab.models.ACTIVATIONS`.
        seed: int or torch.Generator for the weights, drawn on the CPU layer by layer (hidden.0, ..., readout);
            None uses torch's global generator.
        dtype: of the weights, and of the draws (torch's default when None).

    Parameters are named `hidden.{l}.weight` (width x fan-in) and `readout.weight` (out x width).

    Example:
        >>> model = NTKMLP(4, 1, width=4, depth=1, activation="relu")
        >>> with torch.no_grad():
        ...     _ = [p.fill_(1.0) for p in model.parameters()]
        >>> model(torch.ones(2, 4)).tolist()
        [[4.0], [4.0]]

    (every unit is relu(4 / sqrt(4)) = 2, and the readout 4 * 2 / sqrt(4) = 4.)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int = 1,
        width: int = 512,
        depth: int = 1,
        activation: str = "tanh",
        seed: int | torch.Generator | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        check_int("in_features", in_features, 1)
        check_int("out_features", out_features, 1)
        check_int("width", width, 1)
        check_int("depth", depth, 1)
        check_choice("activation", activation, ACTIVATIONS)
        self.flatten = nn.Flatten()
        self.hidden = nn.ModuleList(
            nn.Linear(in_features if l == 0 else width, width, bias=False, dtype=dtype) for l in range(depth)
        )
        self.readout = nn.Linear(width, out_features, bias=False, dtype=dtype)
        self.activation = make_activation(activation)
        generator = as_generator(seed)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype))

    def forward(self, x: Tensor) -> Tensor:
        h = self.flatten(x)
        for layer in self.hidden:
            h = self.activation(layer(h) / math.sqrt(layer.in_features))
        return self.readout(h) / self.readout_divisor()

    def readout_divisor(self) -> float:
        """The readout's scale: sqrt(n_L) in the NTK parameterisation."""
        return math.sqrt(self.readout.in_features)


class MeanFieldMLP(NTKMLP):
    """f(x) = W_out phi(W x / sqrt(d)) / m: one hidden layer of width m in the mean-field parameterisation (Mei,
    Montanari & Nguyen 2018; Chizat & Bach 2018; the depth-1 case of Yang & Hu 2021's maximal-update
    parameterisation), standard normal weights as in `NTKMLP`, whose arguments it takes (depth is 1).

    The readout divides by m, not sqrt(m): every parameter's gradient is O(1/m), so gradient descent at step
    eta m moves every unit (w_j, a_j) by O(1) at every width, the units a system of particles whose distribution
    follows a width-independent flow. In the NTK parameterisation at a width-independent step each unit moves by
    O(1/sqrt(m)): as m grows its features freeze (lazy training, Chizat, Oyallon & Bach 2019); here they do not.

    Example:
        >>> model = MeanFieldMLP(4, 1, width=4, activation="relu")
        >>> with torch.no_grad():
        ...     _ = [p.fill_(1.0) for p in model.parameters()]
        >>> model(torch.ones(2, 4)).tolist()  # relu(4 / sqrt(4)) = 2 per unit, 4 * 2 / 4
        [[2.0], [2.0]]
    """

    def __init__(
        self,
        in_features: int,
        out_features: int = 1,
        width: int = 512,
        activation: str = "tanh",
        seed: int | torch.Generator | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__(in_features, out_features, width, 1, activation, seed, dtype)

    def readout_divisor(self) -> float:
        """The readout's scale: m in the mean-field parameterisation."""
        return float(self.readout.in_features)
