"""Data as the user has it: a fixed, re-iterable sequence of `(inputs, targets)` batches.

Every instrument of tdlab that reads data (`Objective`, the probes, the landscape tools) takes it through
`as_batches`, which accepts

- a pair of tensors `(X, y)` or a `TensorDataset` of two tensors (held in memory; cut into chunks of
  `batch_size` examples, or one chunk),
- a `torch.utils.data.DataLoader` whose order is fixed (`shuffle=False`, or any sampler that is not a
  `RandomSampler`),
- any other re-iterable of batches (a list, a custom iterable class; not a one-shot generator).

A batch is `(inputs, targets)`: `targets` a tensor whose first dimension counts the examples, `inputs` a tensor
(called as `model(x)`), a tuple or list of tensors (`model(*x)`) or a dict of tensors (`model(**x)`, the Hugging
Face convention). Batches are moved to the model's device one at a time, floating-point tensors cast to the
model's dtype, so memory holds one batch (and its graph), never the whole dataset.

Why a reshuffling loader is refused: an oracle averages over a pass of the data, and curvature routines
(Lanczos, Hutchinson) assume that the matrix they multiply is the same at every product. A loader that draws a
new order at every pass changes the split into batches, so with BatchNorm in train mode, a `drop_last` loader or
rounding the function would change between queries. tdlab does not rebuild the user's loader: it refuses with
an error that names the fix (`shuffle=False`). Train with the shuffled loader, measure with a fixed one.

Example:
    >>> import torch
    >>> X, y = torch.randn(10, 3), torch.randn(10, 1)
    >>> data = as_batches((X, y), batch_size=4)
    >>> [targets.shape[0] for _, targets in data]
    [4, 4, 2]
    >>> data.num_examples
    10
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor
from torch.utils._pytree import tree_flatten, tree_map
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

Inputs = Tensor | tuple[Tensor, ...] | list[Tensor] | Mapping[str, Tensor]
Batch = tuple[Inputs, Tensor]


def call_with(fn: Callable[..., Any], inputs: Inputs) -> Any:
    """`fn(inputs)` for a tensor, `fn(*inputs)` for a tuple or list, `fn(**inputs)` for a dict.

    Example:
        >>> call_with(lambda a, b: a + b, {"a": 1, "b": 2})
        3
    """
    if isinstance(inputs, Mapping):
        return fn(**inputs)
    if isinstance(inputs, tuple | list):
        return fn(*inputs)
    return fn(inputs)


def call_args(inputs: Inputs) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The positional and keyword arguments of `call_with(fn, inputs)`, as `functional_call` takes them.

    Example:
        >>> call_args((1, 2))
        ((1, 2), {})
    """
    if isinstance(inputs, Mapping):
        return (), dict(inputs)
    if isinstance(inputs, tuple | list):
        return tuple(inputs), {}
    return (inputs,), {}


def to_device(tree: Any, device: torch.device, dtype: torch.dtype | None = None) -> Any:
    """Every tensor of a nested structure moved to `device`; floating-point tensors also cast to `dtype`.

    Example:
        >>> to_device({"x": torch.zeros(2), "mask": torch.ones(2, dtype=torch.long)}, "cpu", torch.float64)["x"].dtype
        torch.float64
    """

    def move(t: Any) -> Any:
        if not isinstance(t, Tensor):
            return t
        if dtype is not None and t.is_floating_point():
            return t.to(device, dtype)
        return t.to(device)

    return tree_map(move, tree)


def check_batch(batch: object, argument: str) -> Batch:
    if not (isinstance(batch, tuple | list) and len(batch) == 2):
        raise TypeError(
            f"{argument}: expected batches of (inputs, targets), got a {type(batch).__name__}"
            + (f" of length {len(batch)}" if isinstance(batch, tuple | list) else "")
        )
    inputs, targets = batch
    if not isinstance(targets, Tensor) or targets.ndim == 0:
        raise TypeError(f"{argument}: targets must be a tensor with one row per example, got {type(targets).__name__}")
    leaves = [t for t in tree_flatten(inputs)[0] if isinstance(t, Tensor)]
    if not isinstance(inputs, Tensor | tuple | list | Mapping) or not leaves:
        raise TypeError(
            f"{argument}: inputs must be a tensor, a tuple of tensors or a dict of tensors, got {type(inputs).__name__}"
        )
    first = leaves[0]
    if first.ndim == 0 or first.shape[0] != targets.shape[0]:
        raise ValueError(
            f"{argument}: inputs and targets must have the same number of examples, "
            f"got {tuple(first.shape)[:1]} and {targets.shape[0]}"
        )
    return inputs, targets


def take_rows(inputs: Inputs, rows: slice | Tensor) -> Inputs:
    return tree_map(lambda t: t[rows] if isinstance(t, Tensor) else t, inputs)


def concatenate(batches: Iterable[Batch]) -> Batch:
    """One batch holding the examples of all `batches`, in order (tensors concatenated along dimension 0).

    Example:
        >>> x, y = concatenate([(torch.zeros(2, 3), torch.zeros(2)), (torch.ones(1, 3), torch.ones(1))])
        >>> x.shape, y.tolist()
        (torch.Size([3, 3]), [0.0, 0.0, 1.0])
    """
    batches = list(batches)
    if not batches:
        raise ValueError("batches: expected at least one batch, got none")
    leaves, spec = zip(*(tree_flatten(b) for b in batches), strict=True)
    joined = [torch.cat(parts) if isinstance(parts[0], Tensor) else parts[0] for parts in zip(*leaves, strict=True)]
    return torch.utils._pytree.tree_unflatten(joined, spec[0])


class Batches:
    """A fixed, re-iterable sequence of `(inputs, targets)` batches; build it with `as_batches`.

    Attributes:
        tensors: `(inputs, targets)` when the whole data set is held in memory (a pair of tensors or a
            `TensorDataset`), else None (a loader or an iterable, streamed at every pass).
        batch_size: the chunk size of in-memory data (None: one chunk); a loader's batches are its own.
    """

    def __init__(self, source: Iterable[Batch] | None, tensors: Batch | None, batch_size: int | None):
        self._source = source
        self.tensors = tensors
        self.batch_size = batch_size
        self._num_examples: int | None = None if tensors is None else int(tensors[1].shape[0])

    def __iter__(self) -> Iterator[Batch]:
        if self.tensors is not None:
            inputs, targets = self.tensors
            n = targets.shape[0]
            size = n if self.batch_size is None else self.batch_size
            for start in range(0, n, size):
                rows = slice(start, min(start + size, n))
                yield take_rows(inputs, rows), targets[rows]
            return
        count = 0
        for batch in self._source:  # type: ignore[union-attr]
            inputs, targets = check_batch(batch, "data")
            count += targets.shape[0]
            yield inputs, targets
        if self._num_examples is not None and count != self._num_examples:
            raise ValueError(
                f"data: a pass gave {count} examples, an earlier pass {self._num_examples}; the batches must be "
                "the same at every pass (a loader with a fixed order, no random sampling)"
            )
        self._num_examples = count

    @property
    def num_examples(self) -> int:
        """N, the number of examples in one pass (counted by a pass when the data streams)."""
        if self._num_examples is None:
            for _ in self:
                pass
        assert self._num_examples is not None
        return self._num_examples

    def rebatched(self, batch_size: int | None) -> Batches:
        """The same data in chunks of `batch_size` (in-memory data only; a loader keeps its own batches)."""
        if self.tensors is None or batch_size == self.batch_size:
            return self
        return Batches(None, self.tensors, batch_size)

    def first(self, count: int) -> Batch:
        """The first `count` examples (all of them when there are fewer) as one in-memory batch.

        Example:
            >>> data = as_batches([(torch.zeros(3, 2), torch.zeros(3)), (torch.ones(3, 2), torch.ones(3))])
            >>> data.first(4)[1].tolist()
            [0.0, 0.0, 0.0, 1.0]
        """
        if self.tensors is not None:
            inputs, targets = self.tensors
            return take_rows(inputs, slice(0, count)), targets[:count]
        taken, parts = 0, []
        for inputs, targets in self:
            if taken >= count:
                break
            keep = min(count - taken, targets.shape[0])
            parts.append((take_rows(inputs, slice(0, keep)), targets[:keep]))
            taken += keep
        return concatenate(parts)

    def subset(self, count: int | None, seed: int) -> Batches:
        """`count` examples drawn once with `seed` from in-memory data (the same at every call), or the first
        `count` of streamed data (its order is fixed); all of them when `count` is None or too large."""
        if count is None or (self._num_examples is not None and count >= self._num_examples):
            return self
        if self.tensors is None:
            return Batches(None, self.first(count), self.batch_size)
        inputs, targets = self.tensors
        index = torch.randperm(targets.shape[0], generator=torch.Generator().manual_seed(seed))[:count]
        return Batches(
            None, (take_rows(inputs, index.to(targets.device)), targets[index.to(targets.device)]), self.batch_size
        )

    def minibatches(self, count: int, size: int | None, seed: int) -> Iterator[Batches]:
        """`count` disjoint mini-batches, one at a time: of in-memory data, consecutive chunks of `size` examples
        of a permutation drawn with `seed` (the same batches at every call); of streamed data, its first `count`
        batches (`size` must then be None).

        Example:
            >>> data = as_batches((torch.arange(10.0).view(10, 1), torch.arange(10)))
            >>> [b.num_examples for b in data.minibatches(3, 2, seed=0)]
            [2, 2, 2]
        """
        if self.tensors is None:
            if size is not None:
                raise ValueError("batch_size: streamed data has its own batches; leave it None")
            taken = 0
            for batch in self:
                if taken == count:
                    return
                taken += 1
                yield Batches(None, batch, None)
            if taken < count:
                raise ValueError(f"batches: expected {count} batches, the data has {taken}")
            return
        n = int(self.tensors[1].shape[0])
        if size is None or count * size > n:
            raise ValueError(
                f"batch_size: expected a positive integer with batches * batch_size <= {n} (the examples), got {size!r}"
            )
        inputs, targets = self.tensors
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(targets.device)
        for i in range(count):
            rows = order[i * size : (i + 1) * size]
            yield Batches(None, (take_rows(inputs, rows), targets[rows]), None)

    def __repr__(self) -> str:
        kind = "tensors" if self.tensors is not None else type(self._source).__name__
        return f"Batches({kind}, batch_size={self.batch_size})"


def _reshuffles(loader: DataLoader) -> bool:
    sampler = loader.batch_sampler.sampler if loader.batch_sampler is not None else loader.sampler
    return isinstance(sampler, RandomSampler) or isinstance(loader.sampler, RandomSampler)


def as_batches(data: object, batch_size: int | None = None, argument: str = "data") -> Batches:
    """`data` as a fixed, re-iterable sequence of `(inputs, targets)` batches (see the module docstring).

    Args:
        data: a pair of tensors, a `TensorDataset` of two tensors, a `DataLoader` with a fixed order, a
            `Batches`, or any re-iterable of batches.
        batch_size: for in-memory data, the chunk size (None: one chunk); must be None for a loader or an
            iterable, whose batches are their own.
        argument: the name of the argument in error messages.

    Example:
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> loader = DataLoader(TensorDataset(torch.randn(7, 2), torch.randn(7)), batch_size=3)
        >>> as_batches(loader).num_examples
        7
        >>> as_batches(DataLoader(loader.dataset, shuffle=True))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: data: the DataLoader reshuffles at every pass (a RandomSampler), ... shuffle=False)
    """
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size: expected a positive integer or None (one batch), got {batch_size!r}")
    if isinstance(data, Batches):
        return data.rebatched(batch_size) if batch_size is not None else data
    if isinstance(data, TensorDataset):
        if len(data.tensors) != 2:
            raise TypeError(
                f"{argument}: expected a TensorDataset of two tensors (inputs, targets), got {len(data.tensors)}"
            )
        data = data.tensors
    if isinstance(data, tuple | list) and len(data) == 2 and isinstance(data[1], Tensor):
        # A batch's targets are a tensor, never a batch: (inputs, targets) held in memory, not two batches.
        return Batches(None, check_batch(data, argument), batch_size)
    if isinstance(data, DataLoader) and _reshuffles(data):
        raise ValueError(
            f"{argument}: the DataLoader reshuffles at every pass (a RandomSampler), so the objective would change "
            "between queries; measure with a loader of a fixed order, "
            "e.g. DataLoader(dataset, batch_size, shuffle=False)"
        )
    if isinstance(data, Tensor) or not isinstance(data, Iterable):
        raise TypeError(
            f"{argument}: expected a pair of tensors (inputs, targets), a TensorDataset, a DataLoader or a "
            f"re-iterable of (inputs, targets) batches, got {type(data).__name__}"
        )
    if iter(data) is data:
        raise TypeError(
            f"{argument}: got a one-shot iterator ({type(data).__name__}); the oracles pass over the data many times, "
            "so give a re-iterable (a list of batches, a DataLoader)"
        )
    if batch_size is not None:
        raise ValueError(f"batch_size: only for in-memory tensors; a {type(data).__name__} has its own batches")
    first = next(iter(data), None)  # one batch read up front, so that a wrong shape fails here, not mid-query
    if first is None:
        raise ValueError(f"{argument}: gave no batch")
    check_batch(first, argument)
    return Batches(data, None, None)
