r"""newton-saddles: Newton's method is attracted to saddle points, gradient descent is not.

Newton's step w <- w - H(w)^{-1} grad f(w) solves grad f = 0 by linearising the gradient: it does not look at the sign
of the curvature, so every non-degenerate critical point, a saddle included, attracts it (Dauphin et al. 2014). GD
moves along -grad f, which pushes away from a strict saddle along its negative-curvature direction: it converges to a
strict saddle only from the saddle's stable manifold, a set of measure zero (Lee et al. 2016).

The function is the double well f(x, y) = x^2 - y^2 + y^4/4: a strict saddle at (0, 0) (Hessian diag(2, -2)) between
the minima (0, +-sqrt 2) (f = -1, Hessian diag(2, 4)). Both coordinates separate, so the fate of every start is
known in closed form:

- Newton: x -> 0 in one step; y -> N(y) = 2y^3 / (3y^2 - 2). |N(y)| < |y| iff y^2 < 2/5, and no point outside
  (-sqrt(2/5), sqrt(2/5)) is ever mapped into it (N maps (sqrt(2/5), sqrt(2/3)) onto (-inf, -sqrt(2/5)) and
  (sqrt(2/3), inf) onto [sqrt 2, inf), symmetrically for y < 0), so Newton converges to the saddle iff |y_0| < sqrt(2/5)
  = 0.632, and there cubically: N(y) = -y^3 + O(y^5), because the y-gradient's second derivative vanishes at 0.
- GD at a step eta < 1/2: x shrinks by 1 - 2 eta, y <- y (1 + eta (2 - y^2)) never changes sign (|y| stays below
  sqrt(2 + 1/eta)) and grows by about 1 + 2 eta near 0, so every start with y_0 != 0 converges to the minimum
  (0, sign(y_0) sqrt 2), which is stable for eta < 1/2 (factors 1 - 2 eta and 1 - 4 eta).
- tdlab's Newton-CG with negative-curvature detection and an Armijo line search (`tdlab.optim.newton.newton_cg`,
  Nocedal & Wright 2006, Alg. 7.1) falls back to -grad f where CG meets negative curvature and only accepts descent:
  it behaves like GD near the saddle, the remedy the lectures point to.

Starts: `starts` points uniform in the square [-radius, radius]^2 around the saddle (radius 1 keeps the minima
outside). Pure Newton is the exact solve `torch.linalg.solve(H, g)` (the engine's Newton methods are the safeguarded
ones); GD is `tdlab.optim.reference.gd_step`. A run has reached a critical point when its last iterate is within
`tolerance` of it.

How the checks fail: a Newton that avoided saddles (damped, with negative-curvature detection, or saddle-free
|H|^{-1}) converges to the saddle from none of the starts, so the basin check counts hundreds of mismatches and the
Fisher test's p-value is 1; a Newton without second-order information (a quasi-Newton step, or a finite-difference
Hessian with a wrong sign) misses the basin boundary sqrt(2/5) and the cubic order; a GD that stopped at the saddle
(a start on y = 0, a wrong gradient sign in y) or jumped wells fails the GD checks.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from pydantic import Field
from scipy import stats
from torch import Tensor

from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.tidy import rows, select
from tdlab.optim.newton import newton_cg
from tdlab.optim.reference import gd_step
from tdlab.optim.test_functions import TestFunction

METHODS = ("newton", "gd", "newton-cg")
BASIN = math.sqrt(2.0 / 5.0)  # Newton's basin of the saddle: |y_0| < sqrt(2/5)
MINIMUM = math.sqrt(2.0)  # the minima (0, +-sqrt 2)
ALPHA = 0.05  # significance of Fisher's test
ORDER_TOLERANCE = 0.1  # on Newton's local order of convergence at the saddle
ORDER_WINDOW = (1e-12, 1e-2)  # |y_k| in this window: inside the cubic regime, far above underflow


class DoubleWell(TestFunction):
    """f(x, y) = x^2 - y^2 + y^4/4: a strict saddle at (0, 0) between the minima (0, +-sqrt 2), f* = -1.

    Example:
        >>> DoubleWell().hessian(torch.zeros(2, dtype=torch.float64)).diag().tolist()
        [2.0, -2.0]
    """

    name = "double-well"
    minimizers = ((0.0, MINIMUM), (0.0, -MINIMUM))
    saddles = ((0.0, 0.0),)
    xlim = (-1.5, 1.5)
    ylim = (-2.0, 2.0)

    def value(self, w: Tensor) -> Tensor:
        x, y = w[..., 0], w[..., 1]
        return x**2 - y**2 + y**4 / 4

    def gradient(self, w: Tensor) -> Tensor:
        x, y = w[..., 0], w[..., 1]
        return torch.stack([2 * x, y**3 - 2 * y], -1)

    def hessian(self, w: Tensor) -> Tensor:
        x, y = w[..., 0], w[..., 1]
        zero = torch.zeros_like(x)
        return torch.stack([torch.stack([2 + zero, zero], -1), torch.stack([zero, 3 * y**2 - 2], -1)], -2)


class NewtonSaddlesConfig(ExperimentConfig):
    """Random starts around the saddle of the double well and the length of each method's run."""

    starts: int = Field(400, ge=10, description="starts uniform in [-radius, radius]^2 (pure Newton and GD)")
    cg_starts: int = Field(100, ge=1, description="the first cg_starts of them also run Newton-CG (one at a time)")
    radius: float = Field(
        1.0, gt=BASIN, lt=MINIMUM, description="half-width of the square of starts (sqrt(2/5), sqrt 2)"
    )
    newton_steps: int = Field(100, ge=5, description="pure Newton steps")
    gd_steps: int = Field(400, ge=10, description="GD steps")
    eta: float = Field(0.1, gt=0.0, lt=0.5, description="GD step size (eta < 1/2: x contracts monotonically)")
    cg_iterations: int = Field(100, ge=5, description="Newton-CG iterations at most (stops at ||grad|| <= 1e-12)")
    tolerance: float = Field(1e-6, gt=0.0, lt=1e-2, description="a run has reached a critical point this close to it")


def _pure_newton(f: DoubleWell, w: Tensor, steps: int) -> Tensor:
    """`steps` undamped Newton steps w <- w - H^{-1} grad f on a batch of points (rows); the path (steps + 1, n, 2)."""
    path = [w]
    for _ in range(steps):
        w = w - torch.linalg.solve(f.hessian(w), f.gradient(w).unsqueeze(-1)).squeeze(-1)
        path.append(w)
    return torch.stack(path)


def local_order(y_path: np.ndarray) -> float:
    """log|y_{k+1}| / log|y_k| at the first k with |y_k| in ORDER_WINDOW and y_{k+1} != 0 (nan if none): the order
    of convergence to 0 (3 for a cubic, 2 for a quadratic, 1 for a linear rate)."""
    low, high = ORDER_WINDOW
    for now, after in zip(np.abs(y_path[:-1]), np.abs(y_path[1:]), strict=True):
        if low <= now <= high and after > 0:
            return float(np.log(after) / np.log(now))
    return math.nan


# ----------------------------------------------------------------------------------------------- measure
def measure(config: NewtonSaddlesConfig, context: Context) -> pd.DataFrame:
    """Run pure Newton and GD from every start and Newton-CG from the first `cg_starts`; record the last iterates.

    Rows: `start_x`, `start_y` (start); `final_x`, `final_y`, `final_f` (method, start); `newton_order` (start): the
    local order of convergence of pure Newton's y-coordinate, for the starts where it enters ORDER_WINDOW.
    """
    f = DoubleWell()
    generator = torch.Generator().manual_seed(config.seed)
    starts = (2 * torch.rand(config.starts, 2, generator=generator, dtype=torch.float64) - 1) * config.radius
    index = np.arange(config.starts)
    finals = {}
    with torch.no_grad():
        newton_path = _pure_newton(f, starts, config.newton_steps)
        finals["newton"] = newton_path[-1]
        w = starts
        for _ in context.track(range(config.gd_steps), "GD", config.gd_steps):
            w = gd_step(w, f.gradient(w), config.eta)
        finals["gd"] = w
    cg = [
        newton_cg(f.value, f.gradient, f.hvp, w0, gtol=1e-12, max_iter=config.cg_iterations).w
        for w0 in context.track(starts[: config.cg_starts], "Newton-CG", config.cg_starts)
    ]
    finals["newton-cg"] = torch.stack(cg)
    orders = np.array([local_order(newton_path[:, i, 1].numpy()) for i in range(config.starts)])
    frames = [rows("start_x", starts[:, 0].numpy(), start=index), rows("start_y", starts[:, 1].numpy(), start=index)]
    for method, last in finals.items():
        n = len(last)
        frames += [
            rows("final_x", last[:, 0].numpy(), method=method, start=index[:n]),
            rows("final_y", last[:, 1].numpy(), method=method, start=index[:n]),
            rows("final_f", f.value(last).numpy(), method=method, start=index[:n]),
        ]
    frames.append(rows("newton_order", orders[np.isfinite(orders)], start=index[np.isfinite(orders)]))
    return pd.concat(frames, ignore_index=True)


# ------------------------------------------------------------------------------------------------- checks
def outcomes(metrics: pd.DataFrame, method: str, tolerance: float) -> pd.DataFrame:
    """Per start of `method`: start_y, and where the run ended: "saddle", "minimum+", "minimum-" or "none"."""
    x = select(metrics, "final_x", method=method).set_index("start")["value"]
    y = select(metrics, "final_y", method=method).set_index("start")["value"]
    start_y = select(metrics, "start_y").set_index("start")["value"].loc[x.index]
    ended = np.full(len(x), "none", dtype=object)
    for label, (px, py) in (("saddle", (0.0, 0.0)), ("minimum+", (0.0, MINIMUM)), ("minimum-", (0.0, -MINIMUM))):
        ended[np.hypot(x.to_numpy() - px, y.to_numpy() - py) <= tolerance] = label
    return pd.DataFrame({"start_y": start_y.to_numpy(), "ended": ended}, index=x.index)


def checks(metrics: pd.DataFrame, config: NewtonSaddlesConfig) -> list[Check]:
    """Newton's basin of the saddle, its cubic order there, Fisher's test Newton vs GD, and GD's and Newton-CG's
    escape to the minimum on their side."""
    newton, gd = outcomes(metrics, "newton", config.tolerance), outcomes(metrics, "gd", config.tolerance)
    predicted = np.abs(newton["start_y"]) < BASIN
    at_saddle = newton["ended"] == "saddle"
    mismatches = int((predicted != at_saddle).sum())
    n = len(newton)
    result = [
        Check.at_most(
            "pure Newton ends at the saddle exactly from the starts with |y0| < sqrt(2/5): mismatches",
            float(mismatches),
            0.0,
            detail=f"{int(at_saddle.sum())} of {n} starts at the saddle, {int(predicted.sum())} predicted (expected "
            f"fraction sqrt(2/5)/radius = {BASIN / config.radius:.3f}); {int((newton['ended'] == 'none').sum())} "
            "unconverged; a saddle-avoiding Newton would end at the saddle from none",
        )
    ]
    orders = select(metrics, "newton_order")["value"].to_numpy()
    median = float(np.median(orders)) if len(orders) else math.nan
    result.append(
        Check.absolute(
            "pure Newton's order of convergence to the saddle (median log|y_k+1| / log|y_k|)",
            median,
            3.0,
            ORDER_TOLERANCE,
            detail=f"{len(orders)} starts, first |y_k| in {list(ORDER_WINDOW)}; range [{orders.min():.3f}, "
            f"{orders.max():.3f}]; N(y) = -y^3 + O(y^5): cubic, the saddle attracts strongly"
            if len(orders)
            else "no Newton run entered the window",
        )
    )
    gd_saddle = int((gd["ended"] == "saddle").sum())
    table = [[int(at_saddle.sum()), n - int(at_saddle.sum())], [gd_saddle, len(gd) - gd_saddle]]
    p_value = float(stats.fisher_exact(table, alternative="greater").pvalue)
    result.append(
        Check.at_most(
            f"Newton ends at the saddle more often than GD: Fisher's exact test p-value (alpha = {ALPHA})",
            p_value,
            ALPHA,
            detail=f"one-sided, counts at the saddle / elsewhere: Newton {table[0]}, GD {table[1]}",
        )
    )
    for method, label in (("gd", f"GD (eta = {config.eta:g})"), ("newton-cg", "Newton-CG (negative curvature -> -g)")):
        ended = outcomes(metrics, method, config.tolerance)
        saddle = int((ended["ended"] == "saddle").sum())
        worst = select(metrics, "final_f", method=method)["value"].max()
        result.append(
            Check.at_most(
                f"{label} ends at the saddle: count",
                float(saddle),
                0.0,
                detail=f"of {len(ended)} starts; only the measure-zero stable manifold y0 = 0 leads there",
            )
        )
        if method == "gd":  # y keeps its sign under GD with eta < 1/2: the well is known in advance
            expected = np.where(ended["start_y"] > 0, "minimum+", "minimum-")
            name, what = f"{label} ends at the minimum on the side of y0: mismatches", "the minimum on its side"
        else:  # the line search may cross to either well
            expected = np.where(ended["ended"] == "minimum-", "minimum-", "minimum+")
            name, what = f"{label} ends at a minimum: runs that do not", "a minimum"
        wrong = int((ended["ended"] != expected).sum())
        result.append(
            Check.at_most(
                name,
                float(wrong),
                0.0,
                detail=f"of {len(ended)} starts, each should reach {what}; largest final f {worst:.6g} (f* = -1)",
            )
        )
    return result


# ------------------------------------------------------------------------------------------------ figures
def figures(metrics: pd.DataFrame, config: NewtonSaddlesConfig) -> dict[str, Figure]:
    """Where each start ends, per method, on the contours of the double well."""
    f = DoubleWell()
    X, Y, Z = f.grid(200)
    colours = {"saddle": "C3", "minimum+": "C0", "minimum-": "C2", "none": "k"}
    fig = Figure(figsize=(14.0, 4.8), layout="constrained")
    axes = fig.subplots(1, len(METHODS), sharey=True)
    starts = select(metrics, "start_x").set_index("start")["value"]
    for ax, method in zip(axes, METHODS, strict=True):
        ended = outcomes(metrics, method, config.tolerance)
        ax.contour(X.numpy(), Y.numpy(), Z.numpy(), levels=np.linspace(-1, 3, 17), colors="0.8", linewidths=0.6)
        for label, colour in colours.items():
            chosen = ended["ended"] == label
            if chosen.any():
                ax.plot(
                    starts.loc[ended.index[chosen]],
                    ended["start_y"][chosen],
                    ".",
                    color=colour,
                    ms=4,
                    label=f"ends at {label} ({int(chosen.sum())})",
                )
        if method == "newton":
            for sign in (1, -1):
                ax.axhline(sign * BASIN, color="C3", ls="--", lw=0.8)
        ax.plot([0], [0], "x", color="C3", ms=10, mew=2)
        ax.plot([0, 0], [MINIMUM, -MINIMUM], "*", color="k", ms=10)
        ax.set_title(
            {
                "newton": "pure Newton (dashed: |y0| = sqrt(2/5))",
                "gd": f"gradient descent, eta = {config.eta:g}",
                "newton-cg": "Newton-CG with negative-curvature detection",
            }[method],
            fontsize=10,
        )
        ax.set_xlabel("x0")
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_ylabel("y0")
    fig.suptitle(r"Starts coloured by where they end on $f = x^2 - y^2 + y^4/4$ (x: saddle, *: minima)")
    return {"basins": fig}


EXPERIMENT = Experiment(
    name="newton-saddles",
    claim="Newton's method solves grad f = 0 and is attracted to saddle points: near a strict saddle it converges to "
    "it from a set of starts of positive measure, while gradient descent escapes from every start off the saddle's "
    "measure-zero stable manifold.",
    config=NewtonSaddlesConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={"full": {"starts": 4000, "cg_starts": 1000}},
    references=(
        "Dauphin et al. (2014), Identifying and attacking the saddle point problem in high-dimensional non-convex "
        "optimization, NeurIPS",
        "Lee, Simchowitz, Jordan & Recht (2016), Gradient descent only converges to minimizers, COLT",
        "Nocedal & Wright (2006), Numerical Optimization, 2nd ed., Alg. 7.1",
    ),
    part="optimisation",
)
