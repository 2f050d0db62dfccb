"""Mutual information of a deterministic layer by binning (Shwartz-Ziv & Tishby 2017): the estimator of the
information plane.

A layer T = h(X) of a network on finitely many distinct inputs x_1..x_n, X uniform over them, labels y_i: every
unit's activation is cut into `bins` equal intervals of [low, high] (values outside are clamped into the end
bins), and T_b, the vector of bin indices, is a deterministic function of X. Hence H(T_b | X) = 0 and

    I(X; T_b) = H(T_b),                 I(T_b; Y) = H(T_b) + H(Y) - H(T_b, Y),

all entropies those of the empirical distribution over the n inputs (each input weight 1/n), in bits. I(X; T_b)
counts how many inputs the binning still tells apart: log2 n when every input has its own bin vector, 0 when all
share one; I(T_b; Y) <= I(X; Y) (data processing, T_b being a function of X). The numbers describe the binning as
much as the layer (Saxe et al. 2018): a saturating unit (tanh near +-1) puts many inputs into one end bin, so
I(X; T_b) falls as weights grow although T itself stays injective.

Example (a layer that copies two input bits into two units):
    >>> X = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    >>> [v.item() for v in binned_information(X, torch.tensor([0, 0, 1, 1]), 0.0, 1.0)]
    [2.0, 1.0]
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def bin_indices(h: Tensor, low: float | Tensor, high: float | Tensor, bins: int = 30) -> Tensor:
    """The bin of every activation: floor(bins (h - low) / (high - low)) clamped to 0..bins-1 (int64, h's shape).

    `low` and `high` broadcast against h (e.g. one range per network of a stack, shape (N, 1, 1)); a value equal
    to `high` falls into the last bin, values outside [low, high] into the end bins.

    Example:
        >>> bin_indices(torch.tensor([-1.0, -0.01, 0.0, 0.99, 1.0, 3.0]), -1.0, 1.0, bins=4).tolist()
        [0, 1, 2, 3, 3, 3]
    """
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins: expected a positive integer, got {bins!r}")
    low, high = torch.as_tensor(low, dtype=h.dtype), torch.as_tensor(high, dtype=h.dtype)
    if bool((high <= low).any()):
        raise ValueError(f"high: expected above low = {low.tolist()}, got {high.tolist()}")
    return torch.floor((h - low) / (high - low) * bins).clamp(0, bins - 1).to(torch.int64)


def row_codes(indices: Tensor, bins: int) -> Tensor:
    """One int64 per row of `indices` (..., n, units) with entries in 0..bins-1, equal exactly when the rows are:
    the row read as a number in base `bins` when that fits in 62 bits, its index among the distinct rows
    otherwise. Shape (..., n).

    Example:
        >>> row_codes(torch.tensor([[1, 2], [0, 2], [1, 2]]), bins=3).tolist()
        [5, 2, 5]
    """
    units = indices.shape[-1]
    if units * math.log2(max(bins, 2)) <= 62:
        weights = bins ** torch.arange(units - 1, -1, -1, dtype=torch.int64, device=indices.device)
        return (indices * weights).sum(dim=-1)
    return _distinct_rows(indices)


def code_entropy(codes: Tensor) -> Tensor:
    """The entropy in bits of the empirical distribution of the codes in each row of `codes` (..., n), every
    entry weight 1/n. Shape (...).

    Example:
        >>> code_entropy(torch.tensor([[0, 0, 0, 0], [0, 1, 2, 3], [7, 7, 9, 9]])).tolist()
        [0.0, 2.0, 1.0]
    """
    n = codes.shape[-1]
    flat = codes.reshape(-1, n)
    ordered = flat.sort(dim=1).values
    rows = torch.arange(flat.shape[0], device=codes.device).repeat_interleave(n)
    new = torch.ones_like(ordered, dtype=torch.bool)
    new[:, 1:] = ordered[:, 1:] != ordered[:, :-1]  # the first entry of each run of equal codes
    starts = torch.nonzero(new.reshape(-1)).squeeze(1)
    counts = torch.diff(starts, append=torch.tensor([flat.numel()], device=codes.device))
    p = counts.to(torch.float64) / n
    entropy = torch.zeros(flat.shape[0], dtype=torch.float64, device=codes.device)
    entropy.index_add_(0, rows[starts], -p * torch.log2(p))
    return entropy.reshape(codes.shape[:-1])


def binned_information(
    h: Tensor, labels: Tensor, low: float | Tensor, high: float | Tensor, bins: int = 30
) -> tuple[Tensor, Tensor]:
    """(I(X; T_b), I(T_b; Y)) in bits for the layer h (..., n, units) on n distinct, equally likely inputs with
    labels (n,) of integer classes (module docstring); shapes (...), float64.

    Example (a constant layer carries no information; one unit that copies the label carries H(Y) = 1 bit of both):
        >>> labels = torch.tensor([0, 1, 0, 1])
        >>> [v.item() for v in binned_information(torch.zeros(4, 3), labels, -1.0, 1.0)]
        [0.0, 0.0]
        >>> [v.item() for v in binned_information(labels[:, None].float(), labels, 0.0, 1.0)]
        [1.0, 1.0]
    """
    if labels.shape != h.shape[-2:-1]:
        raise ValueError(f"labels: expected shape ({h.shape[-2]},) (one per input), got {tuple(labels.shape)}")
    codes = row_codes(bin_indices(h, low, high, bins), bins)
    label_codes = labels.to(torch.int64)
    classes = int(label_codes.max()) + 1 if label_codes.numel() else 1
    entropy_t = code_entropy(codes)
    entropy_y = code_entropy(label_codes)
    if int(codes.max()) < 2**62 // classes:
        joint = codes * classes + label_codes
    else:
        joint = _distinct_rows(torch.stack([codes, label_codes.expand_as(codes)], dim=-1))
    return entropy_t, entropy_t + entropy_y - code_entropy(joint)


def _distinct_rows(rows: Tensor) -> Tensor:
    """The index of each row of `rows` (..., n, k) among the distinct rows of its group (..., :, :)."""
    flat = rows.reshape(-1, rows.shape[-2], rows.shape[-1])
    codes = [torch.unique(group, dim=0, return_inverse=True)[1] for group in flat]
    return torch.stack(codes).reshape(rows.shape[:-1])
