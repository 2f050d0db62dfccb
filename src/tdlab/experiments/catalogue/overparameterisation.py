"""overparameterisation: with the step size controlled for, wider networks reach a lower training loss on a fixed
budget, and test no worse.

A width sweep of one-hidden-layer ReLU MLPs (standard parameterisation, He initialisation) on mnist1d, each run
trained by full-batch gradient descent for the same number of steps (`tdlab.train.fit`), the seeds of a width at
once (`tdlab.ensemble.members`), their training losses measured every `curve_every` steps by the `MemberLosses`
probe (a forward pass over the training set: taken every step, it added 10-40% to the training time; the checks
read only the loss at the last step, which `curve_every` must divide, and the figure needs no more).

The control. In the standard parameterisation the neural tangent kernel grows linearly with width (check 4), so
one fixed learning rate is a larger and larger step for wider networks: "wider trains faster" at a fixed rate
confounds width with the effective step. Here every run gets its own step at the same fraction of the stability
limit of gradient descent, eta = step_fraction * 2 / lambda_max, with lambda_max the top eigenvalue of the
training loss's Hessian at its initialisation (Lanczos, `tdlab.curvature.hessian_eigs`). A per-member step in a
stacked ensemble: plain SGD at rate 1 on sum_s eta_s L_s moves member s by eta_s grad L_s (`weighted`).

Checks (alpha = 0.05 for both tests; seed-to-seed variation is the noise):

1. the claim, as a trend: over the width x seed runs, Spearman's rank correlation between width and the final
   training loss is negative, one-sided p < alpha. Fails when the loss does not fall with width (no trend, or a
   rise), e.g. when the effective step shrinks with width faster than width helps.
2. no reversal at the wide end: the widest width's final log-loss is not significantly above that of the next
   narrower width (one-sided Welch t-test, fails when p < alpha). A U-shaped sweep (wider helps up to a point,
   then hurts) can pass check 1 and fails this one.
3. the test error does not rise with width: no width is worse than the best narrower one by more than two standard
   errors of a difference of seed means (pooled seed-to-seed spread). Fails when a wider network tests worse.
4. the reason for the control: in the standard parameterisation the tangent kernel at initialisation grows
   linearly with width, E tr Theta(x, x) = C (m ||x||^2 / d + ||x||^2 + 2) (`tdlab.theory.ntk.relu_ntk_trace`);
   measured with per-example Jacobians on a probe batch at the widest width, tolerance three predicted relative
   standard deviations, 3 sqrt(5 / (m S)) (Var(h^2) / E[h^2]^2 = 5 for h = relu(z), z Gaussian, over S seeds).
   Fails on a wrong initialisation scale or a wrong Jacobian.

Figures: training loss curves of every width; final training loss, test error, the NTK trace (with its theory)
and the sharpness at initialisation with the step it sets, against width.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from pydantic import Field, field_validator, model_validator
from scipy.stats import spearmanr, ttest_ind
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

from tdlab.curvature import hessian_eigs
from tdlab.ensemble import StackedModels, member_losses
from tdlab.ensemble.members import MemberLosses, Members, accuracies, by_member, summed
from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.tidy import select, series, table, value
from tdlab.models import MLP
from tdlab.oracles import Objective
from tdlab.probes import ProbeSet
from tdlab.theory.ntk import relu_ntk_trace
from tdlab.train.builders import build_data
from tdlab.train.config import DataConfig
from tdlab.train.trainer import fit

CROSS_ENTROPY = nn.CrossEntropyLoss()
ALPHA = 0.05  # significance level of checks 1 and 2


class OverparameterisationConfig(ExperimentConfig):
    """Data, width sweep, the fixed budget and the step's fraction of 2 / lambda_max (defaults: the quick config)."""

    data: DataConfig = Field(DataConfig(name="mnist1d", n_train=500, n_test=2000), description="a classification set")
    widths: tuple[int, ...] = Field((8, 16, 32, 64, 128, 256), description="hidden widths, increasing")
    seeds: int = Field(3, ge=2, description="initialisations per width (>= 2 for the seed spread)")
    steps: int = Field(300, ge=1, description="the fixed budget: full-batch gradient-descent steps for every run")
    step_fraction: float = Field(
        0.5, gt=0, lt=1, description="every run's step, as a fraction of 2 / lambda_max at its initialisation"
    )
    lanczos_tol: float = Field(1e-3, gt=0, lt=1, description="relative tolerance of lambda_max (see hessian_eigs)")
    probe_examples: int = Field(32, ge=1, description="training examples on which the NTK trace is measured")
    curve_every: int = Field(10, ge=1, description="steps between two points of the loss curves; divides steps")

    @field_validator("widths")
    @classmethod
    def _increasing(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if len(value) < 3 or any(w < 1 for w in value) or list(value) != sorted(set(value)):
            raise ValueError(f"widths: expected at least 3 increasing positive integers, got {value}")
        return value

    @model_validator(mode="after")
    def _curve_reaches_the_budget(self) -> OverparameterisationConfig:
        if self.steps % self.curve_every:
            raise ValueError(f"curve_every: expected a divisor of steps = {self.steps}, got {self.curve_every}")
        return self


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


def weighted(loss_fn: nn.Module, weights: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
    """sum_m weights[m] L_m for outputs (N, n, *) and targets (n, N, *): SGD at rate 1 on this loss moves member m
    by weights[m] grad L_m, every member at its own step size.

    Example:
        >>> weighted(nn.MSELoss(), torch.tensor([1.0, 3.0]))(torch.zeros(2, 3, 4), torch.ones(3, 2, 4)).item()
        4.0
    """
    each = member_losses(loss_fn)
    return lambda outputs, targets: (each(outputs, targets.movedim(1, 0)) * weights).sum()


def measure(config: OverparameterisationConfig, context: Context) -> pd.DataFrame:
    """Per width and seed: lambda_max at initialisation and the step it sets, the training loss every `curve_every`
    steps (from step 0 to `steps`), the final test error, the NTK trace at initialisation on the probe batch (with
    its theory, per width)."""
    data = build_data(config.data, context.device)
    d, C, S = data.in_features, data.out_features, config.seeds
    train = (data.X_train, data.y_train[:, None].expand(-1, S))  # every seed on the true labels
    probe = data.X_train[: config.probe_examples]
    squared_norm = probe.square().sum(dim=1).mean().item()
    frames = []
    for width in context.track(config.widths, "width sweep"):
        models = [MLP(d, C, width=width, depth=1, seed=config.seed * 1000 + s).to(data.X_train) for s in range(S)]
        trace = [ntk_trace(m, probe).mean().item() for m in models]
        sharpness = [
            float(hessian_eigs(Objective(m, CROSS_ENTROPY, data.train), tol=config.lanczos_tol).eigenvalues[0])
            for m in models
        ]
        lr = [2 * config.step_fraction / s for s in sharpness]
        members = Members(StackedModels.of(models))
        curve = MemberLosses(CROSS_ENTROPY, every=config.curve_every)
        probes = ProbeSet([curve], members, summed(CROSS_ENTROPY), train=train)
        optimizer = torch.optim.SGD(members.parameters(), lr=1.0)  # member s's step is lr[s], through `weighted`
        loss_fn = weighted(CROSS_ENTROPY, torch.tensor(lr, dtype=data.X_train.dtype, device=context.device))
        losses = by_member(fit(members, loss_fn, train, optimizer, config.steps, probes=probes).metrics)
        with torch.no_grad():
            test_error = (1 - accuracies(members(data.X_test), data.y_test)).tolist()
        theory = float(relu_ntk_trace(width, squared_norm, d, C))
        per_seed = {"test_error": test_error, "ntk_trace": trace, "sharpness_init": sharpness, "lr": lr}
        per_width = [
            select(losses, "train/loss").rename(columns={"member": "seed"}).assign(name="train_loss"),
            pd.DataFrame({"seed": range(S), **per_seed}).melt("seed", var_name="name"),
            pd.DataFrame({"name": ["ntk_trace_theory", "ntk_trace_ratio"], "value": [theory, np.mean(trace) / theory]}),
        ]
        frames.append(pd.concat(per_width).assign(width=width))
    return pd.concat(frames, ignore_index=True)


def _final_losses(metrics: pd.DataFrame, config: OverparameterisationConfig) -> pd.DataFrame:
    """The training loss at the end of the budget, width x seed (NaN where training stopped before it)."""
    last = select(metrics, "train_loss", step=config.steps)
    return last.pivot_table(index="width", columns="seed", values="value", dropna=False).reindex(list(config.widths))


def checks(metrics: pd.DataFrame, config: OverparameterisationConfig) -> list[Check]:
    """The budget's loss falls with width (trend, no reversal at the wide end), the test error does not rise, the
    NTK trace against its theory (module docstring)."""
    widths, S = config.widths, config.seeds
    final = _final_losses(metrics, config).reindex(columns=range(S))
    log_loss = np.log(final.to_numpy())
    finite = bool(np.all(np.isfinite(log_loss)))  # a diverged or unfinished run fails checks 1-3
    trend = spearmanr(np.repeat(widths, S), log_loss.ravel(), alternative="less") if finite else None
    rho, trend_p = (float(trend.statistic), float(trend.pvalue)) if trend is not None else (np.nan, np.nan)
    rise = ttest_ind(log_loss[-1], log_loss[-2], equal_var=False, alternative="greater") if finite else None
    rise_p = float(rise.pvalue) if rise is not None else np.nan
    mean_loss = final.mean(axis=1).to_numpy()
    test_error = table(metrics, "test_error", "width", "seed").to_numpy()
    mean_error = test_error.mean(axis=1)
    pooled_sd = float(np.sqrt(test_error.var(axis=1, ddof=1).mean()))
    rise_tolerance = 2 * pooled_sd * np.sqrt(2 / S)
    largest_rise = float((mean_error - np.minimum.accumulate(mean_error)).max()) if finite else np.nan
    trace = table(metrics, "ntk_trace", "width", "seed").mean(axis=1).iloc[-1]
    theory_trace = value(metrics, "ntk_trace_theory", width=widths[-1])
    trace_tolerance = 3 * np.sqrt(5 / (widths[-1] * S))
    sharpness = table(metrics, "sharpness_init", "width", "seed").mean(axis=1).to_numpy()
    n_test = config.data.kwargs().get("n_test", "the")
    losses = ", ".join(f"{v:.3g}" for v in mean_loss)
    control = (
        f"every run at step {config.step_fraction:g} x 2 / lambda_max(init); seed-mean lambda_max "
        f"{', '.join(f'{v:.3g}' for v in sharpness)} at widths {list(widths)}"
    )
    return [
        Check.at_most(
            f"wider trains to a lower loss in {config.steps} steps at the same fraction of 2/lambda_max: "
            f"Spearman p-value (one-sided, alpha {ALPHA:g})",
            trend_p,
            ALPHA,
            detail=f"rank correlation of width and final training loss over {len(widths)} widths x {S} seeds: "
            f"rho = {rho:.3f}; seed-mean losses {losses}; {control}. Fails when the loss does not fall with width",
        ),
        Check.at_least(
            f"no reversal: width {widths[-1]} not slower than width {widths[-2]} "
            f"(one-sided Welch t p-value, fails below alpha {ALPHA:g})",
            rise_p,
            ALPHA,
            detail=f"final log-loss, {S} seeds each: seed means {mean_loss[-2]:.3g} (width {widths[-2]}) and "
            f"{mean_loss[-1]:.3g} (width {widths[-1]}); fails when the widest width is significantly worse than the "
            "next, the U-shape that the trend test alone lets through",
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
            f"{trace_tolerance:.3f}, three predicted relative sds of sum_j relu(z_j)^2 (Var h^2 / E[h^2]^2 = 5); "
            "the reason a fixed learning rate is a growing step in the standard parameterisation",
        ),
    ]


def figures(metrics: pd.DataFrame, config: OverparameterisationConfig) -> dict[str, Figure]:
    """Seed-mean loss curves of every width; final loss, test error, NTK trace (with its theory) and lambda_max at
    initialisation against width."""
    curves = select(metrics, "train_loss").pivot_table(index="step", columns="width", values="value")
    fig = Figure(figsize=(7, 4.8), layout="constrained")
    ax = fig.subplots()
    colors = colormaps["viridis"](np.linspace(0.0, 0.9, len(config.widths)))
    for color, width in zip(colors, config.widths, strict=True):
        ax.semilogy(curves.index, curves[width], color=color, label=f"width {width}")
    ax.axvline(config.steps, color="k", ls=":", lw=1)
    ax.set_xlabel("gradient-descent step")
    ax.set_ylabel(f"training cross-entropy (mean of {config.seeds} seeds)")
    ax.set_title(f"Every run at step {config.step_fraction:g} x 2 / lambda_max(init)")
    ax.legend(fontsize=8)

    sweep = Figure(figsize=(19, 4.5), layout="constrained")
    ax_loss, ax_test, ax_ntk, ax_sharp = sweep.subplots(1, 4)
    w = np.asarray(config.widths)
    names = ("test_error", "ntk_trace", "sharpness_init")
    tables = [_final_losses(metrics, config), *(table(metrics, n, "width", "seed") for n in names)]
    for ax, by_width in zip((ax_loss, ax_test, ax_ntk, ax_sharp), tables, strict=True):
        for s in range(config.seeds):
            ax.plot(w, by_width[s], "o", color="tab:blue", mfc="none", ms=5, label="per seed" if s == 0 else None)
        if ax is not ax_ntk:
            ax.plot(w, by_width.mean(axis=1), "-", color="tab:blue", label="seed mean")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("hidden width m")
    ax_ntk.plot(*series(metrics, "ntk_trace_theory", "width"), "-", color="k", label="theory C (m|x|^2/d + |x|^2 + 2)")
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel(f"training cross-entropy after {config.steps} steps")
    ax_loss.set_title("Training loss at the same fraction of the stable step")
    ax_test.set_ylabel("test error")
    ax_test.set_title("Test error")
    ax_ntk.set_yscale("log")
    ax_ntk.set_ylabel("tr Theta(x, x) at initialisation (probe mean)")
    ax_ntk.set_title("The tangent kernel grows with width (SP)")
    ax_sharp.set_yscale("log")
    ax_sharp.set_ylabel("lambda_max of the Hessian at initialisation")
    ax_sharp.set_title(f"... so the step {config.step_fraction:g} x 2 / lambda_max shrinks")
    for ax in (ax_loss, ax_test, ax_ntk, ax_sharp):
        ax.legend(fontsize=8)
    return {"loss_curves": fig, "width_sweep": sweep}


EXPERIMENT = Experiment(
    name="overparameterisation",
    claim=(
        "With the same number of gradient-descent steps, each at the same fraction of the stable step 2 / lambda_max, "
        "wider networks reach a lower training loss (optimisation gets easier), while their test error does not rise."
    ),
    config=OverparameterisationConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={
        # Stronger than quick on every axis (one more doubling of width, 5 seeds not 3, 8x the data, 1000 steps not
        # 300) and under 20 minutes on one thread of a busy machine. Widths 1024 and 2048 at 2000 steps are out of
        # reach there: one full-batch step of 5 stacked 40-m-10 MLPs on 4000 examples takes 0.31 s at m = 512,
        # 0.74 s at 1024 and 1.4 s at 2048 (one thread, load 2-3), 85-100 minutes for the old 9 widths.
        # Measured here (7.7 min, one thread, load 2-5): checks 1-3 fail, the seed-mean loss is U-shaped in width
        # (lowest 0.81 at width 64, 1.11 at 512, lambda_max 4.4 -> 29.7), and so is the test error.
        "full": {
            "data": {"name": "mnist1d", "n_train": 4000, "n_test": 4000},
            "widths": (8, 16, 32, 64, 128, 256, 512),
            "seeds": 5,
            "steps": 1000,
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
        "Cohen, Kaur, Li, Kolter & Talwalkar (2021), Gradient descent on neural networks typically occurs at the "
        "edge of stability, ICLR",
    ),
    part="generalisation",
)
