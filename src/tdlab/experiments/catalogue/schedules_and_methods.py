"""schedules-and-methods: learning-rate schedules, proximal and projected gradient, Newton and trust region.

The optimisation lectures' methods beyond plain first-order steps, each measured against its reference:

1. schedules: power decay eta0 / (1 + t/t0)^p, exponential eta0 gamma^t and piecewise-constant steps, as
   functions of t and as `LambdaLR` factors, agree with torch's `ExponentialLR` and `MultiStepLR`;
2. proximal gradient descent (ISTA, Beck & Teboulle 2009) on the lasso reaches scikit-learn's `Lasso` solution
   to 1e-6 with exact zeros exactly where it has them, within the O(1/k) bound of Beck & Teboulle (Thm. 3.1);
   the subgradient method, even with a decaying step, never produces an exact zero;
3. projected gradient descent onto a Euclidean ball, an L1 ball and a box never leaves the set and converges to
   the constrained minimiser (for the ball, the Moré-Sorensen solution of the trust-region subproblem);
4. Newton's method solves a quadratic (the least-squares loss of a linear model, via `Objective.hvp`) in one
   step; trust-region Newton-CG (Steihaug-Toint CG, Nocedal & Wright Alg. 7.2 with the radius update of Alg.
   4.1) converges on Rosenbrock's function, every step achieving at least the Cauchy decrease (Lemma 4.3).
"""

from __future__ import annotations

from collections.abc import Callable
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

from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig, Result, legacy
from tdlab.optim.newton import newton_cg, newton_step
from tdlab.optim.projected import ProjectedGD, project_box, project_l1_ball, project_l2_ball
from tdlab.optim.proximal import ProximalGD, subgradient_l1_step
from tdlab.optim.reference import gd_step
from tdlab.optim.schedules import ExponentialDecay, PiecewiseConstant, PowerDecay, learning_rates
from tdlab.optim.test_functions import ElongatedQuadratic, Rosenbrock
from tdlab.optim.trust_region import trust_region
from tdlab.oracles import Objective
from tdlab.theory.ista import ista_distance_bound, ista_objective_bound
from tdlab.theory.trust_region_subproblem import ball_constrained_minimizer, cauchy_decrease_bound


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


# ------------------------------------------------------------------------------------------------ schedules
def _torch_rates(make_scheduler: Callable[[torch.optim.Optimizer], object], steps: int, eta0: float) -> np.ndarray:
    """The lr that `torch.optim.lr_scheduler` sets at steps 0..steps-1 (one optimizer + scheduler step each)."""
    w = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([w], lr=eta0)
    scheduler = make_scheduler(optimizer)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return np.asarray(rates)


def _schedules(config: SchedulesAndMethodsConfig) -> tuple[dict, list[Check]]:
    lr_scheduler = torch.optim.lr_scheduler
    T, eta0 = config.schedule_steps, config.eta0
    power = PowerDecay(config.power_t0, config.power_p)
    exponential = ExponentialDecay(config.gamma)
    piecewise = PiecewiseConstant.multistep(config.milestones, config.milestone_gamma)
    curves = {
        "power": (
            learning_rates(power, eta0, T),
            _torch_rates(lambda o: lr_scheduler.LambdaLR(o, power), T, eta0),
            "LambdaLR(PowerDecay)",
        ),
        "exponential": (
            learning_rates(exponential, eta0, T),
            _torch_rates(lambda o: lr_scheduler.ExponentialLR(o, config.gamma), T, eta0),
            "ExponentialLR",
        ),
        "piecewise": (
            learning_rates(piecewise, eta0, T),
            _torch_rates(
                lambda o: lr_scheduler.MultiStepLR(o, list(config.milestones), config.milestone_gamma), T, eta0
            ),
            "MultiStepLR",
        ),
    }
    details = {
        "power": "the schedule object as a LambdaLR factor: the same formula, so agreement to rounding",
        "exponential": "ExponentialLR multiplies the rate by gamma at every step",
        "piecewise": "MultiStepLR multiplies the rate by gamma at each milestone",
    }
    checks = []
    for name, (ours, theirs, label) in curves.items():
        gap = float(np.max(np.abs(ours - theirs) / ours))
        checks.append(
            Check.at_most(
                f"{name} schedule vs torch {label}: max relative difference over {T} steps",
                gap,
                1e-12,
                detail=f"{details[name]}; rounding accumulates to at most {T} ulps = {T * 2**-53:.1e} "
                "over the steps: tolerance 1e-12",
            )
        )
    return curves, checks


# ------------------------------------------------------------------------------------------------ lasso
def _lasso(config: SchedulesAndMethodsConfig, device: torch.device) -> tuple[dict, list[Check]]:
    rng = np.random.default_rng(config.seed)
    n, d, k = config.lasso_samples, config.lasso_features, config.lasso_informative
    X = rng.standard_normal((n, d))
    w_true = np.zeros(d)
    w_true[:k] = rng.choice([-1.0, 1.0], k) * rng.uniform(0.5, 2.0, k)
    y = X @ w_true + config.lasso_noise * rng.standard_normal(n)
    alpha = config.lasso_alpha
    reference = Lasso(alpha=alpha, fit_intercept=False, tol=1e-14, max_iter=1_000_000).fit(X, y).coef_
    smooth_gradient = X.T @ (X @ reference - y) / n
    kkt = float(
        np.max(
            np.where(
                reference != 0,
                np.abs(smooth_gradient + alpha * np.sign(reference)),
                np.maximum(np.abs(smooth_gradient) - alpha, 0.0),
            )
        )
    )
    curvature = np.linalg.eigvalsh(X.T @ X / n)
    L, mu = float(curvature[-1]), float(curvature[0])

    Xt = torch.tensor(X, device=device)
    yt = torch.tensor(y, device=device)

    def objective(w: Tensor) -> float:
        return float(0.5 * ((Xt @ w - yt) ** 2).mean() + alpha * w.abs().sum())

    # ISTA through the ProximalGD optimiser, step 1/L
    w = torch.zeros(d, dtype=torch.float64, device=device, requires_grad=True)
    optimizer = ProximalGD([w], lr=1.0 / L, l1=alpha)
    ista = [w.detach().clone()]
    for _ in range(config.lasso_steps):
        optimizer.zero_grad()
        (0.5 * ((Xt @ w - yt) ** 2).mean()).backward()
        optimizer.step()
        ista.append(w.detach().clone())
    ista_path = torch.stack(ista).cpu().numpy()

    # subgradient method with the decaying step eta0 / sqrt(1 + t / t0) (the power schedule, p = 1/2)
    rates = learning_rates(PowerDecay(t0=10.0, p=0.5), 1.0 / L, config.lasso_steps)
    v = torch.zeros(d, dtype=torch.float64, device=device)
    subgradient = [v]
    for eta in rates:
        v = subgradient_l1_step(v, Xt.T @ (Xt @ v - yt) / n, float(eta), alpha)
        subgradient.append(v)
    subgradient_path = torch.stack(subgradient).cpu().numpy()

    F_star = objective(torch.tensor(reference, device=device))
    ista_gap = np.array([objective(torch.tensor(p, device=device)) for p in ista_path]) - F_star
    subgradient_gap = np.array([objective(torch.tensor(p, device=device)) for p in subgradient_path]) - F_star
    distance0 = float(np.linalg.norm(reference))
    iterations = np.arange(1, config.lasso_steps + 1)
    objective_ratio = float(np.max(ista_gap[1:] / ista_objective_bound(iterations, L, distance0)))
    distances = np.linalg.norm(ista_path - reference, axis=1)
    distance_bound = ista_distance_bound(np.arange(config.lasso_steps + 1), L, mu, distance0)
    floor = 1e-12  # below this the distance is rounding, not convergence
    resolved = (distance_bound > floor) & (np.arange(config.lasso_steps + 1) >= 1)
    distance_ratio = float(np.max(distances[resolved] / distance_bound[resolved]))

    final = ista_path[-1]
    max_error = float(np.max(np.abs(final - reference)))
    zero_mismatch = int(np.sum((final == 0) != (reference == 0)))
    subgradient_zeros = int(np.sum(subgradient_path[1:] == 0))
    checks = [
        Check.at_most(
            "lasso: max |ISTA - sklearn Lasso| over the coefficients",
            max_error,
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
            f"{float(np.max(np.abs(subgradient_path[-1][reference == 0]), initial=0.0)):.1e}",
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
    record = {
        "ista": ista_path,
        "subgradient": subgradient_path,
        "reference": reference,
        "ista_gap": ista_gap,
        "subgradient_gap": subgradient_gap,
        "L": L,
        "distance0": distance0,
        "kkt": kkt,
    }
    return record, checks


# ------------------------------------------------------------------------------------------------ projections
SHIFT = (2.0, 1.5)  # the unconstrained minimiser of the projected-GD objective, outside every set


def _projected(config: SchedulesAndMethodsConfig, device: torch.device) -> tuple[dict, list[Check]]:
    """Projected GD on f(w) = q(w - m), q the elongated quadratic, m = SHIFT, onto three sets around 0."""
    q = ElongatedQuadratic(kappa=10.0)
    m = torch.tensor(SHIFT, dtype=torch.float64, device=device)
    A = np.diag([1.0, q.kappa])
    sets = {
        "l2 ball": (partial(project_l2_ball, radius=1.0), lambda w: float(torch.linalg.vector_norm(w)), 1.0),
        "l1 ball": (partial(project_l1_ball, radius=1.0), lambda w: float(w.abs().sum()), 1.0),
        "box": (partial(project_box, lower=-0.5, upper=0.5), lambda w: float(w.abs().max()), 0.5),
    }
    # exact constrained minimisers: Moré-Sorensen for the ball; the box separates over coordinates for diagonal A
    exact = {
        "l2 ball": ball_constrained_minimizer(A, -A @ np.asarray(SHIFT), 1.0),
        "box": np.clip(np.asarray(SHIFT), -0.5, 0.5),
    }
    lr = 1.0 / q.kappa
    paths, checks = {}, []
    for name, (projection, size, bound) in sets.items():
        w = torch.tensor([-0.5, -0.5], dtype=torch.float64, device=device, requires_grad=True)
        optimizer = ProjectedGD([w], lr=lr, projection=projection)
        path = [w.detach().clone()]
        for _ in range(config.projection_steps):
            w.grad = q.gradient(w.detach() - m)
            optimizer.step()
            path.append(w.detach().clone())
        path_t = torch.stack(path)
        paths[name] = path_t.cpu().numpy()
        largest = max(size(p) for p in path_t[1:])
        checks.append(
            Check.at_most(
                f"projected GD, {name}: largest constraint value over the path",
                largest,
                bound,
                tolerance=1e-12,
                detail=f"{'||w||_2' if name == 'l2 ball' else '||w||_1' if name == 'l1 ball' else '||w||_inf'} "
                f"<= {bound:g} at every one of {config.projection_steps} iterates (the unconstrained minimiser "
                f"{SHIFT} is outside); tolerance 1e-12 for rounding",
            )
        )
        final = path_t[-1]
        if name in exact:
            error = float(np.max(np.abs(final.cpu().numpy() - exact[name])))
            source = "Moré & Sorensen (1983) secular equation" if name == "l2 ball" else "clip(m) (separable)"
            checks.append(
                Check.at_most(
                    f"projected GD, {name}: distance of the last iterate to the constrained minimiser",
                    error,
                    1e-10,
                    detail=f"exact minimiser by {source}; step 1/L converges linearly at rate 1 - 1/kappa = 0.9, "
                    f"0.9^{config.projection_steps} ~ {0.9**config.projection_steps:.0e}",
                )
            )
        else:
            mapping = float(torch.linalg.vector_norm(final - projection(final - lr * q.gradient(final - m))) / lr)
            checks.append(
                Check.at_most(
                    f"projected GD, {name}: gradient mapping ||w - P(w - eta grad f(w))|| / eta at the last iterate",
                    mapping,
                    1e-10,
                    detail="zero exactly at the constrained minimiser (Beck 2017, First-Order Methods in Optimization, "
                    "Thm. 10.7); linear convergence makes it ~0.9^steps",
                )
            )
    return {"paths": paths, "exact": exact, "sets": sets}, checks


# ------------------------------------------------------------------------------------------------ Newton, TR
def _newton_linear_model(config: SchedulesAndMethodsConfig, device: torch.device) -> tuple[float, Check]:
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
    objective = Objective(model, nn.MSELoss(), (X, y))
    theta0 = objective.flat_parameters()
    theta1 = newton_step(theta0, objective.gradient(theta0), lambda v: objective.hvp(v, theta0), forcing=0.0)
    design = torch.cat([X, torch.ones(n, 1, dtype=torch.float64)], 1)
    # normal equations (weight, bias) as flattened; torch.linalg.lstsq on CPU differs between calls by rounding
    solution = torch.linalg.solve(design.T @ design, design.T @ y).reshape(-1).to(device)
    error = float((theta1 - solution).abs().max())
    check = Check.at_most(
        "newton: one step on the least-squares loss of a linear model, max |theta_1 - theta*|",
        error,
        1e-10,
        detail=f"H^-1 g by CG on Objective.hvp to tolerance 0 ({d + 1} parameters, {n} examples); theta* by "
        "the normal equations (torch.linalg.solve); a quadratic's Newton step is exact",
    )
    return error, check


def _rosenbrock_methods(config: SchedulesAndMethodsConfig, device: torch.device) -> tuple[dict, list[Check]]:
    f = Rosenbrock()
    w0 = torch.tensor(f.start, dtype=torch.float64, device=device)
    w_star = torch.tensor(f.minimizers[0], dtype=torch.float64, device=device)
    tr = trust_region(f.value, f.gradient, f.hvp, w0, max_iter=config.trust_region_iterations)
    newton = newton_cg(f.value, f.gradient, f.hvp, w0, max_iter=config.trust_region_iterations, forcing=0.0)
    gd = [w0]
    for _ in range(config.trust_region_iterations * 10):
        gd.append(gd_step(gd[-1], f.gradient(gd[-1]), 1e-3))
    # Cauchy decrease at every TR iteration: predicted decrease against 1/2 ||g|| min(Delta, ||g|| / ||B||)
    ratios = []
    for k, (radius, predicted) in enumerate(zip(tr.radii, tr.predicted, strict=True)):
        w = tr.path[k]
        B_norm = float(torch.linalg.matrix_norm(f.hessian(w), ord=2))
        ratios.append(predicted / float(cauchy_decrease_bound(tr.grad_norms[k], radius, B_norm)))
    tr_error = float(torch.linalg.vector_norm(tr.w - w_star))
    newton_error = float(torch.linalg.vector_norm(newton.w - w_star))
    checks = [
        Check.at_most(
            "trust region on Rosenbrock from (-1.2, 1): distance to the minimiser (1, 1)",
            tr_error,
            1e-8,
            detail=f"converged={tr.converged} after {len(tr.radii)} iterations ({tr.num_hvp} Hessian-vector "
            "products); Steihaug-CG (N&W Alg. 7.2), radius update of Alg. 4.1, eta = 0.15, gtol 1e-10",
        ),
        Check.at_least(
            "trust region: min over iterations of model decrease / Cauchy bound",
            min(ratios),
            1.0,
            tolerance=1e-9,
            detail="N&W Lemma 4.3 and Thm. 7.3: every Steihaug step decreases the model by at least "
            "||g|| min(Delta, ||g|| / ||B||) / 2; tolerance 1e-9 for rounding",
        ),
        Check.at_most(
            "damped Newton (Newton-CG + Armijo) on Rosenbrock: distance to the minimiser",
            newton_error,
            1e-8,
            detail=f"converged={newton.converged} after {len(newton.step_sizes)} iterations, "
            f"{sum(a < 1 for a in newton.step_sizes)} damped (alpha < 1); N&W Alg. 7.1 / 3.1",
        ),
    ]
    record = {"tr": tr, "newton": newton, "gd": torch.stack(gd).cpu().numpy(), "ratios": ratios, "f": f}
    return record, checks


# ------------------------------------------------------------------------------------------------ the run
def run(config: SchedulesAndMethodsConfig, context: Context) -> Result:
    device = context.device
    rows: list[dict[str, object]] = []
    checks: list[Check] = []
    parts = ["schedules", "lasso", "projections", "newton", "trust region"]
    results: dict[str, object] = {}
    for part in context.track(parts, "schedules and methods"):
        if part == "schedules":
            results[part], found = _schedules(config)
        elif part == "lasso":
            results[part], found = _lasso(config, device)
        elif part == "projections":
            results[part], found = _projected(config, device)
        elif part == "newton":
            results[part], check = _newton_linear_model(config, device)
            found = [check]
        else:
            results[part], found = _rosenbrock_methods(config, device)
        checks.extend(found)

    curves = results["schedules"]
    for name, (ours, theirs, _) in curves.items():
        rows.extend({"schedule": name, "step": t, "name": "lr", "value": float(v)} for t, v in enumerate(ours))
        rows.extend({"schedule": name, "step": t, "name": "lr_torch", "value": float(v)} for t, v in enumerate(theirs))
    lasso = results["lasso"]
    for method in ("ista", "subgradient"):
        for t, gap in enumerate(lasso[f"{method}_gap"]):
            rows.append({"method": method, "step": t, "name": "objective_gap", "value": float(gap)})
            rows.append(
                {"method": method, "step": t, "name": "exact_zeros", "value": float(np.sum(lasso[method][t] == 0))}
            )
    projections = results["projections"]
    for name, path in projections["paths"].items():
        rows.extend({"set": name, "step": t, "name": "x", "value": float(p[0])} for t, p in enumerate(path))
        rows.extend({"set": name, "step": t, "name": "y", "value": float(p[1])} for t, p in enumerate(path))
    rows.append({"method": "newton", "name": "one_step_error_linear_model", "value": results["newton"]})
    rosenbrock = results["trust region"]
    w_star = np.asarray(rosenbrock["f"].minimizers[0])
    for method, path in (
        ("trust region", rosenbrock["tr"].path.cpu().numpy()),
        ("damped newton", rosenbrock["newton"].path.cpu().numpy()),
    ):
        rows.extend(
            {"method": method, "step": t, "name": "distance_to_minimiser", "value": float(e)}
            for t, e in enumerate(np.linalg.norm(path - w_star, axis=1))
        )
    rows.extend(
        {"method": "trust region", "step": t, "name": "radius", "value": r}
        for t, r in enumerate(rosenbrock["tr"].radii)
    )

    figures = {
        "schedules": _schedule_figure(curves, config),
        "lasso_paths": _lasso_figure(lasso, config),
        "projected_gd": _projection_figure(projections),
        "newton_trust_region": _rosenbrock_figure(rosenbrock),
    }
    return Result(pd.DataFrame(rows), checks, figures)


# ------------------------------------------------------------------------------------------------ figures
def _schedule_figure(curves: dict, config: SchedulesAndMethodsConfig) -> Figure:
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.subplots()
    labels = {
        "power": f"power: eta0 / (1 + t/{config.power_t0:g})^{config.power_p:g}",
        "exponential": f"exponential: eta0 {config.gamma:g}^t",
        "piecewise": f"piecewise constant: x{config.milestone_gamma:g} at {list(config.milestones)}",
    }
    t = np.arange(config.schedule_steps)
    every = max(1, config.schedule_steps // 30)
    for i, (name, (ours, theirs, torch_name)) in enumerate(curves.items()):
        ax.semilogy(t, ours, "-", color=f"C{i}", label=labels[name])
        ax.semilogy(t[::every], theirs[::every], "o", color=f"C{i}", ms=4, mfc="none", label=f"torch {torch_name}")
    ax.set_xlabel("step t")
    ax.set_ylabel("learning rate eta_t")
    ax.set_title(f"Learning-rate schedules (eta0 = {config.eta0:g}): tdlab (lines) and torch.optim.lr_scheduler")
    ax.legend(fontsize=8)
    return fig


def _lasso_figure(lasso: dict, config: SchedulesAndMethodsConfig) -> Figure:
    fig = Figure(figsize=(15, 4.8), layout="constrained")
    axes = fig.subplots(1, 3)
    steps = np.arange(config.lasso_steps + 1)
    zero_set = lasso["reference"] == 0
    for ax, method, title in (
        (axes[0], "ista", "Proximal GD (ISTA)"),
        (axes[1], "subgradient", "Subgradient method, step (1/L)/sqrt(1 + t/10)"),
    ):
        path = lasso[method]
        for j in range(path.shape[1]):
            ax.plot(
                steps[1:],
                path[1:, j],
                color="tab:red" if zero_set[j] else "tab:blue",
                lw=0.9,
                alpha=0.8 if zero_set[j] else 1.0,
            )
        for value in lasso["reference"][~zero_set]:
            ax.axhline(value, color="k", ls=":", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.set_xlabel("iteration k")
        ax.set_ylabel("coefficient w_j (symlog)")
        ax.set_title(f"{title}\nred: sklearn's zeros, blue: its non-zeros (dotted)")
    ax = axes[2]
    for method, color in (("ista", "tab:green"), ("subgradient", "tab:purple")):
        zeros = (lasso[method] == 0).sum(1)
        ax.plot(steps, zeros, color=color, label=f"{method}: exact zeros")
    ax.axhline(int(zero_set.sum()), color="k", ls="--", lw=1, label="sklearn Lasso: exact zeros")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(0, steps[-1])
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


def _projection_figure(projections: dict) -> Figure:
    fig = Figure(figsize=(15, 5), layout="constrained")
    shapes = {
        "l2 ball": Circle((0, 0), 1.0, fill=False, color="tab:blue", lw=2),
        "l1 ball": Polygon([(1, 0), (0, 1), (-1, 0), (0, -1)], closed=True, fill=False, color="tab:blue", lw=2),
        "box": Rectangle((-0.5, -0.5), 1.0, 1.0, fill=False, color="tab:blue", lw=2),
    }
    for ax, (name, path) in zip(fig.subplots(1, 3), projections["paths"].items(), strict=True):
        _quadratic_contours(ax)
        ax.add_patch(shapes[name])
        ax.plot(path[:, 0], path[:, 1], "o-", color="tab:red", ms=3, lw=1, label="projected GD iterates")
        if name in projections["exact"]:
            ax.plot(*projections["exact"][name], "P", color="k", ms=10, label="constrained minimiser (exact)")
        ax.set_title(f"{name}: w <- P(w - eta grad f(w)), eta = 1/L")
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(
        "Projected gradient descent on f(w) = ((x - 2)^2 + 10 (y - 1.5)^2) / 2: the iterates never leave the set"
    )
    return fig


def _rosenbrock_figure(record: dict) -> Figure:
    f, tr, newton = record["f"], record["tr"], record["newton"]
    fig = Figure(figsize=(14, 5.5), layout="constrained")
    ax, ax_error = fig.subplots(1, 2)
    X, Y, Z = (a.numpy() for a in f.grid(300))
    ax.contour(X, Y, Z + 1e-3, levels=np.logspace(-1, 3.3, 20), norm=LogNorm(), cmap="Greys", linewidths=0.7)
    tr_path, newton_path = tr.path.cpu().numpy(), newton.path.cpu().numpy()
    accepted = np.r_[True, np.any(np.diff(tr_path, axis=0) != 0, axis=1)]
    for k in np.flatnonzero(accepted[:-1] if len(tr.radii) else []):
        ax.add_patch(Circle(tr_path[k], tr.radii[k], fill=False, color="tab:blue", lw=0.5, alpha=0.35))
    ax.plot(
        tr_path[accepted, 0], tr_path[accepted, 1], "o-", color="tab:blue", ms=4, label="trust region (Steihaug-CG)"
    )
    ax.plot(newton_path[:, 0], newton_path[:, 1], "s-", color="tab:orange", ms=4, label="damped Newton (Armijo)")
    ax.plot(
        record["gd"][:, 0],
        record["gd"][:, 1],
        "-",
        color="tab:gray",
        lw=1.5,
        label=f"GD, eta = 1e-3, {len(record['gd']) - 1} steps",
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
    gd_error = np.linalg.norm(record["gd"] - w_star, axis=1)
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
    **legacy(run),
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
