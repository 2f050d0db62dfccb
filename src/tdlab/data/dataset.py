"""The dataset container every loader returns: train and test tensors, and what a model and a loss need."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

TASKS = ("classification", "regression")


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train and test split of a supervised task, as tensors.

    Args:
        X_train, X_test: floating inputs of shape (n, *features) (float32 from the loaders).
        y_train, y_test: int64 class labels of shape (n,) for classification; floating targets of shape
            (n, out) for regression.
        task: "classification" or "regression".
        num_classes: number of classes (classification), None for regression.
        name: a label for runs and figures.
        noisy_labels: bool mask over the training examples whose label was resampled (`with_label_noise`), or
            None.
        info: anything else a theory check needs, e.g. the teacher weights and the noise level of a synthetic
            task (tensors in it move with `.to`).

    Example:
        >>> X, y = torch.randn(12, 3), torch.randint(2, (12,))
        >>> data = Dataset(X[:8], y[:8], X[8:], y[8:], task="classification", num_classes=2, name="toy")
        >>> data.in_features, data.out_features, data.subset(5).train[0].shape
        (3, 2, torch.Size([5, 3]))
    """

    X_train: Tensor
    y_train: Tensor
    X_test: Tensor
    y_test: Tensor
    task: str
    num_classes: int | None
    name: str
    noisy_labels: Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task: expected one of {', '.join(map(repr, TASKS))}, got {self.task!r}")
        _check_split("train", self.X_train, self.y_train, self.task)
        _check_split("test", self.X_test, self.y_test, self.task)
        if self.X_train.shape[1:] != self.X_test.shape[1:] or self.y_train.shape[1:] != self.y_test.shape[1:]:
            raise ValueError("X_test, y_test: expected the feature and target shapes of X_train, y_train")
        if self.task == "regression" and self.num_classes is not None:
            raise ValueError(f"num_classes: expected None for regression, got {self.num_classes!r}")
        if self.task == "classification":
            k = self.num_classes
            if isinstance(k, bool) or not isinstance(k, int) or k < 2:
                raise ValueError(f"num_classes: expected an integer >= 2 for classification, got {k!r}")
            labels = torch.cat([self.y_train, self.y_test])
            if labels.numel() and (labels.min() < 0 or labels.max() >= k):
                raise ValueError(f"y_train, y_test: expected labels in 0..{k - 1}")
        mask = self.noisy_labels
        if mask is not None and (mask.dtype != torch.bool or mask.shape != self.y_train.shape[:1]):
            raise ValueError(f"noisy_labels: expected a bool mask of shape ({self.num_train},) or None")

    @property
    def num_train(self) -> int:
        """Number of training examples."""
        return self.X_train.shape[0]

    @property
    def num_test(self) -> int:
        """Number of test examples."""
        return self.X_test.shape[0]

    @property
    def in_features(self) -> int:
        """Number of input features once flattened."""
        return math.prod(self.X_train.shape[1:])

    @property
    def out_features(self) -> int:
        """Model outputs the task needs: num_classes (logits) or the target dimension."""
        return self.num_classes if self.num_classes is not None else self.y_train.shape[1]

    @property
    def train(self) -> tuple[Tensor, Tensor]:
        """(X_train, y_train), the `data` argument of `tdlab.Objective`."""
        return self.X_train, self.y_train

    @property
    def test(self) -> tuple[Tensor, Tensor]:
        """(X_test, y_test)."""
        return self.X_test, self.y_test

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Dataset:
        """A copy on `device` with floating tensors (inputs, regression targets, info) cast to `dtype`;
        class labels stay int64.

        Example:
            >>> data = Dataset(torch.randn(4, 2), torch.randn(4, 1), torch.randn(2, 2), torch.randn(2, 1),
            ...                task="regression", num_classes=None, name="toy")
            >>> data.to(dtype=torch.float64).y_train.dtype
            torch.float64
        """

        def move(t: Any) -> Any:
            if not isinstance(t, Tensor):
                return t
            return t.to(device=device, dtype=dtype if dtype is not None and t.is_floating_point() else None)

        return dataclasses.replace(
            self,
            X_train=move(self.X_train),
            y_train=move(self.y_train),
            X_test=move(self.X_test),
            y_test=move(self.y_test),
            noisy_labels=move(self.noisy_labels),
            info={key: move(value) for key, value in self.info.items()},
        )

    def subset(self, n_train: int) -> Dataset:
        """The first `n_train` training examples (the loaders shuffle, so subsets of growing size are nested
        random samples); the test set is unchanged.

        Example:
            >>> data = Dataset(torch.randn(4, 2), torch.randn(4, 1), torch.randn(2, 2), torch.randn(2, 1),
            ...                task="regression", num_classes=None, name="toy")
            >>> data.subset(3).num_train
            3
        """
        if isinstance(n_train, bool) or not isinstance(n_train, int) or not 1 <= n_train <= self.num_train:
            raise ValueError(f"n_train: expected an integer in 1..{self.num_train}, got {n_train!r}")
        return dataclasses.replace(
            self,
            X_train=self.X_train[:n_train],
            y_train=self.y_train[:n_train],
            noisy_labels=None if self.noisy_labels is None else self.noisy_labels[:n_train],
        )


def _check_split(split: str, X: Tensor, y: Tensor, task: str) -> None:
    if not X.is_floating_point() or X.ndim < 2:
        raise ValueError(f"X_{split}: expected a floating tensor (n, *features), got {X.dtype} {tuple(X.shape)}")
    if y.shape[:1] != X.shape[:1]:
        raise ValueError(f"y_{split}: expected {X.shape[0]} targets, one per input, got {y.shape[:1]}")
    if task == "classification" and (y.dtype != torch.int64 or y.ndim != 1):
        raise ValueError(f"y_{split}: expected int64 class labels (n,), got {y.dtype} {tuple(y.shape)}")
    if task == "regression" and (not y.is_floating_point() or y.ndim != 2):
        raise ValueError(f"y_{split}: expected floating targets (n, out), got {y.dtype} {tuple(y.shape)}")
