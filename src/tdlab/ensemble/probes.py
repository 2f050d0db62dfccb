"""Probes measured for all members of an ensemble at once, where the probe's formula allows it.

Exactly these classes (a subclass may measure something else): `LossProbe` (per chunk of each split, one pass of
the stacked members gives every member's mean loss and accuracy, with the chunk weighting of
`tdlab.probes.loss.loss_and_accuracy`), `GradientNorm` (one backward pass of the summed members' losses per chunk
of the train split gives every member's full-batch gradient), `ParameterNorm` and `UpdateNorm` (norms of the
stacked tensors per member). The chunks hold at
most `probe.batch_size` and about `CHUNK_ROWS` / N examples: on 2 CPU threads, 32 small MLPs evaluate 5000
examples in 36 ms in chunks of 128 against 52-62 ms in chunks of 512-1024 (their activations outgrow the cache),
and 8 or 128 members do best at the same 4096 rows (chunks of 512 and 32). The ensemble trainer
hands these metrics to each member's `ProbeSet.measure(given=...)`, which records them as if measured there;
every other probe is measured member by member.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

from tdlab.ensemble.stacked import StackedModels
from tdlab.probes import GradientNorm, LossProbe, ParameterNorm, Probe, ProbeSet, UpdateNorm
from tdlab.probes.gradient import member_norms
from tdlab.probes.loss import correct
from tdlab.probes.updates import member_update_norms

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
            x, y = _chunk(inputs, models, start, size), _chunk(targets, models, start, size)
            outputs, each_y = models.outputs(x), y.expand(members, *y.shape)
            loss += losses_of(outputs, each_y) * (y.shape[0] / n)
            if classification:
                right += correct(outputs, each_y).flatten(1).sum(dim=1)
    return loss, (right / n if classification else None)


def members_gradients(
    models: StackedModels,
    losses_of: Callable[[Tensor, Tensor], Tensor],
    inputs: Tensor,
    targets: Tensor,
    batch_size: int | None = None,
) -> dict[str, Tensor]:
    """Every member's full-batch gradient grad (1/n) sum_i l(f_m(x_i), y_i), stacked (N, *shape) by parameter name,
    accumulated over chunks of `batch_size` examples weighted by n_b / n (members share no parameter, so the
    gradient of the summed losses holds each member's own)."""
    n = inputs.shape[0]
    size = n if batch_size is None else batch_size
    names, leaves = list(models.params), list(models.params.values())
    total = [torch.zeros_like(leaf) for leaf in leaves]
    with torch.enable_grad():
        for start in range(0, n, size):
            x, y = _chunk(inputs, models, start, size), _chunk(targets, models, start, size)
            losses = losses_of(models.outputs(x), y.expand(len(models), *y.shape)) * (y.shape[0] / n)
            torch._foreach_add_(total, torch.autograd.grad(losses.sum(), leaves))
    return dict(zip(names, total, strict=True))


def _chunk(data: Tensor, models: StackedModels, start: int, size: int) -> Tensor:
    """Rows start .. start + size of `data` on the members' device (floating data in their dtype)."""
    reference = next(iter(models.params.values()))
    chunk = data[start : start + size].to(reference.device)
    return chunk.to(reference.dtype) if chunk.is_floating_point() else chunk


def _chunk_size(models: StackedModels, cap: int | None) -> int:
    size = max(1, CHUNK_ROWS // len(models))
    return size if cap is None else min(size, cap)


def measure_together(
    due: Sequence[Probe],
    models: StackedModels,
    probes: ProbeSet,
    losses_of: Callable[[Tensor, Tensor], Tensor],
    previous: Mapping[str, Tensor] | None = None,
) -> Measurements:
    """The metrics of the `due` probes that can be measured for all members at once, per member by probe name
    (empty dicts when none can); `probes` is any member's set (they share data, loss and task), `previous` the
    stacked parameters before the step (None: probes that need them are left out, as `ProbeSet` does)."""
    measured: Measurements = [{} for _ in range(len(models))]

    def record(probe: Probe, metrics: list[dict[str, float]]) -> None:
        for member, values in zip(measured, metrics, strict=True):
            member.setdefault(probe.name, {}).update(values)

    params = {name: p.detach() for name, p in models.params.items()}
    for probe in due:
        kind = type(probe)
        if kind is LossProbe:
            chunk = _chunk_size(models, probe.batch_size)
            for split, data in (("train", probes.train), ("test", probes.test)):
                if data is None:
                    continue
                loss, accuracy = members_loss_and_accuracy(
                    models, losses_of, *data, chunk, probes.task == "classification"
                )
                record(probe, [{f"{split}/loss": value} for value in loss.tolist()])
                if accuracy is not None:
                    record(probe, [{f"{split}/accuracy": value} for value in accuracy.tolist()])
        elif kind is GradientNorm:
            grads = members_gradients(models, losses_of, *probes.train, _chunk_size(models, probes.batch_size))
            record(probe, member_norms(grads, "grad/norm"))
        elif kind is ParameterNorm:
            record(probe, member_norms(params, "param/norm"))
        elif kind is UpdateNorm and previous is not None:
            record(probe, member_update_norms(params, previous))
    return measured
