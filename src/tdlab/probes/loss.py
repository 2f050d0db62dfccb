"""Loss and accuracy on the train and test splits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from tdlab.oracles.data import as_batches, call_with
from tdlab.probes.base import Probe, ProbeContext, to_model


def correct(outputs: Tensor, targets: Tensor) -> Tensor:
    """Whether each prediction is right (shape of `targets`): the arg-max over classes (last dimension), or the
    sign of a single logit for binary targets.

    Example:
        >>> correct(torch.tensor([[2.0, 1.0], [0.0, 3.0]]), torch.tensor([0, 0])).tolist()
        [True, False]
    """
    if outputs.ndim > 1 and outputs.shape[-1] > 1:
        predictions = outputs.argmax(dim=-1)
    else:
        predictions = (outputs.reshape(targets.shape) > 0).to(targets.dtype)
    return predictions == targets


def loss_and_accuracy(
    model: nn.Module,
    loss_fn: Callable[[Any, Tensor], Tensor],
    data: object,
    batch_size: int | None = None,
    classification: bool = True,
) -> tuple[float, float | None]:
    """Mean loss (1/N) sum_i l(f(x_i), y_i) and accuracy (1/N) sum_i [argmax_c f(x_i)_c = y_i].

    `data` is anything `tdlab.oracles.as_batches` takes (tensors, a DataLoader, dict inputs, ...); in-memory
    data is evaluated in chunks of `batch_size` examples (None: one chunk), streamed data in its own batches.
    The batch losses, means themselves, are weighted by n_b / N. Accuracy is None when `classification` is
    False. Runs in the model's current mode, under `torch.no_grad`.

    Example:
        >>> model = nn.Linear(2, 3)
        >>> X, y = torch.randn(10, 2), torch.randint(0, 3, (10,))
        >>> loss, accuracy = loss_and_accuracy(model, nn.CrossEntropyLoss(), (X, y), batch_size=4)
        >>> 0.0 <= accuracy <= 1.0
        True
    """
    batches = as_batches(data).rebatched(batch_size)
    loss, hits, n = 0.0, 0.0, 0
    with torch.no_grad():
        for inputs, targets in batches:
            y = to_model(targets, model)
            outputs = call_with(model, to_model(inputs, model))
            loss += float(loss_fn(outputs, y)) * y.shape[0]
            if classification:
                hits += float(correct(outputs, y).sum())
            n += y.shape[0]
    if n == 0:
        raise ValueError("data: expected at least one example, got 0")
    return loss / n, (hits / n if classification else None)


class LossProbe(Probe):
    """Loss and accuracy on the train split and, when given, the test split.

    Metrics: "train/loss", "train/accuracy", "test/loss", "test/accuracy" (accuracy for classification only),
    from `loss_and_accuracy`.

    Cost: one forward pass over each split (no backward), in chunks of `batch_size` examples.

    Example:
        >>> model = nn.Linear(2, 3)
        >>> X, y = torch.randn(10, 2), torch.randint(0, 3, (10,))
        >>> ctx = ProbeContext(0, model, nn.CrossEntropyLoss(), train=(X, y))
        >>> sorted(LossProbe().measure(ctx))
        ['train/accuracy', 'train/loss']
    """

    name = "loss"

    def __init__(self, every: int = 1, batch_size: int | None = 1024):
        super().__init__(every)
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer or None, got {batch_size}")
        self.batch_size = batch_size

    def measure(self, ctx: ProbeContext) -> dict[str, float]:
        classification = ctx.task == "classification"
        metrics: dict[str, float] = {}
        for split, data in (("train", ctx.train), ("test", ctx.test)):
            if data is None:
                continue
            loss, accuracy = loss_and_accuracy(ctx.model, ctx.loss_fn, data, self.batch_size, classification)
            metrics[f"{split}/loss"] = loss
            if accuracy is not None:
                metrics[f"{split}/accuracy"] = accuracy
        return metrics
