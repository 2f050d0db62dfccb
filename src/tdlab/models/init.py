"""Weight initialisation schemes, with the per-entry variances that signal-propagation theory uses.

Every scheme draws the weights of a layer with fan-in n_in and fan-out n_out i.i.d. from a centred law with
variance

    normal   Var W_ij = s^2                       (the N(0, 1) init of the lectures, for s = 1)
    xavier   Var W_ij = s^2 * 2 / (n_in + n_out)  (Glorot & Bengio 2010, Gaussian form of their compromise)
    he       Var W_ij = s^2 * 2 / n_in            (He et al. 2015: keeps E[h^2] of ReLU nets constant)
    default  Var W_ij = s^2 / (3 n_in)            (torch's nn.Linear: U(-1/sqrt(n_in), 1/sqrt(n_in)), times s)
    zeros    W_ij = 0                             (e.g. the readout of a linear / random-features model)

where s is `scale`. The first three are Gaussian. Biases are N(0, bias_std^2) (zero by default), except
under "default", which keeps torch's U(-1/sqrt(n_in), 1/sqrt(n_in)) biases. In the mean-field notation of
Poole et al. (2016) and Schoenholz et al. (2017) the weight variance is sigma_w^2 = n_in * Var W_ij (2 for He,
1 for "default" with s = sqrt(3)).

Randomness: draws are made on the generator's device (CPU when none is given, from torch's global generator)
and copied to the parameter's device, so a seed gives the same weights on CPU and CUDA.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from tdlab.models._checks import check_choice

SCHEMES = ("normal", "xavier", "he", "default", "zeros")
_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def init_variance(scheme: str, fan_in: int, fan_out: int, scale: float = 1.0) -> float:
    """Variance of one weight entry under `scheme` (see the module docstring for the formulas and sources).

    Example:
        >>> init_variance("he", fan_in=100, fan_out=10)
        0.02
        >>> init_variance("xavier", fan_in=100, fan_out=300, scale=2.0)
        0.02
    """
    check_choice("scheme", scheme, SCHEMES)
    if fan_in < 1 or fan_out < 1:
        raise ValueError(f"fan_in, fan_out: expected positive integers, got {fan_in} and {fan_out}")
    base = {
        "normal": 1.0,
        "xavier": 2.0 / (fan_in + fan_out),
        "he": 2.0 / fan_in,
        "default": 1.0 / (3.0 * fan_in),
        "zeros": 0.0,
    }[scheme]
    return scale**2 * base


def fans(weight: Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of shape (out, in, *kernel): in * prod(kernel), out * prod(kernel).

    Example:
        >>> fans(torch.empty(8, 3, 5, 5))
        (75, 200)
    """
    receptive = math.prod(weight.shape[2:])
    return weight.shape[1] * receptive, weight.shape[0] * receptive


def as_generator(seed: int | torch.Generator | None) -> torch.Generator | None:
    """A CPU generator seeded with `seed` (int), the generator itself, or None (torch's global generator).

    Example:
        >>> as_generator(0).initial_seed()
        0
    """
    if seed is None or isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed: expected an int, a torch.Generator or None, got {type(seed).__name__}")
    return torch.Generator().manual_seed(seed)


def random_like(like: Tensor, generator: torch.Generator | None, uniform_bound: float | None = None) -> Tensor:
    """Standard normal draws, or U(-uniform_bound, uniform_bound) ones, with the shape, dtype and device of
    `like`; drawn on the generator's device (CPU without one) so that a seed gives the same numbers anywhere.

    Example:
        >>> sample = random_like(torch.empty(2, 3), torch.Generator().manual_seed(0), uniform_bound=0.1)
        >>> bool(sample.abs().max() <= 0.1)
        True
    """
    device = generator.device if generator is not None else torch.device("cpu")
    if uniform_bound is None:
        sample = torch.randn(like.shape, generator=generator, device=device, dtype=like.dtype)
    else:
        sample = torch.rand(like.shape, generator=generator, device=device, dtype=like.dtype)
        sample = (2 * sample - 1) * uniform_bound
    return sample.to(like.device)


@torch.no_grad()
def initialise(
    module: nn.Module,
    scheme: str,
    scale: float = 1.0,
    bias_std: float = 0.0,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """Re-initialise, in place, every nn.Linear and nn.Conv{1,2,3}d in `module` (itself included), in
    `module.modules()` order, weight then bias; returns `module`.

    Args:
        module: a layer or any module containing layers; norm layers keep their (1, 0) affine parameters.
        scheme: one of "normal", "xavier", "he", "default", "zeros" (formulas in the module docstring).
        scale: s, the multiplier of the weights' standard deviation (of torch's draw under "default").
        bias_std: standard deviation of the Gaussian biases; must be 0 under "default" (torch's biases kept).
        generator: source of randomness. Under "default" with no generator the tensors keep the draw torch
            made when the layer was built (only multiplied by `scale`); with one, they are redrawn from it.

    Example:
        >>> layer = initialise(nn.Linear(1000, 500), "he", generator=torch.Generator().manual_seed(0))
        >>> round(layer.weight.var().item() * 1000, 1)  # 2 / fan_in = 0.002
        2.0
    """
    check_choice("scheme", scheme, SCHEMES)
    if scale < 0:
        raise ValueError(f"scale: expected a non-negative number, got {scale}")
    if bias_std < 0:
        raise ValueError(f"bias_std: expected a non-negative number, got {bias_std}")
    if scheme == "default" and bias_std != 0:
        raise ValueError(f"bias_std: the 'default' scheme keeps torch's biases, expected 0.0, got {bias_std}")
    layers = [m for m in module.modules() if isinstance(m, _LAYERS)]
    if not layers:
        raise ValueError(f"module: expected nn.Linear or nn.Conv layers, found none in {type(module).__name__}")
    for layer in layers:
        fan_in, fan_out = fans(layer.weight)
        if scheme == "default":
            bound = 1.0 / math.sqrt(fan_in)
            if generator is not None:
                layer.weight.copy_(random_like(layer.weight, generator, uniform_bound=bound))
                if layer.bias is not None:
                    layer.bias.copy_(random_like(layer.bias, generator, uniform_bound=bound))
            layer.weight.mul_(scale)
            continue
        std = math.sqrt(init_variance(scheme, fan_in, fan_out, scale))
        if std > 0:
            layer.weight.copy_(std * random_like(layer.weight, generator))
        else:
            layer.weight.zero_()
        if layer.bias is not None and bias_std > 0:
            layer.bias.copy_(bias_std * random_like(layer.bias, generator))
        elif layer.bias is not None:
            layer.bias.zero_()
    return module
