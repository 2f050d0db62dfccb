"""overparameterisation: wider networks reach a lower training loss on a fixed budget, and test no worse.

A width sweep of one-hidden-layer ReLU MLPs (standard parameterisation, He initialisation) on mnist1d, each width
trained for the same number of full-batch steps of SGD with momentum at the same learning rate, several seeds at
once (`_ensemble`). Measured:

1. the training loss that the budget reaches falls with width (seed means, strictly, at every step of the sweep);
2. the test error does not rise with width: no width is worse than the best narrower one by more than two standard
   errors of a difference of seed means (from the pooled seed-to-seed spread);
3. the mechanism: in the standard parameterisation the neural tangent kernel at initialisation grows linearly with
   width, E tr Theta(x, x) = C (m ||x||^2 / d + ||x||^2 + 2) (`tdlab.theory.ntk.relu_ntk_trace`), so a fixed
   learning rate moves the outputs further per step; measured with per-example Jacobians on a probe batch and
   compared at the widest width, tolerance three predicted relative standard deviations, 3 sqrt(5 / (m S)) (the
   relative spread of sum_j relu(z_j)^2 over m units, Var(h^2) / E[h^2]^2 = 5 for h = relu(z), z Gaussian,
   averaged over S seeds).

Figures: training loss curves of every width; final training loss and test error against width; the NTK trace
against width with its theory line.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from pydantic import Field, field_validator
from torch import Tensor
from torch.func import functional_call, jacrev, vmap

from tdlab.data import mnist1d
from tdlab.ensemble import StackedModels
from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig, Result, legacy
from tdlab.experiments.catalogue._ensemble import accuracies, fit
from tdlab.models import MLP
from tdlab.theory.ntk import relu_ntk_trace


class OverparameterisationConfig(ExperimentConfig):
    """Data, width sweep and the fixed training budget (defaults: the quick config)."""

    n_train: int = Field(500, ge=10, description="training examples of mnist1d")
    n_test: int = Field(2000, ge=10, description="test examples of mnist1d")
    widths: tuple[int, ...] = Field((8, 16, 32, 64, 128, 256), description="hidden widths, increasing")
    seeds: int = Field(3, ge=2, description="initialisations per width (>= 2 for the seed spread)")
    steps: int = Field(300, ge=1, description="the fixed budget: full-batch steps for every width")
    lr: float = Field(0.05, gt=0, description="learning rate of SGD, the same for every width")
    momentum: float = Field(0.9, ge=0, lt=1, description="heavy-ball momentum of SGD")
    probe_examples: int = Field(32, ge=1, description="training examples on which the NTK trace is measured")

    @field_validator("widths")
    @classmethod
    def _increasing(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if len(value) < 3 or any(w < 1 for w in value) or list(value) != sorted(set(value)):
            raise ValueError(f"widths: expected at least 3 increasing positive integers, got {value}")
        return value


def ntk_trace(model: torch.nn.Module, X: Tensor) -> Tensor:
    """tr Theta(x, x) = sum_c ||d f_c(x) / d theta||^2 for every row x of X (per-example Jacobians with
    `torch.func.jacrev`), shape (n,).

    Example:
        >>> model = torch.nn.Linear(3, 2)
        >>> ntk_trace(model, torch.ones(4, 3)).tolist()  # per output: ||x||^2 + 1 = 4
        [8.0, 8.0, 8.0, 8.0]
    """
    params = {name: p.detach() for name, p in model.named_parameters()}

    def output(p: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(model, p, (x.unsqueeze(0),)).squeeze(0)

    jacobians = vmap(jacrev(output), in_dims=(None, 0))(params, X)
    return sum(j.flatten(2).square().sum(dim=(1, 2)) for j in jacobians.values())


def run(config: OverparameterisationConfig, context: Context) -> Result:
    device = context.device
    data = mnist1d(config.n_train, config.n_test, seed=config.seed).to(device)
    C, d, S = data.out_features, data.in_features, config.seeds
    labels = data.y_train.expand(S, -1)
    probe = data.X_train[: config.probe_examples]
    widths = config.widths
    curves = np.zeros((len(widths), config.steps + 1, S))
    test_error, trace = np.zeros((len(widths), S)), np.zeros((len(widths), S))
    rows: list[dict[str, object]] = []
    for i, width in enumerate(context.track(widths, "width sweep")):
        models = [MLP(d, C, width=width, depth=1, seed=config.seed * 1000 + s).to(device) for s in range(S)]
        trace[i] = [ntk_trace(m, probe).mean().item() for m in models]
        ensemble = StackedModels.of(models, device)
        optimizer = torch.optim.SGD(ensemble.params.values(), lr=config.lr, momentum=config.momentum)

        def record(t: int, outputs: Tensor, losses: Tensor, i: int = i) -> bool:
            curves[i, t] = losses.cpu().numpy()
            return False

        fit(ensemble, data.X_train, labels, config.steps, optimizer, on_step=record)
        with torch.no_grad():
            test_error[i] = 1 - accuracies(ensemble.outputs(data.X_test), data.y_test).cpu().numpy()
        for s in range(S):
            rows.extend(
                {"width": width, "seed": s, "step": t, "name": "train_loss", "value": float(curves[i, t, s])}
                for t in range(config.steps + 1)
            )
            rows.append({"width": width, "seed": s, "name": "test_error", "value": float(test_error[i, s])})
            rows.append({"width": width, "seed": s, "name": "ntk_trace", "value": float(trace[i, s])})
    final_loss = curves[:, -1].mean(axis=1)
    mean_error = test_error.mean(axis=1)
    pooled_sd = float(np.sqrt(test_error.var(axis=1, ddof=1).mean()))
    rise_tolerance = 2 * pooled_sd * np.sqrt(2 / S)
    rises = mean_error - np.minimum.accumulate(mean_error)
    largest_rise = float(rises.max()) if np.all(np.isfinite(final_loss)) else math.nan  # a diverged run fails
    squared_norm = probe.square().sum(dim=1).mean().item()
    theory_trace = relu_ntk_trace(np.asarray(widths), squared_norm, d, C)
    trace_tolerance = 3 * np.sqrt(5 / (widths[-1] * S))
    for width, value, predicted in zip(widths, trace.mean(axis=1), theory_trace, strict=True):
        rows.append({"width": width, "name": "ntk_trace_theory", "value": float(predicted)})
        rows.append({"width": width, "name": "ntk_trace_ratio", "value": float(value / predicted)})
    checks = [
        Check.holds(
            "training loss after the fixed budget falls with width",
            bool(np.all(np.diff(final_loss) < 0)),
            detail=f"seed-mean training cross-entropy after {config.steps} steps at widths {list(widths)}: "
            f"{', '.join(f'{v:.3g}' for v in final_loss)}",
            measured=float(np.max(np.diff(final_loss))),
        ),
        Check.at_most(
            "test error does not rise with width: largest rise above the best narrower width",
            largest_rise,
            0.0,
            float(rise_tolerance),
            detail=f"seed-mean test error {', '.join(f'{v:.3f}' for v in mean_error)} on {data.num_test} examples; "
            f"tolerance 2 standard errors of a difference of two means of {S} seeds, 2 sqrt(2/{S}) s, with the "
            f"pooled seed-to-seed sd s = {pooled_sd:.4f}",
        ),
        Check.relative(
            f"NTK trace at initialisation, width {widths[-1]}: measured vs C (m |x|^2/d + |x|^2 + 2)",
            float(trace[-1].mean()),
            float(theory_trace[-1]),
            float(trace_tolerance),
            detail=f"mean over {config.probe_examples} training examples and {S} seeds; tolerance 3 sqrt(5/(m S)) = "
            f"{trace_tolerance:.3f}, three predicted relative sds of sum_j relu(z_j)^2 (Var h^2 / E[h^2]^2 = 5)",
        ),
    ]
    figures = {
        "loss_curves": _curves_figure(curves, config),
        "width_sweep": _sweep_figure(final_loss, curves[:, -1], test_error, trace, theory_trace, config),
    }
    return Result(pd.DataFrame(rows), checks, figures)


def _curves_figure(curves: np.ndarray, config: OverparameterisationConfig) -> Figure:
    fig = Figure(figsize=(7, 4.8), layout="constrained")
    ax = fig.subplots()
    colors = colormaps["viridis"](np.linspace(0.0, 0.9, len(config.widths)))
    steps = np.arange(config.steps + 1)
    for i, width in enumerate(config.widths):
        ax.semilogy(steps, curves[i].mean(axis=1), color=colors[i], label=f"width {width}")
    ax.axvline(config.steps, color="k", ls=":", lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel(f"training cross-entropy (mean of {config.seeds} seeds)")
    ax.set_title(f"The same budget and learning rate ({config.lr:g}): wider networks train faster")
    ax.legend(fontsize=8)
    return fig


def _sweep_figure(
    final_loss: np.ndarray,
    final_losses: np.ndarray,
    test_error: np.ndarray,
    trace: np.ndarray,
    theory_trace: np.ndarray,
    config: OverparameterisationConfig,
) -> Figure:
    fig = Figure(figsize=(15, 4.5), layout="constrained")
    ax_loss, ax_test, ax_ntk = fig.subplots(1, 3)
    w = np.asarray(config.widths)
    for ax, values, mean in ((ax_loss, final_losses, final_loss), (ax_test, test_error, test_error.mean(axis=1))):
        for s in range(config.seeds):
            ax.plot(w, values[:, s], "o", color="tab:blue", mfc="none", ms=5, label="per seed" if s == 0 else None)
        ax.plot(w, mean, "-", color="tab:blue", label="seed mean")
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel(f"training cross-entropy after {config.steps} steps")
    ax_loss.set_title("Optimisation gets easier with width")
    ax_test.set_ylabel("test error")
    ax_test.set_title("... and the test error does not rise")
    for s in range(config.seeds):
        ax_ntk.plot(
            w, trace[:, s], "o", color="tab:blue", mfc="none", ms=5, label="measured, per seed" if s == 0 else None
        )
    ax_ntk.plot(w, theory_trace, "-", color="k", label="theory C (m|x|^2/d + |x|^2 + 2)")
    ax_ntk.set_yscale("log")
    ax_ntk.set_ylabel("tr Theta(x, x) at initialisation (probe mean)")
    ax_ntk.set_title("Why: the tangent kernel grows with width (SP)")
    for ax in (ax_loss, ax_test, ax_ntk):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("hidden width m")
        ax.legend(fontsize=8)
    return fig


EXPERIMENT = Experiment(
    name="overparameterisation",
    claim=(
        "With the same training budget, wider networks reach a lower training loss (optimisation gets easier), "
        "while their test error does not rise."
    ),
    config=OverparameterisationConfig,
    **legacy(run),
    presets={
        "full": {
            "n_train": 4000,
            "n_test": 4000,
            "widths": (8, 16, 32, 64, 128, 256, 512, 1024, 2048),
            "seeds": 5,
            "steps": 2000,
            "lr": 0.02,
            "probe_examples": 128,
        }
    },
    references=(
        "Neyshabur, Tomioka & Srebro (2015), In search of the real inductive bias: on the role of implicit "
        "regularization in deep learning, ICLR workshop",
        "Neyshabur, Li, Bhojanapalli, LeCun & Srebro (2019), The role of over-parametrization in generalization of "
        "neural networks, ICLR",
        "Du, Zhai, Poczos & Singh (2019), Gradient descent provably optimizes over-parameterized neural networks, ICLR",
        "Jacot, Gabriel & Hongler (2018), Neural tangent kernel: convergence and generalization in neural "
        "networks, NeurIPS",
    ),
    part="generalisation",
)
