"""Training several networks of one architecture at once (private to the generalisation experiments).

Width and seed sweeps train many small networks; one at a time they are dominated by per-step overhead. Here K
networks are stacked and evaluated together (`tdlab.ensemble.StackedModels`); the loss is the sum of the K
per-network losses, so the gradient of every stacked parameter is the K networks' own
gradients side by side, and an element-wise optimiser (SGD with momentum, Adam) on the stacked tensors is
exactly K independent runs.

Networks of different widths are stacked by zero-padding them to a common width (`pad_to`): a padded hidden unit
has zero incoming and outgoing weights and zero bias, so with phi(0) = 0 (ReLU, tanh) it outputs 0, its weights
receive zero gradients (phi'(0) = 0 for ReLU in torch, and the outgoing weight is 0 in any case), and it stays
zero under SGD or Adam: the padded network computes and learns exactly what the narrow one does.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn

from tdlab.ensemble import StackedModels, member_losses

_CROSS_ENTROPY = member_losses(nn.CrossEntropyLoss())


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


def cross_entropy(outputs: Tensor, labels: Tensor) -> Tensor:
    """Per-network mean cross-entropy, (1/n) sum_i -log softmax(f_k(x_i))[y_ki], for outputs (K, n, C) and
    labels (K, n); shape (K,).

    Example:
        >>> cross_entropy(torch.zeros(2, 3, 4), torch.zeros(2, 3, dtype=torch.long)).tolist()  # log 4
        [1.3862943649291992, 1.3862943649291992]
    """
    return _CROSS_ENTROPY(outputs, labels)


def squared_error(outputs: Tensor, labels: Tensor) -> Tensor:
    """Per-network mean squared error to one-hot targets, (1/n) sum_i ||f_k(x_i) - e_(y_ki)||^2 / C (the mean over
    examples and outputs, as `nn.MSELoss`), for outputs (K, n, C) and labels (K, n); shape (K,).

    Example:
        >>> squared_error(torch.zeros(1, 2, 4), torch.zeros(1, 2, dtype=torch.long)).tolist()  # 1 / 4
        [0.25]
    """
    targets = nn.functional.one_hot(labels, outputs.shape[-1]).to(outputs.dtype)
    return (outputs - targets).square().mean(dim=(1, 2))


def accuracies(outputs: Tensor, labels: Tensor) -> Tensor:
    """Per-network accuracy (1/n) sum_i [argmax f_k(x_i) = y_ki] for outputs (K, n, C), labels (K, n) or (n,).

    Example:
        >>> accuracies(torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]), torch.tensor([0, 0])).tolist()
        [0.5]
    """
    return (outputs.argmax(dim=-1) == labels).to(outputs.dtype).mean(dim=-1)


StepHook = Callable[[int, Tensor, Tensor], bool]
Loss = Callable[[Tensor, Tensor], Tensor]


def fit(
    ensemble: StackedModels,
    X: Tensor,
    labels: Tensor,
    steps: int,
    optimizer: torch.optim.Optimizer,
    on_step: StepHook | None = None,
    loss: Loss = cross_entropy,
) -> int:
    """Full-batch training of every network k on (X, labels[k]) with `loss` (per-network, shape (K,); the
    cross-entropy by default), for at most `steps` steps of `optimizer` (built on `ensemble.params.values()`).

    Before each step t = 0, 1, ..., steps (so also after the last one) `on_step(t, outputs, losses)` sees the
    training outputs (K, n, C) and losses (K,) at the current parameters; it returns True to stop. Returns the
    number of steps taken.

    Example:
        >>> from tdlab.models import MLP
        >>> X, y = torch.randn(20, 3), torch.randint(2, (3, 20))
        >>> ensemble = StackedModels.of([MLP(3, 2, width=16, depth=1, seed=s) for s in range(3)])
        >>> opt = torch.optim.Adam(ensemble.params.values(), lr=0.05)
        >>> fit(ensemble, X, y, steps=500, optimizer=opt, on_step=lambda t, out, loss: bool(loss.max() < 0.05)) < 500
        True
    """
    for t in range(steps + 1):
        outputs = ensemble.outputs(X)
        losses = loss(outputs, labels)
        if on_step is not None and on_step(t, outputs.detach(), losses.detach()):
            return t
        if t == steps:
            return t
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        optimizer.step()
    return steps
