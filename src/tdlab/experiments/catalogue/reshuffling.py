"""reshuffling: SGD without replacement (random reshuffling) ends its epochs far closer to the minimum than SGD
with replacement, on least squares: its suboptimality is O(eta^2) or smaller against O(eta).

Per-example SGD with a constant step eta on f(w) = (1/2n) sum_i (x_i^T w - y_i)^2, started at the minimiser w*,
through `tdlab.train.fit` with its two samplers (`tdlab.train.batches`): ``batch_order="replacement"`` draws one
example uniformly at every step, ``"reshuffle"`` visits a fresh random permutation every epoch. The design is
whitened (X^T X / n = I, Gaussian rows, so the rows' norms differ) and the labels are noisy, so the per-example
gradients at w* do not vanish and SGD keeps moving. Every step size of the sweep and `replicates` noise draws of
the labels train at once, as the columns of one linear model sharing the sample order, column block e's loss
weighted by eta_e / eta_1 under the step eta_1 (`weighted_squared_error`); each seed is one `fit` per sampler.
Measured: f(w) - f* at the end of every epoch, averaged over the replicates and over the epochs after `burn_in`
(the stationary level).

Theory (both exact, no expansion in eta; the stationary levels at epoch ends):

- with replacement the errors e_t = w_t - w* have a closed second-moment recursion (the Widrow-Hoff LMS analysis,
  `tdlab.theory.sgd_noise.least_squares_sgd_stationary_mse`); its fixed point gives E f - f* = (1/2) E|e|^2
  (H = X^T X / n = I) = (eta/4) tr C + O(eta^2), C = (1/n) sum_i r_i^2 x_i x_i^T: first order in eta;
- without replacement one epoch maps e -> P_pi e + eta A_pi r, with K_i = I - eta x_i x_i^T, P_pi = K_pi(n) ...
  K_pi(1), A_pi's column pi(k) = K_pi(n) ... K_pi(k+1) x_pi(k) and residuals r_i = y_i - x_i^T w*; a fresh
  permutation each epoch makes the epoch-end errors a Markov chain whose stationary mean and second moment solve
  two linear systems in E[P], E[A], E[P (x) P], E[P (x) A] and E[A (x) A], averaged over all n! permutations
  (`reshuffling_stationary_gap`; n <= 9). Expanding in eta: the noise of an epoch sums to zero at first order
  (sum_i x_i r_i = 0), leaving a mean drift (eta^2/2) v per epoch, v = sum_i |x_i|^2 x_i r_i, and a fluctuation of
  order eta^2 n; the contraction I - eta n H per epoch holds the mean at (eta / 2n) H^-1 v, so
  E f - f* = a eta^2 + b n^2 eta^3 + ... with a = v^T H^-1 v / (8 n^2) (Gurbuzbalaban, Ozdaglar & Parrilo 2019;
  HaoChen & Sra 2019, whose bound for quadratics is O(1/T^2 + n^3/T^3) at eta ~ 1/T; Mishchenko, Khaled &
  Richtarik 2020). a vanishes when every row has the same norm and is small for Gaussian rows, so over practical
  steps the log-log slope lies between 2 and 3, against 1 with replacement.

Checks (each can fail):

1. with replacement: the slope of log(f - f*) against log(eta) equals the exact theory's over the same steps
   (~1.1), within 0.2: a sampler that reshuffles (slope > 2) or a wrong loss fails it;
2. reshuffled: the slope lies in [1.8, 3.2], the lecture's claim (order 2, up to the theory's order-3 term):
   with-replacement sampling behind "reshuffle" (slope 1) fails it;
3. reshuffled: the slope equals the exact theory's within 0.2 (a cyclic order, whose epoch is not random, or
   any other sampler fails it);
4. each sampler: its stationary level over the seeds and step sizes (the mean of measured / exact) equals 1
   within 0.3: a wrong step, loss or sampler fails it (the samplers' levels differ by 10-1000x, a step off by a
   factor 2 moves them 2x to 7x);
5. reshuffling ends below with-replacement at every step size: a one-sided paired t-test over seeds on the log
   suboptimality at alpha = 0.05 (the largest p-value over the step sizes: an intersection-union test).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from itertools import permutations

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from pydantic import Field, model_validator
from scipy import stats
from torch import Tensor

from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.fields import StepSizes
from tdlab.experiments.tidy import rows, select
from tdlab.models import LinearModel
from tdlab.theory.sgd_noise import least_squares_sgd_stationary_mse
from tdlab.train.batches import BatchOrder
from tdlab.train.trainer import fit

SAMPLERS: tuple[BatchOrder, ...] = ("reshuffle", "replacement")
LABELS = {"reshuffle": "random reshuffling (without replacement)", "replacement": "with replacement"}
# The tolerances are four standard deviations of the statistic over repetitions of the quick run (600 seeds in
# groups of 5, in development): 0.05 for a fitted slope, 0.07-0.08 for the mean ratio measured / exact. A run's
# level is skewed (a few seeds wander far), so a t-interval from 5 seeds would be too narrow too often.
RESHUFFLE_SLOPE = (1.8, 3.2)  # between the theory's orders 2 and 3, +-0.2 for the fit over a few step sizes
SLOPE_TOLERANCE = 0.2
LEVEL_TOLERANCE = 0.3
MAX_EXAMPLES = 9  # the reshuffling theory averages over all n! permutations


class ReshufflingConfig(ExperimentConfig):
    """A small whitened least-squares problem, per-example SGD at a few constant steps, several seeds."""

    n: int = Field(8, ge=3, le=MAX_EXAMPLES, description="examples (an epoch: n steps of one); the theory sums n!")
    d: int = Field(2, ge=1, description="features")
    noise: float = Field(0.5, gt=0.0, description="standard deviation of the label noise (makes r_i != 0)")
    replicates: int = Field(64, ge=1, description="label-noise draws trained at once (averaged within a seed)")
    seeds: int = Field(5, ge=3, description="independent sample orders per sampler (the units of the t-test)")
    etas: StepSizes = Field((0.02, 0.04, 0.08, 0.16), description="constant step sizes, at least 3")
    epochs: int = Field(60, ge=2, description="epochs per run")
    burn_in: int = Field(
        25, ge=0, description="epochs left out of the stationary average (the mean settles in ~5 / (n eta_min))"
    )
    alpha: float = Field(0.05, gt=0.0, lt=0.5, description="significance level of the paired t-test")

    @model_validator(mode="after")
    def _consistent(self) -> ReshufflingConfig:
        if len(self.etas) < 3:
            raise ValueError(f"etas: expected at least 3 step sizes for a slope, got {self.etas}")
        if self.n < self.d + 1:
            raise ValueError(f"n: expected more examples than features d = {self.d}, got {self.n}")
        if self.burn_in >= self.epochs:
            raise ValueError(f"burn_in: expected fewer than epochs = {self.epochs}, got {self.burn_in}")
        return self


def whitened_design(n: int, d: int, generator: torch.Generator) -> Tensor:
    """Gaussian rows, then X -> X (X^T X / n)^(-1/2), so that X^T X / n = I exactly (float64, n x d).

    Example:
        >>> X = whitened_design(10, 3, torch.Generator().manual_seed(0))
        >>> torch.allclose(X.T @ X / 10, torch.eye(3, dtype=torch.float64))
        True
    """
    X = torch.randn(n, d, generator=generator, dtype=torch.float64)
    values, vectors = torch.linalg.eigh(X.T @ X / n)
    return X @ vectors @ torch.diag(values.rsqrt()) @ vectors.T


def weighted_squared_error(weights: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
    """The loss (1/b) sum_batch 1/2 sum_c weights_c (f_c(x) - y_c)^2: with a linear model whose output c has its
    own weights, plain SGD at step eta on it is SGD at step eta * weights_c on column c's own least squares.

    Example:
        >>> loss = weighted_squared_error(torch.tensor([1.0, 2.0]))
        >>> loss(torch.tensor([[1.0, 1.0]]), torch.zeros(1, 2)).item()  # (1 + 2) / 2
        1.5
    """

    def loss(outputs: Tensor, targets: Tensor) -> Tensor:
        return 0.5 * ((outputs - targets).square() * weights).sum(dim=1).mean()

    return loss


def reshuffling_stationary_gap(X: np.ndarray, Y: np.ndarray, eta: float) -> np.ndarray:
    """The stationary E f(w) - f* at epoch ends of per-example SGD with random reshuffling and step eta on
    f(w) = (1/2n) |X w - y|^2, for each column y of Y (module docstring: exact, averaged over all n!
    permutations).

    Example (one example: every epoch is the same step, a deterministic contraction to w*):
        >>> reshuffling_stationary_gap(np.array([[1.0]]), np.array([[2.0]]), 0.5).tolist()
        [0.0]
    """
    n, d = X.shape
    if n > MAX_EXAMPLES:
        raise ValueError(f"X: expected at most {MAX_EXAMPLES} rows (the theory sums n! permutations), got {n}")
    residuals = Y - X @ np.linalg.lstsq(X, Y, rcond=None)[0]  # (n, R)
    perms = _permutations(n)
    N, index = len(perms), np.arange(len(perms))
    K = np.eye(d) - eta * np.einsum("ni,nj->nij", X, X)
    after = np.broadcast_to(np.eye(d), (N, d, d)).copy()  # K_pi(n) ... K_pi(k+1)
    A = np.zeros((N, d, n))
    for k in reversed(range(n)):
        rows_k = perms[:, k]
        A[index, :, rows_k] = np.einsum("pij,pj->pi", after, X[rows_k])
        after = after @ K[rows_k]
    # e -> P e + eta A r: the moments need E[P], E[A], E[P (x) P], E[P (x) A] and E[A (x) A] only (linear in r)
    P, flat_P, flat_A = after, after.reshape(N, d * d), A.reshape(N, d * n)
    PP = (flat_P.T @ flat_P / N).reshape(d, d, d, d).transpose(0, 2, 1, 3).reshape(d * d, d * d)
    PA = (flat_P.T @ flat_A / N).reshape(d, d, d, n)  # E[P_ia A_jl]
    AA = (flat_A.T @ flat_A / N).reshape(d, n, d, n)  # E[A_ik A_jl]
    mean = np.linalg.solve(np.eye(d) - P.mean(axis=0), eta * A.mean(axis=0) @ residuals)  # (d, R)
    cross = eta * np.einsum("iajl,ar,lr->rij", PA, mean, residuals, optimize=True)  # E[P m q^T] per column
    rhs = (
        cross
        + cross.transpose(0, 2, 1)
        + eta**2 * np.einsum("ikjl,kr,lr->rij", AA, residuals, residuals, optimize=True)
    )
    R = rhs.shape[0]
    second = np.linalg.solve(np.eye(d * d) - PP, rhs.reshape(R, d * d).T).T.reshape(R, d, d)
    return 0.5 * np.einsum("ij,rij->r", X.T @ X / n, second)


@cache
def _permutations(n: int) -> np.ndarray:
    """All n! orders of range(n), one per row."""
    return np.array(list(permutations(range(n))))


def measure(config: ReshufflingConfig, context: Context) -> pd.DataFrame:
    """Rows "suboptimality" (mean over replicates of f(w) - f* at the end of each epoch; columns sampler, eta,
    seed, epoch) and "theory" (the exact stationary E f - f* of each sampler, mean over replicates; columns
    sampler, eta)."""
    generator = torch.Generator().manual_seed(config.seed)
    n, d, R, E = config.n, config.d, config.replicates, len(config.etas)
    X = whitened_design(n, d, generator)
    Y = X @ torch.randn(d, R, generator=generator, dtype=torch.float64) + config.noise * torch.randn(
        n, R, generator=generator, dtype=torch.float64
    )
    W_star = torch.linalg.lstsq(X, Y).solution
    f_star = 0.5 * (X @ W_star - Y).square().mean(dim=0)
    etas = torch.tensor(config.etas, dtype=torch.float64)
    loss = weighted_squared_error((etas / etas[0]).repeat_interleave(R).to(context.device))
    start = W_star.repeat(1, E).T.to(context.device)  # (E R, d): every column block starts at w*
    Xd, Yd, f_star_d = X.to(context.device), Y.repeat(1, E).to(context.device), f_star.repeat(E).to(context.device)
    frames = []
    for sampler in context.track(SAMPLERS, "samplers"):
        for seed in range(config.seeds):
            model = LinearModel(d, E * R, bias=False).to(Xd)
            with torch.no_grad():
                model.linear.weight.copy_(start)
            gaps: list[Tensor] = []

            def epoch_end(step: int, _: float, model: LinearModel = model, gaps: list[Tensor] = gaps) -> None:
                if step % n == 0:
                    with torch.no_grad():
                        gap = 0.5 * (model(Xd) - Yd).square().mean(dim=0) - f_star_d
                    gaps.append(gap.reshape(E, R).mean(dim=1))

            fit(
                model,
                loss,
                (Xd, Yd),
                torch.optim.SGD(model.parameters(), lr=config.etas[0]),
                n * config.epochs,
                batch_size=1,
                batch_order=sampler,
                seed=config.seed * 1000 + seed,
                callbacks=[epoch_end],
            )
            gap = torch.stack(gaps).cpu().numpy()  # (epochs, E)
            epochs = np.arange(1, gap.shape[0] + 1)
            frames.append(
                rows("suboptimality", gap, epoch=epochs[:, None], eta=np.asarray(config.etas), seed=seed).assign(
                    sampler=sampler
                )
            )
    X_, Y_, etas_ = X.numpy(), Y.numpy(), np.asarray(config.etas)
    replacement = [np.mean([0.5 * least_squares_sgd_stationary_mse(X_, y, eta) for y in Y_.T]) for eta in etas_]
    reshuffle = [reshuffling_stationary_gap(X_, Y_, eta).mean() for eta in etas_]
    frames += [
        rows("theory", replacement, eta=etas_).assign(sampler="replacement"),
        rows("theory", reshuffle, eta=etas_).assign(sampler="reshuffle"),
    ]
    return pd.concat(frames, ignore_index=True)


def stationary(metrics: pd.DataFrame, config: ReshufflingConfig, sampler: str) -> pd.DataFrame:
    """The mean of f - f* over the epochs after the burn-in, step size x seed."""
    chosen = select(metrics, "suboptimality", sampler=sampler)
    chosen = chosen[chosen["epoch"] > config.burn_in]
    return chosen.pivot_table(index="eta", columns="seed", values="value", aggfunc="mean").sort_index()


def slope(etas: np.ndarray, levels: np.ndarray) -> float:
    """The least-squares slope of log(levels) against log(etas) (nan if a level is not positive).

    Example:
        >>> round(slope(np.array([0.1, 0.2, 0.4]), np.array([0.01, 0.04, 0.16])), 12)
        2.0
    """
    if np.any(~np.isfinite(levels)) or np.any(levels <= 0):
        return float("nan")
    return float(np.polyfit(np.log(etas), np.log(levels), 1)[0])


def checks(metrics: pd.DataFrame, config: ReshufflingConfig) -> list[Check]:
    """Slopes against the lecture's orders and the exact theory's, levels against the exact theory, and the paired
    one-sided t-test."""
    level = {sampler: stationary(metrics, config, sampler) for sampler in SAMPLERS}
    etas = level["reshuffle"].index.to_numpy(dtype=float)
    S = level["reshuffle"].shape[1]
    mean = {sampler: level[sampler].mean(axis=1).to_numpy() for sampler in SAMPLERS}
    theory = {
        sampler: select(metrics, "theory", sampler=sampler).set_index("eta")["value"].reindex(etas).to_numpy()
        for sampler in SAMPLERS
    }
    measured_slope = {sampler: slope(etas, mean[sampler]) for sampler in SAMPLERS}
    theory_slope = {sampler: slope(etas, theory[sampler]) for sampler in SAMPLERS}
    pooled, per_eta = {}, {}
    for sampler in SAMPLERS:
        ratio = level[sampler].to_numpy() / theory[sampler][:, None]  # eta x seed
        pooled[sampler] = float(ratio.mean())
        per_eta[sampler] = ", ".join(f"{e:g}: {r:.3f}" for e, r in zip(etas, ratio.mean(axis=1), strict=True))
    p_values = [
        float(
            stats.ttest_rel(
                np.log(level["reshuffle"].loc[eta]), np.log(level["replacement"].loc[eta]), alternative="less"
            ).pvalue
        )
        for eta in etas
    ]
    averaged = f"seed means over {S} seeds of f - f* at epoch ends {config.burn_in + 1}..{config.epochs}"
    levels = ", ".join(
        f"{e:g}: {a:.3g} vs {b:.3g}" for e, a, b in zip(etas, mean["reshuffle"], mean["replacement"], strict=True)
    )
    return [
        Check.absolute(
            "with replacement: slope of log(f - f*) vs log(eta), against the exact theory's",
            measured_slope["replacement"],
            theory_slope["replacement"],
            SLOPE_TOLERANCE,
            detail=f"{averaged}; theory: the fixed point of the exact second-moment recursion (order 1: "
            f"(eta/4) tr C); tolerance {SLOPE_TOLERANCE} for seed noise; a reshuffling sampler (slope > 2) fails it",
        ),
        Check.interval(
            "random reshuffling: slope of log(f - f*) vs log(eta), order 2 (up to the order-3 term)",
            measured_slope["reshuffle"],
            *RESHUFFLE_SLOPE,
            detail=f"{averaged}; theory a eta^2 (the epoch's drift) + b n^2 eta^3 (its fluctuation), band "
            f"[{RESHUFFLE_SLOPE[0]}, {RESHUFFLE_SLOPE[1]}] = [2, 3] +- 0.2; with-replacement sampling behind "
            f"'reshuffle' (slope ~1) fails it; levels (reshuffled vs with replacement) {levels}",
        ),
        Check.absolute(
            "random reshuffling: slope of log(f - f*) vs log(eta), against the exact theory's",
            measured_slope["reshuffle"],
            theory_slope["reshuffle"],
            SLOPE_TOLERANCE,
            detail=f"{averaged}; theory: the stationary epoch-end moments averaged over all {config.n}! "
            f"permutations; tolerance {SLOPE_TOLERANCE} for seed noise; a fixed (cyclic) or with-replacement "
            "order fails it",
        ),
        Check.relative(
            "random reshuffling: stationary f - f* against its exact value (mean of measured / exact)",
            pooled["reshuffle"],
            1.0,
            LEVEL_TOLERANCE,
            detail=f"{averaged}; per eta {per_eta['reshuffle']}; exact theory: the epoch-end chain over all n! "
            "permutations; tolerance "
            f"{LEVEL_TOLERANCE}, four seed-to-seed standard deviations of this mean; a wrong step, loss or sampler "
            "moves it by 2x or more",
        ),
        Check.relative(
            "with replacement: stationary f - f* against its exact value (mean of measured / exact)",
            pooled["replacement"],
            1.0,
            LEVEL_TOLERANCE,
            detail=f"{averaged}; per eta {per_eta['replacement']}; exact theory: the fixed point of the LMS "
            "second-moment recursion; tolerance "
            f"{LEVEL_TOLERANCE}, four seed-to-seed standard deviations of this mean; a wrong step, loss or sampler "
            "moves it by 2x or more",
        ),
        Check.at_most(
            f"reshuffling ends below with-replacement at every eta: largest one-sided paired t-test p-value "
            f"(alpha = {config.alpha:g})",
            max(p_values),
            config.alpha,
            detail=f"paired over {S} seeds on log(f - f*), H1: reshuffled < with replacement; p per eta "
            f"{', '.join(f'{e:g}: {p:.2g}' for e, p in zip(etas, p_values, strict=True))}; passes only if every "
            "step size rejects (intersection-union test); equal samplers give p ~ 0.5",
        ),
    ]


def figures(metrics: pd.DataFrame, config: ReshufflingConfig) -> dict[str, Figure]:
    """The stationary level against eta (log-log, with the theory), and f - f* over epochs at the smallest and
    largest step."""
    fig = Figure(figsize=(13.0, 4.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    for k, sampler in enumerate(SAMPLERS):
        level = stationary(metrics, config, sampler)
        etas = level.index.to_numpy(dtype=float)
        for seed in level.columns:
            left.loglog(etas, level[seed], ".", color=f"C{k}", alpha=0.35)
        mean = level.mean(axis=1).to_numpy()
        left.loglog(etas, mean, "o", color=f"C{k}", label=f"{LABELS[sampler]}: slope {slope(etas, mean):.2f}")
        theory = select(metrics, "theory", sampler=sampler).sort_values("eta")
        label = f"exact theory: slope {slope(theory['eta'].to_numpy(), theory['value'].to_numpy()):.2f}"
        left.loglog(theory["eta"], theory["value"], "-", color=f"C{k}", lw=1.2, label=label)
        for j, eta in enumerate((etas[0], etas[-1])):
            curve = select(metrics, "suboptimality", sampler=sampler, eta=eta)
            curve = curve.groupby("epoch")["value"].mean()
            right.semilogy(
                curve.index, curve.to_numpy(), ["-", "--"][j], color=f"C{k}", label=f"{sampler}, eta {eta:g}"
            )
    e = np.asarray(sorted(config.etas))
    anchor = stationary(metrics, config, "reshuffle").mean(axis=1).to_numpy()[0]
    left.loglog(e, anchor * (e / e[0]) ** 2, color="0.6", lw=0.8, ls="--", label=r"$\propto\eta^2$")
    left.set(xlabel=r"step size $\eta$", ylabel=r"stationary $f(w) - f^*$ at epoch ends")
    left.set_title("Reshuffling: order 2-3 in the step, with replacement: order 1")
    left.legend(fontsize=8)
    right.axvline(config.burn_in + 0.5, color="0.5", lw=0.8, ls=":")
    right.set(xlabel="epoch", ylabel=r"$f(w) - f^*$ (mean over seeds and replicates)")
    right.set_title("Started at the minimum: SGD noise lifts both, reshuffling far less")
    right.legend(fontsize=8, ncols=2)
    fig.suptitle(f"Per-example SGD on least squares, n = {config.n}, d = {config.d}, constant steps")
    return {"reshuffling": fig}


EXPERIMENT = Experiment(
    name="reshuffling",
    claim="SGD without replacement (random reshuffling) converges faster than with replacement on least squares: "
    "with a constant step its epoch-end suboptimality is O(eta^2) or smaller, against O(eta) with replacement.",
    config=ReshufflingConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={
        "full": {
            "n": 9,
            "d": 3,
            "replicates": 64,
            "seeds": 20,
            "etas": (0.005, 0.01, 0.02, 0.04, 0.08),
            "epochs": 300,
            "burn_in": 120,
        }
    },
    references=(
        "Gurbuzbalaban, Ozdaglar & Parrilo (2019), Why random reshuffling beats stochastic gradient descent, "
        "Mathematical Programming",
        "HaoChen & Sra (2019), Random shuffling beats SGD after finite epochs, ICML",
        "Mishchenko, Khaled & Richtarik (2020), Random reshuffling: simple analysis with vast improvements, NeurIPS",
        "Widrow & Hoff (1960), Adaptive switching circuits; Defossez & Bach (2015), Averaged least-mean-squares: "
        "bias-variance trade-offs and optimal sampling distributions, AISTATS",
    ),
    part="optimisation",
)
