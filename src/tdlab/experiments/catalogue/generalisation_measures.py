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
  Dziugaite & Roy 2017 do); also the flatness 1 / sigma'^2 itself, and, reported, the bound at its smallest over
  the whole grid (valid by the same union bound) with its sigma and the test error of that posterior;
- a norm-based bound: the multi-class margin bound err <= R_rho + (4 C / rho) R_S + 3 sqrt(ln(2 / delta) / (2 m))
  (Mohri, Rostamizadeh & Talwalkar 2018, Thm. 9.2) with the Frobenius-norm bound on the Rademacher complexity
  R_S <= (sqrt(2 ln(2) d) + 1) prod_l M_l sqrt(sum_i ||x_i||^2) / m of depth-d ReLU networks (Golowich, Rakhlin &
  Shamir 2018, Thm. 1), biases folded in as weights from a constant input (`augmented_norm_product`), taken at its
  smallest over 0 < rho <= the largest training margin (for larger rho it only tends to the trivial value 1 + 3
  sqrt(ln(2 / delta) / (2 m))). The union bound that choosing rho and the norms after training costs is left
  out, so the value is below the valid bound: "vacuous" is concluded conservatively.

Checks, and how each fails:

- every network reaches the stopping criterion (fails when one has not within max_steps);
- every measure is larger, at every width, for the random-label networks than for the true-label ones (seed
  means; fails for a measure that does not separate memorisation from learning at some width);
- the premise that makes vacuity informative: the true-label networks generalise, their test error and that of
  their posterior N(w, sigma'^2 I) at most `small_error` (0.25: a bound >= 1 then overstates the error at least
  4-fold; chance is 0.9). It fails when the networks do not generalise: on mnist1d at 2000 examples an MLP's test
  error is about 0.5, which is why both presets use digits (test error 0.07-0.10 at 256 examples);
- on those true-label networks, both bounds are vacuous (> 1) although the test error is small. Unlike random
  labels, where the test error is ~0.9 and no sound bound can be small, this is not automatic: a sound bound
  could be as low as the test error. The PAC-Bayes check is at sigma', where the posterior still classifies
  nearly as the network does; it fails when ||w - w_0||^2 / (2 sigma'^2) is small against 2 m (weights that moved
  little, more data, or a KL computed too small). Over the whole grid the bound is smallest at a larger sigma whose
  posterior is near chance: at 256 examples it stays above 1 (1.08-1.11), at 512 (width 512) it dips to 0.97 at a
  posterior of test error 0.37 (reported in the check's detail, not checked). The norm bound check fails for
  networks whose norm product is small against their margin and sqrt(m); measured, it is vacuous by two orders of
  magnitude;
- the PAC-Bayes bound is vacuous on random labels too (kept for the comparison);
- the Kendall rank correlations of the PAC-Bayes bound and of the flatness with the gap are positive, the sign
  Jiang et al. (2019) find for their PAC-Bayes flatness measures (among the best predictors of the gap in their
  study). The rank correlations of the norm-based measures are reported, not checked: Jiang et al. find them weak
  or negative over hyperparameter changes, and over a label-noise sweep like this one they mostly follow the noise.

Figures: each measure against the gap (true, partial and random labels, by width); the PAC-Bayes bound against
the posterior's test error and the norm-based bound against the network's, with the vacuous line 1.
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
from tdlab.theory.generalisation_bounds import frobenius_rademacher, gaussian_kl, margin_bound, pac_bayes_bound
from tdlab.train.builders import build_optimizer
from tdlab.train.config import OptimizerConfig
from tdlab.train.trainer import fit

CROSS_ENTROPY = nn.CrossEntropyLoss()
ID_COLUMNS = ["width", "noise_fraction", "seed"]
MEASURES = ("spectral", "frobenius", "spectral_over_margin", "path_norm", "pac_bayes_bound", "flatness", "norm_bound")
LABELS = {
    "spectral": "log prod ||W||_2^2",
    "frobenius": "log prod ||W||_F^2",
    "spectral_over_margin": "log prod ||W||_2^2 / margin^2",
    "path_norm": "log path norm",
    "pac_bayes_bound": "PAC-Bayes bound on test error",
    "flatness": "flatness 1 / sigma'^2",
    "norm_bound": "Frobenius margin bound on test error",
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
    small_error: float = Field(
        0.25, gt=0, lt=1, description="premise: the largest test error of a true-label network that counts as small"
    )

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


def augmented_norm_product(params: dict[str, Tensor]) -> float:
    """prod_l M_l for an MLP's parameters (names "...weight" with their "...bias", the readout last) written as a
    network without biases: the input gets a constant coordinate 1, W_l becomes [W_l b_l], and each hidden layer
    an extra unit relu(1) = 1 that carries the constant on, so M_l = sqrt(||W_l||_F^2 + ||b_l||^2 + 1); the readout
    enters with its largest row norm sqrt(||w_y||^2 + b_y^2), as each class score f_y is a network of one output.

    Example:
        >>> readout = torch.tensor([[1.0, 2.0], [2.0, 2.0]])
        >>> p = {"a.weight": torch.ones(2, 3), "a.bias": torch.ones(2), "b.weight": readout}
        >>> round(augmented_norm_product(p), 6) == round(math.sqrt(6 + 2 + 1) * math.sqrt(8), 6)
        True
    """
    names = [name for name in params if name.endswith("weight")]
    product = 1.0
    for k, name in enumerate(names):
        rows = params[name].flatten(1).square().sum(1)
        bias = params.get(name.removesuffix("weight") + "bias")
        rows = rows + bias.square() if bias is not None else rows
        product *= math.sqrt(rows.sum().item() + 1) if k < len(names) - 1 else math.sqrt(rows.max().item())
    return product


def norm_bound(
    params: dict[str, Tensor], outputs: Tensor, labels: Tensor, X: Tensor, delta: float
) -> tuple[float, float]:
    """The Frobenius-norm margin bound on the test error of an MLP (`tdlab.theory.generalisation_bounds`:
    `margin_bound` with `frobenius_rademacher` of the bias-augmented network, `augmented_norm_product`, on the
    inputs (x, 1)) at its smallest over 0 < rho <= the largest training margin, and that rho (inf, nan when no
    training margin is positive). The bound is piecewise linear in 1 / rho with breaks at the training margins, so
    that smallest value is at one of them; beyond the largest it tends, as rho -> infinity, to the trivial
    1 + 3 sqrt(ln(2 / delta) / (2 m)). Choosing rho and the norm levels after training would cost a union bound
    that is not added: the value is below the valid bound, so when it exceeds 1 the valid bound does too."""
    gamma = margins(outputs, labels).detach().double().cpu().numpy()
    rhos = np.unique(gamma[gamma > 0])
    if not rhos.size:
        return math.inf, math.nan
    depth = sum(name.endswith("weight") for name in params)
    squared = (X.double().square().flatten(1).sum(1) + 1).cpu().numpy()
    complexity = frobenius_rademacher(augmented_norm_product(params), squared, depth)
    losses = np.clip(1 - gamma[None, :] / rhos[:, None], 0, 1).mean(axis=1)
    bounds = margin_bound(losses, rhos, complexity, outputs.shape[1], len(gamma), delta)
    best = int(np.argmin(bounds))
    return float(bounds[best]), float(rhos[best])


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
    """Every network's measures, accuracies, margin, PAC-Bayes terms and norm-based bound (one row each per width, noise
    fraction and seed), and the Kendall tau of each measure with the generalisation gap over all networks."""
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
        bounds = pac_bayes_bound(train_q, gaussian_kl(distance, sigmas), data.num_train, config.delta / len(sigmas))
        best = int(np.argmin(bounds))
        test_q = perturbed_errors(
            base, params, data.X_test, data.y_test, sigmas[[chosen, best]], config.mc_samples, generator
        )
        bound_by_norms, rho = norm_bound(params, train_out, labels, data.X_train, config.delta)
        return {
            "train_accuracy": 1 - train_error,
            "test_accuracy": accuracies(test_out, data.y_test).item(),
            "train_loss": torch.nn.functional.cross_entropy(train_out, labels).item(),
            "margin": gamma,
            **norm_measures(params, gamma),
            "path_norm": path_norm(base, params),
            "pac_bayes_bound": float(bounds[chosen]),
            "pac_bayes_sigma": sigma,
            "pac_bayes_kl": kl,
            "posterior_train_error": float(train_q[chosen]),
            "posterior_test_error": float(test_q[0]),
            "pac_bayes_best_bound": float(bounds[best]),
            "pac_bayes_best_sigma": float(sigmas[best]),
            "posterior_best_test_error": float(test_q[1]),
            "norm_bound": bound_by_norms,
            "norm_bound_margin": rho,
            "flatness": 1 / sigma**2,
            "distance_from_init": math.sqrt(distance),
        }


def _table(metrics: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, float]]:
    """The networks' rows back as one table (a column per metric), and the Kendall taus by measure."""
    networks = metrics.dropna(subset=ID_COLUMNS)
    table = networks.pivot_table(index=ID_COLUMNS, columns="name", values="value").reset_index()
    return table, {name: value(metrics, f"kendall_tau_{name}") for name in MEASURES}


def checks(metrics: pd.DataFrame, config: GeneralisationMeasuresConfig) -> list[Check]:
    """Every network stopped; every measure larger on random labels; the premise (true labels generalise) and the
    bounds vacuous on true labels and on random ones; positive taus for the PAC-Bayes measures."""
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
    on_true, on_random = table[table["noise_fraction"] == 0.0], table[table["noise_fraction"] == 1.0]
    errors = 1 - on_true["test_accuracy"]
    worst = max(errors.max(), on_true["posterior_test_error"].max())
    checks.append(
        Check.at_most(
            "premise: true labels, test error small (worst network, and its posterior at sigma')",
            float(worst),
            config.small_error,
            detail=f"test errors of the {len(on_true)} true-label networks {errors.min():.3f}-{errors.max():.3f}, of "
            f"their posteriors N(w, sigma'^2 I) {on_true['posterior_test_error'].min():.3f}-"
            f"{on_true['posterior_test_error'].max():.3f} (chance: 0.9 for 10 classes); small_error = "
            f"{config.small_error:g}, so that a bound >= 1 overstates the error at least {1 / config.small_error:.0f}"
            "-fold. Fails when the networks do not generalise, e.g. on mnist1d at 2000 examples (error 0.5)",
        )
    )
    best = on_true.loc[on_true["pac_bayes_best_bound"].idxmin()]
    checks.append(
        Check.at_least(
            "true labels: PAC-Bayes bound at sigma' is vacuous (smallest over networks)",
            float(on_true["pac_bayes_bound"].min()),
            1.0,
            detail="the bound on the test error of the posterior N(w, sigma'^2 I), whose training error is within "
            f"{config.flatness_deviation:g} of the network's (the premise check: its test error is small). Not "
            "automatic: a sound bound may be as low as that test error; it fails when the KL term ||w - w0||^2 / "
            "(2 sigma'^2) is small against 2 m, e.g. for weights that moved little or a KL computed too small. Over "
            f"the whole grid the smallest bound is {best['pac_bayes_best_bound']:.3f}, at sigma = "
            f"{best['pac_bayes_best_sigma']:.3g}, where the posterior's test error is "
            f"{best['posterior_best_test_error']:.3f}",
        )
    )
    checks.append(
        Check.at_least(
            "true labels: Frobenius-norm margin bound is vacuous (smallest over networks)",
            float(on_true["norm_bound"].min()),
            1.0,
            detail="R_rho + (4 C / rho) (sqrt(4 ln 2) + 1) prod_l ||[W_l b_l]||_F sqrt(sum_i ||(x_i, 1)||^2) / m + "
            "3 sqrt(ln(2 / delta) / (2 m)) (Mohri et al. 2018, Thm. 9.2; Golowich et al. 2018, Thm. 1), smallest "
            "over rho up to the largest training margin (beyond, it tends to the trivial 1 + 3 sqrt(ln(2 / delta) / "
            "(2 m))); without the union bound over rho and the norms, so below the valid bound. Values "
            f"{on_true['norm_bound'].min():.3g}-{on_true['norm_bound'].max():.3g}; fails for networks whose norm "
            "product is small against their margin and sqrt(m)",
        )
    )
    checks.append(
        Check.at_least(
            "random labels: PAC-Bayes bound at sigma' is vacuous (smallest over networks)",
            float(on_random["pac_bayes_bound"].min()),
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
    """Each measure against the gap; the PAC-Bayes bound against the posterior's test error and the norm-based
    bound against the network's."""
    table, taus = _table(metrics)
    fig = Figure(figsize=(20, 8.5), layout="constrained")
    axes = list(fig.subplots(2, 4).flat)
    axes[-1].set_axis_off()
    markers = dict(zip(config.widths, "os^Dvp<>h", strict=False))
    colors = dict(zip(config.noise_fractions, [f"C{i}" for i in range(len(config.noise_fractions))], strict=True))
    for ax, name in zip(axes, MEASURES, strict=False):
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
        if name in ("pac_bayes_bound", "norm_bound"):
            ax.axhline(1.0, color="k", ls="--", lw=1, label="vacuous above 1")
            ax.set_yscale("log")
        if name == "flatness":
            ax.set_yscale("log")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=8)
    fig.suptitle("Complexity measures of networks trained on true, partially random and random labels")

    bound = Figure(figsize=(13, 5), layout="constrained")
    ax_pb, ax_norm = bound.subplots(1, 2)
    for fraction, group in table.groupby("noise_fraction"):
        style = {"color": colors[fraction], "mfc": "none", "label": f"noise {fraction:g}"}
        ax_pb.plot(group["posterior_test_error"], group["pac_bayes_bound"], "o", **style)
        ax_norm.plot(1 - group["test_accuracy"], group["norm_bound"], "o", **style)
    for ax in (ax_pb, ax_norm):
        ax.axhline(1.0, color="k", ls="--", lw=1, label="vacuous: bound = 1")
        ax.axvline(config.small_error, color="tab:green", ls=":", lw=1, label="premise: true labels left of this")
        ax.plot([0, 1], [0, 1], ":", color="gray", label="bound = test error (below: the bound would be violated)")
        ax.set_xlim(0, 1)
        ax.legend(fontsize=8)
    ax_pb.set_ylim(0, 1.1 * table["pac_bayes_bound"].max())
    ax_pb.set_xlabel("test error of the posterior N(w, sigma'^2 I)")
    ax_pb.set_ylabel("PAC-Bayes bound")
    ax_pb.set_title(f"PAC-Bayes bounds (delta = {config.delta:g}) are vacuous at this sample size")
    ax_norm.set_yscale("log")
    ax_norm.set_xlabel("test error of the network")
    ax_norm.set_ylabel("Frobenius-norm margin bound (smallest over rho)")
    ax_norm.set_title("Norm-based margin bounds are vacuous by orders of magnitude")
    return {"measures_vs_gap": fig, "pac_bayes_bound": bound}


EXPERIMENT = Experiment(
    name="generalisation-measures",
    claim=(
        "Norm- and sharpness-based complexity measures of trained networks (spectral and Frobenius norm products, "
        "path norm, PAC-Bayes flatness) are larger for networks that memorise random labels than for networks "
        "trained on true labels, but their bounds are vacuous, even for networks that generalise well, and only "
        "some track the generalisation gap."
    ),
    config=GeneralisationMeasuresConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={
        "full": {
            "n_train": 512,
            "widths": (32, 64, 128, 256, 512),
            "noise_fractions": (0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
            "seeds": 3,
            "max_steps": 20000,
            "sigma_grid": (1e-4, 1.0, 41),
            "mc_samples": 32,
        }
    },
    references=(
        "Jiang, Neyshabur, Mobahi, Krishnan & Bengio (2019), Fantastic generalization measures and where to find "
        "them, ICLR 2020",
        "Bartlett, Foster & Telgarsky (2017), Spectrally-normalized margin bounds for neural networks, NeurIPS",
        "Golowich, Rakhlin & Shamir (2018), Size-independent sample complexity of neural networks, COLT",
        "Mohri, Rostamizadeh & Talwalkar (2018), Foundations of machine learning, 2nd ed., MIT Press, Thm. 9.2",
        "Neyshabur, Tomioka & Srebro (2015), Norm-based capacity control in neural networks, COLT",
        "Dziugaite & Roy (2017), Computing nonvacuous generalization bounds for deep (stochastic) neural networks "
        "with many more parameters than training data, UAI",
        "McAllester (1999), PAC-Bayesian model averaging, COLT; Maurer (2004), A note on the PAC Bayesian theorem",
        "Zhang, Bengio, Hardt, Recht & Vinyals (2017), Understanding deep learning requires rethinking "
        "generalization, ICLR",
    ),
    part="generalisation",
)
