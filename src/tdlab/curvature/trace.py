"""Stochastic estimates of the trace of a curvature matrix from matrix-vector products.

Hutchinson (1989): for probes z with independent Rademacher (+-1) entries, E[z^T A z] = tr(A), so

    tr(A) ~ (1/s) sum_{i=1}^s z_i^T A z_i,    Var[z^T A z] = 2 (||A||_F^2 - sum_i A_ii^2),

with error O(||A||_F / sqrt(s)).

Hutch++ (Meyer, Musco, Musco & Woodruff 2021, "Hutch++: optimal stochastic trace estimation"): spend a third
of the s products on a sketch A S (S with s/3 random columns), take an orthonormal basis Q of its range, which
captures the top of the spectrum, compute that part of the trace exactly (another s/3 products) and apply
Hutchinson to the deflated remainder with the last third:

    tr(A) ~ tr(Q^T A Q) + (1/p) sum_{i=1}^p g_i^T (I - QQ^T) A (I - QQ^T) g_i.

For matrices with a decaying spectrum (such as the Hessians of neural networks, whose top eigenvalues
dominate) its error falls as O(1/s) instead of O(1/sqrt(s)).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import Tensor

from tdlab.curvature.operators import LinearOperator, as_operator, per_block, random_vectors, seeded
from tdlab.oracles import Objective
from tdlab.oracles.objective import Blocks

_METHODS = ("hutchinson", "hutch++")


class TraceResult(NamedTuple):
    """A trace estimate, its standard error (from the spread of the Hutchinson samples) and its cost."""

    estimate: float
    std_error: float
    num_matvecs: int


def _hutchinson(op: LinearOperator, probes: Tensor) -> tuple[float, float]:
    """Mean and standard error of the quadratic forms z_i^T A z_i over the columns z_i of `probes`."""
    quadratic = (probes * (op @ probes)).sum(dim=0)
    return quadratic.mean().item(), quadratic.std().item() / math.sqrt(probes.shape[1])


def hessian_trace(
    obj: Objective | LinearOperator,
    method: str = "hutchinson",
    samples: int = 100,
    theta: Tensor | Mapping[str, Tensor] | None = None,
    generator: torch.Generator | None = None,
    blocks: Blocks | None = None,
) -> TraceResult | dict[str, TraceResult]:
    """Estimate tr(H) (or the trace of any square operator) with `samples` products.

    Args:
        obj: an `Objective` (its Hessian at `theta`) or a `LinearOperator`.
        method: 'hutchinson' (Hutchinson 1989) or 'hutch++' (Meyer et al. 2021); see the module docstring.
        samples: number of products: >= 2 for Hutchinson, >= 6 for Hutch++ (split in thirds: sketch, exact
            part, Hutchinson on the remainder, which gets the rounding-up).
        theta: the point at which to take the Hessian of an `Objective` (default: current parameters).
        generator: random source of the Rademacher probes; a fixed seed by default (reproducible).
        blocks: None for the whole Hessian; "module" or a mapping from names to parameter selections for the
            trace of each diagonal block H[S, S], by block name (`per_block`); the block traces of a partition
            of the parameters sum to tr(H). Needs an `Objective`.

    Returns:
        `TraceResult(estimate, std_error, num_matvecs)`, or one per block; the standard error is the sample
        standard deviation of the Hutchinson quadratic forms over sqrt(their number) (for Hutch++, those of the
        remainder).

    Example:
        >>> import torch
        >>> from tdlab.curvature import MatrixOperator
        >>> A = MatrixOperator(torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64)))
        >>> hessian_trace(A, samples=10).estimate  # Rademacher probes are exact on a diagonal matrix
        55.0
    """
    if blocks is not None:
        return per_block(obj, blocks, theta, lambda op: hessian_trace(op, method, samples, None, generator))
    op = as_operator(obj, theta)
    if method not in _METHODS:
        raise ValueError(f"method: expected one of 'hutchinson', 'hutch++', got {method!r}")
    smallest = 2 if method == "hutchinson" else 6
    if not isinstance(samples, int) or samples < smallest:
        raise ValueError(f"samples: expected an integer >= {smallest} for method {method!r}, got {samples!r}")
    generator = seeded(generator)
    before = op.matvecs
    if method == "hutchinson":
        estimate, std_error = _hutchinson(op, random_vectors(op, samples, "rademacher", generator))
    else:
        sketch = samples // 3
        Q, _ = torch.linalg.qr(op @ random_vectors(op, sketch, "rademacher", generator))
        top = torch.trace(Q.T @ (op @ Q)).item()
        probes = random_vectors(op, samples - 2 * sketch, "rademacher", generator)
        rest, std_error = _hutchinson(op, probes - Q @ (Q.T @ probes))
        estimate = top + rest
    return TraceResult(estimate=estimate, std_error=std_error, num_matvecs=op.matvecs - before)
