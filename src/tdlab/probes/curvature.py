"""Curvature of the train loss during training: sharpness (top Hessian eigenvalues) and Hessian trace."""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tdlab.curvature import (
    STOPPING_CRITERIA,
    EigResult,
    HessianOperator,
    LinearOperator,
    eigs_steps,
    hessian_trace,
    run_products,
)
from tdlab.oracles import Objective
from tdlab.probes.base import Batch, Probe, ProbeContext

_TRACE_METHODS = {"hutchinson": 2, "hutch++": 6}  # method of `hessian_trace`: its smallest number of samples


def _generator(seed: int, step: int) -> torch.Generator:
    """A CPU generator with its own stream for each (seed, step): a resumed run draws the same vectors, and
    the curvature routines draw on the CPU whatever the model's device, so CPU and GPU runs draw alike."""
    state = np.random.SeedSequence([seed, step]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def train_subset(train: Batch, subset: int | None, seed: int) -> Batch:
    """The train split, or `subset` of its points drawn with `seed` (the same points at every measurement).

    Example:
        >>> X, y = torch.arange(10.0).view(5, 2), torch.arange(5)
        >>> train_subset((X, y), 2, seed=0)[1].tolist() == train_subset((X, y), 2, seed=0)[1].tolist()
        True
    """
    inputs, targets = train
    if subset is None or subset >= inputs.shape[0]:
        return train
    index = torch.randperm(inputs.shape[0], generator=torch.Generator().manual_seed(seed))[:subset]
    index = index.to(inputs.device)
    return inputs[index], targets[index]


def _train_objective(ctx: ProbeContext, subset: int | None, seed: int) -> Objective:
    """The context's train objective, or the objective on `subset` train points drawn once with `seed`."""
    data = train_subset(ctx.train, subset, seed)
    if data is ctx.train:
        return ctx.objective("train")
    return Objective(ctx.model, ctx.loss_fn, data, batch_size=ctx.batch_size)


def _check_subset(subset: int | None) -> None:
    if subset is not None and (isinstance(subset, bool) or not isinstance(subset, int) or subset < 1):
        raise ValueError(f"subset: expected a positive integer (train points) or None, got {subset!r}")


class Sharpness(Probe):
    """Sharpness: the top-k eigenvalues lambda_1 >= ... >= lambda_k of the Hessian of the train loss.

    lambda_1 = max_{||v||=1} v^T H v with H = nabla^2 f(theta), computed by `tdlab.curvature.hessian_eigs`
    (Lanczos). The step size eta is stable on a quadratic iff lambda_1 < 2/eta; full-batch GD drives lambda_1
    to 2/eta, the edge of stability (Cohen et al., ICLR 2021). Each measurement starts from the sum of the
    previous measurement's eigenvectors (warm start: the Hessian changes little between measurements), kept
    in the probe's state to survive a resume; the first measurement starts from a random vector (`seed`).

    Metrics: "sharpness" (lambda_1), "sharpness/2" .. "sharpness/k", "sharpness/matvecs".

    Cost: "sharpness/matvecs" Hessian-vector products (each about two forward and two backward passes over the
    train split, or over `subset` train points drawn once with `seed`); tens cold, a few warm. `tol` and
    `criterion` are those of `hessian_eigs`: the default residual rule at tol 1e-6 is a bound; for a probe run
    every few steps, `criterion="ritz", tol=1e-3` needs about a third of the products (see `hessian_eigs`).

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
        >>> ctx = ProbeContext(0, model, nn.MSELoss(), train=(torch.randn(32, 3), torch.randn(32, 1)))
        >>> probe = Sharpness()
        >>> probe.measure(ctx)["sharpness"] > 0
        True
    """

    name = "sharpness"

    def __init__(
        self,
        every: int = 1,
        k: int = 1,
        tol: float = 1e-6,
        max_iter: int | None = None,
        subset: int | None = None,
        seed: int = 0,
        criterion: str = "residual",
    ):
        super().__init__(every)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k: expected a positive integer, got {k!r}")
        if not tol > 0:
            raise ValueError(f"tol: expected a positive number, got {tol!r}")
        if criterion not in STOPPING_CRITERIA:
            allowed = ", ".join(map(repr, STOPPING_CRITERIA))
            raise ValueError(f"criterion: expected one of {allowed}, got {criterion!r}")
        _check_subset(subset)
        self.k = k
        self.tol = tol
        self.criterion = criterion
        self.max_iter = max_iter
        self.subset = subset
        self.seed = seed
        self.v0: Tensor | None = None

    def measure(self, ctx: ProbeContext) -> dict[str, float]:
        op = HessianOperator(_train_objective(ctx, self.subset, self.seed))
        return self.record(run_products(self.eigenpairs(op, ctx.step), op.matvec))

    def eigenpairs(self, op: LinearOperator, step: int) -> Generator[Tensor, Tensor, EigResult]:
        """The Lanczos run of the measurement at `step` on the Hessian operator `op`, warm-started, as a
        generator of the Hessian-vector products it needs (`tdlab.curvature.eigs_steps`)."""
        v0 = None
        if self.v0 is not None:
            if self.v0.shape != (op.shape[0],):
                raise ValueError(
                    f"state: the warm-start vector has {self.v0.numel()} entries, "
                    f"the model has {op.shape[0]} parameters"
                )
            v0 = self.v0.to(op.device, op.dtype)
        return eigs_steps(
            op,
            k=self.k,
            which="LA",
            tol=self.tol,
            max_iter=self.max_iter,
            v0=v0,
            generator=_generator(self.seed, step),
            criterion=self.criterion,
        )

    def record(self, result: EigResult) -> dict[str, float]:
        """Keep the warm start of the next measurement (unless the eigenvectors are not finite: a diverged model)
        and return the metrics of `result`."""
        if bool(torch.isfinite(result.eigenvectors).all()):
            self.v0 = result.eigenvectors.sum(dim=1).detach()
        eigenvalues = result.eigenvalues.tolist()  # descending for which="LA"
        metrics = {"sharpness": eigenvalues[0]}
        metrics.update({f"sharpness/{i}": value for i, value in enumerate(eigenvalues[1:], start=2)})
        metrics["sharpness/matvecs"] = float(result.num_matvecs)
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {} if self.v0 is None else {"v0": self.v0}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        unknown = set(state) - {"v0"}
        if unknown:
            raise ValueError(f"state: unknown keys {sorted(unknown)} for the sharpness probe (allowed: 'v0')")
        v0 = state.get("v0")
        if v0 is not None and (not isinstance(v0, Tensor) or v0.ndim != 1):
            raise ValueError("state: 'v0' must be a 1-D tensor (the warm-start vector)")
        self.v0 = v0


class HessianTrace(Probe):
    """Trace of the Hessian of the train loss, tr(H) = E_z[z^T H z] for Rademacher z (Hutchinson 1989).

    Computed by `tdlab.curvature.hessian_trace` with `samples` products, by Hutchinson's estimator or by
    Hutch++ (`method="hutch++"`, Meyer et al. 2021), the probes drawn from a stream seeded by (`seed`, step);
    "hessian/trace_se" is the standard error of the estimate, std(z^T H z) / sqrt(number of probes).
    tr(H) / dim is the mean curvature, a flatness measure complementary to lambda_1 (Keskar et al. 2017).

    Metrics: "hessian/trace", "hessian/trace_se".

    Cost: `samples` Hessian-vector products (each about two forward and two backward passes over the train
    split, or over `subset` train points drawn once with `seed`).

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
        >>> ctx = ProbeContext(0, model, nn.MSELoss(), train=(torch.randn(32, 3), torch.randn(32, 1)))
        >>> sorted(HessianTrace(samples=10).measure(ctx))
        ['hessian/trace', 'hessian/trace_se']
    """

    name = "hessian-trace"

    def __init__(
        self,
        every: int = 1,
        samples: int = 100,
        method: str = "hutchinson",
        subset: int | None = None,
        seed: int = 0,
    ):
        super().__init__(every)
        if method not in _TRACE_METHODS:
            raise ValueError(f"method: expected one of 'hutchinson', 'hutch++', got {method!r}")
        smallest = _TRACE_METHODS[method]
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < smallest:
            raise ValueError(f"samples: expected an integer >= {smallest} for {method!r}, got {samples!r}")
        _check_subset(subset)
        self.samples = samples
        self.method = method
        self.subset = subset
        self.seed = seed

    def measure(self, ctx: ProbeContext) -> dict[str, float]:
        objective = _train_objective(ctx, self.subset, self.seed)
        result = hessian_trace(
            objective,
            method=self.method,
            samples=self.samples,
            generator=_generator(self.seed, ctx.step),
        )
        return {"hessian/trace": float(result.estimate), "hessian/trace_se": float(result.std_error)}
