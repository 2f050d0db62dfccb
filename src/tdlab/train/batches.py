"""The order in which training visits its examples: a pure function of (seed, step), written once.

Three orders, as the lectures compare them:

- ``"reshuffle"`` (random reshuffling, sampling without replacement): epoch e visits the training set in the order
  of a permutation seeded by (seed, e); step t of the run takes slot t mod (n // b) of epoch t // (n // b) (the last
  n mod b examples of each epoch's order are left out);
- ``"replacement"``: every mini-batch is b indices drawn uniformly with replacement, seeded by (seed, t);
- ``"cyclic"``: the same fixed order every epoch (0, 1, ..., n - 1), no randomness.

Because a batch depends only on (seed, step), a resumed run sees exactly the batches the uninterrupted run would
have seen, and an ensemble member sees exactly the batches of its lone run.
"""

from __future__ import annotations

import functools
from typing import Literal

import torch
from torch import Tensor

BatchOrder = Literal["reshuffle", "replacement", "cyclic"]
BATCH_ORDERS: tuple[BatchOrder, ...] = ("reshuffle", "replacement", "cyclic")


def batch_slot(num_examples: int, batch_size: int, step: int) -> tuple[int, slice]:
    """The epoch of optimiser step `step` (0-based) and the slice of that epoch's order holding its mini-batch.

    Example:
        >>> batch_slot(10, 3, 4)
        (1, slice(3, 6, None))
    """
    epoch, position = divmod(step, num_examples // batch_size)
    return epoch, slice(position * batch_size, (position + 1) * batch_size)


@functools.lru_cache(maxsize=1024)
def epoch_order(num_examples: int, seed: int, epoch: int) -> Tensor:
    """The order in which epoch `epoch` visits the training set (cached: one permutation per epoch)."""
    return torch.randperm(num_examples, generator=_generator(seed, epoch))


def _generator(seed: int, index: int) -> torch.Generator:
    """A CPU generator seeded by (seed, index), the seed wrapped into torch's 64-bit range (unchanged below 1.8e13)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + index) % 2**64)


def batch_indices(
    num_examples: int, batch_size: int | None, seed: int, step: int, order: BatchOrder = "reshuffle"
) -> Tensor | None:
    """Indices (CPU, int64) of the mini-batch of optimiser step `step` (0-based); None for full batch.

    Example:
        >>> batch_indices(6, 2, seed=0, step=1, order="cyclic").tolist()
        [2, 3]
        >>> batch_indices(6, None, seed=0, step=1) is None
        True
    """
    if order not in BATCH_ORDERS:
        raise ValueError(f"batch_order: expected one of {', '.join(BATCH_ORDERS)}, got {order!r}")
    if batch_size is None or batch_size >= num_examples:
        return None
    if order == "replacement":
        return torch.randint(num_examples, (batch_size,), generator=_generator(seed, step))
    epoch, rows = batch_slot(num_examples, batch_size, step)
    if order == "cyclic":
        return torch.arange(num_examples)[rows]
    return epoch_order(num_examples, seed, epoch)[rows]
