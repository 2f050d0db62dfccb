"""Probes measured for all members of an ensemble at once, where the probe's formula allows it.

Exactly these classes (a subclass may measure something else):
- `LossProbe`: per chunk of each split, one pass of the stacked members gives every member's mean loss and
  accuracy, with the chunk weighting of `tdlab.probes.loss.loss_and_accuracy`;
- `GradientNorm`: one backward pass of the summed members' losses per chunk of the train split gives every
  member's full-batch gradient;
- `ParameterNorm`, `UpdateNorm`: norms of the stacked tensors per member;
- `Sharpness` (of the whole Hessian, by exact products): each member's own Lanczos run, warm-started from its own
  state, with the Hessian-vector products of all members computed at once (`members_hvp`, `run_products_together`).

The loss probe's chunks hold at most `probe.batch_size` and about `CHUNK_ROWS` / N examples: on 2 CPU threads, 32
small MLPs evaluate 5000 examples in 36 ms in chunks of 128 against 52-62 ms in chunks of 512-1024 (their
activations outgrow the cache), and 8 or 128 members do best at the same 4096 rows (chunks of 512 and 32).
Gradients and Hessian-vector products go the other way (32 members' products on 512 examples: 40-45 ms in one
chunk, 45-58 ms in chunks of 128) and use the probe set's chunks, as the single-model probes do. The ensemble
trainer hands these metrics to each member's `ProbeSet.measure(given=...)`, which records them as if measured
there; every other probe is measured member by member.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from typing import TypeVar

import torch
from torch import Tensor

from tdlab.curvature import LinearOperator
from tdlab.ensemble.stacked import StackedModels
from tdlab.probes import GradientNorm, LossProbe, ParameterNorm, Probe, ProbeSet, Sharpness, UpdateNorm
from tdlab.probes.gradient import member_norms
from tdlab.probes.loss import correct
from tdlab.probes.updates import member_update_norms

Measurements = list[dict[str, dict[str, float]]]  # per member: probe name -> metrics
Result = TypeVar("Result")
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
    if inputs.shape[0] == 0:
        raise ValueError("inputs: expected at least one example, got 0")
    reference = next(iter(models.params.values()))
    loss = torch.zeros(len(models), device=reference.device, dtype=reference.dtype)
    right = torch.zeros(len(models), device=reference.device, dtype=reference.dtype)
    with torch.no_grad():
        for outputs, each_targets, weight in _chunks(models, inputs, targets, batch_size):
            loss += losses_of(outputs, each_targets) * weight
            if classification:
                right += correct(outputs, each_targets).flatten(1).sum(dim=1)
    return loss, (right / inputs.shape[0] if classification else None)


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
    names, leaves = list(models.params), list(models.params.values())
    total = [torch.zeros_like(leaf) for leaf in leaves]
    with torch.enable_grad():
        for outputs, each_targets, weight in _chunks(models, inputs, targets, batch_size):
            loss = losses_of(outputs, each_targets).sum() * weight
            torch._foreach_add_(total, torch.autograd.grad(loss, leaves))
    return dict(zip(names, total, strict=True))


def members_hvp(
    models: StackedModels,
    losses_of: Callable[[Tensor, Tensor], Tensor],
    inputs: Tensor,
    targets: Tensor,
    batch_size: int | None = None,
) -> Callable[[Tensor], Tensor]:
    """(V, rows) -> (H_m V[m])_m: the Hessian-vector products of the members in `rows` at the current parameters,
    for V (N, P) holding their vectors flat in the order of `models.params` (zeros elsewhere; so are the other
    rows of the result). The Hessian of the summed members' losses is block diagonal (members share no parameter),
    so one double backward pass per chunk (reverse over reverse, as `Objective.hvp`) gives them all; only the
    members in `rows` are evaluated."""
    leaves = list(models.params.values())
    sizes = [leaf[0].numel() for leaf in leaves]

    def product(V: Tensor, rows: Tensor) -> Tensor:
        vectors = [part.reshape(leaf.shape) for part, leaf in zip(V.split(sizes, dim=1), leaves, strict=True)]
        total = torch.zeros_like(V)
        with torch.enable_grad():
            for outputs, each_targets, weight in _chunks(models, inputs, targets, batch_size, rows):
                loss = losses_of(outputs, each_targets).sum() * weight
                grads = torch.autograd.grad(loss, leaves, create_graph=True)
                products = torch.autograd.grad(grads, leaves, grad_outputs=vectors)
                total += torch.cat([p.flatten(1) for p in products], dim=1)
        return total

    return product


def run_products_together(
    computations: Mapping[int, Generator[Tensor, Tensor, Result]],
    products: Callable[[Tensor, Tensor], Tensor],
    shape: tuple[int, int],
) -> dict[int, Result]:
    """`tdlab.curvature.run_products` for one computation per member (member index -> computation), their
    products computed at once: each round puts the vectors the unfinished computations ask for into the rows of
    their members of V (`shape` = (members, size); zeros elsewhere) and sends each its row of products(V, rows),
    `rows` the unfinished members (so that the finished ones cost nothing)."""
    results: dict[int, Result] = {}
    pending: dict[int, Tensor] = {}

    def advance(m: int, answer: Tensor | None) -> None:
        try:
            pending[m] = next(computations[m]) if answer is None else computations[m].send(answer)
        except StopIteration as done:
            pending.pop(m, None)
            results[m] = done.value

    for m in computations:
        advance(m, None)
    while pending:
        reference = next(iter(pending.values()))
        V = torch.zeros(shape, device=reference.device, dtype=reference.dtype)
        for m, v in pending.items():
            V[m] = v
        W = products(V, torch.tensor(sorted(pending), device=V.device))
        for m in list(pending):
            advance(m, W[m])
    return results


def _chunks(
    models: StackedModels, inputs: Tensor, targets: Tensor, batch_size: int | None, rows: Tensor | None = None
) -> Iterator[tuple[Tensor, Tensor, float]]:
    """For each chunk of at most `batch_size` of the n shared examples (None: one chunk): the outputs (N, b, out)
    of the members (or of those in `rows`), the targets repeated for each of them and the chunk's weight b / n.
    The data go to the members' device, floating data in their dtype; the outputs are computed as the caller
    resumes the iterator (inside its grad mode)."""
    reference = next(iter(models.params.values()))
    n = inputs.shape[0]
    size = n if batch_size is None else batch_size
    for start in range(0, n, size):
        x = inputs[start : start + size].to(reference.device)
        x = x.to(reference.dtype) if x.is_floating_point() else x
        y = targets[start : start + size].to(reference.device)
        y = y.to(reference.dtype) if y.is_floating_point() else y
        outputs = models.outputs(x, rows)
        yield outputs, y.expand(outputs.shape[0], *y.shape), y.shape[0] / n


def _chunk_size(models: StackedModels, cap: int | None) -> int:
    size = max(1, CHUNK_ROWS // len(models))
    return size if cap is None else min(size, cap)


def measure_together(
    step: int,
    due: Sequence[Probe],
    models: StackedModels,
    members: Sequence[ProbeSet],
    losses_of: Callable[[Tensor, Tensor], Tensor],
    previous: Mapping[str, Tensor] | None = None,
    alive: Sequence[int] | None = None,
) -> Measurements:
    """The metrics at `step` of the `due` probes that can be measured for all members at once, per member by probe
    name (empty dicts when none can). `members` are the members' probe sets (they share data, loss and task; a
    probe with state, as the sharpness probe's warm start, keeps it in each member's own instance), `previous` the
    stacked parameters before the step (None: probes that need them are left out, as `ProbeSet` does). Iterative
    probes (sharpness) run for the `alive` members only (default: all); the others get no metrics from them."""
    probes = members[0]
    alive = range(len(models)) if alive is None else alive
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
                    models, losses_of, *data.tensors, chunk, probes.task == "classification"
                )
                record(probe, [{f"{split}/loss": value} for value in loss.tolist()])
                if accuracy is not None:
                    record(probe, [{f"{split}/accuracy": value} for value in accuracy.tolist()])
        elif kind is GradientNorm:
            grads = members_gradients(models, losses_of, *probes.train.tensors, probes.batch_size)
            record(probe, member_norms(grads, "grad/norm"))
        elif kind is ParameterNorm:
            record(probe, member_norms(params, "param/norm"))
        elif kind is UpdateNorm and previous is not None:
            record(probe, member_update_norms(params, previous))
        elif kind is Sharpness and probe.blocks is None and probe.batches is None and probe.hvp == "exact":
            data = probes.train.subset(probe.subset, probe.seed).tensors
            product = members_hvp(models, losses_of, *data, probes.batch_size)
            reference = next(iter(params.values()))
            size = sum(p[0].numel() for p in params.values())
            op = LinearOperator((size, size), reference.dtype, reference.device)
            own = {m: next(p for p in members[m].probes if p.name == probe.name) for m in alive}
            computations = {m: p.eigenpairs(op, step) for m, p in own.items()}
            for m, result in run_products_together(computations, product, (len(models), size)).items():
                measured[m].setdefault(probe.name, {}).update(own[m].record(result))
    return measured
