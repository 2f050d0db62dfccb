"""The loss a task is trained with, and classification accuracy."""

from __future__ import annotations

from torch import Tensor, nn

from tdlab.data.dataset import TASKS


def loss_for(task: str) -> nn.Module:
    """nn.CrossEntropyLoss() for "classification", nn.MSELoss() for "regression" (both averaged over examples;
    MSELoss also over outputs).

    Example:
        >>> loss_for("regression")
        MSELoss()
    """
    if task not in TASKS:
        raise ValueError(f"task: expected one of {', '.join(map(repr, TASKS))}, got {task!r}")
    return nn.CrossEntropyLoss() if task == "classification" else nn.MSELoss()


def accuracy(outputs: Tensor, targets: Tensor) -> float:
    """Fraction of examples whose arg-max output is the target class, (1/n) sum_i [argmax_k f_k(x_i) = y_i].

    Args:
        outputs: (n, C) logits or scores.
        targets: (n,) class indices, or (n, C) one-hot / probability targets (their arg-max is the class).

    Example:
        >>> import torch
        >>> accuracy(torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]]), torch.tensor([0, 1, 1]))
        0.6666666666666666
    """
    if outputs.ndim != 2 or outputs.shape[0] == 0:
        raise ValueError(f"outputs: expected logits of shape (n, C) with n >= 1, got {tuple(outputs.shape)}")
    if targets.ndim == 2:
        targets = targets.argmax(dim=1)
    if targets.shape != outputs.shape[:1]:
        n = outputs.shape[0]
        raise ValueError(f"targets: expected ({n},) class indices or ({n}, C) one-hot rows, got {tuple(targets.shape)}")
    return (outputs.argmax(dim=1) == targets).sum().item() / targets.shape[0]


def half_squared_error(outputs: Tensor, targets: Tensor) -> Tensor:
    """The lectures' regression loss (1/n) sum_i 1/2 ||f(x_i) - y_i||^2 for (n, K) outputs and targets (half of
    `nn.MSELoss` times K), whose Hessian in the outputs is the identity / n.

    Example:
        >>> import torch
        >>> half_squared_error(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]]))
        tensor(2.5000)
    """
    return 0.5 * (outputs - targets).pow(2).sum(dim=1).mean()
