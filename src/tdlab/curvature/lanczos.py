"""Extreme eigenpairs of a symmetric curvature matrix by the Lanczos method.

Lanczos (1950) builds an orthonormal basis q_1, ..., q_m of the Krylov space span{v, Av, ..., A^{m-1} v} with
the three-term recurrence

    beta_j q_{j+1} = A q_j - alpha_j q_j - beta_{j-1} q_{j-1},    alpha_j = q_j^T A q_j,
    beta_j = ||A q_j - alpha_j q_j - beta_{j-1} q_{j-1}||,

so that A Q_m = Q_m T_m + beta_m q_{m+1} e_m^T with T_m = tridiag(beta, alpha, beta). The eigenpairs
(theta_i, s_i) of the small matrix T_m give Ritz pairs (theta_i, y_i = Q_m s_i) of A, whose residual is known
without another product: ||A y_i - theta_i y_i|| = |beta_m| |s_{m,i}| (Golub & Van Loan, Matrix Computations,
4th ed., section 10.1). The extreme eigenvalues converge first, in far fewer products than power iteration
(Kaniel-Paige-Saad bounds, Golub & Van Loan 10.1.5).

In floating point the q_j lose orthogonality as soon as a Ritz pair converges (Paige 1971, 1976): the basis
then re-discovers converged eigenvectors and T_m shows spurious copies ("ghosts") of them. Here every new
vector is orthogonalised against all stored ones with classical Gram-Schmidt, applied twice ("twice is
enough", Kahan; Giraud, Langou & Rozloznik 2005), so Q_m stays orthonormal to working precision at a cost of
O(n m) per step, small next to a Hessian-vector product. If beta_j vanishes the Krylov space is an invariant
subspace: its Ritz values are exact eigenvalues, and the recurrence restarts from a random vector orthogonal
to the basis (T_m becomes block diagonal). After m = n steps T_m holds the whole spectrum.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from typing import NamedTuple, TypeVar

import numpy as np
import torch
from torch import Tensor

from tdlab.curvature.operators import LinearOperator, as_operator, per_block, random_vectors, seeded
from tdlab.oracles import Objective
from tdlab.oracles.objective import Blocks

_WHICH = ("LA", "SA", "LM")
STOPPING_CRITERIA = ("eigenvalue", "residual", "ritz")
"""The stopping rules of `hessian_eigs`."""
_Result = TypeVar("_Result")


class EigResult(NamedTuple):
    """Eigenpairs found by an iterative solver.

    Attributes:
        eigenvalues: (k,) tensor, sorted as asked (LA descending, SA ascending, LM by descending magnitude).
        eigenvectors: (n, k) tensor, unit columns, on the operator's device and dtype.
        num_matvecs: operator products used.
        converged: whether all k pairs met the tolerance (or the spectrum was computed exactly).
        residuals: (k,) tensor of the residual norms ||A y_i - theta_i y_i||.
    """

    eigenvalues: Tensor
    eigenvectors: Tensor
    num_matvecs: int
    converged: bool
    residuals: Tensor


class _Tridiagonal(NamedTuple):
    """Outcome of m Lanczos steps: T_m's diagonal `alpha` (m,), its off-diagonal plus the final residual norm
    `beta` (m,; beta[m-1] multiplies q_{m+1}), both float64 on the CPU, the basis rows `basis` (m, n), the number
    of `products` taken and whether they were all `finite` (a non-finite product, as the Hessian of a diverged
    model gives, ends the run before its step)."""

    alpha: Tensor
    beta: Tensor
    basis: Tensor
    products: int
    finite: bool = True


def _orthogonalise(w: Tensor, basis: Tensor) -> Tensor:
    """w minus its projection on the rows of `basis` (orthonormal), by classical Gram-Schmidt twice."""
    for _ in range(2):
        w = w - basis.T @ (basis @ w)
    return w


def run_products(computation: Generator[Tensor, Tensor, _Result], product: Callable[[Tensor], Tensor]) -> _Result:
    """Drive a computation written as a generator that yields each vector v it needs multiplied and is sent
    product(v) back; returns what the computation returns. (Written so, the same Lanczos run can also be driven
    with products computed for many operators at once, as for the members of an ensemble.)

    Example:
        >>> def twice_squared(v):
        ...     w = yield v
        ...     return (yield w)
        >>> run_products(twice_squared(torch.tensor(3.0)), lambda v: v * v)
        tensor(81.)
    """
    try:
        v = next(computation)
        while True:
            v = computation.send(product(v))
    except StopIteration as done:
        return done.value


def _lanczos(
    op: LinearOperator,
    v0: Tensor,
    steps: int,
    generator: torch.Generator,
    stop: Callable[[Tensor, Tensor], bool] | None = None,
) -> _Tridiagonal:
    """Run at most `steps` (<= n) Lanczos steps from v0 with full reorthogonalisation.

    `stop(alpha, beta)` is called after every step with the coefficients so far and ends the run when True.
    """
    return run_products(_lanczos_steps(op, v0, steps, generator, stop), op.matvec)


def _lanczos_steps(
    op: LinearOperator,
    v0: Tensor,
    steps: int,
    generator: torch.Generator,
    stop: Callable[[Tensor, Tensor], bool] | None = None,
) -> Generator[Tensor, Tensor, _Tridiagonal]:
    """`_lanczos` as a generator of the products it needs (`run_products`); `op` gives only the size, device and
    dtype (and the distribution of restart vectors)."""
    n = op.shape[0]
    eps = torch.finfo(op.dtype).eps
    basis = torch.empty(min(steps, 32), n, device=op.device, dtype=op.dtype)  # grown by doubling as needed
    alpha = torch.zeros(steps, dtype=torch.float64)
    beta = torch.zeros(steps, dtype=torch.float64)
    q = v0 / torch.linalg.vector_norm(v0)
    norm_estimate = 0.0  # largest row sum of |T| so far: ||T||_2 <= norm_estimate <= 3 ||A||_2
    m = 0
    while m < steps:
        if m == basis.shape[0]:
            basis = torch.cat([basis, torch.empty(min(steps, 2 * m) - m, n, device=op.device, dtype=op.dtype)])
        basis[m] = q
        w = yield q
        if not bool(torch.isfinite(w).all()):
            return _Tridiagonal(alpha[:m], beta[:m], basis[:m], m + 1, finite=False)
        a = torch.dot(q, w).item()
        w = w - a * q
        if m > 0:
            w = w - beta[m - 1].item() * basis[m - 1]
        w = _orthogonalise(w, basis[: m + 1])
        b = torch.linalg.vector_norm(w).item()
        norm_estimate = max(norm_estimate, abs(a) + b + (beta[m - 1].item() if m else 0.0))
        invariant = b <= eps**0.75 * norm_estimate
        alpha[m], beta[m] = a, 0.0 if invariant else b
        m += 1
        if m == steps or (stop is not None and stop(alpha[:m], beta[:m])):
            break
        if invariant:  # restart in the orthogonal complement of the invariant subspace found so far
            w = _orthogonalise(random_vectors(op, None, "gaussian", generator), basis[:m])
            q = w / torch.linalg.vector_norm(w)
        else:
            q = w / b
    return _Tridiagonal(alpha[:m], beta[:m], basis[:m], m)


def _tridiagonal_eigh(alpha: Tensor, beta: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues (ascending) and eigenvectors of tridiag(beta[:-1], alpha, beta[:-1]), float64, CPU."""
    T = torch.diag(alpha)
    if alpha.shape[0] > 1:
        off = beta[:-1]
        T = T + torch.diag(off, 1) + torch.diag(off, -1)
    return torch.linalg.eigh(T)


def _select(values: Tensor, which: str, k: int) -> Tensor:
    """Indices of the k wanted values, in the order of `which`."""
    if which == "LA":
        order = torch.argsort(values, descending=True)
    elif which == "SA":
        order = torch.argsort(values)
    else:
        order = torch.argsort(values.abs(), descending=True)
    return order[:k]


def _ritz(alpha: Tensor, beta: Tensor, which: str, k: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The k wanted Ritz values, their vectors in the Lanczos basis (m, k), residual norms |beta_m s_{m,i}|
    and the threshold scale max(|theta_i|, eps^(2/3) ||T||) of the convergence test (as ARPACK's dsconv)."""
    values, vectors = _tridiagonal_eigh(alpha, beta)
    idx = _select(values, which, k)
    residuals = beta[-1].abs() * vectors[-1, idx].abs()
    finfo = torch.finfo(torch.float64)
    tiny = finfo.eps ** (2 / 3) * values.abs().max().clamp_min(finfo.tiny)
    return values[idx], vectors[:, idx], residuals, values[idx].abs().clamp_min(tiny)


def _eigenvalue_errors(alpha: Tensor, beta: Tensor, which: str, k: int) -> Tensor:
    """Estimated errors of the k wanted Ritz values: min(r_i, r_i^2 / delta_i), where r_i is the residual norm
    and delta_i the distance from theta_i to the rest of the spectrum, estimated by the other Ritz values less
    their own residuals (the Kato-Temple bound |lambda - theta| <= r^2 / delta holds when no other eigenvalue is
    within delta of theta; Parlett, The Symmetric Eigenvalue Problem, section 10.2). Where the estimate of
    delta is not positive the residual itself, a bound on the distance to the nearest eigenvalue, is used."""
    values, vectors = _tridiagonal_eigh(alpha, beta)
    idx = _select(values, which, k)
    residuals = beta[-1].abs() * vectors[-1].abs()
    distances = (values[idx, None] - values[None, :]).abs() - residuals[None, :]  # (k, m)
    distances[torch.arange(len(idx)), idx] = torch.inf  # each Ritz value's distance to the others only
    gaps = distances.min(dim=1).values
    wanted = residuals[idx]
    known = torch.isfinite(gaps) & (gaps > 0)  # no other Ritz value yet (m = 1): the gap is unknown
    return torch.where(known, torch.minimum(wanted, wanted**2 / torch.where(known, gaps, 1.0)), wanted)


def _better(a: Tensor, b: Tensor, which: str, slack: Tensor) -> bool:
    """Whether value a comes before value b in the order of `which` by more than `slack`."""
    if which == "LA":
        return bool(a > b + slack)
    if which == "SA":
        return bool(a < b - slack)
    return bool(a.abs() > b.abs() + slack)


def _converged(
    alpha: Tensor, beta: Tensor, which: str, k: int, tol: float, random_start: bool, eigenvalue: bool = False
) -> bool:
    """Stopping rules "residual" and ("eigenvalue") of `hessian_eigs` after m steps (T_m block diagonal, one
    block per (re)start).

    (a) The k wanted Ritz pairs of T_m have residual (estimated eigenvalue error) <= tol * scale. (b) The latest
    block vouches for the complement of the earlier ones: if it is still open, its own extreme Ritz pair has
    converged (the usual Lanczos estimate of the complement's extreme eigenvalue); if it has just closed
    (beta_m = 0, an invariant subspace), it must have started from a random vector, whose Krylov space then
    holds every distinct eigenvalue of that complement, and its extreme value must not come before the k-th
    wanted one (else more
    copies of a wanted eigenvalue may remain).
    """
    if alpha.shape[0] < k:
        return False
    values, _, residuals, scale = _ritz(alpha, beta, which, k)
    errors = _eigenvalue_errors(alpha, beta, which, k) if eigenvalue else residuals
    if not bool((errors <= tol * scale).all()):
        return False
    breaks = torch.nonzero(beta[:-1] == 0).flatten()
    start = int(breaks[-1]) + 1 if breaks.numel() else 0
    if beta[-1] != 0:
        if start == 0:  # a single open block: its extreme pair is the first wanted one, checked in (a)
            return True
        _, _, block_residual, block_scale = _ritz(alpha[start:], beta[start:], which, 1)
        if eigenvalue:
            block_residual = _eigenvalue_errors(alpha[start:], beta[start:], which, 1)
        return bool(block_residual <= tol * block_scale)
    block_value = _ritz(alpha[start:], beta[start:], which, 1)[0]
    return (start > 0 or random_start) and not _better(block_value[0], values[-1], which, tol * scale[-1])


def _wanted_values(alpha: Tensor, beta: Tensor, which: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k wanted Ritz values of tridiag(beta[:-1], alpha, beta[:-1]) and the scale of `_ritz`, in NumPy: the
    matrix is tiny, and this runs after every Lanczos step, where torch's per-call overhead would cost more."""
    a = alpha.numpy()
    T = np.diag(a)
    if a.shape[0] > 1:
        off = beta.numpy()[:-1]
        T += np.diag(off, 1) + np.diag(off, -1)
    values = np.linalg.eigvalsh(T)
    key = -values if which == "LA" else values if which == "SA" else -np.abs(values)
    wanted = values[np.argsort(key, kind="stable")[:k]]
    finfo = np.finfo(np.float64)
    tiny = finfo.eps ** (2 / 3) * max(float(np.abs(values).max()), finfo.tiny)
    return wanted, np.maximum(np.abs(wanted), tiny)


def _settled(alpha: Tensor, beta: Tensor, which: str, k: int, tol: float) -> bool:
    """Stopping rule `criterion="ritz"` after m steps: each of the k wanted Ritz values of T_m lies within
    tol * scale of the same-ranked wanted value of T_{m-1}."""
    if alpha.shape[0] <= k:
        return False
    now, scale = _wanted_values(alpha, beta, which, k)
    before, _ = _wanted_values(alpha[:-1], beta[:-1], which, k)
    return bool((np.abs(now - before) <= tol * scale).all())


def _start_vector(op: LinearOperator, v0: Tensor | None, generator: torch.Generator) -> Tensor:
    if v0 is None:
        return random_vectors(op, None, "gaussian", generator)
    if not isinstance(v0, Tensor) or v0.shape != (op.shape[0],):
        raise ValueError(f"v0: expected a tensor of shape ({op.shape[0]},), got {getattr(v0, 'shape', v0)}")
    v0 = v0.detach().to(op.device, op.dtype)
    if not torch.isfinite(v0).all() or torch.linalg.vector_norm(v0) == 0:
        raise ValueError("v0: expected a finite, non-zero start vector")
    return v0


def hessian_eigs(
    obj: Objective | LinearOperator,
    k: int = 1,
    which: str = "LA",
    tol: float = 1e-4,
    max_iter: int | None = None,
    v0: Tensor | None = None,
    theta: Tensor | Mapping[str, Tensor] | None = None,
    generator: torch.Generator | None = None,
    criterion: str = "eigenvalue",
    blocks: Blocks | None = None,
) -> EigResult | dict[str, EigResult]:
    """k extreme eigenpairs of the Hessian (or of any symmetric operator) by Lanczos with full
    reorthogonalisation.

    The stopping rule `criterion` answers "how accurate must the eigenvalues be?", `tol` relative:

    - "eigenvalue" (default): each of the k wanted Ritz values has an estimated error
      min(r_i, r_i^2 / delta_i) <= tol * |theta_i| (r_i = |beta_m s_{m,i}| the residual, delta_i the distance to
      the other Ritz values less their residuals: the Kato-Temple bound with an estimated gap) and moved by at
      most tol * |theta_i| in the last step. An estimate, not a bound (the gap is estimated), so it pays only for
      the accuracy asked: on the three models of `benchmarks/bench_anchors.py` (float32, 3 random starts each),
      tol 1e-4 reached errors <= 1.5e-5 with 7-15 products for the top eigenvalue and 20-33 for the top 10,
      where the residual rule at tol 1e-6 took 10-20 and 27-39; tol 1e-3 gave errors <= 3.5e-4. Below tol 1e-3
      for k > 1 it can stop before an eigenvalue of the top k has appeared (as every rule that stops early can:
      at tol 1e-2, 2 of 6 top-10 runs had errors 6e-2 and 9e-2), so ask for the accuracy needed, not less.
    - "residual": each wanted Ritz pair has residual <= tol * max(|theta_i|, tiny), a relative residual below
      `tol`: a bound on the distance to the nearest eigenvalue (eigenvalue errors are then about
      tol^2 * |theta| / gap). Use it with tol 1e-6 for a result that must be right whatever the gap.
    - "ritz": no wanted Ritz value moved by more than tol * |theta| in the last step: far cheaper from a good
      start vector, since the eigenvalue converges about twice as fast as its vector, but only a heuristic (the
      extreme Ritz values approach the eigenvalues monotonically, so a slow step under-states the remaining
      error). For the warm-started sharpness of a 40k-parameter tanh MLP during full-batch GD, tol 1e-3 took 2.4
      products per measurement with a worst relative error of 1.6e-3 (residual rule: 6.7 products, error 8e-6;
      residual rule at tol 1e-2: 2.7 products, error 1.4e-2).

    It also stops after `max_iter` steps, or when m reaches n (exact spectrum). After an invariant subspace
    (beta = 0) the run goes on from a random vector in its complement until the extreme Ritz value there has
    converged too, so that copies of a repeated eigenvalue (which one Krylov space holds only once) are found. A
    non-finite product (the Hessian of a diverged model) ends the run: the eigenpairs and residuals are NaN,
    `converged` False. An `Objective`'s products reuse each batch's gradient graph when the data is one batch in
    memory (`Objective.hvp_function`): every product after the first is one backward pass.

    Args:
        obj: an `Objective` (its Hessian at `theta`) or any symmetric `LinearOperator`.
        k: number of eigenpairs, 1 <= k <= n.
        which: 'LA' largest algebraic, 'SA' smallest algebraic, 'LM' largest magnitude.
        tol: relative tolerance of the stopping rule, > 0 (see above).
        max_iter: most Lanczos steps (= products), default min(n, max(20 k, 200)); clipped to n.
        v0: start vector, e.g. the top eigenvector of the previous training step (warm start); random
            Gaussian by default.
        theta: the point at which to take the Hessian of an `Objective` (default: current parameters).
        generator: random source of the start and restart vectors; a fixed seed by default (reproducible).
        criterion: "eigenvalue" (the default), "residual" (a bound) or "ritz" (the change), see above.
        blocks: None for the whole Hessian; "module" or a mapping from names to parameter selections for the
            eigenpairs of each diagonal block H[S, S] (the curvature within one layer or group of parameters,
            the others held fixed), returned by block name (`per_block`); needs an `Objective`.

    Returns:
        `EigResult(eigenvalues, eigenvectors, num_matvecs, converged, residuals)`, or one per block.

    Example:
        >>> import torch
        >>> from tdlab.curvature import MatrixOperator
        >>> A = MatrixOperator(torch.diag(torch.arange(1.0, 101.0, dtype=torch.float64)))
        >>> res = hessian_eigs(A, k=2, which="LA")
        >>> [round(x, 3) for x in res.eigenvalues.tolist()], res.converged  # to the default tol 1e-4
        ([100.0, 99.0], True)
    """
    if blocks is not None:
        if v0 is not None:
            raise ValueError("v0: not with blocks (each block has its own size); leave it None")
        return per_block(
            obj, blocks, theta, lambda op: hessian_eigs(op, k, which, tol, max_iter, None, None, generator, criterion)
        )
    op = as_operator(obj, theta)
    return run_products(eigs_steps(op, k, which, tol, max_iter, v0, generator, criterion), op.matvec)


def eigs_steps(
    op: LinearOperator,
    k: int = 1,
    which: str = "LA",
    tol: float = 1e-4,
    max_iter: int | None = None,
    v0: Tensor | None = None,
    generator: torch.Generator | None = None,
    criterion: str = "eigenvalue",
) -> Generator[Tensor, Tensor, EigResult]:
    """`hessian_eigs` of the operator `op` as a generator of the products it needs (driven by `run_products`, or
    by a caller that computes the products of several operators at once); `op` gives only the size, device and
    dtype. The arguments are checked before the first product."""
    n = op.shape[0]
    if which not in _WHICH:
        raise ValueError(f"which: expected one of 'LA', 'SA', 'LM', got {which!r}")
    if not isinstance(k, int) or not 1 <= k <= n:
        raise ValueError(f"k: expected an integer in [1, {n}] (the operator's size), got {k!r}")
    if not tol > 0:
        raise ValueError(f"tol: expected a positive number, got {tol!r}")
    if criterion not in STOPPING_CRITERIA:
        raise ValueError(f"criterion: expected one of {', '.join(map(repr, STOPPING_CRITERIA))}, got {criterion!r}")
    if max_iter is None:
        max_iter = max(20 * k, 200)
    elif not isinstance(max_iter, int) or max_iter < k:
        raise ValueError(f"max_iter: expected an integer >= k = {k}, got {max_iter!r}")
    steps = min(n, max_iter)
    generator = seeded(generator)
    start = _start_vector(op, v0, generator)

    def converged(alpha: Tensor, beta: Tensor) -> bool:
        if criterion == "ritz":
            return _settled(alpha, beta, which, k, tol)
        if criterion == "eigenvalue" and not _settled(alpha, beta, which, k, tol):
            return False
        return _converged(alpha, beta, which, k, tol, random_start=v0 is None, eigenvalue=criterion == "eigenvalue")

    run = yield from _lanczos_steps(op, start, steps, generator, stop=converged)
    if not run.finite:
        nan = torch.full((k,), torch.nan, device=op.device, dtype=op.dtype)
        eigenvectors = torch.full((n, k), torch.nan, device=op.device, dtype=op.dtype)
        return EigResult(nan, eigenvectors, run.products, converged=False, residuals=nan.clone())
    values, vectors, residuals, _ = _ritz(run.alpha, run.beta, which, k)
    eigenvectors = run.basis.T @ vectors.to(op.device, op.dtype)
    eigenvectors = eigenvectors / torch.linalg.vector_norm(eigenvectors, dim=0)
    return EigResult(
        eigenvalues=values.to(op.device, op.dtype),
        eigenvectors=eigenvectors,
        num_matvecs=run.products,
        converged=run.alpha.shape[0] == n or converged(run.alpha, run.beta),
        residuals=residuals.to(op.device, op.dtype),
    )
