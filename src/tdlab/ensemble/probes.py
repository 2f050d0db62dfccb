"""Probes measured for all members of an ensemble at once, where the probe's formula allows it.

`LossProbe` (exactly that class): per chunk of each split, one pass of the stacked members gives every member's
mean loss and accuracy, with the chunk weighting of `tdlab.probes.loss.loss_and_accuracy`. The chunks hold at
most `probe.batch_size` and about `CHUNK_ROWS` / N examples: on 2 CPU threads, 32 small MLPs evaluate 5000
examples in 36 ms in chunks of 128 against 52-62 ms in chunks of 512-1024 (their activations outgrow the cache),
and 8 or 128 members do best at the same 4096 rows (chunks of 512 and 32). The ensemble trainer
hands these metrics to each member's `ProbeSet.measure(given=...)`, which records them as if measured there;
every other probe is measured member by member.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from tdlab.ensemble.stacked import StackedModels
from tdlab.probes import LossProbe, Probe, ProbeSet
from tdlab.probes.loss import correct

Measurements = list[dict[str, dict[str, float]]]  # per member: probe name -> metrics
CHUNK_ROWS = 4096


def members_loss_and_accuracy(
    models: StackedModels,
    losses_of: Callable[[Tensor, Tensor], Tensor],
    inputs: Tensor,
    targets: Tensor,
    batch_size: int | None = None,
    classification: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """Every member's mean loss (1/n) sum_i l(f_m(x_i), y_i) and accuracy (1/n) sum_i [f_m(x_i) right], shape (N,),
    on shared data, in chunks of `batch_size` examples weighted by n_b / n (accuracy None for regression).

    Example:
        >>> from torch import nn
        >>> from tdlab.ensemble import member_losses
        >>> from tdlab.models import MLP
        >>> models = StackedModels.of([MLP(3, 2, width=4, depth=1, seed=s) for s in range(5)])
        >>> X, y = torch.randn(10, 3), torch.randint(2, (10,))
        >>> loss, accuracy = members_loss_and_accuracy(models, member_losses(nn.CrossEntropyLoss()), X, y, 4)
        >>> loss.shape, accuracy.shape
        (torch.Size([5]), torch.Size([5]))
    """
    n = inputs.shape[0]
    if n == 0:
        raise ValueError("inputs: expected at least one example, got 0")
    size = n if batch_size is None else batch_size
    members = len(models)
    reference = next(iter(models.params.values()))
    loss = torch.zeros(members, device=reference.device, dtype=reference.dtype)
    right = torch.zeros(members, device=reference.device, dtype=reference.dtype)
    with torch.no_grad():
        for start in range(0, n, size):
            x = inputs[start : start + size].to(reference.device)
            x = x.to(reference.dtype) if x.is_floating_point() else x
            y = targets[start : start + size].to(reference.device)
            outputs, each_y = models.outputs(x), y.expand(members, *y.shape)
            loss += losses_of(outputs, each_y) * (y.shape[0] / n)
            if classification:
                right += correct(outputs, each_y).flatten(1).sum(dim=1)
    return loss, (right / n if classification else None)


def measure_together(
    due: Sequence[Probe],
    models: StackedModels,
    probes: ProbeSet,
    losses_of: Callable[[Tensor, Tensor], Tensor],
) -> Measurements:
    """The metrics of the `due` probes that can be measured for all members at once, per member by probe name
    (empty dicts when none can); `probes` is any member's set (they share data, loss and task)."""
    measured: Measurements = [{} for _ in range(len(models))]
    for probe in due:
        if type(probe) is not LossProbe:
            continue
        for split, data in (("train", probes.train), ("test", probes.test)):
            if data is None:
                continue
            classification = probes.task == "classification"
            chunk = max(1, CHUNK_ROWS // len(models))
            chunk = chunk if probe.batch_size is None else min(chunk, probe.batch_size)
            loss, accuracy = members_loss_and_accuracy(models, losses_of, *data, chunk, classification)
            for m, value in enumerate(loss.tolist()):
                measured[m].setdefault(probe.name, {})[f"{split}/loss"] = value
            if accuracy is not None:
                for m, value in enumerate(accuracy.tolist()):
                    measured[m][probe.name][f"{split}/accuracy"] = value
    return measured
