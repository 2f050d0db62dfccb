"""The one training loop of tdlab: model, loss, data, optimiser, schedule, batch order, probes -> metric rows.

`tdlab train` (with its run directory, checkpoints and resume), the ensembles and every catalogue experiment that
trains a network call `fit`. One step t = 1, 2, ..., steps:

    B_t = the mini-batch of step t - 1 (`tdlab.train.batches`: a pure function of the seed and the step),
    L_t = loss_fn(model(x_B), y_B)  (recorded as "train/batch_loss", with the learning rate "lr" it is taken at),
    w  <- optimizer.step()          (skipped, and training stopped, when L_t is not finite: the run diverged),
    scheduler.step(); probes due at t measure; callbacks see (t, L_t) and may stop training.

Data is either held in memory (a pair of tensors or a `TensorDataset`; inputs a tensor, tuple or dict), cut into
mini-batches by `batch_order`, or any re-iterable of batches (a `DataLoader`, reshuffling or not), visited pass
after pass in its own order. Optimisers that re-evaluate the loss (`torch.optim.LBFGS`, tdlab's trust region)
are stepped with a closure; those that need the gradient's graph (Newton) declare `create_graph = True`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from tdlab.oracles.data import Batch, call_with, check_batch, take_rows, to_device
from tdlab.probes import ProbeSet
from tdlab.train.batches import BatchOrder, batch_indices

Sink = Callable[[int, dict[str, float]], None]
Callback = Callable[[int, float], bool | None]
"""Called after optimiser step t as `callback(t, batch_loss)`; returning True stops training after step t."""


class MetricRows:
    """A sink that keeps every `(step, metrics)` it is sent, as tidy rows (step, name, value)."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, str, float]] = []

    def __call__(self, step: int, metrics: dict[str, float]) -> None:
        self.rows.extend((step, name, float(value)) for name, value in metrics.items())

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["step", "name", "value"])


@dataclass
class Fit:
    """What `fit` did.

    Attributes:
        steps: optimiser steps taken by the end (counting those before `start`).
        diverged_at: the step whose loss was not finite (no update was taken at it), or None.
        stopped: whether a callback stopped training before `steps`.
        metrics: tidy rows (step, name, value) of the batch losses, learning rates and probes, when `fit` kept them
            (no `sink` given); empty otherwise.
    """

    steps: int
    diverged_at: int | None = None
    stopped: bool = False
    metrics: pd.DataFrame = field(default_factory=lambda: MetricRows().frame())

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None


def training_batches(data: object, batch_size: int | None, seed: int, order: BatchOrder, start: int) -> Iterator[Batch]:
    """The mini-batches of steps `start`, `start + 1`, ... (endless).

    In-memory data (a pair or a `TensorDataset`) is cut by `tdlab.train.batches.batch_indices`; any other iterable
    is visited pass after pass in its own order (`batch_size` must then be None: its batches are its own), and
    `start` skips that many batches (a resumed run sees the batches the uninterrupted one would have).
    """
    if isinstance(data, TensorDataset):
        data = data.tensors
    if isinstance(data, tuple | list) and len(data) == 2 and isinstance(data[1], Tensor):
        inputs, targets = check_batch(tuple(data), "data")
        n = targets.shape[0]
        if batch_size is not None and not 1 <= batch_size <= n:
            raise ValueError(f"batch_size: expected 1..{n} (the number of training examples) or None, got {batch_size}")
        step = start
        while True:
            rows = batch_indices(n, batch_size, seed, step, order)
            if rows is None:
                yield inputs, targets
            else:
                yield take_rows(inputs, rows.to(targets.device)), targets[rows.to(targets.device)]
            step += 1
    if batch_size is not None:
        raise ValueError(f"batch_size: only for in-memory tensors; a {type(data).__name__} has its own batches")
    skip = start
    while True:
        seen = 0
        for batch in data:  # type: ignore[attr-defined]
            seen += 1
            if skip:
                skip -= 1
                continue
            yield check_batch(batch, "data")
        if seen == 0:
            raise ValueError("data: gave no batch")


def _device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype | None]:
    for p in model.parameters():
        return p.device, p.dtype
    return torch.device("cpu"), None


def fit(
    model: nn.Module,
    loss_fn: Callable[[Any, Tensor], Tensor],
    data: object,
    optimizer: torch.optim.Optimizer,
    steps: int,
    *,
    batch_size: int | None = None,
    batch_order: BatchOrder = "reshuffle",
    seed: int = 0,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    probes: ProbeSet | None = None,
    callbacks: Sequence[Callback] = (),
    start: int = 0,
    measure_start: bool = True,
    sink: Sink | None = None,
) -> Fit:
    """Train `model` in place for optimiser steps `start + 1` .. `steps`; see the module docstring.

    Args:
        model: any module; batches are moved to its device (floating tensors to its dtype).
        loss_fn: mean loss `loss_fn(outputs, targets)`.
        data: in-memory `(inputs, targets)` or a re-iterable of batches (see `training_batches`).
        optimizer: built on the model's parameters (`tdlab.optim.build_optimizer` or any `torch.optim` one).
        steps: the step count to reach.
        batch_size, batch_order, seed: the mini-batches of in-memory data (None: full batch, GD).
        scheduler: stepped once per optimiser step.
        probes: measured at their steps (and at `start` when `measure_start`); they share the sink.
        callbacks: see `Callback`.
        start: steps already taken (a resumed run).
        sink: receives `(step, metrics)`; None keeps the rows in `Fit.metrics`.

    Example:
        >>> X = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
        >>> model = nn.Linear(3, 1)
        >>> result = fit(model, nn.MSELoss(), (X, X.sum(1, keepdim=True)), torch.optim.SGD(model.parameters(), 0.1),
        ...              steps=200, batch_size=16)
        >>> result.steps, float(result.metrics.query("name == 'train/batch_loss'").value.iloc[-1]) < 1e-4
        (200, True)
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < start:
        raise ValueError(f"steps: expected an integer >= {start} (the steps already taken), got {steps!r}")
    recorder = MetricRows() if sink is None else None
    sink = recorder if sink is None else sink
    if probes is not None:
        probes.sink = sink
    device, dtype = _device_dtype(model)
    needs_closure = getattr(optimizer, "needs_closure", False) or isinstance(optimizer, torch.optim.LBFGS)
    create_graph = getattr(optimizer, "create_graph", False)
    batches = training_batches(data, batch_size, seed, batch_order, start)
    result = Fit(steps=start)
    if probes is not None and measure_start:
        probes.measure(start)
    for step in range(start + 1, steps + 1):
        inputs, targets = to_device(next(batches), device, dtype)
        model.train()
        lr = optimizer.param_groups[0]["lr"]

        def closure(inputs: Any = inputs, targets: Tensor = targets) -> Tensor:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(call_with(model, inputs), targets)
            if torch.isfinite(loss):
                with warnings.catch_warnings():
                    # The graph kept for Newton's Hessian-vector products references the parameters through their
                    # .grad (a cycle torch warns about); `fit` breaks it by clearing the gradients at the end.
                    warnings.filterwarnings("ignore", "Using backward\\(\\) with create_graph=True", UserWarning)
                    loss.backward(create_graph=create_graph)
            return loss

        probing = probes.step(step, batch=(inputs, targets), optimizer=optimizer) if probes else nullcontext()
        with probing:
            value = float(closure().detach())
            if math.isfinite(value):
                optimizer.step(closure) if needs_closure else optimizer.step()
                if scheduler is not None:
                    scheduler.step()
        sink(step, {"train/batch_loss": value, "lr": float(lr)})
        if not math.isfinite(value):
            result.diverged_at = step
            result.steps = step - 1
            break
        result.steps = step
        if any([bool(callback(step, value)) for callback in callbacks]):
            result.stopped = step < steps
            break
    if create_graph:
        optimizer.zero_grad(set_to_none=True)  # free the gradients' graph
    if recorder is not None:
        result.metrics = recorder.frame()
    return result
