"""Gradient noise: the spread of per-example gradients around their mean."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap
from torch.utils._pytree import tree_map

from tdlab.oracles import Params, trainable_parameters
from tdlab.oracles.data import Inputs, as_batches, call_args
from tdlab.probes.base import Probe, ProbeContext, to_model

_SOURCES = ("subset", "batch")


def per_example_gradients(
    model: nn.Module, loss_fn: Callable[[Any, Tensor], Tensor], inputs: Inputs, targets: Tensor
) -> Params:
    """Gradients g_i = grad_theta l(f(x_i; theta), y_i) of each example, stacked along a leading axis.

    Computed as `vmap(grad(...))` over examples (torch.func), each example passed as a batch of one, at the
    model's current parameters and in its current mode. BatchNorm in train mode couples the examples of a
    batch, so per-example gradients do not exist there: a ValueError says so.

    Example:
        >>> model = nn.Linear(3, 2)
        >>> G = per_example_gradients(model, nn.MSELoss(), torch.randn(5, 3), torch.randn(5, 2))
        >>> G["weight"].shape
        torch.Size([5, 2, 3])
    """
    coupled = [name for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if coupled and any(model.get_submodule(name).training for name in coupled):
        raise ValueError(
            f"model: per-example gradients are undefined with BatchNorm in train mode (modules {coupled}); "
            "measure in eval mode (ProbeSet(eval_mode=True)) or use a per-example norm (LayerNorm, GroupNorm)"
        )
    params = trainable_parameters(model)
    buffers = dict(model.named_buffers())

    def example_loss(p: Params, x: Inputs, y: Tensor) -> Tensor:
        args, kwargs = call_args(tree_map(lambda t: t.unsqueeze(0), x))
        return loss_fn(functional_call(model, (p, buffers), args, kwargs), y.unsqueeze(0))

    return vmap(grad(example_loss), in_dims=(None, 0, 0), randomness="different")(params, inputs, targets)


def gradient_noise(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    inputs: Inputs,
    targets: Tensor,
    batch_size: int | None = None,
    chunk_size: int | None = None,
) -> dict[str, float]:
    """Mean and covariance trace of per-example gradients g_1..g_n, and the noise of a mini-batch of size B.

        g = (1/n) sum_i g_i,   tr(Sigma) = 1/(n-1) sum_i ||g_i - g||^2,
        noise of a mini-batch gradient = tr(Sigma) / B,   SNR = ||g||^2 / (tr(Sigma) / B),
        gradient noise scale B_simple = tr(Sigma) / ||g||^2  (McCandlish et al. 2018, "An Empirical Model of
        Large-Batch Training", eq. 2.4).

    B is `batch_size` (None: n). Keys "noise/grad_mean_norm" (||g||), "noise/grad_var" (tr(Sigma)),
    "noise/batch_var" (tr(Sigma)/B), "noise/snr", "noise/scale". The per-example gradients are computed
    `chunk_size` examples at a time (None: all at once) and the chunks' means and sums of squared deviations
    merged exactly (Chan, Golub and LeVeque 1979), so memory is chunk_size x (number of parameters).

    Example:
        >>> model = nn.Linear(3, 1)
        >>> stats = gradient_noise(model, nn.MSELoss(), torch.randn(32, 3), torch.randn(32, 1), batch_size=8)
        >>> abs(stats["noise/batch_var"] * 8 - stats["noise/grad_var"]) < 1e-5
        True
    """
    n = targets.shape[0]
    if n < 2:
        raise ValueError(f"inputs: expected at least 2 examples for a variance, got {n}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer or None, got {batch_size}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size: expected a positive integer or None, got {chunk_size}")
    count, mean, squares = 0, None, None
    for x, y in as_batches((inputs, targets), chunk_size):
        x, y = to_model(x, model), to_model(y, model)
        G = per_example_gradients(model, loss_fn, x, y)
        flat = torch.cat([g.reshape(y.shape[0], -1) for g in G.values()], dim=1)
        chunk_mean = flat.mean(dim=0)
        chunk_squares = (flat - chunk_mean).square().sum()
        if mean is None:
            count, mean, squares = flat.shape[0], chunk_mean, chunk_squares
            continue
        total = count + flat.shape[0]
        delta = chunk_mean - mean
        squares = squares + chunk_squares + delta.square().sum() * (count * flat.shape[0] / total)
        mean = mean + delta * (flat.shape[0] / total)
        count = total
    trace = float(squares) / (n - 1)
    mean_sq = float(mean.square().sum())
    batch_var = trace / (n if batch_size is None else batch_size)
    return {
        "noise/grad_mean_norm": mean_sq**0.5,
        "noise/grad_var": trace,
        "noise/batch_var": batch_var,
        "noise/snr": mean_sq / batch_var if batch_var > 0 else float("inf"),
        "noise/scale": trace / mean_sq if mean_sq > 0 else float("inf"),
    }


class GradientNoise(Probe):
    """Gradient noise of the train loss from per-example gradients (see `gradient_noise` for the formulas).

    Measured on a fixed subset of `num_examples` train points drawn once with `seed` (`source="subset"`,
    comparable across steps) or on the step's mini-batch (`source="batch"`). B in tr(Sigma)/B is `batch_size`,
    or by default the size of the step's mini-batch when there is one, else the number of examples used.
    Metrics: "noise/grad_mean_norm", "noise/grad_var", "noise/batch_var", "noise/snr", "noise/scale".

    Cost: one forward and one backward pass over the examples (vectorised per example with vmap), memory
    chunk_size x (number of parameters).

    Example:
        >>> model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
        >>> ctx = ProbeContext(0, model, nn.MSELoss(), train=(torch.randn(64, 3), torch.randn(64, 1)))
        >>> GradientNoise(num_examples=32).measure(ctx)["noise/grad_var"] > 0
        True
    """

    name = "gradient-noise"

    def __init__(
        self,
        every: int = 1,
        source: str = "subset",
        num_examples: int = 256,
        batch_size: int | None = None,
        chunk_size: int | None = 64,
        seed: int = 0,
    ):
        super().__init__(every)
        if source not in _SOURCES:
            raise ValueError(f"source: expected one of 'subset', 'batch', got {source!r}")
        if num_examples < 2:
            raise ValueError(f"num_examples: expected an integer >= 2, got {num_examples}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer or None, got {batch_size}")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size: expected a positive integer or None, got {chunk_size}")
        self.source = source
        self.num_examples = num_examples
        self.batch_size = batch_size
        self.chunk_size = chunk_size
        self.seed = seed

    def _examples(self, ctx: ProbeContext) -> tuple[Inputs, Tensor]:
        """The step's mini-batch, or `num_examples` train points drawn once with `seed` (the first ones of
        streamed data), as one in-memory batch."""
        if self.source == "batch":
            if ctx.batch is None:
                raise ValueError("source: 'batch' needs the step's mini-batch, but the context has none")
            return ctx.batch.first(ctx.batch.num_examples)
        data = ctx.train.subset(self.num_examples, self.seed)
        return data.first(data.num_examples)

    def measure(self, ctx: ProbeContext) -> dict[str, float]:
        inputs, targets = self._examples(ctx)
        batch_size = self.batch_size
        if batch_size is None and ctx.batch is not None:
            batch_size = ctx.batch.num_examples
        return gradient_noise(ctx.model, ctx.loss_fn, inputs, targets, batch_size, self.chunk_size)
