"""schedules-and-methods: learning-rate schedules, proximal and projected gradient, Newton and trust region.

The optimisation lectures' methods beyond plain first-order steps, each measured against its reference:

1. schedules and their effect on training: per-example SGD on `schedule_problems` independent noisy least-squares
   problems (own data and own uniform example draws, trained at once through `tdlab.train.fit`, one parameter
   group per schedule under torch's `LambdaLR` with the `tdlab.optim.schedules` factors), from eta0 with a constant
   step, power decay eta0 / (1 + t/t0)^p, exponential decay eta0 gamma^t and piecewise-constant steps. A constant
   step stalls at a noise floor proportional to eta; a decaying one goes below it. Measured: ||w_t - w_LS||^2,
   against its exact expectation from the second-moment recursion of SGD on least squares
   (`tdlab.theory.sgd_noise.least_squares_sgd_mse`, Widrow & Hoff; Defossez & Bach 2015) for every problem and
   schedule, by a t-test over problems; and every decaying schedule's end against the constant step's, by a paired
   Wilcoxon test;
2. proximal gradient descent (ISTA, Beck & Teboulle 2009): a bias-free linear model trained by `ProximalGD` through
   `tdlab.train.fit` on the lasso reaches scikit-learn's `Lasso` solution to 1e-6 with exact zeros exactly where it
   has them, within the O(1/k) bound of Beck & Teboulle (Thm. 3.1); the subgradient method, even with a decaying
   step, never produces an exact zero;
3. projected gradient descent onto a Euclidean ball, an L1 ball and a box converges to the constrained minimiser,
   computed independently of the projections (the Moré-Sorensen solution of the trust-region subproblem for the
   ball, the best point over the faces of the L1 ball, the clipped centre for the box), at least at the rate of
   the gradient step's contraction: ||w_k - w*|| <= (1 - mu/L)^k ||w_0 - w*|| for step 1/L (the projection is
   non-expansive and fixes w*);
4. Newton's method (`NewtonCG` through `tdlab.train.fit`) solves a quadratic (the least-squares loss of a linear
   model) in one step; trust-region Newton-CG (Steihaug-Toint CG, Nocedal & Wright Alg. 7.2 with the radius update
   of Alg. 4.1) converges on Rosenbrock's function, every step achieving at least the Cauchy decrease (Lemma 4.3).

The lectures' reference rules on the 2-D test functions (the subgradient step, projected GD on a shifted quadratic,
GD on Rosenbrock) are iterated by hand: the trajectory on the test function is the point. That the schedule objects
are the rates torch's schedulers apply, and that projected iterates stay in their set, are tested in
tests/experiments/test_schedules_and_methods.py (they hold by construction).

How a wrong implementation or a false claim fails: a schedule applied late, not at all, or to the wrong group, or a
noise floor that did not scale with eta, moves the mean ||w_t - w_LS||^2 over the problems many standard errors
from the exact recursion (the t-test), and a decay that did not lower the floor leaves the paired Wilcoxon p-value
near 1/2; a projection onto the wrong point or a non-contracting step ends away from the exact constrained
minimiser and breaks the (1 - mu/L)^k bound; the lasso, Newton and trust-region checks compare with sklearn, the
normal equations and (1, 1).
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Circle, Polygon, Rectangle
from pydantic import Field, model_validator
from scipy.stats import t as student_t
from scipy.stats import wilcoxon
from sklearn.linear_model import Lasso
from torch import Tensor, nn

from tdlab.data import half_squared_error
from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.tidy import rows, series, table, value
from tdlab.models import LinearModel
from tdlab.optim.newton import NewtonCG, newton_cg
from tdlab.optim.projected import ProjectedGD, project_box, project_l1_ball, project_l2_ball
from tdlab.optim.proximal import ProximalGD, subgradient_l1_step
from tdlab.optim.reference import gd_step
from tdlab.optim.schedules import Constant, ExponentialDecay, PiecewiseConstant, PowerDecay, learning_rates
from tdlab.optim.test_functions import ElongatedQuadratic, Rosenbrock
from tdlab.optim.trust_region import trust_region
from tdlab.theory.ista import ista_distance_bound, ista_objective_bound
from tdlab.theory.sgd_noise import least_squares_sgd_mse
from tdlab.theory.trust_region_subproblem import ball_constrained_minimizer, cauchy_decrease_bound
from tdlab.train.trainer import fit

SCHEDULES = ("constant", "power", "exponential", "piecewise")
SHIFT = (2.0, 1.5)  # the unconstrained minimiser of the projected-GD objective, outside every set
SETS = {  # the projections onto the three sets around 0
    "l2 ball": partial(project_l2_ball, radius=1.0),
    "l1 ball": partial(project_l1_ball, radius=1.0),
    "box": partial(project_box, lower=-0.5, upper=0.5),
}
ROSENBROCK = ("trust region", "damped newton", "gd")
CONTRACTION = 0.9  # 1 - mu/L of the projected-GD objective (kappa = 10) at step 1/L


class SchedulesAndMethodsConfig(ExperimentConfig):
    """Sizes and hyperparameters of the four measurements (defaults: the quick config)."""

    schedule_steps: int = Field(300, ge=10, description="per-example SGD steps under every schedule")
    schedule_problems: int = Field(24, ge=5, description="independent least-squares problems trained at once")
    schedule_samples: int = Field(100, ge=2, description="examples n of each least-squares problem")
    schedule_features: int = Field(8, ge=1, description="features d of each least-squares problem")
    schedule_noise: float = Field(1.0, gt=0, description="label noise standard deviation (sets the noise floor)")
    significance: float = Field(0.05, gt=0, lt=1, description="level alpha of the tests over problems")
    eta0: float = Field(0.1, gt=0, description="initial learning rate of the schedules")
    power_t0: float = Field(20.0, gt=0, description="time scale t0 of the power decay eta0 / (1 + t/t0)^p")
    power_p: float = Field(0.5, gt=0, description="exponent p of the power decay")
    gamma: float = Field(0.99, gt=0, le=1, description="factor per step of the exponential decay")
    milestones: tuple[int, ...] = Field((100, 200), description="steps where the piecewise-constant rate drops")
    milestone_gamma: float = Field(0.1, gt=0, le=1, description="factor of each drop of the piecewise-constant rate")
    lasso_samples: int = Field(100, ge=2, description="rows n of the lasso design")
    lasso_features: int = Field(20, ge=2, description="columns d of the lasso design")
    lasso_informative: int = Field(5, ge=1, description="non-zero coefficients of the true lasso weights")
    lasso_noise: float = Field(0.5, ge=0, description="noise standard deviation of the lasso targets")
    lasso_alpha: float = Field(0.1, gt=0, description="L1 weight alpha of sklearn's 1/(2n)||y - Xw||^2 + alpha||w||_1")
    lasso_steps: int = Field(1000, ge=10, description="iterations of ISTA and of the subgradient method")
    lasso_tolerance: float = Field(1e-6, gt=0, description="allowed max |ISTA - sklearn| coefficient difference")
    projection_steps: int = Field(400, ge=10, description="projected gradient steps per constraint set")
    newton_features: int = Field(20, ge=1, description="inputs of the linear model of the one-step Newton test")
    newton_samples: int = Field(200, ge=2, description="examples of that linear model")
    trust_region_iterations: int = Field(200, ge=1, description="iteration budget of trust region / Newton-CG")

    @model_validator(mode="after")
    def _consistent(self) -> SchedulesAndMethodsConfig:
        if self.lasso_informative > self.lasso_features:
            raise ValueError(
                f"lasso_informative: expected at most lasso_features = {self.lasso_features}, "
                f"got {self.lasso_informative}"
            )
        if self.schedule_features >= self.schedule_samples:
            raise ValueError(
                f"schedule_features: expected fewer than schedule_samples = {self.schedule_samples}, "
                f"got {self.schedule_features}"
            )
        if any(b <= a for a, b in zip(self.milestones, self.milestones[1:], strict=False)) or any(
            m < 1 for m in self.milestones
        ):
            raise ValueError(f"milestones: expected strictly increasing steps >= 1, got {self.milestones}")
        return self


# ------------------------------------------------------------------------------------------------ measure
def measure(config: SchedulesAndMethodsConfig, context: Context) -> pd.DataFrame:
    """The four parts' rows (see each)."""
    parts = (_schedules, _lasso, _projected, _newton_linear_model, _rosenbrock_methods)
    return pd.concat(
        [part(config, context.device) for part in context.track(parts, "schedules and methods")], ignore_index=True
    )


def _schedule_objects(config: SchedulesAndMethodsConfig) -> dict[str, object]:
    """The `tdlab.optim.schedules` factor of each schedule name."""
    return {
        "constant": Constant(),
        "power": PowerDecay(config.power_t0, config.power_p),
        "exponential": ExponentialDecay(config.gamma),
        "piecewise": PiecewiseConstant.multistep(config.milestones, config.milestone_gamma),
    }


class _StackedLinear(nn.Module):
    """One bias-free linear model per (schedule, problem): weights K x (S, d), inputs (b, S, d) holding every
    problem's own examples, outputs (b, K, S)."""

    def __init__(self, schedules: int, problems: int, features: int):
        super().__init__()
        zeros = torch.zeros(problems, features, dtype=torch.float64)
        self.weights = nn.ParameterList(nn.Parameter(zeros.clone()) for _ in range(schedules))

    def forward(self, x: Tensor) -> Tensor:
        return torch.einsum("bsd,ksd->bks", x, torch.stack(list(self.weights)))


def _summed_squared_error(outputs: Tensor, targets: Tensor) -> Tensor:
    """sum over (schedule, problem) of 1/(2b) sum_i (f(x_i) - y_i)^2: every model's own least-squares loss."""
    return 0.5 * (outputs - targets[:, None, :]).pow(2).sum(dim=(1, 2)).mean()


def _schedules(config: SchedulesAndMethodsConfig, device: torch.device) -> pd.DataFrame:
    """Per-example SGD from 0 under every schedule on `schedule_problems` problems y = X w + noise (each with its own
    uniform example draws): `lr` (schedule, step); the measured `sq_distance` ||w_t - w_LS||^2 and its exact
    expectation `expected_sq_distance` (means over the problems; schedule, step); their means over the last tenth
    of the steps, `final_sq_distance` and `final_expected_sq_distance` (schedule, problem)."""
    generator = torch.Generator().manual_seed(config.seed)
    S, n, d, T = config.schedule_problems, config.schedule_samples, config.schedule_features, config.schedule_steps
    X = torch.randn(n, S, d, generator=generator, dtype=torch.float64)
    y = torch.einsum("nsd,sd->ns", X, torch.randn(S, d, generator=generator, dtype=torch.float64))
    y = y + config.schedule_noise * torch.randn(n, S, generator=generator, dtype=torch.float64)
    draws, problems = torch.randint(n, (T, S), generator=generator), torch.arange(S)
    batches = [(X[draws[t], problems][None].to(device), y[draws[t], problems][None].to(device)) for t in range(T)]
    schedules = _schedule_objects(config)
    model = _StackedLinear(len(schedules), S, d).to(device)
    optimizer = torch.optim.SGD([{"params": [w]} for w in model.weights], lr=config.eta0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, list(schedules.values()))
    path = [torch.stack([w.detach().clone() for w in model.weights])]
    record = lambda *_: path.append(torch.stack([w.detach().clone() for w in model.weights]))  # noqa: E731
    fit(model, _summed_squared_error, batches, optimizer, T, scheduler=scheduler, callbacks=[record])
    Xs, ys = X.numpy().transpose(1, 0, 2), y.numpy().T  # (S, n, d), (S, n)
    least_squares = np.stack([np.linalg.lstsq(Xs[s], ys[s], rcond=None)[0] for s in range(S)])
    measured = ((torch.stack(path).cpu().numpy() - least_squares) ** 2).sum(-1)  # (T + 1, K, S)
    rates = {name: learning_rates(schedule, config.eta0, T) for name, schedule in schedules.items()}
    expected = np.stack(
        [
            np.stack([least_squares_sgd_mse(Xs[s], ys[s], np.zeros(d), lr) for s in range(S)], 1)
            for lr in rates.values()
        ],
        1,
    )
    window, steps, names = max(1, T // 10), np.arange(T + 1), np.array(list(schedules))
    return pd.concat(
        [
            *(rows("lr", lr, schedule=name, step=steps[:-1]) for name, lr in rates.items()),
            rows("sq_distance", measured.mean(-1), schedule=names, step=steps[:, None]),
            rows("expected_sq_distance", expected.mean(-1), schedule=names, step=steps[:, None]),
            rows("final_sq_distance", measured[-window:].mean(0), schedule=names[:, None], problem=problems.numpy()),
            rows(
                "final_expected_sq_distance",
                expected[-window:].mean(0),
                schedule=names[:, None],
                problem=problems.numpy(),
            ),
        ]
    )


def _lasso(config: SchedulesAndMethodsConfig, device: torch.device) -> pd.DataFrame:
    """ISTA and the subgradient method on the lasso: `objective_gap` F(w_k) - F*, `exact_zeros` (method, step),
    `distance` ||w_k - w*|| of ISTA, `coefficient` w_k at log-spaced k (method, step, index), `reference` sklearn's
    solution (index); scalars `L`, `mu` (extreme eigenvalues of X^T X/n) and `kkt` (sklearn's KKT violation)."""
    rng = np.random.default_rng(config.seed)
    n, d, k = config.lasso_samples, config.lasso_features, config.lasso_informative
    X = rng.standard_normal((n, d))
    w_true = np.zeros(d)
    w_true[:k] = rng.choice([-1.0, 1.0], k) * rng.uniform(0.5, 2.0, k)
    y = X @ w_true + config.lasso_noise * rng.standard_normal(n)
    alpha = config.lasso_alpha
    reference = Lasso(alpha=alpha, fit_intercept=False, tol=1e-14, max_iter=1_000_000).fit(X, y).coef_
    smooth_gradient = X.T @ (X @ reference - y) / n
    violation = np.where(
        reference != 0,
        np.abs(smooth_gradient + alpha * np.sign(reference)),
        np.maximum(np.abs(smooth_gradient) - alpha, 0.0),
    )
    curvature = np.linalg.eigvalsh(X.T @ X / n)
    L, mu = float(curvature[-1]), float(curvature[0])
    Xt, yt = torch.tensor(X, device=device), torch.tensor(y, device=device)

    def objective(w: Tensor) -> float:
        return float(0.5 * ((Xt @ w - yt) ** 2).mean() + alpha * w.abs().sum())

    # ISTA: a linear model (no bias) from zero, trained by the ProximalGD optimiser with step 1/L
    model = LinearModel(d, 1, bias=False).to(Xt)
    ista = [model.linear.weight.detach()[0].clone()]

    def record(*_: object) -> None:
        ista.append(model.linear.weight.detach()[0].clone())

    optimizer = ProximalGD(model.parameters(), lr=1.0 / L, l1=alpha)
    fit(model, half_squared_error, (Xt, yt[:, None]), optimizer, config.lasso_steps, callbacks=[record])

    # subgradient method with the decaying step eta0 / sqrt(1 + t / t0) (the power schedule, p = 1/2)
    subgradient = [torch.zeros(d, dtype=torch.float64, device=device)]
    for eta in learning_rates(PowerDecay(t0=10.0, p=0.5), 1.0 / L, config.lasso_steps):
        subgradient.append(
            subgradient_l1_step(subgradient[-1], Xt.T @ (Xt @ subgradient[-1] - yt) / n, float(eta), alpha)
        )

    F_star, steps = objective(torch.tensor(reference, device=device)), np.arange(config.lasso_steps + 1)
    kept = np.unique(np.r_[0, np.geomspace(1, config.lasso_steps, 200).astype(int)])  # log-spaced, last included
    frames = [rows("reference", reference, index=np.arange(d))]
    for method, path in (("ista", torch.stack(ista)), ("subgradient", torch.stack(subgradient))):
        gap = np.array([objective(p) for p in path]) - F_star
        path = path.cpu().numpy()
        frames += [
            rows("objective_gap", gap, method=method, step=steps),
            rows("exact_zeros", (path == 0).sum(1), method=method, step=steps),
            rows("coefficient", path[kept], method=method, step=kept[:, None], index=np.arange(d)),
        ]
    distances = np.linalg.norm(torch.stack(ista).cpu().numpy() - reference, axis=1)
    frames.append(rows("distance", distances, method="ista", step=steps))
    return pd.concat([*frames, rows("L", L), rows("mu", mu), rows("kkt", violation.max())])


def _projected(config: SchedulesAndMethodsConfig, device: torch.device) -> pd.DataFrame:
    """Projected GD with step 1/L on f(w) = q(w - m), q the elongated quadratic (kappa = 10), m = SHIFT, onto three
    sets around 0: the iterates `x`, `y` (set, step)."""
    q, m, lr = ElongatedQuadratic(kappa=10.0), torch.tensor(SHIFT, dtype=torch.float64, device=device), 0.1
    frames, steps = [], np.arange(config.projection_steps + 1)
    for name, projection in SETS.items():
        w = torch.tensor([-0.5, -0.5], dtype=torch.float64, device=device, requires_grad=True)
        optimizer = ProjectedGD([w], lr=lr, projection=projection)
        path = [w.detach().clone()]
        for _ in range(config.projection_steps):
            w.grad = q.gradient(w.detach() - m)
            optimizer.step()
            path.append(w.detach().clone())
        path = torch.stack(path).cpu().numpy()
        frames += [rows("x", path[:, 0], set=name, step=steps), rows("y", path[:, 1], set=name, step=steps)]
    return pd.concat(frames)


def _l1_ball_minimiser(A: np.ndarray, m: np.ndarray, radius: float) -> np.ndarray:
    """argmin of (w - m)^T A (w - m) / 2 over the 2-D L1 ball of `radius`: m itself if inside, otherwise the best of
    the minimisers over its four edges (a 1-D quadratic on each segment, clipped to it): no projection involved."""
    if np.abs(m).sum() <= radius:
        return m.copy()
    vertices = radius * np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    candidates = []
    for a, b in zip(vertices, np.roll(vertices, -1, axis=0), strict=True):
        edge = b - a
        candidates.append(a + np.clip(edge @ A @ (m - a) / (edge @ A @ edge), 0.0, 1.0) * edge)
    return min(candidates, key=lambda w: (w - m) @ A @ (w - m))


def _exact_minimisers() -> dict[str, np.ndarray]:
    """Constrained minimisers of q(w - m), independent of the projections: Moré-Sorensen for the Euclidean ball, the
    faces of the L1 ball, the clipped centre for the box (q separates over the coordinates)."""
    A, m = np.diag([1.0, 10.0]), np.asarray(SHIFT)
    return {
        "l2 ball": ball_constrained_minimizer(A, -A @ m, 1.0),
        "l1 ball": _l1_ball_minimiser(A, m, 1.0),
        "box": np.clip(m, -0.5, 0.5),
    }


def _newton_linear_model(config: SchedulesAndMethodsConfig, device: torch.device) -> pd.DataFrame:
    """`one_step_error_linear_model`: max |theta_1 - theta*| after one `NewtonCG` step (through `fit`) from a random
    initialisation."""
    generator = torch.Generator().manual_seed(config.seed)
    n, d = config.newton_samples, config.newton_features
    X = torch.randn(n, d, generator=generator, dtype=torch.float64)
    y = X @ torch.randn(d, 1, generator=generator, dtype=torch.float64) + 0.1 * torch.randn(
        n, 1, generator=generator, dtype=torch.float64
    )
    with torch.random.fork_rng(devices=[]):  # seeded initialisation without touching the global generator
        torch.manual_seed(config.seed)
        model = nn.Linear(d, 1)
    model = model.to(device=device, dtype=torch.float64)
    fit(model, nn.MSELoss(), (X, y), NewtonCG(model.parameters(), forcing=0.0), 1)
    theta1 = nn.utils.parameters_to_vector(model.parameters()).detach()  # (weight, bias), flattened
    design = torch.cat([X, torch.ones(n, 1, dtype=torch.float64)], 1)
    # normal equations (weight, bias) as flattened; torch.linalg.lstsq on CPU differs between calls by rounding
    solution = torch.linalg.solve(design.T @ design, design.T @ y).reshape(-1).to(device)
    return rows("one_step_error_linear_model", float((theta1 - solution).abs().max()), method="newton")


def _rosenbrock_methods(config: SchedulesAndMethodsConfig, device: torch.device) -> pd.DataFrame:
    """Trust region, damped Newton and GD (eta = 1e-3) from (-1.2, 1): iterates `x`, `y` and
    `distance_to_minimiser` (method, step); for trust region `radius` and `cauchy_ratio`, the model decrease over
    the Cauchy bound (step); `converged`, `iterations`, `hessian_vector_products`, `damped_steps` (method)."""
    f = Rosenbrock()
    w0 = torch.tensor(f.start, dtype=torch.float64, device=device)
    w_star = torch.tensor(f.minimizers[0], dtype=torch.float64, device=device)
    tr = trust_region(f.value, f.gradient, f.hvp, w0, max_iter=config.trust_region_iterations)
    newton = newton_cg(f.value, f.gradient, f.hvp, w0, max_iter=config.trust_region_iterations, forcing=0.0)
    gd = [w0]
    for _ in range(config.trust_region_iterations * 10):
        gd.append(gd_step(gd[-1], f.gradient(gd[-1]), 1e-3))
    # Cauchy decrease at every TR iteration: predicted decrease against 1/2 ||g|| min(Delta, ||g|| / ||B||)
    ratios = [
        predicted / float(cauchy_decrease_bound(tr.grad_norms[k], radius, float(torch.linalg.matrix_norm(B, ord=2))))
        for k, (radius, predicted, B) in enumerate(zip(tr.radii, tr.predicted, f.hessian(tr.path), strict=False))
    ]
    frames = [
        rows("radius", tr.radii, method="trust region", step=np.arange(len(tr.radii))),
        rows("cauchy_ratio", ratios, method="trust region", step=np.arange(len(ratios))),
        rows("converged", [tr.converged, newton.converged], method=np.array(ROSENBROCK[:2])),
        rows("iterations", [len(tr.radii), len(newton.step_sizes)], method=np.array(ROSENBROCK[:2])),
        rows("hessian_vector_products", tr.num_hvp, method="trust region"),
        rows("damped_steps", sum(a < 1 for a in newton.step_sizes), method="damped newton"),
    ]
    for method, path in zip(ROSENBROCK, (tr.path, newton.path, torch.stack(gd)), strict=True):
        steps, distance = np.arange(len(path)), torch.linalg.vector_norm(path - w_star, dim=1).cpu().numpy()
        path = path.cpu().numpy()
        frames += [rows(c, path[:, i], method=method, step=steps) for i, c in enumerate("xy")]
        frames.append(rows("distance_to_minimiser", distance, method=method, step=steps))
    return pd.concat(frames)


def _coefficients(metrics: pd.DataFrame, method: str) -> tuple[np.ndarray, np.ndarray]:
    """The stored steps and the coefficient paths (steps, index) of a lasso method."""
    paths = table(metrics, "coefficient", "step", method=method)
    return paths.index.to_numpy(), paths.to_numpy()


# ------------------------------------------------------------------------------------------------- checks
def checks(metrics: pd.DataFrame, config: SchedulesAndMethodsConfig) -> list[Check]:
    """Each method against its reference: torch's schedulers, sklearn's lasso and Beck & Teboulle's bounds, the
    constraint sets and exact constrained minimisers, the normal equations, the Rosenbrock minimiser (1, 1)."""
    result = _schedule_checks(metrics, config)
    return (
        result
        + _lasso_checks(metrics, config)
        + _projection_checks(metrics, config)
        + _second_order_checks(metrics, config)
    )


def _schedule_checks(metrics: pd.DataFrame, config: SchedulesAndMethodsConfig) -> list[Check]:
    S, alpha, K = config.schedule_problems, config.significance, len(SCHEDULES)
    final = {name: series(metrics, "final_sq_distance", "problem", schedule=name)[1] for name in SCHEDULES}
    expected = {name: series(metrics, "final_expected_sq_distance", "problem", schedule=name)[1] for name in SCHEDULES}
    t_values = {}
    for name in SCHEDULES:
        difference = final[name] - expected[name]
        t_values[name] = float(difference.mean() / (difference.std(ddof=1) / np.sqrt(S)))
    critical = float(student_t.isf(alpha / (2 * K), S - 1))
    p_values = {
        name: float(wilcoxon(final[name], final["constant"], alternative="less").pvalue) for name in SCHEDULES[1:]
    }
    worst = max(p_values, key=p_values.get)
    window = max(1, config.schedule_steps // 10)
    numbers = "; ".join(
        f"{name} {final[name].mean():.3g} (exact {expected[name].mean():.3g}, t = {t_values[name]:+.2f})"
        for name in SCHEDULES
    )
    return [
        Check.at_most(
            f"schedules: mean ||w - w_LS||^2 over the last tenth vs the exact SGD recursion, largest |t| over {K} "
            f"schedules and {S} problems (alpha = {alpha:g})",
            max(abs(t) for t in t_values.values()),
            critical,
            detail=f"per-example SGD from eta0 = {config.eta0:g}, {config.schedule_steps} steps, last {window}; "
            f"{numbers}; two-sided t-test of the mean difference over problems, Bonferroni over the schedules "
            f"(critical t = {critical:.2f}); the constant step's plateau is the noise floor, proportional to eta",
        ),
        Check.at_most(
            f"decaying schedules end below the constant step's noise floor: largest one-sided paired Wilcoxon "
            f"p-value over {K - 1} schedules ({S} problems, alpha = {alpha:g})",
            p_values[worst],
            alpha,
            detail=", ".join(f"{name}: p = {p:.2g}" for name, p in p_values.items())
            + " (an intersection-union test: every decay lower); same problems and example draws for all schedules",
        ),
    ]


def _lasso_checks(metrics: pd.DataFrame, config: SchedulesAndMethodsConfig) -> list[Check]:
    reference = series(metrics, "reference", "index")[1]
    L, mu, kkt = (value(metrics, name) for name in ("L", "mu", "kkt"))
    final = _coefficients(metrics, "ista")[1][-1]
    subgradient_final = _coefficients(metrics, "subgradient")[1][-1]
    distance0, d, alpha = float(np.linalg.norm(reference)), config.lasso_features, config.lasso_alpha
    ista_gap = series(metrics, "objective_gap", method="ista")[1]
    iterations = np.arange(1, config.lasso_steps + 1)
    objective_ratio = float(np.max(ista_gap[1:] / ista_objective_bound(iterations, L, distance0)))
    distance_bound = ista_distance_bound(np.arange(config.lasso_steps + 1), L, mu, distance0)
    floor = 1e-12  # below this the distance is rounding, not convergence
    resolved = (distance_bound > floor) & (np.arange(config.lasso_steps + 1) >= 1)
    distances = series(metrics, "distance", method="ista")[1]
    distance_ratio = float(np.max(distances[resolved] / distance_bound[resolved]))
    zero_mismatch = int(np.sum((final == 0) != (reference == 0)))
    subgradient_zeros = int(series(metrics, "exact_zeros", method="subgradient")[1][1:].sum())
    return [
        Check.at_most(
            "lasso: max |ISTA - sklearn Lasso| over the coefficients",
            float(np.max(np.abs(final - reference))),
            config.lasso_tolerance,
            detail=f"after {config.lasso_steps} ISTA steps of size 1/L (L = {L:.3g}); sklearn with tol=1e-14, "
            f"max_iter=1e6 (its KKT violation: {kkt:.1e}); objective 1/(2n)||y - Xw||^2 + {alpha:g}||w||_1",
        ),
        Check.holds(
            "lasso: ISTA's exact zeros are exactly sklearn's zeros",
            zero_mismatch == 0,
            measured=zero_mismatch,
            detail=f"measured: coordinates where exactly one of the two is 0.0; sklearn has "
            f"{int(np.sum(reference == 0))} of {d} exact zeros, ISTA {int(np.sum(final == 0))}",
        ),
        Check.holds(
            "lasso: the subgradient method produces no exact zero",
            subgradient_zeros == 0,
            measured=subgradient_zeros,
            detail=f"measured: exact zeros among all {config.lasso_steps} x {d} subgradient iterates "
            f"(step (1/L) / sqrt(1 + t/10)); final max |coefficient| on sklearn's zero set: "
            f"{float(np.max(np.abs(subgradient_final[reference == 0]), initial=0.0)):.1e}",
        ),
        Check.at_most(
            "lasso: max_k (F(w_k) - F*) / (L ||w_0 - w*||^2 / (2k)) for ISTA",
            objective_ratio,
            1.0,
            detail="Beck & Teboulle (2009), Thm. 3.1: the ratio never exceeds 1",
        ),
        Check.at_most(
            "lasso: max_k ||w_k - w*|| / ((1 - mu/L)^k ||w_0 - w*||) for ISTA",
            distance_ratio,
            1.0,
            tolerance=1e-9,
            detail=f"linear rate for a mu-strongly convex smooth part (mu = {mu:.3g}); over k >= 1 with bound > "
            f"{floor:g}; tolerance 1e-9 for sklearn's own error (its KKT violation is far below)",
        ),
    ]


def _projection_checks(metrics: pd.DataFrame, config: SchedulesAndMethodsConfig) -> list[Check]:
    exact, result = _exact_minimisers(), []
    sources = {
        "l2 ball": "Moré & Sorensen (1983) secular equation",
        "l1 ball": "the best point over the faces of the L1 ball",
        "box": "clip(m) (separable)",
    }
    floor = 1e-12  # below this the distance is rounding, not convergence
    for name in SETS:
        path = np.stack([series(metrics, c, set=name)[1] for c in "xy"], 1)
        distance = np.linalg.norm(path - exact[name], axis=1)
        k = np.arange(len(distance))
        bound = CONTRACTION**k * distance[0]
        resolved = (k >= 1) & (bound > floor)
        result += [
            Check.at_most(
                f"projected GD, {name}: distance of the last iterate to the constrained minimiser",
                float(np.max(np.abs(path[-1] - exact[name]))),
                1e-10,
                detail=f"exact minimiser {np.round(exact[name], 6).tolist()} by {sources[name]}; step 1/L converges "
                f"linearly at rate 1 - 1/kappa = {CONTRACTION:g}, {CONTRACTION:g}^{config.projection_steps} ~ "
                f"{CONTRACTION**config.projection_steps:.0e}",
            ),
            Check.at_most(
                f"projected GD, {name}: max_k ||w_k - w*|| / ({CONTRACTION:g}^k ||w_0 - w*||)",
                float(np.max(distance[resolved] / bound[resolved])),
                1.0,
                tolerance=1e-9,
                detail="the gradient step with eta = 1/L contracts by max|1 - eta lambda_i| = 1 - mu/L and the "
                f"projection is non-expansive and fixes w*; over k >= 1 with bound > {floor:g}; tolerance 1e-9 for "
                "rounding; a projection to the wrong point, or one that expands, breaks it",
            ),
        ]
    return result


def _second_order_checks(metrics: pd.DataFrame, config: SchedulesAndMethodsConfig) -> list[Check]:
    def scalar(name: str, method: str) -> int:
        return int(value(metrics, name, method=method))

    tr, newton = "trust region", "damped newton"
    return [
        Check.at_most(
            "newton: one step on the least-squares loss of a linear model, max |theta_1 - theta*|",
            value(metrics, "one_step_error_linear_model"),
            1e-10,
            detail=f"H^-1 g by CG on Hessian-vector products (NewtonCG through tdlab.train.fit) to tolerance 0 "
            f"({config.newton_features + 1} parameters, "
            f"{config.newton_samples} examples); theta* by the normal equations (torch.linalg.solve); a quadratic's "
            "Newton step is exact",
        ),
        Check.at_most(
            "trust region on Rosenbrock from (-1.2, 1): distance to the minimiser (1, 1)",
            float(series(metrics, "distance_to_minimiser", method=tr)[1][-1]),
            1e-8,
            detail=f"converged={bool(scalar('converged', tr))} after {scalar('iterations', tr)} iterations "
            f"({scalar('hessian_vector_products', tr)} Hessian-vector products); Steihaug-CG (N&W Alg. 7.2), radius "
            "update of Alg. 4.1, eta = 0.15, gtol 1e-10",
        ),
        Check.at_least(
            "trust region: min over iterations of model decrease / Cauchy bound",
            float(series(metrics, "cauchy_ratio")[1].min()),
            1.0,
            tolerance=1e-9,
            detail="N&W Lemma 4.3 and Thm. 7.3: every Steihaug step decreases the model by at least "
            "||g|| min(Delta, ||g|| / ||B||) / 2; tolerance 1e-9 for rounding",
        ),
        Check.at_most(
            "damped Newton (Newton-CG + Armijo) on Rosenbrock: distance to the minimiser",
            float(series(metrics, "distance_to_minimiser", method=newton)[1][-1]),
            1e-8,
            detail=f"converged={bool(scalar('converged', newton))} after {scalar('iterations', newton)} iterations, "
            f"{scalar('damped_steps', newton)} damped (alpha < 1); N&W Alg. 7.1 / 3.1",
        ),
    ]


# ------------------------------------------------------------------------------------------------ figures
def figures(metrics: pd.DataFrame, config: SchedulesAndMethodsConfig) -> dict[str, Figure]:
    """The schedules, the lasso paths, projected GD in its sets, and second-order paths on Rosenbrock."""
    return {
        "schedules": _schedule_figure(metrics, config),
        "lasso_paths": _lasso_figure(metrics, config),
        "projected_gd": _projection_figure(metrics),
        "newton_trust_region": _rosenbrock_figure(metrics),
    }


def _schedule_figure(metrics: pd.DataFrame, config: SchedulesAndMethodsConfig) -> Figure:
    fig = Figure(figsize=(13, 5), layout="constrained")
    left, right = fig.subplots(1, 2)
    labels = {
        "constant": "constant",
        "power": f"power: eta0 / (1 + t/{config.power_t0:g})^{config.power_p:g}",
        "exponential": f"exponential: eta0 {config.gamma:g}^t",
        "piecewise": f"piecewise constant: x{config.milestone_gamma:g} at {list(config.milestones)}",
    }
    for i, name in enumerate(SCHEDULES):
        left.semilogy(*series(metrics, "lr", schedule=name), "-", color=f"C{i}", label=labels[name])
        steps, measured = series(metrics, "sq_distance", schedule=name)
        right.semilogy(steps, measured, "-", color=f"C{i}", lw=0.8, alpha=0.8, label=f"{name}: measured")
        right.semilogy(*series(metrics, "expected_sq_distance", schedule=name), "--", color=f"C{i}", lw=1.5)
    right.plot([], [], "k--", label="exact expectation (second-moment recursion)")
    right.axvspan(config.schedule_steps - max(1, config.schedule_steps // 10), config.schedule_steps, color="0.9")
    left.set(xlabel="step t", ylabel="learning rate eta_t", title=f"Schedules from eta0 = {config.eta0:g} (LambdaLR)")
    left.legend(fontsize=8)
    right.set(
        xlabel="step t",
        ylabel="||w_t - w_LS||^2, mean over problems",
        title=f"SGD on {config.schedule_problems} least-squares problems: a constant step stalls",
    )
    right.legend(fontsize=8)
    return fig


def _lasso_figure(metrics: pd.DataFrame, config: SchedulesAndMethodsConfig) -> Figure:
    fig = Figure(figsize=(15, 4.8), layout="constrained")
    axes = fig.subplots(1, 3)
    reference = series(metrics, "reference", "index")[1]
    zero_set = reference == 0
    for ax, method, title in (
        (axes[0], "ista", "Proximal GD (ISTA)"),
        (axes[1], "subgradient", "Subgradient method, step (1/L)/sqrt(1 + t/10)"),
    ):
        steps, path = _coefficients(metrics, method)
        for j in range(path.shape[1]):
            ax.plot(
                steps[1:],
                path[1:, j],
                color="tab:red" if zero_set[j] else "tab:blue",
                lw=0.9,
                alpha=0.8 if zero_set[j] else 1.0,
            )
        for coefficient in reference[~zero_set]:
            ax.axhline(coefficient, color="k", ls=":", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.set_xlabel("iteration k")
        ax.set_ylabel("coefficient w_j (symlog)")
        ax.set_title(f"{title}\nred: sklearn's zeros, blue: its non-zeros (dotted)")
    ax = axes[2]
    for method, color in (("ista", "tab:green"), ("subgradient", "tab:purple")):
        zeros = series(metrics, "exact_zeros", method=method)[1]
        ax.plot(np.arange(len(zeros)), zeros, color=color, label=f"{method}: exact zeros")
    ax.axhline(int(zero_set.sum()), color="k", ls="--", lw=1, label="sklearn Lasso: exact zeros")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(0, config.lasso_steps)
    ax.set_xlabel("iteration k")
    ax.set_ylabel("number of coefficients exactly 0.0")
    ax.set_title(f"Exact zeros (d = {config.lasso_features}, alpha = {config.lasso_alpha:g})")
    ax.legend(fontsize=8)
    fig.suptitle("Lasso: soft thresholding lands on exact zeros, subgradient steps oscillate around them")
    return fig


def _quadratic_contours(ax: Axes) -> None:
    q = ElongatedQuadratic(kappa=10.0)
    xs, ys = np.linspace(-1.6, 2.6, 300), np.linspace(-1.3, 2.0, 300)
    X, Y = np.meshgrid(xs, ys)
    Z = q.value(torch.from_numpy(np.stack([X - SHIFT[0], Y - SHIFT[1]], -1))).numpy()
    ax.contour(X, Y, Z, levels=np.logspace(-2, 1.6, 16), norm=LogNorm(), cmap="Greys", linewidths=0.7)
    ax.plot(*SHIFT, "*", color="gold", markeredgecolor="k", ms=14, label="unconstrained minimiser")
    ax.set_xlim(xs[0], xs[-1])
    ax.set_ylim(ys[0], ys[-1])
    ax.set_aspect("equal")
    ax.set_xlabel("x")
    ax.set_ylabel("y")


def _projection_figure(metrics: pd.DataFrame) -> Figure:
    fig = Figure(figsize=(15, 5), layout="constrained")
    shapes = {
        "l2 ball": Circle((0, 0), 1.0, fill=False, color="tab:blue", lw=2),
        "l1 ball": Polygon([(1, 0), (0, 1), (-1, 0), (0, -1)], closed=True, fill=False, color="tab:blue", lw=2),
        "box": Rectangle((-0.5, -0.5), 1.0, 1.0, fill=False, color="tab:blue", lw=2),
    }
    exact = _exact_minimisers()
    for ax, name in zip(fig.subplots(1, 3), SETS, strict=True):
        path = np.stack([series(metrics, c, set=name)[1] for c in "xy"], 1)
        _quadratic_contours(ax)
        ax.add_patch(shapes[name])
        ax.plot(path[:, 0], path[:, 1], "o-", color="tab:red", ms=3, lw=1, label="projected GD iterates")
        ax.plot(*exact[name], "P", color="k", ms=10, label="constrained minimiser (exact)")
        ax.set_title(f"{name}: w <- P(w - eta grad f(w)), eta = 1/L")
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(
        "Projected gradient descent on f(w) = ((x - 2)^2 + 10 (y - 1.5)^2) / 2 reaches the constrained minimiser"
    )
    return fig


def _rosenbrock_figure(metrics: pd.DataFrame) -> Figure:
    f, radii = Rosenbrock(), series(metrics, "radius")[1]
    tr_path, newton_path, gd_path = (
        np.stack([series(metrics, c, method=method)[1] for c in "xy"], 1) for method in ROSENBROCK
    )
    fig = Figure(figsize=(14, 5.5), layout="constrained")
    ax, ax_error = fig.subplots(1, 2)
    X, Y, Z = (a.numpy() for a in f.grid(300))
    ax.contour(X, Y, Z + 1e-3, levels=np.logspace(-1, 3.3, 20), norm=LogNorm(), cmap="Greys", linewidths=0.7)
    accepted = np.r_[True, np.any(np.diff(tr_path, axis=0) != 0, axis=1)]
    for k in np.flatnonzero(accepted[:-1] if len(radii) else []):
        ax.add_patch(Circle(tr_path[k], radii[k], fill=False, color="tab:blue", lw=0.5, alpha=0.35))
    ax.plot(
        tr_path[accepted, 0], tr_path[accepted, 1], "o-", color="tab:blue", ms=4, label="trust region (Steihaug-CG)"
    )
    ax.plot(newton_path[:, 0], newton_path[:, 1], "s-", color="tab:orange", ms=4, label="damped Newton (Armijo)")
    ax.plot(
        gd_path[:, 0],
        gd_path[:, 1],
        "-",
        color="tab:gray",
        lw=1.5,
        label=f"GD, eta = 1e-3, {len(gd_path) - 1} steps",
    )
    ax.plot(*f.minimizers[0], "*", color="gold", markeredgecolor="k", ms=15, zorder=5, label="minimiser (1, 1)")
    ax.set_xlim(f.xlim)
    ax.set_ylim(f.ylim)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title("Rosenbrock: second-order paths (circles: trust regions at accepted steps)")
    ax.legend(fontsize=8, loc="lower right")
    w_star = np.asarray(f.minimizers[0])
    for path, label, style in ((tr_path, "trust region", "o-"), (newton_path, "damped Newton", "s-")):
        error = np.linalg.norm(path - w_star, axis=1)
        ax_error.semilogy(np.arange(len(error)), np.maximum(error, 1e-17), style, ms=4, label=label)
    gd_error = np.linalg.norm(gd_path - w_star, axis=1)
    ax_error.semilogy(np.arange(len(gd_error)), gd_error, "-", color="tab:gray", label="GD, eta = 1e-3")
    ax_error.set_xscale("symlog", linthresh=10)
    ax_error.set_xlabel("iteration k")
    ax_error.set_ylabel("||w_k - w*|| (floored at 1e-17)")
    ax_error.set_title("Distance to the minimiser")
    ax_error.legend(fontsize=8)
    return fig


EXPERIMENT = Experiment(
    name="schedules-and-methods",
    claim=(
        "With a constant step SGD stalls at a noise floor proportional to the step, and decaying schedules (power, "
        "exponential, piecewise constant) go below it as the exact second-moment recursion predicts; proximal GD "
        "finds the lasso solution with exact zeros where subgradient descent never does; projected GD converges to "
        "the constrained minimiser at the rate of its gradient step; Newton solves a quadratic in one step and "
        "trust-region Newton-CG converges on Rosenbrock."
    ),
    config=SchedulesAndMethodsConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={
        "full": {
            "schedule_steps": 3000,
            "schedule_problems": 48,
            "milestones": (1000, 2000),
            "gamma": 0.999,
            "lasso_samples": 500,
            "lasso_features": 200,
            "lasso_informative": 20,
            "lasso_steps": 20000,
            "projection_steps": 1000,
            "newton_features": 200,
            "newton_samples": 2000,
        }
    },
    references=(
        "Robbins & Monro (1951), A stochastic approximation method",
        "Defossez & Bach (2015), Averaged least-mean-squares: bias-variance trade-offs and optimal sampling "
        "distributions, AISTATS",
        "Beck & Teboulle (2009), A fast iterative shrinkage-thresholding algorithm for linear inverse problems",
        "Duchi, Shalev-Shwartz, Singer & Chandra (2008), Efficient projections onto the l1-ball",
        "Moré & Sorensen (1983), Computing a trust region step",
        "Steihaug (1983), The conjugate gradient method and trust regions in large scale optimization",
        "Nocedal & Wright (2006), Numerical Optimization, 2nd ed., Alg. 3.1, 4.1, 7.1, 7.2",
    ),
    part="optimisation",
)
