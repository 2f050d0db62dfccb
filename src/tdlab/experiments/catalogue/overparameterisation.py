"""overparameterisation: wider networks reach a lower training loss on a fixed budget, and test no worse.

A width sweep of one-hidden-layer ReLU MLPs (standard parameterisation, He initialisation) on mnist1d, each width
trained for the same number of full-batch steps of SGD with momentum at the same learning rate
(`tdlab.train.fit`), the seeds of a width at once (`tdlab.ensemble.members`), their training losses measured at
every step by the `MemberLosses` probe. Measured:

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

import numpy as np
import pandas as pd
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from pydantic import Field, field_validator
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

from tdlab.ensemble import StackedModels
from tdlab.ensemble.members import MemberLosses, Members, accuracies, by_member, summed
from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.tidy import select, series, table, value
from tdlab.models import MLP
from tdlab.probes import ProbeSet
from tdlab.theory.ntk import relu_ntk_trace
from tdlab.train.builders import build_data, build_optimizer
from tdlab.train.config import DataConfig, OptimizerConfig
from tdlab.train.trainer import fit

CROSS_ENTROPY = nn.CrossEntropyLoss()


class OverparameterisationConfig(ExperimentConfig):
    """Data, width sweep and the fixed training budget (defaults: the quick config)."""

    data: DataConfig = Field(DataConfig(name="mnist1d", n_train=500, n_test=2000), description="a classification set")
    widths: tuple[int, ...] = Field((8, 16, 32, 64, 128, 256), description="hidden widths, increasing")
    seeds: int = Field(3, ge=2, description="initialisations per width (>= 2 for the seed spread)")
    steps: int = Field(300, ge=1, description="the fixed budget: full-batch steps for every width")
    optimizer: OptimizerConfig = Field(
        OptimizerConfig(name="sgd", lr=0.05, momentum=0.9), description="the same for every width"
    )
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


def measure(config: OverparameterisationConfig, context: Context) -> pd.DataFrame:
    """Per width and seed: the training loss at every step, the final test error, the NTK trace at initialisation
    on the probe batch (with its theory, per width)."""
    data = build_data(config.data, context.device)
    d, C, S = data.in_features, data.out_features, config.seeds
    train = (data.X_train, data.y_train[:, None].expand(-1, S))  # every seed on the true labels
    probe = data.X_train[: config.probe_examples]
    squared_norm = probe.square().sum(dim=1).mean().item()
    frames = []
    for width in context.track(config.widths, "width sweep"):
        models = [MLP(d, C, width=width, depth=1, seed=config.seed * 1000 + s).to(data.X_train) for s in range(S)]
        trace = [ntk_trace(m, probe).mean().item() for m in models]
        members = Members(StackedModels.of(models))
        probes = ProbeSet([MemberLosses(CROSS_ENTROPY)], members, summed(CROSS_ENTROPY), train=train)
        optimizer = build_optimizer(members.parameters(), config.optimizer)
        losses = by_member(fit(members, summed(CROSS_ENTROPY), train, optimizer, config.steps, probes=probes).metrics)
        with torch.no_grad():
            test_error = (1 - accuracies(members(data.X_test), data.y_test)).tolist()
        theory = float(relu_ntk_trace(width, squared_norm, d, C))
        per_width = [
            select(losses, "train/loss").rename(columns={"member": "seed"}).assign(name="train_loss"),
            pd.DataFrame({"seed": range(S), "test_error": test_error, "ntk_trace": trace}).melt(
                "seed", var_name="name"
            ),
            pd.DataFrame({"name": ["ntk_trace_theory", "ntk_trace_ratio"], "value": [theory, np.mean(trace) / theory]}),
        ]
        frames.append(pd.concat(per_width).assign(width=width))
    return pd.concat(frames, ignore_index=True)


def _final_losses(metrics: pd.DataFrame, config: OverparameterisationConfig) -> pd.DataFrame:
    """The training loss at the end of the budget, width x seed (NaN where training stopped before it)."""
    last = select(metrics, "train_loss", step=config.steps)
    return last.pivot_table(index="width", columns="seed", values="value").reindex(list(config.widths))


def checks(metrics: pd.DataFrame, config: OverparameterisationConfig) -> list[Check]:
    """The budget's loss falls with width, the test error does not rise, the NTK trace against its theory."""
    widths, S = config.widths, config.seeds
    final_loss = _final_losses(metrics, config).mean(axis=1, skipna=False).to_numpy()
    test_error = table(metrics, "test_error", "width", "seed").to_numpy()
    mean_error = test_error.mean(axis=1)
    pooled_sd = float(np.sqrt(test_error.var(axis=1, ddof=1).mean()))
    rise_tolerance = 2 * pooled_sd * np.sqrt(2 / S)
    rises = mean_error - np.minimum.accumulate(mean_error)
    largest_rise = float(rises.max()) if np.all(np.isfinite(final_loss)) else np.nan  # a diverged run fails
    trace = table(metrics, "ntk_trace", "width", "seed").mean(axis=1).iloc[-1]
    theory_trace = value(metrics, "ntk_trace_theory", width=widths[-1])
    trace_tolerance = 3 * np.sqrt(5 / (widths[-1] * S))
    n_test = config.data.kwargs().get("n_test", "the")
    return [
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
            detail=f"seed-mean test error {', '.join(f'{v:.3f}' for v in mean_error)} on {n_test} test examples; "
            f"tolerance 2 standard errors of a difference of two means of {S} seeds, 2 sqrt(2/{S}) s, with the "
            f"pooled seed-to-seed sd s = {pooled_sd:.4f}",
        ),
        Check.relative(
            f"NTK trace at initialisation, width {widths[-1]}: measured vs C (m |x|^2/d + |x|^2 + 2)",
            float(trace),
            float(theory_trace),
            float(trace_tolerance),
            detail=f"mean over {config.probe_examples} training examples and {S} seeds; tolerance 3 sqrt(5/(m S)) = "
            f"{trace_tolerance:.3f}, three predicted relative sds of sum_j relu(z_j)^2 (Var h^2 / E[h^2]^2 = 5)",
        ),
    ]


def figures(metrics: pd.DataFrame, config: OverparameterisationConfig) -> dict[str, Figure]:
    """Seed-mean loss curves of every width; final loss, test error and NTK trace (with its theory) against width."""
    curves = select(metrics, "train_loss").pivot_table(index="step", columns="width", values="value")
    fig = Figure(figsize=(7, 4.8), layout="constrained")
    ax = fig.subplots()
    colors = colormaps["viridis"](np.linspace(0.0, 0.9, len(config.widths)))
    for color, width in zip(colors, config.widths, strict=True):
        ax.semilogy(curves.index, curves[width], color=color, label=f"width {width}")
    ax.axvline(config.steps, color="k", ls=":", lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel(f"training cross-entropy (mean of {config.seeds} seeds)")
    ax.set_title(f"The same budget and learning rate ({config.optimizer.lr:g}): wider networks train faster")
    ax.legend(fontsize=8)

    sweep = Figure(figsize=(15, 4.5), layout="constrained")
    ax_loss, ax_test, ax_ntk = sweep.subplots(1, 3)
    w = np.asarray(config.widths)
    tables = [
        _final_losses(metrics, config),
        *(table(metrics, n, "width", "seed") for n in ("test_error", "ntk_trace")),
    ]
    for ax, by_width in zip((ax_loss, ax_test, ax_ntk), tables, strict=True):
        for s in range(config.seeds):
            ax.plot(w, by_width[s], "o", color="tab:blue", mfc="none", ms=5, label="per seed" if s == 0 else None)
        if ax is not ax_ntk:
            ax.plot(w, by_width.mean(axis=1), "-", color="tab:blue", label="seed mean")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("hidden width m")
    ax_ntk.plot(*series(metrics, "ntk_trace_theory", "width"), "-", color="k", label="theory C (m|x|^2/d + |x|^2 + 2)")
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel(f"training cross-entropy after {config.steps} steps")
    ax_loss.set_title("Optimisation gets easier with width")
    ax_test.set_ylabel("test error")
    ax_test.set_title("... and the test error does not rise")
    ax_ntk.set_yscale("log")
    ax_ntk.set_ylabel("tr Theta(x, x) at initialisation (probe mean)")
    ax_ntk.set_title("Why: the tangent kernel grows with width (SP)")
    for ax in (ax_loss, ax_test, ax_ntk):
        ax.legend(fontsize=8)
    return {"loss_curves": fig, "width_sweep": sweep}


EXPERIMENT = Experiment(
    name="overparameterisation",
    claim=(
        "With the same training budget, wider networks reach a lower training loss (optimisation gets easier), "
        "while their test error does not rise."
    ),
    config=OverparameterisationConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={
        "full": {
            "data": {"name": "mnist1d", "n_train": 4000, "n_test": 4000},
            "widths": (8, 16, 32, 64, 128, 256, 512, 1024, 2048),
            "seeds": 5,
            "steps": 2000,
            "optimizer": {"name": "sgd", "lr": 0.02, "momentum": 0.9},
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
