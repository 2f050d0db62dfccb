"""N stacked networks trained at once by `tdlab.train.fit`, each member measured on its own, and zero padding.

`Members(models)` is `StackedModels` as one `nn.Module`: forward(X) gives every member's outputs (N, n, out) on
shared inputs X (n, *), and its parameters are the stacked tensors (N, *shape) themselves. Train it with the loss
`summed(loss_fn)`,

    L(outputs, Y) = sum_m L_m,   L_m = loss_fn(f_m(X), Y[:, m]),

targets Y (n, N, *) holding member m's in column m (examples first, so that `fit` cuts mini-batches of examples).
Members share no parameter, so the gradient of member m's slice of every stacked tensor is grad L_m alone, and an
element-wise `torch.optim` optimiser (SGD with momentum, Adam, weight decay; not norm clipping or L-BFGS) on the
stacked tensors takes exactly the N members' own steps: N independent runs (tested against N separate runs).
`MemberLosses` is the probe of every member's training loss and accuracy; a `fit` callback that reads it stops
training when every member fits.

`pad_to` stacks networks of different widths: a padded hidden unit has zero incoming and outgoing weights and zero
bias, so with phi(0) = 0 (ReLU, tanh) it outputs 0, its weights receive zero gradients (phi'(0) = 0 for ReLU in
torch, and the outgoing weight is 0 in any case), and it stays zero under SGD or Adam: the padded network computes
and learns exactly what the narrow one does.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pandas as pd
import torch
from torch import Tensor, nn

from tdlab.ensemble.stacked import StackedModels, member_losses
from tdlab.oracles.data import call_with
from tdlab.probes import Probe, ProbeContext
from tdlab.probes.base import to_model
from tdlab.probes.loss import correct


class Members(nn.Module):
    """The members of `models` as one module: forward(X) = their outputs (N, n, out) on shared inputs X (n, *).

    Its parameters are the stacked tensors of `models.params` (made `nn.Parameter`s where `models` runs through
    vmap), so an optimiser on `Members(models).parameters()` trains `models`.

    Example:
        >>> from tdlab.models import MLP
        >>> members = Members(StackedModels.of([MLP(3, 2, width=4, depth=1, seed=s) for s in range(5)]))
        >>> members(torch.randn(7, 3)).shape, len(list(members.parameters()))
        (torch.Size([5, 7, 2]), 4)
    """

    def __init__(self, models: StackedModels):
        super().__init__()
        self.models = models
        if models.stacked is not None:
            self.stacked = models.stacked  # holds the stacked tensors as its own parameters
        else:
            models.params.update({name: nn.Parameter(p) for name, p in models.params.items()})
            self.params = nn.ParameterList(models.params.values())

    def forward(self, X: Tensor) -> Tensor:
        return self.models.outputs(X)


def summed(loss_fn: nn.Module) -> Callable[[Tensor, Tensor], Tensor]:
    """sum_m loss_fn(outputs[m], targets[:, m]) for outputs (N, n, *) and targets (n, N, *) (`member_losses`).

    Example:
        >>> summed(nn.MSELoss())(torch.zeros(2, 3, 4), torch.ones(3, 2, 4)).item()  # two members, 1 each
        2.0
    """
    each = member_losses(loss_fn)
    return lambda outputs, targets: each(outputs, targets.movedim(1, 0)).sum()


def accuracies(outputs: Tensor, labels: Tensor) -> Tensor:
    """Every member's accuracy (1/n) sum_i [argmax_c f_m(x_i)_c = y_mi] for outputs (N, n, C) and labels (N, n),
    or (n,) shared by the members; shape (N,).

    Example:
        >>> accuracies(torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]), torch.tensor([0, 0])).tolist()
        [0.5]
    """
    return correct(outputs, labels.expand(outputs.shape[:-1])).to(outputs.dtype).mean(dim=-1)


class MemberLosses(Probe):
    """Every member's mean training loss L_m (the loss `fit` minimises, member by member) and, for class labels,
    its training accuracy, on the probe set's train split of `Members` targets (n, N).

    Metrics: "train/loss/m" and "train/accuracy/m" for m = 0..N-1 (`by_member` turns them into rows with a
    `member` column); the last values are also kept as tensors (N,) in `losses` and `accuracies`, for callbacks.

    Cost: one forward pass of the stacked members over the train split.

    Example:
        >>> from tdlab.models import MLP
        >>> members = Members(StackedModels.of([MLP(3, 2, width=4, depth=1, seed=s) for s in range(2)]))
        >>> X, Y = torch.randn(6, 3), torch.randint(2, (6, 2))
        >>> probe = MemberLosses(nn.CrossEntropyLoss())
        >>> sorted(probe.measure(ProbeContext(0, members, summed(nn.CrossEntropyLoss()), train=(X, Y))))
        ['train/accuracy/0', 'train/accuracy/1', 'train/loss/0', 'train/loss/1']
    """

    name = "member_losses"

    def __init__(self, loss_fn: nn.Module, every: int = 1):
        super().__init__(every)
        self.each = member_losses(loss_fn)
        self.losses: Tensor | None = None
        self.accuracies: Tensor | None = None

    def measure(self, ctx: ProbeContext) -> dict[str, float]:
        n = ctx.train.num_examples
        losses, right = 0.0, 0.0
        for inputs, targets in ctx.train:
            outputs = call_with(ctx.model, to_model(inputs, ctx.model))
            targets = to_model(targets, ctx.model).movedim(1, 0)
            weight = targets.shape[1] / n
            losses = losses + self.each(outputs, targets) * weight
            if not targets.is_floating_point():
                right = right + accuracies(outputs, targets) * weight
        self.losses = losses
        metrics = {f"train/loss/{m}": value for m, value in enumerate(losses.tolist())}
        if isinstance(right, Tensor):
            self.accuracies = right
            metrics.update({f"train/accuracy/{m}": value for m, value in enumerate(right.tolist())})
        return metrics


def by_member(metrics: pd.DataFrame) -> pd.DataFrame:
    """The rows of per-member metrics ("train/loss/3") with the member in a column `member` and the name without
    it ("train/loss"); other rows are dropped.

    Example:
        >>> frame = pd.DataFrame({"step": [0, 0, 0], "name": ["train/loss/0", "train/loss/1", "lr"], "value": 1.0})
        >>> by_member(frame)[["step", "member", "name"]].values.tolist()
        [[0, 0, 'train/loss'], [0, 1, 'train/loss']]
    """
    parts = metrics["name"].str.extract(r"^(?P<base>.+)/(?P<member>\d+)$")
    rows = metrics.assign(name=parts["base"], member=parts["member"]).dropna(subset=["member"])
    return rows.astype({"member": int}).reset_index(drop=True)


def pad_to(model: nn.Module, template: nn.Module) -> nn.Module:
    """A copy of `template` whose every parameter is zero except the leading block, which holds `model`'s.

    `template` must have `model`'s parameter names with shapes at least as large in every dimension, and no
    normalisation layers (a padded unit must output phi(0) = 0).

    Example:
        >>> from tdlab.models import MLP
        >>> small, wide = MLP(3, 2, width=4, depth=1, seed=0), MLP(3, 2, width=9, depth=1, seed=1)
        >>> x = torch.randn(5, 3)
        >>> torch.allclose(pad_to(small, wide)(x), small(x))
        True
    """
    padded = copy.deepcopy(template)
    source = dict(model.named_parameters())
    with torch.no_grad():
        for name, target in padded.named_parameters():
            if name not in source or any(a > b for a, b in zip(source[name].shape, target.shape, strict=True)):
                raise ValueError(f"template: expected a parameter {name!r} at least as large as the model's")
            target.zero_()
            target[tuple(slice(0, s) for s in source[name].shape)] = source[name]
    return padded
