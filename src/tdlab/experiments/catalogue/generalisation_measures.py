"""generalisation-measures: norm- and flatness-based complexity measures against the generalisation gap.

One-hidden-layer ReLU MLPs of several widths are trained on the same small training set with true, partially
random and random labels (`tdlab.data.with_label_noise`), all to the same stopping criterion, training
cross-entropy <= `stop_loss` (Jiang et al. 2019 stop at 0.01), by full-batch SGD with momentum (`tdlab.train.fit`
on the stacked networks of one width, `tdlab.ensemble.members`; the `MemberLosses` probe tells when each one stops).
For each network, with layers W_1 (hidden) and W_2 (readout) and generalisation gap = training accuracy - test
accuracy:

- spectral: log prod_l ||W_l||_2^2 ("log.prod.of.spec", Jiang et al. 2019; the norm part of Bartlett, Foster &
  Telgarsky 2017);
- frobenius: log prod_l ||W_l||_F^2 ("log.prod.of.fro"; Neyshabur, Tomioka & Srebro 2015);
- spectral / margin^2: log (prod_l ||W_l||_2^2 / gamma^2), gamma the 10th percentile of the training margins
  f_y(x) - max_{j != y} f_j(x) (Bartlett et al. 2017, whose normalised margins separate random from true labels);
- path norm: log sum_c f_{w^2}(1)_c, the network with every parameter squared evaluated at the all-ones input
  ("path.norm", Neyshabur et al. 2015; Jiang et al. 2019);
- PAC-Bayes flatness (Jiang et al. 2019, "pacbayes.flatness"): sigma' the largest noise level on a grid of J
  log-spaced values whose posterior Q = N(w, sigma'^2 I) has a Monte-Carlo training error at most
  `flatness_deviation` above the network's, and the bound err_hat(Q) + sqrt((||w - w_0||^2 / (2 sigma'^2) +
  ln(2 sqrt(m) J / delta)) / (2 m)) at that sigma' (valid for a sigma chosen from the grid by the union bound;
  `tdlab.theory.generalisation_bounds`; the Monte-Carlo error of err_hat(Q) is not bounded separately, as
  Dziugaite & Roy 2017 do); also the flatness 1 / sigma'^2 itself.

Checks: every network reaches the stopping criterion; every measure is larger, at every width, for the
random-label networks than for the true-label ones (seed means); the PAC-Bayes bound is vacuous (> 1) on random
labels, where the test error is ~0.9 and no sound bound can be small; and the Kendall rank correlations of the
PAC-Bayes bound and of the flatness with the gap are positive, the sign Jiang et al. (2019) find for their
PAC-Bayes flatness measures (among the best predictors of the gap in their study). The rank correlations of the
norm-based measures are reported, not checked: Jiang et al. find them weak or negative over hyperparameter changes,
and over a label-noise sweep like this one they mostly follow the noise.

Figures: each measure against the gap (true, partial and random labels, by width); the PAC-Bayes bound against
the test error with the vacuous line 1.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from pydantic import Field, field_validator
from scipy.stats import kendalltau
from torch import Tensor, nn
from torch.func import functional_call, vmap

from tdlab.data import Dataset, digits, mnist1d, standardize, with_label_noise
from tdlab.ensemble import StackedModels
from tdlab.ensemble.members import MemberLosses, Members, accuracies, summed
from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.tidy import value
from tdlab.models import MLP
from tdlab.probes import ProbeSet
from tdlab.theory.generalisation_bounds import gaussian_kl, pac_bayes_bound
from tdlab.train.builders import build_optimizer
from tdlab.train.config import OptimizerConfig
from tdlab.train.trainer import fit

CROSS_ENTROPY = nn.CrossEntropyLoss()
ID_COLUMNS = ["width", "noise_fraction", "seed"]
MEASURES = ("spectral", "frobenius", "spectral_over_margin", "path_norm", "pac_bayes_bound", "flatness")
LABELS = {
    "spectral": "log prod ||W||_2^2",
    "frobenius": "log prod ||W||_F^2",
    "spectral_over_margin": "log prod ||W||_2^2 / margin^2",
    "path_norm": "log path norm",
    "pac_bayes_bound": "PAC-Bayes bound on test error",
    "flatness": "flatness 1 / sigma'^2",
}


class GeneralisationMeasuresConfig(ExperimentConfig):
    """Data, the population of trained networks, and the PAC-Bayes search (defaults: the quick config)."""

    dataset: Literal["digits", "mnist1d"] = Field("digits", description="digits (standardised) or mnist1d")
    n_train: int = Field(256, ge=20, description="training examples (at most 539 for digits)")
    n_test: int = Field(2000, ge=100, description="test examples of mnist1d (digits: always its 1258)")
    widths: tuple[int, ...] = Field((32, 64, 128), description="hidden widths, increasing")
    noise_fractions: tuple[float, ...] = Field(
        (0.0, 0.5, 1.0), description="fractions of resampled labels, increasing from 0 (true) to 1 (random)"
    )
    seeds: int = Field(2, ge=1, description="initialisations and label draws per width and noise fraction")
    optimizer: OptimizerConfig = Field(OptimizerConfig(name="sgd", lr=0.05, momentum=0.9), description="full batch")
    stop_loss: float = Field(0.01, gt=0, description="training cross-entropy at which a network is taken")
    max_steps: int = Field(5000, ge=1, description="budget; networks not reaching stop_loss are flagged")
    sigma_grid: tuple[float, float, int] = Field(
        (1e-3, 1.0, 61), description="PAC-Bayes noise levels: (smallest, largest, number), log-spaced"
    )
    mc_samples: int = Field(8, ge=1, description="Monte-Carlo draws of the posterior per noise level")
    delta: float = Field(0.05, gt=0, lt=1, description="confidence parameter of the PAC-Bayes bound")
    flatness_deviation: float = Field(0.1, gt=0, lt=1, description="training-error increase that defines sigma'")

    @field_validator("widths")
    @classmethod
    def _widths(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(w < 1 for w in value) or list(value) != sorted(set(value)):
            raise ValueError(f"widths: expected increasing positive integers, got {value}")
        return value

    @field_validator("noise_fractions")
    @classmethod
    def _fractions(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if len(value) < 2 or value[0] != 0.0 or value[-1] != 1.0 or list(value) != sorted(set(value)):
            raise ValueError(f"noise_fractions: expected increasing numbers from 0.0 to 1.0, got {value}")
        return value

    @field_validator("sigma_grid")
    @classmethod
    def _grid(cls, value: tuple[float, float, int]) -> tuple[float, float, int]:
        low, high, count = value
        if not 0 < low < high or count < 2:
            raise ValueError(f"sigma_grid: expected (smallest > 0, largest > smallest, number >= 2), got {value}")
        return value


# ------------------------------------------------------------------------------------------------ measures
def norm_measures(params: dict[str, Tensor], margin: float) -> dict[str, float]:
    """log prod ||W_l||_2^2, log prod ||W_l||_F^2 and log(prod ||W_l||_2^2 / margin^2) over the weight matrices of
    an MLP's parameters (names ending in "weight").

    Example:
        >>> out = norm_measures({"a.weight": 2 * torch.eye(3), "b.weight": torch.ones(1, 3)}, margin=0.5)
        >>> [round(math.exp(out[k]), 4) for k in ("spectral", "frobenius", "spectral_over_margin")]
        [12.0, 36.0, 48.0]

    (4 * 3, 12 * 3 and 4 * 3 / 0.5^2.)
    """
    weights = [p for name, p in params.items() if name.endswith("weight")]
    spectral = sum(2 * torch.linalg.matrix_norm(w, ord=2).log().item() for w in weights)
    frobenius = sum(2 * torch.linalg.matrix_norm(w).log().item() for w in weights)
    return {
        "spectral": spectral,
        "frobenius": frobenius,
        "spectral_over_margin": spectral - 2 * math.log(margin) if margin > 0 else math.inf,
    }


def path_norm(model: torch.nn.Module, params: dict[str, Tensor]) -> float:
    """log sum_c f_{w^2}(1)_c: the model with every parameter squared, at the all-ones input, summed over outputs
    (for a ReLU network every path's product of squared weights is non-negative, so this is sum over input-output
    paths of prod w^2, the squared l2 path norm of Neyshabur et al. 2015, biases as paths from a constant input).

    Example:
        >>> layer = torch.nn.Linear(2, 1)
        >>> params = {"weight": torch.tensor([[1.0, 2.0]]), "bias": torch.tensor([3.0])}
        >>> round(path_norm(layer, params), 6) == round(math.log(1 + 4 + 9), 6)
        True
    """
    squared = {name: p.square() for name, p in params.items()}
    first = next(p for name, p in params.items() if name.endswith("weight"))  # its columns: the inputs
    return functional_call(model, squared, (first.new_ones(1, first.shape[1]),)).sum().log().item()


def margins(outputs: Tensor, labels: Tensor) -> Tensor:
    """f_y(x) - max_{j != y} f_j(x) for outputs (n, C) and labels (n,).

    Example:
        >>> margins(torch.tensor([[3.0, 1.0, 2.0]]), torch.tensor([0])).tolist()
        [1.0]
    """
    correct = outputs.gather(1, labels[:, None]).squeeze(1)
    others = outputs.scatter(1, labels[:, None], -math.inf)
    return correct - others.max(dim=1).values


def perturbed_errors(
    model: torch.nn.Module,
    params: dict[str, Tensor],
    X: Tensor,
    labels: Tensor,
    sigmas: np.ndarray,
    samples: int,
    generator: torch.Generator,
) -> np.ndarray:
    """Monte-Carlo estimates of the 0-1 error on (X, labels) of networks drawn from N(w, sigma^2 I), one per
    sigma, each the mean over `samples` draws (evaluated at once with vmap), shape (len(sigmas),).

    Example:
        >>> layer, g = torch.nn.Linear(2, 2), torch.Generator().manual_seed(0)
        >>> p = {"weight": torch.eye(2), "bias": torch.zeros(2)}
        >>> perturbed_errors(layer, p, torch.eye(2), torch.tensor([0, 1]), np.array([1e-6]), 4, g).tolist()
        [0.0]
    """

    def error(draw: dict[str, Tensor]) -> Tensor:
        return 1 - accuracies(functional_call(model, draw, (X,)), labels)

    out = np.zeros(len(sigmas))
    for i, sigma in enumerate(sigmas):
        draws = {
            name: p + sigma * torch.randn((samples, *p.shape), generator=generator, dtype=p.dtype).to(p.device)
            for name, p in params.items()
        }
        out[i] = vmap(error)(draws).mean().item()
    return out


# ------------------------------------------------------------------------------------------------ the run
def load(config: GeneralisationMeasuresConfig) -> Dataset:
    """The training set of n_train examples and its test set (digits: standardised with training statistics)."""
    if config.dataset == "mnist1d":
        return mnist1d(config.n_train, config.n_test, seed=config.seed)
    if config.n_train > 539:
        raise ValueError(f"n_train: expected at most 539 for digits, got {config.n_train}")
    return standardize(digits(test_fraction=0.7, seed=config.seed).subset(config.n_train))


def measure(config: GeneralisationMeasuresConfig, context: Context) -> pd.DataFrame:
    """Every network's measures, accuracies, margin and PAC-Bayes terms (one row each per width, noise fraction and
    seed), and the Kendall tau of each measure with the generalisation gap over all networks."""
    device = context.device
    data = load(config).to(device)
    sigmas = np.geomspace(config.sigma_grid[0], config.sigma_grid[1], config.sigma_grid[2])
    generator = torch.Generator().manual_seed(config.seed)
    runs = [(f, s) for f in config.noise_fractions for s in range(config.seeds)]
    labels = torch.stack([with_label_noise(data, f, seed=config.seed * 1000 + s).y_train for f, s in runs], dim=1)
    records: list[dict[str, object]] = []
    for width in context.track(config.widths, "training and measuring"):
        models = [
            MLP(data.in_features, data.out_features, width=width, depth=1, seed=config.seed * 1000 + s) for _, s in runs
        ]
        members = Members(StackedModels.of(models, device))
        initial = {name: p.detach().clone() for name, p in members.models.params.items()}
        taken, stopped = train_to_criterion(members, data.X_train, labels, config)
        for k, (fraction, seed) in enumerate(context.track(runs, f"measures, width {width}")):
            params, start = ({name: p[k] for name, p in stacked.items()} for stacked in (taken, initial))
            measures = _measure(members.models.template, params, start, data, labels[:, k], sigmas, config, generator)
            records.append(
                {"width": width, "noise_fraction": fraction, "seed": seed, "stopped_at": int(stopped[k]), **measures}
            )
    table = pd.DataFrame(records)
    table["gap"] = table["train_accuracy"] - table["test_accuracy"]
    taus = [{"name": f"kendall_tau_{n}", "value": kendalltau(table[n], table["gap"]).statistic} for n in MEASURES]
    rows = table.melt(id_vars=ID_COLUMNS, var_name="name", value_name="value")
    return pd.concat([rows, pd.DataFrame(taus)], ignore_index=True)


def train_to_criterion(
    members: Members, X: Tensor, labels: Tensor, config: GeneralisationMeasuresConfig
) -> tuple[dict[str, Tensor], np.ndarray]:
    """Train every network of `members` (labels (n, N), one column each) with full-batch SGD and momentum and keep
    each one's parameters at the first step its training cross-entropy is <= stop_loss: (stacked parameters taken,
    step taken, -1 for a network that never got there within max_steps, which keeps its final parameters)."""
    params = members.models.params
    taken = {name: p.detach().clone() for name, p in params.items()}
    stopped = np.full(len(members.models), -1)
    probe = MemberLosses(CROSS_ENTROPY)

    def snapshot(step: int, batch_loss: float) -> bool:
        for k in np.flatnonzero((probe.losses.cpu().numpy() <= config.stop_loss) & (stopped < 0)):
            stopped[k] = step
            for name, p in params.items():
                taken[name][k] = p.detach()[k]
        return bool((stopped >= 0).all())

    probes = ProbeSet([probe], members, summed(CROSS_ENTROPY), train=(X, labels))
    optimizer = build_optimizer(members.parameters(), config.optimizer)
    fit(members, summed(CROSS_ENTROPY), (X, labels), optimizer, config.max_steps, probes=probes, callbacks=[snapshot])
    for k in np.flatnonzero(stopped < 0):
        for name, p in params.items():
            taken[name][k] = p.detach()[k]
    return taken, stopped


def _measure(
    base: torch.nn.Module,
    params: dict[str, Tensor],
    initial: dict[str, Tensor],
    data: Dataset,
    labels: Tensor,
    sigmas: np.ndarray,
    config: GeneralisationMeasuresConfig,
    generator: torch.Generator,
) -> dict[str, float]:
    with torch.no_grad():
        train_out = functional_call(base, params, (data.X_train,))
        test_out = functional_call(base, params, (data.X_test,))
        train_error = 1 - accuracies(train_out, labels).item()
        gamma = torch.quantile(margins(train_out, labels), 0.1).item()
        train_q = perturbed_errors(base, params, data.X_train, labels, sigmas, config.mc_samples, generator)
        flat = np.flatnonzero(train_q - train_error <= config.flatness_deviation)
        chosen = int(flat.max()) if flat.size else 0
        sigma = float(sigmas[chosen])
        distance = sum((params[n] - initial[n]).square().sum() for n in params).item()
        kl = float(gaussian_kl(distance, sigma))
        bound = float(pac_bayes_bound(train_q[chosen], kl, data.num_train, config.delta / len(sigmas)))
        test_q = perturbed_errors(
            base, params, data.X_test, data.y_test, np.array([sigma]), config.mc_samples, generator
        )[0]
        return {
            "train_accuracy": 1 - train_error,
            "test_accuracy": accuracies(test_out, data.y_test).item(),
            "train_loss": torch.nn.functional.cross_entropy(train_out, labels).item(),
            "margin": gamma,
            **norm_measures(params, gamma),
            "path_norm": path_norm(base, params),
            "pac_bayes_bound": bound,
            "pac_bayes_sigma": sigma,
            "pac_bayes_kl": kl,
            "posterior_train_error": float(train_q[chosen]),
            "posterior_test_error": float(test_q),
            "flatness": 1 / sigma**2,
            "distance_from_init": math.sqrt(distance),
        }


def _table(metrics: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, float]]:
    """The networks' rows back as one table (a column per metric), and the Kendall taus by measure."""
    networks = metrics.dropna(subset=ID_COLUMNS)
    table = networks.pivot_table(index=ID_COLUMNS, columns="name", values="value").reset_index()
    return table, {name: value(metrics, f"kendall_tau_{name}") for name in MEASURES}


def checks(metrics: pd.DataFrame, config: GeneralisationMeasuresConfig) -> list[Check]:
    """Every network stopped; every measure larger on random labels; the bound vacuous there; positive taus."""
    table, taus = _table(metrics)
    means = table.groupby(["width", "noise_fraction"]).mean(numeric_only=True)
    true, random = means.xs(0.0, level="noise_fraction"), means.xs(1.0, level="noise_fraction")
    checks = []
    unstopped = int((table["stopped_at"] < 0).sum())
    checks.append(
        Check.absolute(
            "networks reaching the stopping criterion",
            float(len(table) - unstopped),
            float(len(table)),
            0.0,
            detail=f"training cross-entropy <= {config.stop_loss:g} within {config.max_steps} steps (the common "
            "criterion of Jiang et al. 2019 that makes the measures comparable)",
        )
    )
    for name in MEASURES:
        margin = (random[name] - true[name]).min()
        checks.append(
            Check.holds(
                f"{name}: larger for random-label than for true-label networks at every width",
                bool(margin > 0),
                detail=f"seed means at widths {list(config.widths)}: true {', '.join(f'{v:.3g}' for v in true[name])}; "
                f"random {', '.join(f'{v:.3g}' for v in random[name])}",
                measured=float(margin),
            )
        )
    random_bounds = table.loc[table["noise_fraction"] == 1.0, "pac_bayes_bound"]
    checks.append(
        Check.at_least(
            "PAC-Bayes bound on random labels is vacuous (smallest over networks)",
            float(random_bounds.min()),
            1.0,
            detail="random-label networks have test error ~ 1 - 1/C; a sound bound cannot certify better, and the "
            "weights' distance from initialisation makes the KL term large",
        )
    )
    others = ", ".join(f"{n} {t:+.2f}" for n, t in taus.items())
    for name in ("pac_bayes_bound", "flatness"):
        checks.append(
            Check.at_least(
                f"Kendall tau ({name}, generalisation gap)",
                float(taus[name]),
                0.0,
                detail=f"over {len(table)} networks; Jiang et al. (2019) find positive rank correlations for the "
                f"PAC-Bayes flatness measures; all taus: {others}",
            )
        )
    return checks


def figures(metrics: pd.DataFrame, config: GeneralisationMeasuresConfig) -> dict[str, Figure]:
    """Each measure against the gap; the PAC-Bayes bound against the posterior's test error."""
    table, taus = _table(metrics)
    fig = Figure(figsize=(16, 8.5), layout="constrained")
    axes = fig.subplots(2, 3).flat
    markers = dict(zip(config.widths, "os^Dvp<>h", strict=False))
    colors = dict(zip(config.noise_fractions, [f"C{i}" for i in range(len(config.noise_fractions))], strict=True))
    for ax, name in zip(axes, MEASURES, strict=True):
        for (width, fraction), group in table.groupby(["width", "noise_fraction"]):
            ax.plot(
                group["gap"],
                group[name],
                markers[width],
                color=colors[fraction],
                mfc="none",
                ms=7,
                label=f"noise {fraction:g}, width {width}",
            )
        ax.set_xlabel("generalisation gap (train - test accuracy)")
        ax.set_ylabel(LABELS[name])
        ax.set_title(f"{name}: Kendall tau = {taus[name]:+.2f}", fontsize=10)
        if name == "pac_bayes_bound":
            ax.axhline(1.0, color="k", ls="--", lw=1, label="vacuous above 1")
            ax.set_yscale("log")
        if name == "flatness":
            ax.set_yscale("log")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=8)
    fig.suptitle("Complexity measures of networks trained on true, partially random and random labels")

    bound = Figure(figsize=(7, 5), layout="constrained")
    ax = bound.subplots()
    for fraction, group in table.groupby("noise_fraction"):
        ax.plot(
            group["posterior_test_error"],
            group["pac_bayes_bound"],
            "o",
            color=colors[fraction],
            mfc="none",
            label=f"noise {fraction:g}",
        )
    ax.axhline(1.0, color="k", ls="--", lw=1, label="vacuous: bound = 1")
    ax.plot([0, 1], [0, 1], ":", color="gray", label="bound = test error (below: the bound would be violated)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.1 * table["pac_bayes_bound"].max())
    ax.set_xlabel("test error of the posterior N(w, sigma'^2 I)")
    ax.set_ylabel("PAC-Bayes bound")
    ax.set_title(f"PAC-Bayes bounds (delta = {config.delta:g}) are vacuous at this sample size")
    ax.legend(fontsize=8)
    return {"measures_vs_gap": fig, "pac_bayes_bound": bound}


EXPERIMENT = Experiment(
    name="generalisation-measures",
    claim=(
        "Norm- and sharpness-based complexity measures of trained networks (spectral and Frobenius norm products, "
        "path norm, PAC-Bayes flatness) are larger for networks that memorise random labels than for networks "
        "trained on true labels, but their bounds are vacuous, and only some track the generalisation gap."
    ),
    config=GeneralisationMeasuresConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={
        "full": {
            "dataset": "mnist1d",
            "n_train": 2000,
            "n_test": 4000,
            "widths": (64, 128, 256, 512, 1024),
            "noise_fractions": (0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
            "seeds": 3,
            "max_steps": 50000,
            "sigma_grid": (1e-4, 1.0, 41),
            "mc_samples": 32,
        }
    },
    references=(
        "Jiang, Neyshabur, Mobahi, Krishnan & Bengio (2019), Fantastic generalization measures and where to find "
        "them, ICLR 2020",
        "Bartlett, Foster & Telgarsky (2017), Spectrally-normalized margin bounds for neural networks, NeurIPS",
        "Neyshabur, Tomioka & Srebro (2015), Norm-based capacity control in neural networks, COLT",
        "Dziugaite & Roy (2017), Computing nonvacuous generalization bounds for deep (stochastic) neural networks "
        "with many more parameters than training data, UAI",
        "McAllester (1999), PAC-Bayesian model averaging, COLT; Maurer (2004), A note on the PAC Bayesian theorem",
        "Zhang, Bengio, Hardt, Recht & Vinyals (2017), Understanding deep learning requires rethinking "
        "generalization, ICLR",
    ),
    part="generalisation",
)
