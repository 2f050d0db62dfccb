"""linearised-network: a wide network trains like its linearisation, whose features are the parameter gradients.

An MLP in the NTK parameterisation (`tdlab.models.ntk.NTKMLP`: Jacot et al. 2018; Lee et al. 2019, eq. 1), weights
W ~ N(0, 1) and h_l = phi(W_l h_{l-1} / sqrt(n_{l-1})), f(x) = w_out . h_L / sqrt(n_L) (no biases), is trained by
full-batch gradient descent (`tdlab.train.fit`, `torch.optim.SGD`) on the squared loss 1/(2n) sum_i (f(x_i) - y_i)^2
of a two-class mnist1d task (targets +-1), side by side with its linearisation f_lin(theta) = f(theta_0) +
J(theta_0)(theta - theta_0), trained by the same gradient descent. The linearisation's GD is exact in closed form
through the empirical tangent kernel Theta = J J^T on the training set (Lee et al. 2019, in discrete time):
its residuals obey r_{t+1} = (I - eta Theta / n) r_t, and its displacement after T steps is theta_T - theta_0 =
-(eta / n) J^T sum_{t<T} r_t, one `torch.func.vjp`; its test outputs then take one `torch.func.jvp`. J on the
training set is formed from per-example gradients (`torch.func.vmap` of `torch.func.grad`), n rows.

Measured, against `tdlab.theory.ntk`:

1. the distance between the two after training, the RMS over test inputs of f_T(x) - f_lin,T(x), falls with width:
   Lee et al. (2019, Thm. 2.1) bound it by O(width^-1/2). The check of the issue asked for the fitted exponent to
   lie within 0.2 of -1/2; the measured exponent is steeper, about -0.9 for tanh (-0.87 between widths 64 and 8192,
   10 seeds, the full preset) and -0.7 for ReLU between 64 and 4096 (6 seeds), so it is checked against the bound
   as a bound (exponent <= -1/2 + 0.2) and, for a smooth activation, against the sharper prediction -1 of Dyer &
   Gur-Ari (2020) and Huang & Yau (2020), for whom the tangent kernel moves by O(1/width) during training
   (tolerance 0.2 as in the issue);
2. gradient descent on the linear model fits the kernel's largest eigen-directions first: along the i-th eigenvector
   of the empirical kernel Theta = J J^T the training residual shrinks by (1 - eta lambda_i / n) per step, so the
   steps until it has shrunk by e are ordered by the eigenvalues; measured on the top `modes` directions, and for
   the network itself at the widest width;
3. the features that training all parameters sees contain those of a linear probe on the penultimate layer: the
   readout's block of J is h_L(x) / sqrt(n_L), the penultimate activations, and J J^T = J_hidden J_hidden^T +
   h_L h_L^T / n_L, so by Weyl's monotonicity theorem (Horn & Johnson 2013, Cor. 4.3.12) every singular value of J
   is at least the corresponding one of the probe features.

Figures: the distance against width with the two reference slopes, and network against linearised outputs; the
residual along the top eigen-directions against steps, measured and (1 - eta lambda_i / n)^t; the singular values
of all parameter gradients, of the readout's (the probe features) and of the hidden layers'.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from pydantic import Field, field_validator
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vjp, vmap

from tdlab.data import half_squared_error, mnist1d
from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.tidy import rows, series, table
from tdlab.models.ntk import NTKMLP
from tdlab.theory.ntk import LINEARISATION_EXPONENT, mode_fitting_time, mode_residual
from tdlab.train.trainer import fit

Params = dict[str, Tensor]
Forward = Callable[[Params, Tensor], Tensor]
SHARP_EXPONENT = -1.0  # Dyer & Gur-Ari (2020), Huang & Yau (2020): smooth activations
SPECTRA = {"all": "all parameters", "readout": "readout = penultimate features", "hidden": "hidden layers"}


class LinearisedNetworkConfig(ExperimentConfig):
    """Task, widths and training of the network and its linearisation (defaults: the quick config)."""

    n_train: int = Field(32, ge=4, description="training examples (classes 0 and 1 of mnist1d, targets -1, +1)")
    n_test: int = Field(256, ge=4, description="test examples on which the outputs are compared")
    widths: tuple[int, ...] = Field((128, 256, 512, 1024), description="hidden widths, increasing")
    depth: int = Field(1, ge=1, description="hidden layers")
    activation: Literal["tanh", "relu"] = Field(
        "tanh", description="phi; tanh is smooth, as Lee et al.'s theorem needs"
    )
    seeds: int = Field(4, ge=1, description="initialisations per width")
    lr: float = Field(1.0, gt=0, description="gradient-descent step, the same for every width (NTK parameterisation)")
    steps: int = Field(150, ge=1, description="gradient-descent steps")
    modes: int = Field(6, ge=2, description="top kernel eigen-directions whose fitting order is checked")
    slope_tolerance: float = Field(0.2, gt=0, description="tolerance of the fitted exponent (from the issue)")

    @field_validator("widths")
    @classmethod
    def _widths(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if len(value) < 2 or any(w < 1 for w in value) or list(value) != sorted(set(value)):
            raise ValueError(f"widths: expected at least 2 increasing positive integers, got {value}")
        return value


def functional(model: nn.Module) -> Forward:
    """f(params, X) of `model` with its parameters replaced by `params` (`torch.func.functional_call`)."""
    return lambda params, X: functional_call(model, params, (X,))


def linearised_descent(forward: Forward, params0: Params, X: Tensor, y: Tensor, lr: float, steps: int) -> tuple:
    """Full-batch GD on 1/(2n) ||f_lin(theta) - y||^2 for the linearisation f_lin(theta) = f(theta_0) + J
    (theta - theta_0) at X, in closed form through the empirical kernel Theta = J J^T (n x n, `jacobian`): the
    gradient is J^T r / n, so the residuals r_t = f_lin(theta_t) - y obey r_{t+1} = (I - lr Theta / n) r_t, and the
    displacement is delta_T = theta_T - theta_0 = -(lr / n) J^T sum_{t<T} r_t (one `vjp` at theta_0). Returns delta_T
    and the training residuals, shape (steps + 1, *y.shape).

    Example:
        >>> f = lambda p, X: X @ p["w"]  # already linear: GD on least squares, r_t = (1 - lr / n)^t r_0
        >>> X, y = torch.eye(2, dtype=torch.float64), torch.tensor([[1.0], [2.0]], dtype=torch.float64)
        >>> delta, r = linearised_descent(f, {"w": torch.zeros(2, 1, dtype=torch.float64)}, X, y, lr=1.0, steps=2)
        >>> r[:, 1, 0].tolist(), delta["w"][:, 0].tolist()
        ([-2.0, -1.0, -0.5], [0.75, 1.5])
    """
    n = X.shape[0]
    kernel = sum(block @ block.T for block in jacobian(forward, params0, X).values())
    f0, pullback = vjp(lambda p: forward(p, X), params0)
    step = torch.eye(n, dtype=kernel.dtype, device=kernel.device) - (lr / n) * kernel
    residuals = [(f0 - y).detach()]
    for _ in range(steps):
        residuals.append(step @ residuals[-1])
    residuals = torch.stack(residuals)
    (gradient,) = pullback(residuals[:-1].sum(dim=0))
    return {name: -(lr / n) * g for name, g in gradient.items()}, residuals


def push_forward(forward: Forward, params0: Params, X: Tensor, delta: Params) -> Tensor:
    """J(theta_0; X) delta, by forward-mode differentiation (`torch.func.jvp`)."""
    return jvp(lambda p: forward(p, X), (params0,), (delta,))[1]


def jacobian(forward: Forward, params: Params, X: Tensor) -> dict[str, Tensor]:
    """The parameter gradients of the (scalar) outputs, per parameter tensor, each flattened to (n, numel): per-example
    gradients (`vmap` of `grad` over the rows of X), which is the Jacobian when each output depends on its own
    input only, as in an MLP."""
    blocks = vmap(grad(lambda p, x: forward(p, x[None])[0, 0]), in_dims=(None, 0))(params, X)
    return {name: J.reshape(X.shape[0], -1) for name, J in blocks.items()}


def fitting_times(projections: np.ndarray, factor: float = math.e) -> np.ndarray:
    """For each column of |v_i^T r_t| / |v_i^T r_0| (rows t = 0, 1, ...), the first t at which it is <= 1/factor
    (inf if never within the run).

    Example:
        >>> fitting_times(np.array([[1.0, 1.0], [0.2, 0.9], [0.1, 0.3]])).tolist()
        [1.0, 2.0]
    """
    fitted = projections <= 1.0 / factor
    return np.where(fitted.any(axis=0), fitted.argmax(axis=0), np.inf)


def load(config: LinearisedNetworkConfig, device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Classes 0 and 1 of mnist1d with targets -1 and +1 (shape (n, 1)): n_train and n_test examples, float64."""
    pool = mnist1d(8 * config.n_train, 8 * config.n_test, seed=config.seed)

    def pick(X: Tensor, y: Tensor, n: int, split: str) -> tuple[Tensor, Tensor]:
        keep = torch.nonzero(y <= 1).squeeze(1)[:n]
        if keep.numel() < n:
            raise RuntimeError(f"{split}: mnist1d gave {keep.numel()} examples of classes 0 and 1, needed {n}")
        return X[keep].to(device, torch.float64), (2.0 * y[keep, None] - 1).to(device, torch.float64)

    return *pick(pool.X_train, pool.y_train, config.n_train, "train"), *pick(
        pool.X_test, pool.y_test, config.n_test, "test"
    )


def measure(config: LinearisedNetworkConfig, context: Context) -> pd.DataFrame:
    """Rows per (width, seed): "distance" (RMS over test inputs of f_T - f_lin,T), "train_loss_network",
    "train_loss_linearised"; per (width, index) for seed 0 at the narrowest and widest width: the test outputs
    "output/network", "output/linearised"; at the widest width, seed 0: "kernel_eigenvalue" (mode), the residual
    along each top eigenvector relative to its start, "projection/linear" and "projection/network" (step, mode),
    and "singular_value/{all, readout, hidden}" (index) of the parameter gradients on the training set."""
    X, y, X_test, _ = load(config, context.device)
    generator = torch.Generator().manual_seed(config.seed)  # the weights of every (width, seed), drawn in turn
    frames = []
    for width in context.track(config.widths, "widths"):
        for seed in range(config.seeds):
            model = NTKMLP(X.shape[1], 1, width, config.depth, config.activation, generator, torch.float64)
            model = model.to(context.device)
            forward, params0 = functional(model), {k: p.detach().clone() for k, p in model.named_parameters()}
            delta, linear = linearised_descent(forward, params0, X, y, config.lr, config.steps)
            network = [forward(params0, X).detach() - y]  # the residual path: kept at the widest width, seed 0
            record = lambda *_: network.append(model(X).detach() - y)  # noqa: E731,B023 (runs in this iteration)
            watched = seed == 0 and width == config.widths[-1]
            optimizer = torch.optim.SGD(model.parameters(), config.lr)
            fit(model, half_squared_error, (X, y), optimizer, config.steps, callbacks=[record] if watched else ())
            with torch.no_grad():
                outputs = {"network": model(X_test), "linearised": forward(params0, X_test)}
                network.append(model(X) - y)
            outputs["linearised"] = outputs["linearised"] + push_forward(forward, params0, X_test, delta)
            ids = {"width": width, "seed": seed}
            frames += [
                rows("distance", (outputs["network"] - outputs["linearised"]).square().mean().sqrt().item(), **ids),
                rows("train_loss_network", 0.5 * network[-1].square().mean().item(), **ids),
                rows("train_loss_linearised", 0.5 * linear[-1].square().mean().item(), **ids),
            ]
            if seed == 0 and width in (config.widths[0], config.widths[-1]):
                frames += [
                    rows(f"output/{k}", v[:, 0].cpu(), width=width, index=np.arange(len(v))) for k, v in outputs.items()
                ]
            if watched:
                widest = forward, params0, {"linear": linear, "network": torch.stack(network[:-1])}
    forward, params0, residuals = widest  # seed 0 at the widest width: the spectra
    blocks = jacobian(forward, params0, X)
    J = {
        "all": torch.cat(list(blocks.values()), dim=1),
        "readout": blocks["readout.weight"],
        "hidden": torch.cat([b for name, b in blocks.items() if name != "readout.weight"], dim=1),
    }
    eigenvalues, eigenvectors = torch.linalg.eigh(J["all"] @ J["all"].T)
    order = torch.argsort(eigenvalues, descending=True)[: config.modes]
    modes, steps = np.arange(config.modes), np.arange(config.steps + 1)
    frames.append(rows("kernel_eigenvalue", eigenvalues[order].clamp_min(0).cpu(), mode=modes))
    for key, r in residuals.items():
        projection = (r[..., 0] @ eigenvectors[:, order]).abs()
        frames.append(rows(f"projection/{key}", (projection / projection[0]).cpu(), step=steps[:, None], mode=modes))
    for key, matrix in J.items():
        values = torch.linalg.svdvals(matrix).cpu()
        frames.append(rows(f"singular_value/{key}", values, index=np.arange(len(values))))
    return pd.concat(frames, ignore_index=True)


def summarise(metrics: pd.DataFrame, config: LinearisedNetworkConfig) -> dict:
    """What the checks and figures read: the distances (widths x seeds), the fitted exponent and intercept, the
    kernel eigenvalues, the relative projections (steps + 1, modes), fitting times measured and predicted
    (`mode_fitting_time`), the predicted residuals (`mode_residual`) and the singular values."""
    distance = table(metrics, "distance", "width", "seed")
    log_distance = np.log(distance.to_numpy()).mean(axis=1)
    diverged = not np.all(np.isfinite(log_distance))  # a diverging run is recorded, and fails the checks
    slope, intercept = (math.nan, math.nan) if diverged else np.polyfit(np.log(config.widths), log_distance, 1)
    lam = series(metrics, "kernel_eigenvalue", "mode")[1]
    projections = {key: table(metrics, f"projection/{key}", "step", "mode").to_numpy() for key in ("linear", "network")}
    return {
        "distance": distance.to_numpy(),
        "slope": float(slope),
        "intercept": float(intercept),
        "eigenvalues": lam,
        "stability": float(config.lr * lam[0] / config.n_train),
        "projections": projections,
        "linear": fitting_times(projections["linear"]),
        "network": fitting_times(projections["network"]),
        "theory": mode_fitting_time(lam, config.lr, config.n_train),
        "predicted": mode_residual(lam, config.lr, config.n_train, np.arange(config.steps + 1)),
        "singular": {label: series(metrics, f"singular_value/{key}", "index")[1] for key, label in SPECTRA.items()},
    }


def checks(metrics: pd.DataFrame, config: LinearisedNetworkConfig) -> list[Check]:
    """The exponent against Lee et al.'s bound (and -1 for tanh), the fitting times and their order, Weyl."""
    spectrum = summarise(metrics, config)
    slope, widths, tol = spectrum["slope"], list(config.widths), config.slope_tolerance
    detail = (
        f"least-squares slope of the seed-mean log RMS distance on {config.n_test} test inputs after "
        f"{config.steps} steps vs log width, widths {widths}, {config.seeds} seeds, {config.activation}"
    )
    checks = [
        Check.at_most(
            "distance network - linearisation: fitted exponent of width, vs Lee et al.'s bound -1/2",
            slope,
            LINEARISATION_EXPONENT,
            tol,
            detail=f"{detail}; Lee et al. (2019, Thm. 2.1) bound the distance by O(width^-1/2): the exponent must be "
            f"at most -1/2 (+ {tol:g}, the issue's tolerance). The issue asked for |exponent + 1/2| <= {tol:g}; the "
            "measured exponent is steeper (see the next check), so that reading fails",
        ),
    ]
    if config.activation == "tanh":
        checks.append(
            Check.absolute(
                "distance network - linearisation: fitted exponent of width, vs -1 (smooth activation)",
                slope,
                SHARP_EXPONENT,
                tol,
                detail=f"{detail}; the tangent kernel moves by O(1/width) during training for a smooth activation "
                f"(Dyer & Gur-Ari 2020; Huang & Yau 2020), so f - f_lin = O(1/width); "
                f"tolerance {tol:g} as in the issue",
            )
        )
    linear, network, theory = spectrum["linear"], spectrum["network"], spectrum["theory"]
    reached = np.isfinite(theory) & (theory <= config.steps)
    k = int(reached.sum())
    checks += [
        Check.at_most(
            f"linearised GD: steps to fit each of the top {k} kernel eigen-directions vs (1 - eta lambda_i/n)^t",
            float(np.max(np.abs(linear[reached] - theory[reached]))) if k else math.nan,
            0.0,
            1.0,
            detail=f"steps until |v_i^T r_t| <= |v_i^T r_0| / e, measured on the linear model vs "
            f"ceil(1 / -log(1 - eta lambda_i / n)); width {config.widths[-1]}, eta lambda_max / n = "
            f"{spectrum['stability']:.3g}; tolerance 1 step (rounding at the threshold)",
        ),
        Check.holds(
            f"linearised GD fits the largest eigen-directions first (top {k})",
            bool(k >= 2 and np.all(np.diff(linear[reached]) >= 0)),
            detail=f"fitting times of modes 1..{k}: {', '.join(f'{t:.0f}' for t in linear[reached])}; eigenvalues "
            f"{', '.join(f'{v:.3g}' for v in spectrum['eigenvalues'][reached])}",
        ),
        Check.holds(
            f"the network fits the largest eigen-directions first too (top {k}, width {config.widths[-1]})",
            bool(k >= 2 and np.all(np.diff(network[reached]) >= 0)),
            detail=f"fitting times of the network's residual along the same eigenvectors: "
            f"{', '.join(f'{t:.0f}' for t in network[reached])}",
        ),
    ]
    singular = spectrum["singular"]
    s_all, s_last = singular["all parameters"], singular["readout = penultimate features"]
    m = min(s_all.size, s_last.size)
    gap = float(np.min(s_all[:m] - s_last[:m]))
    checks.append(
        Check.at_least(
            "singular values: all parameter gradients >= penultimate features (min_i sigma_i(J) - sigma_i(J_last))",
            gap,
            0.0,
            1e-9 * float(s_all[0]),
            detail="J J^T = J_hidden J_hidden^T + J_last J_last^T and J_last = h_L / sqrt(n_L): Weyl's monotonicity "
            "(Horn & Johnson 2013, Cor. 4.3.12); tolerance 1e-9 sigma_max for float64 rounding",
        )
    )
    return checks


def figures(metrics: pd.DataFrame, config: LinearisedNetworkConfig) -> dict[str, Figure]:
    """The distance against width, the residual along the top eigen-directions, the gradient features' spectra."""
    spectrum = summarise(metrics, config)
    outputs = {
        width: tuple(series(metrics, f"output/{k}", "index", width=width)[1] for k in ("linearised", "network"))
        for width in (config.widths[0], config.widths[-1])
    }
    return {
        "linearisation_distance": _distance_figure(spectrum, outputs, config),
        "eigen_directions": _modes_figure(spectrum, config, config.n_train),
        "feature_spectra": _spectra_figure(spectrum, config),
    }


def _distance_figure(spectrum: dict, outputs: dict, config: LinearisedNetworkConfig) -> Figure:
    distance, slope, intercept = spectrum["distance"], spectrum["slope"], spectrum["intercept"]
    fig = Figure(figsize=(13, 4.8), layout="constrained")
    ax, ax_out = fig.subplots(1, 2)
    w = np.asarray(config.widths, dtype=float)
    for s in range(config.seeds):
        ax.loglog(w, distance[:, s], "o", color="tab:blue", mfc="none", label="measured, per seed" if s == 0 else None)
    ax.loglog(w, np.exp(intercept) * w**slope, "-", color="tab:blue", label=f"fit: width^{slope:.2f}")
    anchor = np.exp(np.log(distance[0]).mean())
    for exponent, style, label in (
        (LINEARISATION_EXPONENT, "--", "Lee et al. bound: width^-1/2"),
        (SHARP_EXPONENT, ":", "smooth activation: width^-1"),
    ):
        ax.loglog(w, anchor * (w / w[0]) ** exponent, style, color="k", label=label)
    ax.set_xlabel("hidden width")
    ax.set_ylabel("RMS over test inputs of f_T(x) - f_lin,T(x)")
    ax.set_title(f"Network vs its linearisation after {config.steps} GD steps ({config.activation})")
    ax.legend(fontsize=8)
    for width, color in ((config.widths[0], "tab:orange"), (config.widths[-1], "tab:green")):
        linear, network = outputs[width]
        ax_out.plot(linear, network, ".", color=color, ms=4, label=f"width {width}")
    low = min(v.min() for pair in outputs.values() for v in pair)
    high = max(v.max() for pair in outputs.values() for v in pair)
    ax_out.plot([low, high], [low, high], "-", color="k", lw=1, label="f = f_lin")
    ax_out.set_xlabel("linearised model f_lin,T(x)")
    ax_out.set_ylabel("network f_T(x)")
    ax_out.set_title("Test outputs after training (seed 0)")
    ax_out.legend(fontsize=8)
    return fig


def _modes_figure(spectrum: dict, config: LinearisedNetworkConfig, n: int) -> Figure:
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.subplots()
    steps = np.arange(config.steps + 1)
    marks = steps[:: max(1, config.steps // 25)]
    for i, lam in enumerate(spectrum["eigenvalues"]):
        color = f"C{i}"
        ax.semilogy(
            steps,
            np.abs(spectrum["predicted"][:, i]),
            "-",
            color=color,
            lw=1,
            label=f"mode {i + 1}: lambda/n = {lam / n:.3g}, theory",
        )
        ax.semilogy(marks, spectrum["projections"]["linear"][marks, i], "o", color=color, mfc="none", ms=4)
        ax.semilogy(steps, spectrum["projections"]["network"][:, i], "--", color=color, lw=1)
    ax.plot([], [], "ko", mfc="none", label="linearised model (measured)")
    ax.plot([], [], "k--", label="network (measured)")
    ax.axhline(1 / math.e, color="gray", lw=0.8, ls=":", label="fitted: 1/e")
    ax.set_xlabel("step t")
    ax.set_ylabel("|v_i^T r_t| / |v_i^T r_0|")
    ax.set_ylim(1e-6, 2)
    ax.set_title(f"Residual along the kernel's top eigen-directions (width {config.widths[-1]}): largest first")
    ax.legend(fontsize=7, ncol=2)
    return fig


def _spectra_figure(spectrum: dict, config: LinearisedNetworkConfig) -> Figure:
    fig = Figure(figsize=(7.5, 5), layout="constrained")
    ax = fig.subplots()
    for (name, values), style in zip(spectrum["singular"].items(), ("o-", "s--", "^:"), strict=True):
        ax.semilogy(np.arange(1, values.size + 1), values, style, ms=3, label=f"J: {name}")
    ax.set_xlabel("index i")
    ax.set_ylabel("singular value sigma_i on the training set")
    ax.set_title(f"Features of fine-tuning (all gradients) contain the linear probe's (width {config.widths[-1]})")
    ax.legend(fontsize=8)
    return fig


EXPERIMENT = Experiment(
    name="linearised-network",
    claim=(
        "Near its initialisation a wide network trains like its linearisation f(theta_0) + J (theta - theta_0), "
        "a linear model on the parameter gradients (the empirical neural tangent kernel): the two stay closer the "
        "wider the network, gradient descent fits the kernel's largest eigen-directions first, and the gradient "
        "features contain those of a linear probe on the penultimate layer."
    ),
    config=LinearisedNetworkConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={
        "full": {
            "n_train": 128,
            "n_test": 512,
            "widths": (64, 128, 256, 512, 1024, 2048, 4096, 8192),
            "seeds": 10,
            "steps": 1000,
            "modes": 10,
        }
    },
    references=(
        "Lee, Xiao, Schoenholz, Bahri, Novak, Sohl-Dickstein & Pennington (2019), Wide neural networks of any depth "
        "evolve as linear models under gradient descent, NeurIPS",
        "Jacot, Gabriel & Hongler (2018), Neural tangent kernel: convergence and generalization in neural networks, "
        "NeurIPS",
        "Arora, Du, Hu, Li & Wang (2019), Fine-grained analysis of optimization and generalization for "
        "overparameterized two-layer neural networks, ICML",
        "Dyer & Gur-Ari (2020), Asymptotics of wide networks from Feynman diagrams, ICLR",
        "Huang & Yau (2020), Dynamics of deep neural networks and neural tangent hierarchy, ICML",
    ),
    part="generalisation",
)
