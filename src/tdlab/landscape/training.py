"""Training on flat parameter vectors: the end points of the landscape's paths and the centres of its slices.

A plain loop over the lecture update rules of `tdlab.optim.reference` (pure functions of w, g and state), on
mini-batches of an `Objective`'s data; the model's own parameters are never touched, so the initialisation
theta_0 and any point of the run stay available as vectors. Mini-batch SGD (Robbins & Monro 1951):

    w_{t+1} = w_t - eta grad L_{B_t}(w_t),

where B_t runs through a fresh random permutation of the training set every epoch (the last incomplete batch of
an epoch is dropped); Adam (Kingma & Ba 2015) uses the same gradients.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from tdlab.optim.reference import adam_step, gd_step
from tdlab.oracles import Objective
from tdlab.oracles.data import to_device
from tdlab.oracles.flat import unflatten

METHODS = ("sgd", "adam")


class TrainingRun(NamedTuple):
    """The outcome of `train_flat`.

    Attributes:
        theta: final parameters (flat, the objective's device and dtype).
        losses: (steps,) float64 mini-batch losses before each step, on the CPU (shorter if it diverged).
        diverged: whether a loss or gradient became non-finite (the run then stops there).
    """

    theta: Tensor
    losses: Tensor
    diverged: bool


def train_flat(
    obj: Objective,
    theta0: Tensor,
    method: str = "sgd",
    lr: float = 0.1,
    steps: int = 100,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
) -> TrainingRun:
    """Train the objective's model from theta0 by SGD or Adam on mini-batches of its data.

    Args:
        obj: the full-data `Objective`; mini-batches are drawn from its inputs and targets.
        theta0: the start (flat vector).
        method: "sgd" (plain, no momentum) or "adam" (default betas and eps).
        lr: step size.
        steps: number of updates.
        batch_size: examples per mini-batch; None for full-batch steps (GD, through `obj.value_and_gradient`,
            so an objective that adds a penalty to the data loss is followed exactly).
        generator: source of the epoch permutations (a CPU generator; seed it for reproducible runs).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from tdlab import Objective
        >>> X = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
        >>> obj = Objective(nn.Linear(3, 1), nn.MSELoss(), (X, X.sum(1, keepdim=True)))
        >>> run = train_flat(obj, obj.flat_parameters(), "adam", lr=0.05, steps=300, batch_size=16,
        ...                  generator=torch.Generator().manual_seed(0))
        >>> float(obj.value(run.theta)) < 1e-3, run.losses.shape
        (True, torch.Size([300]))
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of 'sgd', 'adam', got {method!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps: expected a non-negative integer, got {steps!r}")
    n = obj.num_examples
    if batch_size is not None and not (isinstance(batch_size, int) and 1 <= batch_size <= n):
        raise ValueError(
            f"batch_size: expected an integer in 1..{n} (the number of examples) or None, got {batch_size!r}"
        )
    if theta0.shape != (obj.dim,):
        raise ValueError(f"theta0: expected a flat vector of shape ({obj.dim},), got {tuple(theta0.shape)}")
    size = n if batch_size is None else batch_size
    if size < n and obj.data.tensors is None:
        raise ValueError("batch_size: mini-batches are drawn from in-memory data; this objective streams its data")
    per_epoch = n // size
    theta = theta0.detach().to(obj.device, obj.dtype).clone()
    state = None
    losses: list[float] = []
    order = torch.arange(n)
    for step in range(steps):
        if size == n:
            value, g = obj.value_and_gradient(theta)
            loss = float(value)
        else:
            if step % per_epoch == 0:
                order = torch.randperm(n, generator=generator)
            idx = order[(step % per_epoch) * size : (step % per_epoch + 1) * size]
            inputs, targets = obj.data.tensors  # type: ignore[misc]
            batch = to_device((inputs[idx.to(targets.device)], targets[idx.to(targets.device)]), obj.device, obj.dtype)
            loss, g = _batch_loss_and_gradient(obj, theta, *batch)
        losses.append(loss)
        if not (math.isfinite(loss) and bool(torch.isfinite(g).all())):
            return TrainingRun(theta, torch.tensor(losses, dtype=torch.float64), True)
        if method == "sgd":
            theta = gd_step(theta, g, lr)
        else:
            theta, state = adam_step(theta, g, state, lr)
    return TrainingRun(theta, torch.tensor(losses, dtype=torch.float64), False)


def _batch_loss_and_gradient(obj: Objective, theta: Tensor, inputs: Tensor, targets: Tensor) -> tuple[float, Tensor]:
    """Mini-batch loss and gradient at theta by reverse-mode autograd through `Objective.outputs` (a stateless
    functional call: the model's parameters are not read or written)."""
    theta = theta.detach().requires_grad_(True)
    loss = obj.loss_fn(obj.outputs(unflatten(theta, obj.params), inputs), targets)
    (g,) = torch.autograd.grad(loss, theta)
    return float(loss.detach()), g
