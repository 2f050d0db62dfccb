r"""surrogate-and-validation: we train a convex surrogate of the 0-1 loss, whose calibrated minimiser reaches the
Bayes error, and we tune hyperparameters on held-out data, because tuning them jointly with the weights drives the
penalty to zero.

**Surrogates.** The 0-1 loss 1[y f(x) <= 0] is piecewise constant in the weights: its gradient is zero almost
everywhere (autograd returns exactly zero; a test shows GD on it never leaves its start), so classifiers are trained
on a convex surrogate phi(m) of the margin m = y f(x): the logistic loss log2(1 + e^-m) (in bits, so that it
upper-bounds the 0-1 loss: log2 2 = 1 at m = 0) or the hinge (1 - m)_+. A convex phi differentiable at 0 with
phi'(0) < 0 is classification-calibrated, and then a sequence of classifiers whose phi-risk tends to its minimum
has a 0-1 risk tending to the Bayes risk (Bartlett, Jordan & McAuliffe 2006; Zhang 2004). The experiment takes two
Gaussian classes with a shared covariance (`tdlab.theory.classification`): the Bayes classifier is linear, its error
Phi(-Delta/2) is known in closed form, and so is the exact test error of any linear classifier (no test set). The
mean difference lies between the covariance's least and most variable directions, so the Bayes direction
Sigma^-1 (mu_+ - mu_-) is far from the class-mean direction (which GD's first step from zero takes). Measured:

- linear classifiers (w, b) trained by full-batch GD from zero (`tdlab.train.fit`, every seed and sample size as the
  columns of one model) on the logistic loss and on the hinge, on n examples per seed for several n; the exact test
  error along training and at its end;
- from the same random starts w0 ~ N(0, init_scale^2 I) on one training set, for the same number of steps: GD on
  the logistic loss (convex: one minimiser) and on the smoothed 0-1 loss sigmoid(-m / temperature) (not convex: it
  saturates where |m| >> temperature, so a start whose margins are large sits on a plateau whose gradient is
  ~ e^(-|m| / temperature) while its error is far from the minimum, which a convex function cannot do; and it has
  local minima), and on the 0-1 loss itself (drawn: it stays at its start). In the quick run the smoothed loss's
  runs are still descending, slowly, at the end: the spread is mostly plateaus, not yet local minima.

**Validation.** Minimising the training loss + lambda |w|^2 over (w, lambda) jointly cannot work: at every w the
objective increases with lambda, so gradient descent on lambda drives it to 0 (with lambda = e^s:
s <- s - eta lambda |w|^2, so 1/lambda_t >= 1/lambda_0 + eta sum_t |w_t|^2 grows without bound), and the weights
end at the ridgeless (minimum-norm) fit, which overfits an over-parameterised noisy problem. Choosing lambda by the
error on held-out validation data does not. The problem: isotropic Gaussian features x ~ N(0, I_p), p > n,
y = x^T beta + noise (|beta|^2 = signal, noise variance noise_var). Ridge w_lambda = (X^T X/n + lambda I)^-1 X^T y/n
minimises (1/n)|X w - y|^2 + lambda |w|^2; its exact test excess risk is |w_lambda - beta|^2 (test MSE minus the
noise). Theory (`tdlab.theory.random_matrix`): as p/n -> gamma the risk curve is Dobriban & Wager's (2018), minimal
at lambda* = noise_var gamma / signal; the minimum-norm fit (lambda -> 0) has the exact finite-n expected risk
signal (1 - n/p) + noise_var n / (p - n - 1) (Hastie, Montanari, Rosset & Tibshirani 2022; Belkin, Hsu & Xu 2020).
Measured per seed: the risk and the validation MSE (n_val fresh examples) of ridge on a grid of lambda; gradient
descent on (w, s = log lambda) jointly (`fit`), started at w = 0 and lambda = lambda*, its lambda and risk along
the path.

Checks (each can fail, and how):

1. the calibrated surrogates reach the Bayes error: for the logistic loss and the hinge, the mean over seeds of the
   exact test error at the largest n exceeds Phi(-Delta/2) by less than one standard error of a test-set estimate
   of the Bayes error on that many examples, sqrt(B (1 - B) / n) (the worse loss is checked). A sign error in the
   loss (error 1 - B), a non-calibrated loss flat at the margin 0 (the perceptron's max(0, -m): its minimiser is
   w = 0), a threshold shifted by 1, or GD stopped at its first step (the class-mean direction, excess reported)
   exceed it;
2. their excess error shrinks with n: a paired one-sided Wilcoxon test over seeds, excess at the smallest n >
   excess at the largest n, at alpha (the larger p-value of the two losses: an intersection-union test); a loss
   whose minimiser is not Bayes plateaus (p ~ 0.5). The log-log slope (theory -1 for a parametric rule, whose
   excess 0-1 risk is quadratic in its estimation error) is reported;
3. the convex surrogate has one minimiser: GD on the logistic loss from every random start ends at the same test
   error (spread max - min <= 1e-6); too few steps or a non-convex loss leave a spread;
4. the smoothed 0-1 loss is not convex: GD from the same starts, for as many steps, ends at test errors that spread
   by at least 0.05 (five percentage points); a convex loss, or a temperature so large that the loss has no plateau
   over the data, gives ~0;
5. joint descent on (w, log lambda) drives lambda to 0: its largest final lambda over seeds is below
   `lambda_bound` lambda* (it started at lambda*; by the update it falls like 1/(eta sum_t |w_t|^2)); a penalty of
   the wrong sign (lambda grows) or a lambda fitted on the validation loss (a hypergradient, which stays near
   lambda*) fails;
6. it ends at the ridgeless fit: for every seed its test risk equals the risk of that seed's minimum-norm fit X^+ y
   (by the SVD) within 5%; a lambda stuck near lambda* halves it, too few steps leave w short of the interpolant;
7. so it overfits like the ridgeless fit: the mean over seeds of its test risk equals the exact minimum-norm risk
   signal (1 - n/p) + noise_var n / (p - n - 1) within 20% (four standard errors of a mean over 8 seeds: the
   per-seed risk is skewed, sd 14.5% at n = 100, p = 200); lambda at lambda* gives about half;
8. validation beats the joint optimisation: the validation-chosen lambda's test risk is below the jointly chosen
   one's, a paired one-sided Wilcoxon test over seeds at alpha; equal procedures give p ~ 0.5;
9. validation is nearly as good as the oracle: the mean over seeds of risk(lambda_val) / min over the grid of the
   test risk, minus 1, is at most 10%; lambda chosen on the training error (the smallest lambda) is ~70% worse;
   the chosen lambdas against lambda* are reported;
10. the oracle's risk equals Dobriban & Wager's optimally tuned ridge risk noise_var gamma m(-lambda*) within 10%
    (mean over seeds; the finite-n difference is ~1-3%): a ridge with a wrong penalty or wrong features misses it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from numpy.typing import NDArray
from pydantic import Field, model_validator
from scipy import stats
from torch import Tensor, nn

from tdlab.config.threads import one_thread
from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.tidy import rows, select, value
from tdlab.theory.classification import bayes_error, linear_classifier_error
from tdlab.theory.random_matrix import (
    optimal_ridge_penalty,
    optimal_ridge_risk,
    ridge_risk,
    ridgeless_risk_finite,
)
from tdlab.train.trainer import fit

Array = NDArray[np.float64]
Margin = Callable[[Tensor], Tensor]

CONVEX_SPREAD = 1e-6  # check 3: test-error spread of the logistic loss over random starts
NONCONVEX_SPREAD = 0.05  # check 4: the least spread of the smoothed 0-1 loss's test errors over the same starts
GAP_TOLERANCE = 0.05  # check 6: relative, per seed, the joint end's risk against its seed's minimum-norm fit
RIDGELESS_TOLERANCE = 0.2  # check 7: relative, mean over 8 seeds (per-seed sd 14.5% at n = 100, p = 200: 4 se)
ORACLE_EXCESS = 0.10  # check 9: validation's mean relative excess risk over the grid oracle
DW_TOLERANCE = 0.10  # check 10: relative, the oracle's risk against the asymptotic optimum (finite n: ~1%)


def logistic_bits(m: Tensor) -> Tensor:
    """log2(1 + e^-m): the logistic loss in bits, >= the 0-1 loss 1[m <= 0] with equality at m = 0."""
    return nn.functional.softplus(-m) / math.log(2.0)


def hinge(m: Tensor) -> Tensor:
    """(1 - m)_+ (Cortes & Vapnik 1995), >= the 0-1 loss."""
    return (1.0 - m).clamp(min=0.0)


def zero_one(m: Tensor) -> Tensor:
    """1[m < 0] (1/2 at m = 0) through sign(): piecewise constant, so autograd's gradient is exactly 0."""
    return 0.5 * (1.0 - torch.sign(m))


def smoothed_zero_one(temperature: float) -> Margin:
    """sigmoid(-m / temperature): the 0-1 loss smoothed at the scale `temperature` (non-convex, bounded)."""
    return lambda m: torch.sigmoid(-m / temperature)


SURROGATES: dict[str, Margin] = {"logistic": logistic_bits, "hinge": hinge}
LABELS = {
    "logistic": r"logistic $\log_2(1 + e^{-m})$",
    "hinge": r"hinge $(1 - m)_+$",
    "smoothed": r"smoothed 0-1 $\sigma(-m/\tau)$",
    "zero_one": "0-1 loss",
}


class SurrogateAndValidationConfig(ExperimentConfig):
    """Two Gaussian classes for the surrogates; an over-parameterised ridge problem for the validation."""

    dim: int = Field(4, ge=2, description="input dimension of the two Gaussian classes")
    mahalanobis: float = Field(2.5, gt=0.0, description="Delta, the Mahalanobis distance of the class means")
    condition: float = Field(8.0, ge=1.0, description="condition number of the shared covariance")
    offset: float = Field(0.5, ge=0.0, description="distance of the classes' midpoint from the origin (b* != 0)")
    sizes: tuple[int, ...] = Field((100, 400, 1600), min_length=2, description="training examples per seed")
    seeds: int = Field(8, ge=6, description="independent training sets (the units of the Wilcoxon tests)")
    steps: int = Field(200, ge=10, description="GD steps from zero on each surrogate")
    records: int = Field(25, ge=5, description="log-spaced steps at which the test error is recorded")
    starts: int = Field(16, ge=3, description="random starts of the convexity comparison")
    start_steps: int = Field(1000, ge=10, description="GD steps from each random start")
    start_examples: int = Field(400, ge=50, description="training examples of the convexity comparison")
    init_scale: float = Field(2.0, gt=0.0, description="standard deviation of the random starts' weights")
    temperature: float = Field(0.1, gt=0.0, description="tau of the smoothed 0-1 loss sigmoid(-m / tau)")
    examples: int = Field(100, ge=10, description="n, training examples of the ridge problem")
    features: int = Field(200, ge=12, description="p, features of the ridge problem (p >= n + 2)")
    validation: int = Field(100, ge=10, description="held-out validation examples")
    signal: float = Field(1.0, gt=0.0, description="|beta|^2")
    noise_var: float = Field(1.0, gt=0.0, description="variance of the label noise")
    lambdas: tuple[float, float, int] = Field((1e-3, 1e2, 31), description="ridge grid: (smallest, largest, count)")
    joint_steps: int = Field(2000, ge=10, description="GD steps on (w, log lambda) jointly")
    lambda_bound: float = Field(0.01, gt=0.0, lt=1.0, description="check 5: the joint lambda ends below this x lambda*")
    alpha: float = Field(0.05, gt=0.0, lt=0.5, description="significance level of the Wilcoxon tests")

    @model_validator(mode="after")
    def _consistent(self) -> SurrogateAndValidationConfig:
        if list(self.sizes) != sorted(set(self.sizes)) or self.sizes[0] < 10:
            raise ValueError(f"sizes: expected increasing training-set sizes >= 10, got {self.sizes}")
        if self.features < self.examples + 2:
            raise ValueError(f"features: expected p >= examples + 2 = {self.examples + 2}, got {self.features}")
        low, high, count = self.lambdas
        if not (0 < low < high and count >= 3):
            raise ValueError(f"lambdas: expected (smallest > 0, largest > smallest, count >= 3), got {self.lambdas}")
        return self


# ------------------------------------------------------------------------------------------------- problems
def gaussian_classes(config: SurrogateAndValidationConfig) -> tuple[Array, Array, Array]:
    """(mu_+, mu_-, Sigma): a covariance with eigenvalues spread over `condition`, a mean difference along
    (e_min + e_max)/sqrt 2 in its eigenbasis, of Mahalanobis length `mahalanobis`, about a centre at distance
    `offset` from the origin in a random direction."""
    rng = np.random.default_rng(config.seed)
    Q, _ = np.linalg.qr(rng.standard_normal((config.dim, config.dim)))
    root = math.sqrt(config.condition)
    Sigma = Q @ np.diag(np.geomspace(1 / root, root, config.dim)) @ Q.T
    gap = Q[:, 0] + Q[:, -1]
    gap *= config.mahalanobis / math.sqrt(gap @ np.linalg.solve(Sigma, gap))
    centre = rng.standard_normal(config.dim)
    centre *= config.offset / np.linalg.norm(centre)
    return centre + gap / 2, centre - gap / 2, Sigma


def sample_classes(
    classes: tuple[Array, Array, Array], n: int, batch: tuple[int, ...], generator: torch.Generator
) -> Tensor:
    """z = y (x, 1) for n examples of each of `batch` independent sets: shape (n, *batch, dim + 1), float64."""
    mean_pos, mean_neg, Sigma = (torch.as_tensor(a) for a in classes)
    y = torch.where(torch.rand((n, *batch), generator=generator, dtype=torch.float64) < 0.5, 1.0, -1.0)
    noise = torch.randn((n, *batch, len(mean_pos)), generator=generator, dtype=torch.float64)
    x = torch.where(y[..., None] > 0, mean_pos, mean_neg) + noise @ torch.linalg.cholesky(Sigma).T
    return y[..., None] * torch.cat([x, torch.ones_like(x[..., :1])], dim=-1)


def record_steps(steps: int, records: int) -> Array:
    """0 and `records` log-spaced steps in [1, steps], distinct, the last one `steps`."""
    return np.unique(np.concatenate([[0], np.geomspace(1, steps, records).round()])).astype(int)


class LinearClassifiers(nn.Module):
    """Many linear classifiers (w, b), one per index of `shape`, each applied to its own examples: inputs z = y (x, 1)
    of shape (n, *batch, d + 1), outputs the margins y (w^T x + b) of shape (n, *shape), where `shape` starts with
    `batch` (a classifier sees the examples of its batch index)."""

    def __init__(self, weights: Tensor, batch_dims: int):
        super().__init__()
        self.weight = nn.Parameter(weights.clone())  # (*shape, d + 1)
        self.batch_dims = batch_dims

    def forward(self, z: Tensor) -> Tensor:
        batch, extra = self.weight.shape[: self.batch_dims], self.weight.shape[self.batch_dims : -1]
        w = self.weight.reshape(*batch, -1, z.shape[-1])  # (*batch, E, d + 1)
        margins = z.movedim(0, -2) @ w.transpose(-1, -2)  # (*batch, n, E): a matrix product per batch index
        return margins.movedim(-2, 0).reshape(z.shape[0], *batch, *extra)


def _train_classifiers(
    z: Tensor,
    weights: Tensor,
    losses: list[tuple[Margin, float]],
    steps: int,
    records: int,
    batch_dims: int,
    mask: Tensor,
) -> tuple[Array, Array]:
    """Full-batch GD (`fit`) from `weights` (*batch, L, *rest, d + 1): the classifiers at index l of the loss axis
    minimise their examples' mean of loss l with its own step, as GD at lr = 1 on step_l * loss_l (the same
    iterates). `mask` (n, *rest) weights the examples (1/n_k on the first n_k). Returns (recorded steps, parameters
    (records, *batch, L, *rest, d + 1))."""
    model = LinearClassifiers(weights, batch_dims)
    recorded = record_steps(steps, records)
    path = [model.weight.detach().clone()]  # step 0

    def keep(step: int, _: float) -> None:
        if step in recorded:
            path.append(model.weight.detach().clone())

    def objective(margins: Tensor, examples: Tensor) -> Tensor:
        examples = examples.reshape(examples.shape[:1] + (1,) * batch_dims + examples.shape[1:])
        index = (slice(None),) * (1 + batch_dims)
        return sum(step * (loss(margins[(*index, l)]) * examples).sum() for l, (loss, step) in enumerate(losses))

    fit(
        model,
        objective,
        (z, mask),
        torch.optim.SGD(model.parameters(), lr=1.0),
        steps,
        callbacks=[keep],
        sink=lambda *_: None,
    )
    return recorded, torch.stack(path).numpy()


def _test_errors(parameters: Array, classes: tuple[Array, Array, Array]) -> Array:
    """The exact test error of every classifier in `parameters` (..., d + 1)."""
    return linear_classifier_error(parameters[..., :-1], parameters[..., -1], *classes)


# ------------------------------------------------------------------------------------------------- measure
def measure(config: SurrogateAndValidationConfig, context: Context) -> pd.DataFrame:
    """Rows: "bayes_error", "mean_direction_error" (the class-mean direction with the Bayes threshold's form);
    "error" (loss, n, seed, step): test error of GD from zero; "start_error" (loss, start, step): from random
    starts; "risk" and "validation_mse" (seed, lam): ridge on the grid; "joint_lambda" and "joint_risk" (seed,
    step): the joint descent on (w, log lambda); "ridgeless_risk" (seed): the minimum-norm fit's."""
    generator = torch.Generator().manual_seed(config.seed)
    frames: list[pd.DataFrame] = []
    with one_thread():
        for part in context.track((_surrogates, _validation), "surrogates, then validation"):
            frames += part(config, generator)
    return pd.concat(frames, ignore_index=True)


def _surrogates(config: SurrogateAndValidationConfig, generator: torch.Generator) -> list[pd.DataFrame]:
    classes = gaussian_classes(config)
    mean_pos, mean_neg, _ = classes
    gap = mean_pos - mean_neg
    mean_direction = np.append(gap, -0.5 * (mean_pos + mean_neg) @ gap)  # the Bayes rule with Sigma = I
    frames = [
        rows("bayes_error", bayes_error(*classes)),
        rows("mean_direction_error", float(_test_errors(mean_direction, classes))),
    ]
    S, sizes, d = config.seeds, np.array(config.sizes), config.dim
    z = sample_classes(classes, int(sizes[-1]), (S,), generator)  # (n_max, S, d + 1); size n_k: the first n_k
    curvature = float(torch.linalg.eigvalsh(torch.einsum("nsi,nsj->sij", z, z) / sizes[-1])[:, -1].max())
    lr = 4 * math.log(2.0) / curvature  # 1 / beta, beta = lambda_max(E z z^T) / (4 ln 2): the logistic-bits smoothness
    mask = torch.stack([(torch.arange(sizes[-1]) < n).double() / n for n in sizes], dim=1)  # (n_max, K)
    names = list(SURROGATES)
    start = torch.zeros(S, len(names), len(sizes), d + 1, dtype=torch.float64)
    steps, path = _train_classifiers(
        z, start, [(SURROGATES[name], lr) for name in names], config.steps, config.records, batch_dims=1, mask=mask
    )
    errors = _test_errors(path, classes)  # (records, S, L, K)
    frames.append(
        rows(
            "error",
            errors,
            step=steps[:, None, None, None],
            seed=np.arange(S)[:, None, None],
            loss=np.array(names)[:, None],
            n=sizes,
        )
    )
    z0 = sample_classes(classes, config.start_examples, (), generator)
    K = config.starts
    starts = config.init_scale * torch.randn(K, d + 1, generator=generator, dtype=torch.float64)
    starts[:, -1] = 0.0
    curvature0 = float(torch.linalg.eigvalsh(z0.T @ z0 / config.start_examples)[-1])
    # 1 / smoothness: the logistic in bits has |phi''| <= 1 / (4 ln 2), sigmoid(-m / tau) has |phi''| <= 1 /
    # (6 sqrt 3 tau^2); the 0-1 loss has no gradient, its step does not matter
    tau, logistic_step = config.temperature, 4 * math.log(2.0) / curvature0
    losses = {
        "logistic": (logistic_bits, logistic_step),
        "smoothed": (smoothed_zero_one(tau), 6 * math.sqrt(3) * tau**2 / curvature0),
        "zero_one": (zero_one, logistic_step),
    }
    ones = torch.full((config.start_examples, K), 1.0 / config.start_examples, dtype=torch.float64)
    steps, path = _train_classifiers(
        z0, starts.expand(len(losses), K, d + 1), list(losses.values()), config.start_steps, config.records, 0, ones
    )
    errors = _test_errors(path, classes)  # (records, L, K)
    frames.append(
        rows("start_error", errors, step=steps[:, None, None], loss=np.array(list(losses))[:, None], start=np.arange(K))
    )
    return frames


class JointRidge(nn.Module):
    """Linear predictors w (one per seed) and their penalties lambda = e^s, trained together: inputs (n, S, p),
    outputs (n, S)."""

    def __init__(self, seeds: int, features: int, lam: float):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(seeds, features, dtype=torch.float64))
        self.log_lam = nn.Parameter(torch.full((seeds,), math.log(lam), dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        return (x.movedim(0, 1) @ self.w[..., None])[..., 0].T  # a matrix-vector product per seed

    def penalty(self) -> Tensor:
        """sum over seeds of lambda |w|^2."""
        return (self.log_lam.exp() * self.w.square().sum(dim=1)).sum()


def lambda_grid(config: SurrogateAndValidationConfig) -> Array:
    low, high, count = config.lambdas
    return np.geomspace(low, high, count)


def ridge_solutions(X: Tensor, y: Tensor, lams: Tensor) -> Tensor:
    """Ridge (X^T X / n + lambda I)^-1 X^T y / n for each of S problems X (S, n, p), y (S, n) and each lambda (L,),
    through the SVD of X / sqrt(n): shape (S, L, p)."""
    n = X.shape[1]
    U, s, Vt = torch.linalg.svd(X / math.sqrt(n), full_matrices=False)
    coefficients = torch.einsum("snr,sn->sr", U, y) / math.sqrt(n)
    shrink = s / (s.square() + lams[:, None, None]) * coefficients  # (L, S, r)
    return torch.einsum("lsr,srp->slp", shrink, Vt)


def _validation(config: SurrogateAndValidationConfig, generator: torch.Generator) -> list[pd.DataFrame]:
    S, n, p, m = config.seeds, config.examples, config.features, config.validation
    dtype = torch.float64
    beta = torch.randn(S, p, generator=generator, dtype=dtype)
    beta *= math.sqrt(config.signal) / beta.norm(dim=1, keepdim=True)
    X = torch.randn(S, n, p, generator=generator, dtype=dtype)
    noise = math.sqrt(config.noise_var)
    y = torch.einsum("snp,sp->sn", X, beta) + noise * torch.randn(S, n, generator=generator, dtype=dtype)
    Xv = torch.randn(S, m, p, generator=generator, dtype=dtype)
    yv = torch.einsum("snp,sp->sn", Xv, beta) + noise * torch.randn(S, m, generator=generator, dtype=dtype)
    lams = torch.as_tensor(lambda_grid(config))
    W = ridge_solutions(X, y, lams)
    risk = (W - beta[:, None]).square().sum(dim=-1)  # (S, L)
    validation = (torch.einsum("smp,slp->slm", Xv, W) - yv[:, None]).square().mean(dim=-1)
    ridgeless = ridge_solutions(X, y, torch.zeros(1, dtype=dtype))[:, 0]  # lambda = 0: the minimum-norm fit
    frames = [
        rows("risk", risk.numpy(), seed=np.arange(S)[:, None], lam=lams.numpy()),
        rows("validation_mse", validation.numpy(), seed=np.arange(S)[:, None], lam=lams.numpy()),
        rows("ridgeless_risk", (ridgeless - beta).square().sum(dim=1).numpy(), seed=np.arange(S)),
    ]
    lam_star = float(optimal_ridge_penalty(p / n, config.signal, config.noise_var))
    model = JointRidge(S, p, lam_star)
    top = float(torch.linalg.eigvalsh(X.transpose(1, 2) @ X / n)[:, -1].max())
    lr = 1.0 / (2 * top + 2 * lam_star)  # 1 / smoothness of (1/n)|X w - y|^2 + lambda* |w|^2 in w
    recorded = record_steps(config.joint_steps, config.records)
    lam_path, risk_path = [], []

    def keep(step: int, _: float = 0.0) -> None:
        if step in recorded:
            with torch.no_grad():
                lam_path.append(model.log_lam.exp().numpy().copy())
                risk_path.append((model.w - beta).square().sum(dim=1).numpy().copy())

    keep(0)
    inputs, targets = X.transpose(0, 1), y.T  # (n, S, p), (n, S)
    objective = lambda out, target: (out - target).square().mean(dim=0).sum() + model.penalty()  # noqa: E731
    fit(
        model,
        objective,
        (inputs, targets),
        torch.optim.SGD(model.parameters(), lr=lr),
        config.joint_steps,
        callbacks=[keep],
        sink=lambda *_: None,
    )
    seeds = np.arange(S)
    frames += [
        rows("joint_lambda", np.stack(lam_path), step=recorded[:, None], seed=seeds),
        rows("joint_risk", np.stack(risk_path), step=recorded[:, None], seed=seeds),
    ]
    return frames


# ------------------------------------------------------------------------------------------------- checks
def final_errors(metrics: pd.DataFrame, loss: str) -> pd.DataFrame:
    """The test error at the last step of GD from zero: n x seed."""
    chosen = select(metrics, "error", loss=loss)
    chosen = chosen[chosen["step"] == chosen["step"].max()]
    return chosen.pivot(index="n", columns="seed", values="value").sort_index()


def final_start_errors(metrics: pd.DataFrame, loss: str) -> Array:
    """The test error at the last step of GD from each random start."""
    chosen = select(metrics, "start_error", loss=loss)
    return chosen[chosen["step"] == chosen["step"].max()].sort_values("start")["value"].to_numpy()


def slope(x: Array, y: Array) -> float:
    """The least-squares slope of log y against log x (nan if a y is not positive).

    Example:
        >>> round(slope(np.array([1.0, 10.0]), np.array([1.0, 0.1])), 12)
        -1.0
    """
    if np.any(~np.isfinite(y)) or np.any(y <= 0):
        return float("nan")
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def ridge_summary(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per seed: the validation-chosen lambda and its risk, the grid oracle's lambda and risk, the joint descent's
    final lambda and risk."""
    risk = select(metrics, "risk").pivot(index="seed", columns="lam", values="value")
    validation = select(metrics, "validation_mse").pivot(index="seed", columns="lam", values="value")
    chosen = validation.idxmin(axis=1)
    joint = {}
    for name in ("joint_lambda", "joint_risk"):
        rows_ = select(metrics, name)
        joint[name] = rows_[rows_["step"] == rows_["step"].max()].set_index("seed")["value"]
    return pd.DataFrame(
        {
            "lambda_val": chosen,
            "risk_val": [risk.loc[s, lam] for s, lam in chosen.items()],
            "lambda_oracle": risk.idxmin(axis=1),
            "risk_oracle": risk.min(axis=1),
            "lambda_joint": joint["joint_lambda"],
            "risk_joint": joint["joint_risk"],
            "risk_ridgeless": select(metrics, "ridgeless_risk").set_index("seed")["value"],
        }
    )


def checks(metrics: pd.DataFrame, config: SurrogateAndValidationConfig) -> list[Check]:
    """The surrogates against the Bayes error and against a non-convex loss; the joint and the validated lambda
    against each other, the oracle and the theory (module docstring)."""
    return _surrogate_checks(metrics, config) + _validation_checks(metrics, config)


def _surrogate_checks(metrics: pd.DataFrame, config: SurrogateAndValidationConfig) -> list[Check]:
    bayes = value(metrics, "bayes_error")
    excess = {name: final_errors(metrics, name) - bayes for name in SURROGATES}
    sizes = excess["logistic"].index.to_numpy(dtype=float)
    n_max, S = sizes[-1], excess["logistic"].shape[1]
    tolerance = math.sqrt(bayes * (1 - bayes) / n_max)
    at_max = {name: float(e.loc[n_max].mean()) for name, e in excess.items()}
    p_values = {
        name: float(stats.wilcoxon(e.iloc[0], e.iloc[-1], alternative="greater", method="exact").pvalue)
        for name, e in excess.items()
    }
    slopes = {name: slope(sizes, e.mean(axis=1).to_numpy()) for name, e in excess.items()}
    mean_direction = value(metrics, "mean_direction_error") - bayes
    convex = final_start_errors(metrics, "logistic")
    smoothed = final_start_errors(metrics, "smoothed")
    steps = int(select(metrics, "start_error")["step"].max())

    def per_loss(values: dict[str, float], fmt: str) -> str:
        return ", ".join(f"{name} {format(v, fmt)}" for name, v in values.items())

    return [
        Check.at_most(
            "calibrated surrogates reach the Bayes error: worst mean excess test error at the largest n, within "
            "one standard error sqrt(B (1 - B) / n)",
            max(at_max.values()),
            tolerance,
            detail=f"mean over {S} seeds of the exact test error minus B = Phi(-Delta/2) = {bayes:.4f} at n = "
            f"{n_max:.0f}: {per_loss(at_max, '.2e')}; tolerance {tolerance:.2e}; a sign error (excess "
            f"{1 - 2 * bayes:.2f}), the perceptron loss max(0, -m) (not calibrated), a threshold shifted by 1 or GD "
            f"stopped at the class-mean direction (excess {mean_direction:.2e}) exceed it",
        ),
        Check.at_most(
            f"the surrogates' excess error shrinks with n: largest paired one-sided Wilcoxon p-value, excess at "
            f"n = {sizes[0]:.0f} > at n = {n_max:.0f} (alpha = {config.alpha:g})",
            max(p_values.values()),
            config.alpha,
            detail=f"p per loss: {per_loss(p_values, '.2g')} over {S} seeds (intersection-union test); log-log "
            f"slope of the mean excess against n: {per_loss(slopes, '.2f')} (theory -1 for a parametric rule); a "
            "loss whose minimiser is not the Bayes rule plateaus: p ~ 0.5",
        ),
        Check.at_most(
            "the convex logistic loss has one minimiser: spread (max - min) of the test errors GD reaches from "
            "random starts",
            float(np.ptp(convex)),
            CONVEX_SPREAD,
            detail=f"{len(convex)} starts w0 ~ N(0, {config.init_scale:g}^2 I), {steps} GD steps at 1/beta, final "
            f"errors {convex.min():.6f}..{convex.max():.6f}; too few steps or a non-convex loss leave a spread",
        ),
        Check.at_least(
            "the smoothed 0-1 loss (not convex): spread (max - min) of the test errors GD reaches from the same "
            "starts in as many steps",
            float(np.ptp(smoothed)),
            NONCONVEX_SPREAD,
            detail=f"sigmoid(-m / {config.temperature:g}), {steps} GD steps at 1/beta; final errors "
            f"{', '.join(f'{e:.3f}' for e in np.sort(smoothed))} (Bayes {bayes:.3f}): starts on its saturated "
            "plateaus barely move; a convex loss ends everywhere at one error (spread ~0)",
        ),
    ]


def _validation_checks(metrics: pd.DataFrame, config: SurrogateAndValidationConfig) -> list[Check]:
    n, p = config.examples, config.features
    gamma = p / n
    lam_star = float(optimal_ridge_penalty(gamma, config.signal, config.noise_var))
    ridgeless = float(ridgeless_risk_finite(n, p, config.signal, config.noise_var))
    optimum = float(optimal_ridge_risk(gamma, config.signal, config.noise_var))
    summary = ridge_summary(metrics)
    S = len(summary)
    p_value = float(
        stats.wilcoxon(summary["risk_val"], summary["risk_joint"], alternative="less", method="exact").pvalue
    )
    excess_over_oracle = float((summary["risk_val"] / summary["risk_oracle"] - 1).mean())
    training_choice = select(metrics, "risk").pipe(lambda r: r[r["lam"] == r["lam"].min()])["value"].mean()
    log_ratio = np.log10(summary["lambda_val"] / lam_star)
    return [
        Check.at_most(
            "joint descent on (w, log lambda) drives lambda to 0: largest final lambda / lambda*",
            float(summary["lambda_joint"].max() / lam_star),
            config.lambda_bound,
            detail=f"{config.joint_steps} GD steps from lambda = lambda* = noise_var gamma / signal = {lam_star:g}, "
            f"w = 0; final lambda over {S} seeds {summary['lambda_joint'].min():.2e}..."
            f"{summary['lambda_joint'].max():.2e}; the objective grows with lambda at every w; a penalty of the "
            "wrong sign grows lambda, a lambda fitted on validation data stays near lambda*",
        ),
        Check.at_most(
            "the joint descent ends at the ridgeless fit: worst |risk(joint end) / risk(minimum-norm fit) - 1| over "
            "seeds",
            float((summary["risk_joint"] / summary["risk_ridgeless"] - 1).abs().max()),
            GAP_TOLERANCE,
            detail=f"the minimum-norm fit X^+ y of each seed, by its SVD; ratios "
            f"{', '.join(f'{r:.4f}' for r in summary['risk_joint'] / summary['risk_ridgeless'])}; a lambda stuck "
            "near lambda* halves the risk, too few steps leave w short of the interpolant",
        ),
        Check.relative(
            "the joint descent overfits like the ridgeless fit: mean test excess risk against the exact "
            "minimum-norm risk",
            float(summary["risk_joint"].mean()),
            ridgeless,
            RIDGELESS_TOLERANCE,
            detail=f"theory signal (1 - n/p) + noise_var n / (p - n - 1) = {ridgeless:.4f} (n = {n}, p = {p}); "
            f"per-seed {', '.join(f'{r:.3f}' for r in summary['risk_joint'])}; tolerance {RIDGELESS_TOLERANCE}: "
            f"four standard errors of a mean over 8 seeds; lambda stuck at lambda* gives ~{optimum:.2f}",
        ),
        Check.at_most(
            f"validation-chosen lambda beats the jointly chosen one: paired one-sided Wilcoxon p-value on the test "
            f"risk (alpha = {config.alpha:g})",
            p_value,
            config.alpha,
            detail=f"mean test excess risk {summary['risk_val'].mean():.3f} (validation, {config.validation} "
            f"held-out examples) vs {summary['risk_joint'].mean():.3f} (joint) over {S} seeds; equal procedures "
            "give p ~ 0.5",
        ),
        Check.at_most(
            "validation is nearly the oracle: mean over seeds of risk(lambda_val) / min over the grid of the test "
            "risk, minus 1",
            excess_over_oracle,
            ORACLE_EXCESS,
            detail=f"lambda_val / lambda* = 10^({log_ratio.mean():+.2f} +- {log_ratio.std():.2f}) (lambda* = "
            f"{lam_star:g}); choosing lambda on the training error (the smallest lambda) would give "
            f"{training_choice / summary['risk_oracle'].mean() - 1:.0%}",
        ),
        Check.relative(
            "the oracle's test risk equals Dobriban & Wager's optimally tuned ridge risk (mean over seeds)",
            float(summary["risk_oracle"].mean()),
            optimum,
            DW_TOLERANCE,
            detail=f"theory noise_var gamma m(-lambda*) = {optimum:.4f} at gamma = p/n = {gamma:g} (p/n -> gamma "
            f"limit; finite n = {n} differs by ~1%); oracle lambdas "
            f"{summary['lambda_oracle'].min():.3g}..{summary['lambda_oracle'].max():.3g} (lambda* = {lam_star:g})",
        ),
    ]


# ------------------------------------------------------------------------------------------------ figures
def figures(metrics: pd.DataFrame, config: SurrogateAndValidationConfig) -> dict[str, Figure]:
    """The losses against the margin; the test error along GD per loss against the Bayes error; the excess error
    against n; from random starts, convex against non-convex; validation and test error against lambda with the
    joint descent's path."""
    return {"surrogates": _surrogate_figure(metrics, config), "validation": _validation_figure(metrics, config)}


def _surrogate_figure(metrics: pd.DataFrame, config: SurrogateAndValidationConfig) -> Figure:
    bayes = value(metrics, "bayes_error")
    fig = Figure(figsize=(13.0, 9.0), layout="constrained")
    (losses, path), (sizes_ax, starts_ax) = fig.subplots(2, 2)
    m = torch.linspace(-3, 3, 601, dtype=torch.float64)
    losses.plot(m, zero_one(m), "k-", lw=2, label=LABELS["zero_one"])
    for k, (name, loss) in enumerate(SURROGATES.items()):
        losses.plot(m, loss(m), color=f"C{k}", label=LABELS[name])
    losses.plot(
        m,
        smoothed_zero_one(config.temperature)(m),
        color="C2",
        label=LABELS["smoothed"].replace(r"\tau", f"{config.temperature:g}"),
    )
    losses.set(xlabel="margin m = y f(x)", ylabel="loss", ylim=(-0.1, 3.0))
    losses.set_title("The 0-1 loss and its surrogates (both convex ones bound it from above)")
    losses.legend(fontsize=8)
    n_max = max(config.sizes)
    for k, name in enumerate(SURROGATES):
        chosen = select(metrics, "error", loss=name, n=n_max)
        curve = chosen.groupby("step")["value"]
        steps = curve.mean().index.to_numpy(dtype=float)
        path.semilogx(steps + 1, curve.mean(), "o-", color=f"C{k}", ms=3, label=f"{name} (mean over seeds)")
        path.fill_between(steps + 1, curve.min(), curve.max(), color=f"C{k}", alpha=0.2)
    path.axhline(bayes, color="k", ls="--", label=rf"Bayes error $\Phi(-\Delta/2)$ = {bayes:.4f}")
    path.axhline(value(metrics, "mean_direction_error"), color="0.5", ls=":", label="class-mean direction")
    path.set(xlabel="GD step + 1", ylabel="exact test error", ylim=(bayes - 0.01, 0.5))
    path.set_title(f"GD from zero on n = {n_max} examples")
    path.legend(fontsize=8)
    for k, name in enumerate(SURROGATES):
        errors = final_errors(metrics, name) - bayes
        sizes = errors.index.to_numpy(dtype=float)
        for seed in errors.columns:
            sizes_ax.loglog(sizes, errors[seed].clip(lower=1e-7), ".", color=f"C{k}", alpha=0.35)
        sizes_ax.loglog(sizes, errors.mean(axis=1), "o-", color=f"C{k}", label=f"{name}: mean over seeds")
    sizes = np.asarray(config.sizes, dtype=float)
    sizes_ax.loglog(sizes, np.sqrt(bayes * (1 - bayes) / sizes), "k--", label=r"tolerance $\sqrt{B(1-B)/n}$")
    anchor = (final_errors(metrics, "logistic") - bayes).mean(axis=1).iloc[0]
    sizes_ax.loglog(sizes, anchor * sizes[0] / sizes, color="0.6", lw=0.8, label=r"$\propto 1/n$")
    sizes_ax.set(xlabel="training examples n", ylabel="excess test error over Bayes")
    sizes_ax.set_title("The surrogates' classifiers approach the Bayes error")
    sizes_ax.legend(fontsize=8)
    styles = {"logistic": ("C0", 1.2), "smoothed": ("C2", 0.9), "zero_one": ("k", 0.9)}
    for name, (colour, width) in styles.items():
        table_ = select(metrics, "start_error", loss=name).pivot(index="step", columns="start", values="value")
        for j, start in enumerate(table_.columns):
            starts_ax.semilogx(
                table_.index + 1,
                table_[start],
                color=colour,
                lw=width,
                alpha=0.7,
                label=LABELS[name] if j == 0 else None,
            )
    starts_ax.axhline(bayes, color="k", ls="--", lw=0.8, label="Bayes error")
    starts_ax.set(xlabel="GD step + 1", ylabel="exact test error", ylim=(0, 1))
    starts_ax.set_title(f"{config.starts} random starts: the convex loss ends at one error, the others do not")
    starts_ax.legend(fontsize=8)
    fig.suptitle(
        f"Two Gaussian classes in d = {config.dim}, shared covariance (Mahalanobis distance {config.mahalanobis:g})"
    )
    return fig


def _validation_figure(metrics: pd.DataFrame, config: SurrogateAndValidationConfig) -> Figure:
    n, p, noise = config.examples, config.features, config.noise_var
    risk = select(metrics, "risk").pivot(index="lam", columns="seed", values="value")
    validation = select(metrics, "validation_mse").pivot(index="lam", columns="seed", values="value")
    lams = risk.index.to_numpy(dtype=float)
    summary = ridge_summary(metrics)
    lam_star = float(optimal_ridge_penalty(p / n, config.signal, config.noise_var))
    fig = Figure(figsize=(9.0, 6.0), layout="constrained")
    ax = fig.subplots()
    ax.semilogx(lams, risk.mean(axis=1) + noise, "o", color="C0", ms=4, label="test MSE (mean over seeds)")
    ax.fill_between(lams, risk.min(axis=1) + noise, risk.max(axis=1) + noise, color="C0", alpha=0.15)
    ax.semilogx(
        lams,
        validation.mean(axis=1),
        "s",
        color="C1",
        ms=3,
        mfc="none",
        label=f"validation MSE ({config.validation} held-out examples)",
    )
    fine = np.geomspace(lams[0], lams[-1], 300)
    theory = ridge_risk(p / n, fine, config.signal, noise) + noise
    ax.semilogx(fine, theory, "C0-", lw=1, label="theory (Dobriban & Wager, p/n -> gamma)")
    ax.axhline(
        ridgeless_risk_finite(n, p, config.signal, noise) + noise,
        color="C3",
        ls=":",
        lw=1,
        label="minimum-norm (ridgeless) fit, exact",
    )
    ax.axvline(lam_star, color="0.4", ls="--", lw=0.8, label=rf"$\lambda^*$ = {lam_star:g}")
    ax.plot(summary["lambda_val"], summary["risk_val"] + noise, "v", color="C1", ms=7, label="validation's choice")
    lam_path = select(metrics, "joint_lambda").pivot(index="step", columns="seed", values="value")
    risk_path = select(metrics, "joint_risk").pivot(index="step", columns="seed", values="value")
    for j, seed in enumerate(lam_path.columns):
        ax.plot(
            lam_path[seed].iloc[1:],
            risk_path[seed].iloc[1:] + noise,
            "-",
            color="C3",
            lw=0.8,
            alpha=0.6,
            label="joint descent on (w, log lambda)" if j == 0 else None,
        )
        end = "where it ends" if j == 0 else None
        ax.plot(lam_path[seed].iloc[-1], risk_path[seed].iloc[-1] + noise, "x", color="C3", label=end)
    ax.set(
        xlabel=r"ridge penalty $\lambda$",
        ylabel="mean squared error",
        ylim=(noise + 0.8 * float(risk.min().min()), None),
    )
    ax.set_title(
        f"Ridge on n = {n}, p = {p} isotropic features: validation picks lambda near the optimum, the joint "
        "descent drives it to 0",
        fontsize=10,
    )
    ax.legend(fontsize=8)
    return fig


EXPERIMENT = Experiment(
    name="surrogate-and-validation",
    claim="The 0-1 loss has zero gradient almost everywhere, so classifiers minimise a convex surrogate (logistic, "
    "hinge) that bounds it from above, and a calibrated surrogate's minimiser reaches the Bayes error; "
    "hyperparameters such as the ridge penalty are tuned on held-out validation data, because minimising the "
    "training loss + lambda |w|^2 jointly over (w, lambda) drives lambda to 0 and overfits.",
    config=SurrogateAndValidationConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={
        "full": {
            "sizes": (250, 1000, 4000, 16000),
            "seeds": 20,
            "steps": 600,
            "starts": 32,
            "examples": 200,
            "features": 400,
            "validation": 200,
            "lambdas": (1e-3, 1e2, 41),
            "joint_steps": 3000,
        }
    },
    references=(
        "Bartlett, Jordan & McAuliffe (2006), Convexity, classification, and risk bounds, JASA 101",
        "Zhang (2004), Statistical behavior and consistency of classification methods based on convex risk "
        "minimization, Ann. Statist. 32",
        "Dobriban & Wager (2018), High-dimensional asymptotics of prediction: ridge regression and classification, "
        "Ann. Statist. 46",
        "Hastie, Montanari, Rosset & Tibshirani (2022), Surprises in high-dimensional ridgeless least squares "
        "interpolation, Ann. Statist. 50",
    ),
    part="linear models",
)
