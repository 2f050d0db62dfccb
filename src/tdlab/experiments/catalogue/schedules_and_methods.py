"""schedules-and-methods: learning-rate schedules, proximal and projected gradient, Newton and trust region.

The optimisation lectures' methods beyond plain first-order steps, each measured against its reference:

1. schedules: power decay eta0 / (1 + t/t0)^p, exponential eta0 gamma^t and piecewise-constant steps, as
   functions of t (`tdlab.optim.schedules`), agree with the learning rates `tdlab.train.fit` applies under torch's
   `LambdaLR`, `ExponentialLR` and `MultiStepLR`;
2. proximal gradient descent (ISTA, Beck & Teboulle 2009): a bias-free linear model trained by `ProximalGD` through
   `tdlab.train.fit` on the lasso reaches scikit-learn's `Lasso` solution to 1e-6 with exact zeros exactly where it
   has them, within the O(1/k) bound of Beck & Teboulle (Thm. 3.1); the subgradient method, even with a decaying
   step, never produces an exact zero;
3. projected gradient descent onto a Euclidean ball, an L1 ball and a box never leaves the set and converges to
   the constrained minimiser (for the ball, the Moré-Sorensen solution of the trust-region subproblem);
4. Newton's method (`NewtonCG` through `tdlab.train.fit`) solves a quadratic (the least-squares loss of a linear
   model) in one step; trust-region Newton-CG (Steihaug-Toint CG, Nocedal & Wright Alg. 7.2 with the radius update
   of Alg. 4.1) converges on Rosenbrock's function, every step achieving at least the Cauchy decrease (Lemma 4.3).

The lectures' reference rules on the 2-D test functions (the subgradient step, projected GD on a shifted quadratic,
GD on Rosenbrock) are iterated by hand: the trajectory on the test function is the point.
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
from sklearn.linear_model import Lasso
from torch import Tensor, nn

from tdlab.data import half_squared_error
from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.tidy import rows, select, series, table, value
from tdlab.models import LinearModel
from tdlab.optim.newton import NewtonCG, newton_cg
from tdlab.optim.projected import ProjectedGD, project_box, project_l1_ball, project_l2_ball
from tdlab.optim.proximal import ProximalGD, subgradient_l1_step
from tdlab.optim.reference import gd_step
from tdlab.optim.schedules import ExponentialDecay, PiecewiseConstant, PowerDecay, learning_rates
from tdlab.optim.test_functions import ElongatedQuadratic, Rosenbrock
from tdlab.optim.trust_region import trust_region
from tdlab.theory.ista import ista_distance_bound, ista_objective_bound
from tdlab.theory.trust_region_subproblem import ball_constrained_minimizer, cauchy_decrease_bound
from tdlab.train.trainer import fit

SCHEDULES = {"power": "LambdaLR(PowerDecay)", "exponential": "ExponentialLR", "piecewise": "MultiStepLR"}
SHIFT = (2.0, 1.5)  # the unconstrained minimiser of the projected-GD objective, outside every set
SETS = {  # projection, constraint value, bound
    "l2 ball": (partial(project_l2_ball, radius=1.0), lambda x, y: np.sqrt(x**2 + y**2), 1.0),
    "l1 ball": (partial(project_l1_ball, radius=1.0), lambda x, y: np.abs(x) + np.abs(y), 1.0),
    "box": (partial(project_box, lower=-0.5, upper=0.5), lambda x, y: np.maximum(np.abs(x), np.abs(y)), 0.5),
}
ROSENBROCK = ("trust region", "damped newton", "gd")


class SchedulesAndMethodsConfig(ExperimentConfig):
    """Sizes and hyperparameters of the four measurements (defaults: the quick config)."""

    schedule_steps: int = Field(300, ge=10, description="steps over which the schedules are compared with torch's")
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


def _schedules(config: SchedulesAndMethodsConfig, device: torch.device) -> pd.DataFrame:
    """`lr` eta0 schedule(t) and `lr_torch`, the rate `fit` takes step t + 1 at under torch's scheduler (schedule,
    step t)."""
    lr_scheduler, T, eta0 = torch.optim.lr_scheduler, config.schedule_steps, config.eta0
    power = PowerDecay(config.power_t0, config.power_p)
    ours = {
        "power": (power, lambda o: lr_scheduler.LambdaLR(o, power)),
        "exponential": (ExponentialDecay(config.gamma), lambda o: lr_scheduler.ExponentialLR(o, config.gamma)),
        "piecewise": (
            PiecewiseConstant.multistep(config.milestones, config.milestone_gamma),
            lambda o: lr_scheduler.MultiStepLR(o, list(config.milestones), config.milestone_gamma),
        ),
    }
    frames, t = [], np.arange(T)
    for name, (schedule, scheduler) in ours.items():
        model = LinearModel(1, 1, bias=False)
        optimizer = torch.optim.SGD(model.parameters(), lr=eta0)
        trained = fit(
            model, nn.MSELoss(), (torch.zeros(1, 1), torch.zeros(1, 1)), optimizer, T, scheduler=scheduler(optimizer)
        )
        frames += [
            rows("lr", learning_rates(schedule, eta0, T), schedule=name, step=t),
            rows("lr_torch", select(trained.metrics, "lr")["value"], schedule=name, step=t),
        ]
    return pd.concat(frames)


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
    """Projected GD on f(w) = q(w - m), q the elongated quadratic (kappa = 10), m = SHIFT, onto three sets around 0:
    the iterates `x`, `y` (set, step) and, at the last, `gradient_mapping` ||w - P(w - eta grad f(w))|| / eta."""
    q, m, lr = ElongatedQuadratic(kappa=10.0), torch.tensor(SHIFT, dtype=torch.float64, device=device), 0.1
    frames, steps = [], np.arange(config.projection_steps + 1)
    for name, (projection, _, _) in SETS.items():
        w = torch.tensor([-0.5, -0.5], dtype=torch.float64, device=device, requires_grad=True)
        optimizer = ProjectedGD([w], lr=lr, projection=projection)
        path = [w.detach().clone()]
        for _ in range(config.projection_steps):
            w.grad = q.gradient(w.detach() - m)
            optimizer.step()
            path.append(w.detach().clone())
        final, path = path[-1], torch.stack(path).cpu().numpy()
        mapping = torch.linalg.vector_norm(final - projection(final - lr * q.gradient(final - m))) / lr
        frames += [rows("x", path[:, 0], set=name, step=steps), rows("y", path[:, 1], set=name, step=steps)]
        frames.append(rows("gradient_mapping", float(mapping), set=name))
    return pd.concat(frames)


def _exact_minimisers() -> dict[str, np.ndarray]:
    """Constrained minimisers of q(w - m): Moré-Sorensen for the ball; the box separates over coordinates."""
    A = np.diag([1.0, 10.0])
    return {"l2 ball": ball_constrained_minimizer(A, -A @ np.asarray(SHIFT), 1.0), "box": np.clip(SHIFT, -0.5, 0.5)}


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
    T, result = config.schedule_steps, []
    details = {
        "power": "the schedule object as a LambdaLR factor: the same formula, so agreement to rounding",
        "exponential": "ExponentialLR multiplies the rate by gamma at every step",
        "piecewise": "MultiStepLR multiplies the rate by gamma at each milestone",
    }
    for name, label in SCHEDULES.items():
        ours, theirs = (series(metrics, key, schedule=name)[1] for key in ("lr", "lr_torch"))
        result.append(
            Check.at_most(
                f"{name} schedule vs torch {label}: max relative difference over {T} steps",
                float(np.max(np.abs(ours - theirs) / ours)),
                1e-12,
                detail=f"{details[name]}; rounding accumulates to at most {T} ulps = {T * 2**-53:.1e} "
                "over the steps: tolerance 1e-12",
            )
        )
    return (
        result
        + _lasso_checks(metrics, config)
        + _projection_checks(metrics, config)
        + _second_order_checks(metrics, config)
    )


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
    for name, (_, size, bound) in SETS.items():
        x, y = (series(metrics, c, set=name)[1] for c in "xy")
        result.append(
            Check.at_most(
                f"projected GD, {name}: largest constraint value over the path",
                float(size(x[1:], y[1:]).max()),
                bound,
                tolerance=1e-12,
                detail=f"{'||w||_2' if name == 'l2 ball' else '||w||_1' if name == 'l1 ball' else '||w||_inf'} "
                f"<= {bound:g} at every one of {config.projection_steps} iterates (the unconstrained minimiser "
                f"{SHIFT} is outside); tolerance 1e-12 for rounding",
            )
        )
        if name in exact:
            source = "Moré & Sorensen (1983) secular equation" if name == "l2 ball" else "clip(m) (separable)"
            result.append(
                Check.at_most(
                    f"projected GD, {name}: distance of the last iterate to the constrained minimiser",
                    float(np.max(np.abs(np.array([x[-1], y[-1]]) - exact[name]))),
                    1e-10,
                    detail=f"exact minimiser by {source}; step 1/L converges linearly at rate 1 - 1/kappa = 0.9, "
                    f"0.9^{config.projection_steps} ~ {0.9**config.projection_steps:.0e}",
                )
            )
        else:
            result.append(
                Check.at_most(
                    f"projected GD, {name}: gradient mapping ||w - P(w - eta grad f(w))|| / eta at the last iterate",
                    value(metrics, "gradient_mapping", set=name),
                    1e-10,
                    detail="zero exactly at the constrained minimiser (Beck 2017, First-Order Methods in Optimization, "
                    "Thm. 10.7); linear convergence makes it ~0.9^steps",
                )
            )
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
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.subplots()
    labels = {
        "power": f"power: eta0 / (1 + t/{config.power_t0:g})^{config.power_p:g}",
        "exponential": f"exponential: eta0 {config.gamma:g}^t",
        "piecewise": f"piecewise constant: x{config.milestone_gamma:g} at {list(config.milestones)}",
    }
    t = np.arange(config.schedule_steps)
    every = max(1, config.schedule_steps // 30)
    for i, (name, torch_name) in enumerate(SCHEDULES.items()):
        ours, theirs = (series(metrics, key, schedule=name)[1] for key in ("lr", "lr_torch"))
        ax.semilogy(t, ours, "-", color=f"C{i}", label=labels[name])
        ax.semilogy(t[::every], theirs[::every], "o", color=f"C{i}", ms=4, mfc="none", label=f"torch {torch_name}")
    ax.set_xlabel("step t")
    ax.set_ylabel("learning rate eta_t")
    ax.set_title(f"Learning-rate schedules (eta0 = {config.eta0:g}): tdlab (lines) and torch.optim.lr_scheduler")
    ax.legend(fontsize=8)
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
        if name in exact:
            ax.plot(*exact[name], "P", color="k", ms=10, label="constrained minimiser (exact)")
        ax.set_title(f"{name}: w <- P(w - eta grad f(w)), eta = 1/L")
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(
        "Projected gradient descent on f(w) = ((x - 2)^2 + 10 (y - 1.5)^2) / 2: the iterates never leave the set"
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
        "Power, exponential and step schedules are LambdaLR factors matching torch's schedulers; proximal GD finds "
        "the lasso solution with exact zeros where subgradient descent never does; projected GD stays in its set; "
        "Newton solves a quadratic in one step and trust-region Newton-CG converges on Rosenbrock."
    ),
    config=SchedulesAndMethodsConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={
        "full": {
            "schedule_steps": 3000,
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
        "Beck & Teboulle (2009), A fast iterative shrinkage-thresholding algorithm for linear inverse problems",
        "Duchi, Shalev-Shwartz, Singer & Chandra (2008), Efficient projections onto the l1-ball",
        "Moré & Sorensen (1983), Computing a trust region step",
        "Steihaug (1983), The conjugate gradient method and trust regions in large scale optimization",
        "Nocedal & Wright (2006), Numerical Optimization, 2nd ed., Alg. 3.1, 4.1, 7.1, 7.2",
    ),
    part="optimisation",
)
