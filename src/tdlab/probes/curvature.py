"""Curvature of the train loss during training: sharpness (top Hessian eigenvalues) and Hessian trace."""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tdlab.curvature import (
    DIFFERENCE_SCHEMES,
    STOPPING_CRITERIA,
    DifferenceHessianOperator,
    EigResult,
    HessianOperator,
    LinearOperator,
    TraceResult,
    eigs_steps,
    hessian_trace,
    run_products,
)
from tdlab.oracles import Objective, parameter_blocks
from tdlab.oracles.objective import Blocks
from tdlab.probes.base import Probe, ProbeContext

HVP_METHODS = ("exact", *DIFFERENCE_SCHEMES)  # how the curvature probes multiply by the Hessian
_TRACE_METHODS = {"hutchinson": 2, "hutch++": 6}  # method of `hessian_trace`: its smallest number of samples


def _generator(seed: int, step: int) -> torch.Generator:
    """A CPU generator with its own stream for each (seed, step): a resumed run draws the same vectors, and
    the curvature routines draw on the CPU whatever the model's device, so CPU and GPU runs draw alike."""
    state = np.random.SeedSequence([seed, step]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def _train_objective(ctx: ProbeContext, subset: int | None, seed: int) -> Objective:
    """The context's train objective, or the objective on `subset` train points drawn once with `seed` (the
    first `subset` of streamed data)."""
    data = ctx.train.subset(subset, seed)
    if data is ctx.train:
        return ctx.objective("train")
    return Objective(ctx.model, ctx.loss_fn, data, batch_size=ctx.batch_size)


def _objectives(
    ctx: ProbeContext, subset: int | None, seed: int, batches: int | None, batch_size: int | None
) -> list[Objective]:
    """The objectives a curvature probe measures: the train objective (see `_train_objective`), or, when
    `batches` is set, one per mini-batch (`Batches.minibatches`, drawn once with `seed`)."""
    if batches is None:
        return [_train_objective(ctx, subset, seed)]
    data = ctx.train.subset(subset, seed)
    return [Objective(ctx.model, ctx.loss_fn, b) for b in data.minibatches(batches, batch_size, seed)]


def mean_and_error(values: list[float]) -> tuple[float, float]:
    """Mean and standard error sd / sqrt(m) (sd with ddof 1) of m >= 2 values.

    Example:
        >>> mean_and_error([1.0, 2.0, 3.0])
        (2.0, 0.5773502691896258)
    """
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), float(array.std(ddof=1) / np.sqrt(array.size))


def _check_batches(batches: int | None, batch_size: int | None) -> None:
    if batches is not None and (isinstance(batches, bool) or not isinstance(batches, int) or batches < 2):
        raise ValueError(
            f"batches: expected an integer >= 2 (mini-batches for a standard error) or None, got {batches!r}"
        )
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size: expected a positive integer or None, got {batch_size!r}")
    if batch_size is not None and batches is None:
        raise ValueError("batch_size: only with batches (the mini-batch estimate); set batches too")


def _check_blocks(blocks: Blocks | None) -> None:
    if blocks is not None and blocks != "module" and not isinstance(blocks, Mapping):
        raise ValueError(
            f"blocks: expected None, 'module' or a mapping from block names to parameter selections, got {blocks!r}"
        )


def _check_subset(subset: int | None) -> None:
    if subset is not None and (isinstance(subset, bool) or not isinstance(subset, int) or subset < 1):
        raise ValueError(f"subset: expected a positive integer (train points) or None, got {subset!r}")


def _check_hvp(hvp: str) -> None:
    if hvp not in HVP_METHODS:
        raise ValueError(f"hvp: expected one of {', '.join(map(repr, HVP_METHODS))}, got {hvp!r}")


def hessian_operator(objective: Objective, hvp: str, seed: int) -> LinearOperator:
    """The Hessian of `objective` by the products `hvp` names: "exact" (`HessianOperator`, the gradient
    differentiated once more) or "central" / "forward" differences of gradients (`DifferenceHessianOperator`, its
    dropout masks drawn from `seed`)."""
    if hvp == "exact":
        return HessianOperator(objective)
    return DifferenceHessianOperator(objective, scheme=hvp, seed=seed)


def _carried(run: Generator[Tensor, Tensor, EigResult]) -> Generator[Tensor, Tensor, tuple[EigResult, Tensor]]:
    """Drive the Lanczos run `run` and return its result with the warm start of the next measurement: the sum of
    its Ritz vectors, or, after a run of one product (`warm_products=1`), whose Ritz vector is its own start vector v,
    the power step H v / ||H v|| from the product it took. One product per measurement then runs the power
    iteration across measurements: each value is the Rayleigh quotient v^T H v <= lambda_1, within the reported
    residual of an eigenvalue, and the vector improves by one power step per measurement (by the ratio
    |lambda_2| / lambda_1 while the Hessian changes slowly). The power iteration follows the eigenvalue of largest
    magnitude: where the Rayleigh quotient is not positive (a negative eigenvalue dominates) the start vector is
    kept instead."""
    v = next(run)
    while True:
        product = yield v
        try:
            v = run.send(product)
        except StopIteration as done:
            result: EigResult = done.value
            break
    if result.num_matvecs == 1 and result.eigenvalues.numel() == 1 and float(result.eigenvalues[0]) > 0:
        return result, product / product.norm()
    return result, result.eigenvectors.sum(dim=1)


class Sharpness(Probe):
    """Sharpness: the top-k eigenvalues lambda_1 >= ... >= lambda_k of the Hessian of the train loss.

    lambda_1 = max_{||v||=1} v^T H v with H = nabla^2 f(theta), computed by `tdlab.curvature.hessian_eigs`
    (Lanczos). The step size eta is stable on a quadratic iff lambda_1 < 2/eta; full-batch GD drives lambda_1
    to 2/eta, the edge of stability (Cohen et al., ICLR 2021). Each measurement starts from the sum of the
    previous measurement's eigenvectors (warm start: the Hessian changes little between measurements), kept
    in the probe's state to survive a resume; the first measurement starts from a random vector (`seed`).

    Parameter blocks (`blocks="module"`, or a mapping from names to parameter selections such as
    `{"attention": "*.self_attn.*"}`): also the top eigenvalue of each diagonal block H[S, S], the curvature
    within one layer or group with the others held fixed ("sharpness/block/<name>"), each warm-started.

    Mini-batch estimate with an error bar (`batches=m`): lambda_1 of the Hessian of each of m disjoint
    mini-batches (of `batch_size` train points drawn once with `seed`, or the first m batches of streamed data),
    reported as their mean lambda_bar = (1/m) sum_b lambda_1(H_b) and its standard error sd_b / sqrt(m). This
    is the expected sharpness of a mini-batch Hessian, an upper bound on average of the full-batch sharpness
    (lambda_1 is convex in H, so E lambda_1(H_b) >= lambda_1(E H_b), Jensen), not an unbiased estimate of it;
    the standard error says whether a change between two measurements exceeds the batch-to-batch spread.

    Metrics: "sharpness" (lambda_1, or lambda_bar), "sharpness/2" .. "sharpness/k", "sharpness/se" (with
    `batches`), "sharpness/block/<name>", "sharpness/matvecs" (all products of the measurement), and for the whole
    Hessian "sharpness/residual" (||H y - lambda y|| of the top pair: lambda lies within it of an eigenvalue).

    Cost: "sharpness/matvecs" Hessian-vector products (each about two forward and two backward passes over the
    train split, or over `subset` train points drawn once with `seed`, or over one mini-batch); tens cold, a few
    warm, for the whole Hessian and again for each block and each mini-batch. `tol` and `criterion` are those of
    `hessian_eigs`: the default asks for eigenvalues to about 1e-4 relative (an estimate); `criterion="residual",
    tol=1e-6` is a bound at about twice the products, `criterion="ritz", tol=1e-3` a heuristic at fewer.
    `warm_products=m` caps every warm-started measurement at m products (the first, cold one still runs to `tol`):
    a fixed cost for tracking lambda_1 during training, whose error "sharpness/residual" reports. With m = 1 the
    probe runs the power iteration across measurements (see `_carried`), the cheapest tracker;
    `benchmarks/bench_probe_overhead.py` measures the overhead and the error against a tight reference.

    Products (`hvp`): "exact" (default) differentiates the gradient once more (`HessianOperator`); "central" and
    "forward" take differences of gradients (`tdlab.curvature.DifferenceHessianOperator`: two gradient passes per
    product, or one plus one per measurement), which needs no double backward, so it runs through fused kernels
    and custom operations without one and holds the memory of a training step, at an error of about 1e-5
    (central) or a few 1e-4 (forward) relative in float32 that the exact products do not have, for smooth losses
    only (ReLU and max pooling make the gradient jump: the operator warns). Every 10 steps of full-batch training
    with the ritz rule (tol 1e-3), forward differences cost 1.5-1.7x plain training on the benchmark's MLP and
    1.4-1.6x on its transformer, against 1.7-1.8x and 1.9-2.0x with exact products (CPU, 2 threads). The ensemble
    trainer measures the exact probe of all members at once and the others member by member.

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
        >>> ctx = ProbeContext(0, model, nn.MSELoss(), train=(torch.randn(32, 3), torch.randn(32, 1)))
        >>> probe = Sharpness()
        >>> probe.measure(ctx)["sharpness"] > 0
        True
        >>> sorted(Sharpness(blocks="module", batches=4, batch_size=8).measure(ctx))
        ['sharpness', 'sharpness/block/0', 'sharpness/block/2', 'sharpness/matvecs', 'sharpness/se']
    """

    name = "sharpness"

    def __init__(
        self,
        every: int = 1,
        k: int = 1,
        tol: float = 1e-4,
        max_iter: int | None = None,
        subset: int | None = None,
        seed: int = 0,
        criterion: str = "eigenvalue",
        blocks: Blocks | None = None,
        batches: int | None = None,
        batch_size: int | None = None,
        warm_products: int | None = None,
        hvp: str = "exact",
    ):
        super().__init__(every)
        _check_hvp(hvp)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k: expected a positive integer, got {k!r}")
        if warm_products is not None and (
            isinstance(warm_products, bool) or not isinstance(warm_products, int) or warm_products < k
        ):
            raise ValueError(f"warm_products: expected None or an integer >= k = {k}, got {warm_products!r}")
        if not tol > 0:
            raise ValueError(f"tol: expected a positive number, got {tol!r}")
        if criterion not in STOPPING_CRITERIA:
            allowed = ", ".join(map(repr, STOPPING_CRITERIA))
            raise ValueError(f"criterion: expected one of {allowed}, got {criterion!r}")
        _check_subset(subset)
        _check_blocks(blocks)
        _check_batches(batches, batch_size)
        self.k = k
        self.tol = tol
        self.criterion = criterion
        self.max_iter = max_iter
        self.subset = subset
        self.seed = seed
        self.blocks = blocks
        self.batches = batches
        self.batch_size = batch_size
        self.warm_products = warm_products
        self.hvp = hvp
        self.v0: Tensor | None = None
        self.block_v0: dict[str, Tensor] = {}

    def measure(self, ctx: ProbeContext) -> dict[str, float]:
        objectives = _objectives(ctx, self.subset, self.seed, self.batches, self.batch_size)
        if self.batches is None and self.blocks is None:
            op = self.hessian(objectives[0])
            return self.record(run_products(self.eigenpairs(op, ctx.step), op.matvec))
        runs = [self._top(self.hessian(obj), ctx.step, self.v0, self.k) for obj in objectives]
        self._keep(runs[0][1], None)
        results = [result for result, _ in runs]
        tops = [r.eigenvalues.tolist() for r in results]
        metrics: dict[str, float] = {}
        if self.batches is None:
            metrics.update(self._values(tops[0]))
        else:
            metrics[self.name], metrics[f"{self.name}/se"] = mean_and_error([t[0] for t in tops])
        matvecs = sum(r.num_matvecs for r in results)
        if self.blocks is not None:
            for block, selection in parameter_blocks(ctx.model, self.blocks).items():
                block_runs = [
                    self._top(self.hessian(obj.restricted(selection)), ctx.step, self.block_v0.get(block), 1)
                    for obj in objectives
                ]
                self._keep(block_runs[0][1], block)
                values = [result.eigenvalues[0].item() for result, _ in block_runs]
                metrics[f"{self.name}/block/{block}"] = float(np.mean(values))
                matvecs += sum(result.num_matvecs for result, _ in block_runs)
        metrics[f"{self.name}/matvecs"] = float(matvecs)
        return metrics

    def hessian(self, objective: Objective) -> LinearOperator:
        """The Hessian of `objective` as the operator `hvp` names (`hessian_operator`)."""
        return hessian_operator(objective, self.hvp, self.seed)

    def _top(self, op: LinearOperator, step: int, v0: Tensor | None, k: int) -> tuple[EigResult, Tensor]:
        return run_products(_carried(self._steps(op, step, v0, k)), op.matvec)

    def _steps(self, op: LinearOperator, step: int, v0: Tensor | None, k: int) -> Generator[Tensor, Tensor, EigResult]:
        if v0 is not None:
            if v0.shape != (op.shape[0],):
                raise ValueError(
                    f"state: the warm-start vector has {v0.numel()} entries, the model has {op.shape[0]} parameters"
                )
            v0 = v0.to(op.device, op.dtype)
        budget = self.max_iter if v0 is None or self.warm_products is None else self.warm_products
        return eigs_steps(
            op,
            k=k,
            which="LA",
            tol=self.tol,
            max_iter=budget,
            v0=v0,
            generator=_generator(self.seed, step),
            criterion=self.criterion,
        )

    def eigenpairs(self, op: LinearOperator, step: int) -> Generator[Tensor, Tensor, EigResult]:
        """The Lanczos run of the measurement at `step` on the Hessian operator `op`, warm-started, as a
        generator of the Hessian-vector products it needs (`tdlab.curvature.eigs_steps`); when it ends it keeps
        the warm start of the next measurement (see `_carried`)."""
        result, carry = yield from _carried(self._steps(op, step, self.v0, self.k))
        self._keep(carry, None)
        return result

    def _keep(self, v0: Tensor, block: str | None) -> None:
        """Keep the warm start of the next measurement, unless it is not finite (a diverged model)."""
        if bool(torch.isfinite(v0).all()):
            if block is None:
                self.v0 = v0.detach()
            else:
                self.block_v0[block] = v0.detach()

    def _values(self, eigenvalues: list[float]) -> dict[str, float]:
        metrics = {self.name: eigenvalues[0]}
        metrics.update({f"{self.name}/{i}": value for i, value in enumerate(eigenvalues[1:], start=2)})
        return metrics

    def record(self, result: EigResult) -> dict[str, float]:
        """The metrics of `result`: the eigenvalues, the products it took and the residual norm
        ||H y_1 - theta_1 y_1|| of the top pair ("<name>/residual"; theta_1 lies within it of an eigenvalue)."""
        metrics = self._values(result.eigenvalues.tolist())  # descending for which="LA"
        metrics[f"{self.name}/matvecs"] = float(result.num_matvecs)
        metrics[f"{self.name}/residual"] = float(result.residuals[0])
        return metrics

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {} if self.v0 is None else {"v0": self.v0}
        state.update({f"v0/{block}": v for block, v in self.block_v0.items()})
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        unknown = {key for key in state if key != "v0" and not key.startswith("v0/")}
        if unknown:
            raise ValueError(
                f"state: unknown keys {sorted(unknown)} for the {self.name} probe (allowed: 'v0', 'v0/<block>')"
            )
        for key, v0 in state.items():
            if v0 is not None and (not isinstance(v0, Tensor) or v0.ndim != 1):
                raise ValueError(f"state: {key!r} must be a 1-D tensor (a warm-start vector)")
        self.v0 = state.get("v0")
        self.block_v0 = {key[3:]: v for key, v in state.items() if key.startswith("v0/")}


class HessianTrace(Probe):
    """Trace of the Hessian of the train loss, tr(H) = E_z[z^T H z] for Rademacher z (Hutchinson 1989).

    Computed by `tdlab.curvature.hessian_trace` with `samples` products, by Hutchinson's estimator or by
    Hutch++ (`method="hutch++"`, Meyer et al. 2021), the probes drawn from a stream seeded by (`seed`, step);
    "hessian/trace_se" is the standard error of the estimate, std(z^T H z) / sqrt(number of probes).
    tr(H) / dim is the mean curvature, a flatness measure complementary to lambda_1 (Keskar et al. 2017).

    Mini-batch estimate (`batches=m`): the trace of the Hessian of each of m disjoint mini-batches (as in
    `Sharpness`), each from `samples` products; "hessian/trace" is their mean, an unbiased estimate of the trace
    of the Hessian over the examples the batches hold (the trace is linear and the batch loss a mean), and
    "hessian/trace_se" the standard error sd_b / sqrt(m) over the batches, which holds both sources of noise,
    the batch draw and Hutchinson's probes. Blocks (`blocks=`): the trace of each diagonal block H[S, S],
    "hessian/trace/<block>"; the block traces of a partition of the parameters sum to tr(H).

    Products (`hvp`): "exact" (default), or "central" / "forward" differences of gradients, as in `Sharpness`
    (for smooth losses: no double backward, the model's own kernels, one step's memory; column by column, where
    exact products are vectorised over the probes).

    Metrics: "hessian/trace", "hessian/trace_se", "hessian/trace/<block>".

    Cost: `samples` Hessian-vector products (each about two forward and two backward passes over the train
    split, or over `subset` train points drawn once with `seed`), times the number of mini-batches, plus as many
    again for each block.

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
        blocks: Blocks | None = None,
        batches: int | None = None,
        batch_size: int | None = None,
        hvp: str = "exact",
    ):
        super().__init__(every)
        _check_hvp(hvp)
        if method not in _TRACE_METHODS:
            raise ValueError(f"method: expected one of 'hutchinson', 'hutch++', got {method!r}")
        smallest = _TRACE_METHODS[method]
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < smallest:
            raise ValueError(f"samples: expected an integer >= {smallest} for {method!r}, got {samples!r}")
        _check_subset(subset)
        _check_blocks(blocks)
        _check_batches(batches, batch_size)
        self.samples = samples
        self.method = method
        self.subset = subset
        self.seed = seed
        self.blocks = blocks
        self.batches = batches
        self.batch_size = batch_size
        self.hvp = hvp

    def measure(self, ctx: ProbeContext) -> dict[str, float]:
        objectives = _objectives(ctx, self.subset, self.seed, self.batches, self.batch_size)
        generator = _generator(self.seed, ctx.step)
        results = [self._trace(obj, generator) for obj in objectives]
        if self.batches is None:
            metrics = {"hessian/trace": float(results[0].estimate), "hessian/trace_se": float(results[0].std_error)}
        else:
            mean, error = mean_and_error([r.estimate for r in results])
            metrics = {"hessian/trace": mean, "hessian/trace_se": error}
        if self.blocks is not None:
            selections = parameter_blocks(ctx.model, self.blocks)
            for obj in objectives:
                for block, selection in selections.items():
                    key = f"hessian/trace/{block}"
                    estimate = self._trace(obj.restricted(selection), generator).estimate
                    metrics[key] = metrics.get(key, 0.0) + estimate / len(objectives)
        return metrics

    def _trace(self, objective: Objective, generator: torch.Generator) -> TraceResult:
        operator = hessian_operator(objective, self.hvp, self.seed)
        return hessian_trace(operator, self.method, self.samples, generator=generator)  # type: ignore[return-value]
