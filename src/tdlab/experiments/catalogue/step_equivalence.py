r"""step-equivalence: trust-region, proximal and projected steps are the same step: as eta -> 0, lambda -> infinity
and r -> 0 they trace the same curve, the gradient-flow curve, each on its own clock.

At w_t with g = grad f(w_t), the linear model l(w) = f(w_t) + g^T (w - w_t) gives three steps:

- proximal: argmin_w l(w) + |w - w_t|^2 / (2 eta) = w_t - eta g, gradient descent (weight lambda = 1/eta);
- trust region: argmin_{|w - w_t| <= r} l(w) = w_t - r g / |g|;
- projected: the gradient step w_t - eta g projected onto the ball of radius r around w_t, with r = clip * eta: a
  gradient step where |g| <= clip, a trust-region step where not (gradient clipping);

and a fourth, the trust-region step of the quadratic model f(w_t) + g^T p + p^T H p / 2, p = -(H + lambda I)^{-1} g
with lambda = lambda(r) the ball's multiplier (Moré & Sorensen 1983;
`tdlab.theory.trust_region_subproblem.trust_region_step`).
The tests check each step against its argmin, and against `tdlab.optim.trust_region.steihaug_cg` (on the linear
model) and `tdlab.optim.projected.project_l2_ball`.

All four are one-step methods w_{k+1} = w_k + h F(w_k) + h^2 D(w_k) + ... for a time change of gradient flow,
F = -c(w) grad f: c = 1 (clock: time t) for the proximal step (h = eta), c = 1/|g| (clock: arc length s) for both
trust regions (h = r), c = min(1, clip/|g|) for the projected step (h = eta). A positive c changes the speed, not
the curve, so all four follow the gradient-flow curve, and Euler's analysis (Hairer, Norsett & Wanner 1993, Thm
II.8.1) says how far: the Hausdorff distance between a path and the curve is d_H(h) = C h + O(h^2) with
C = max_t |e(t) . nu| (nu the curve's normal), e' = J e + D - J F / 2, e(0) = 0 (`tdlab.theory.small_steps`).
For the quadratic model D = (I - u u^T) H u / |g| (u = g / |g|): the step turns from -g by an angle
|(I - u u^T) H u| r / |g| + O(r^2) and lambda(r) r / |g| = 1 - u^T H u r / |g| + O(r^2) -> 1, so it approaches the
linear model's step. On the arc-length clock D = J F exactly, so e_quadratic = -e_linear: the two trust-region
paths stray by the same C r, on opposite sides of the curve.

Setting: the Rosenbrock valley f = (1 - x)^2 + b (y - x^2)^2 (the formulas of
`tdlab.optim.test_functions.Rosenbrock`, in NumPy), from `start`; every path is cut where f first falls to `level`
(at the exact crossing on its last segment), so that all cover the same stretch of the curve whatever their clock.
The flows and each method's e(t) are integrated by LSODA at rtol 1e-11 to the same level (`one_step_error`); the
arc-length flow at 50001 equally spaced points gives the curve against which d_H is measured (its chords stray
from it by ~1e-8). The quadratic model's subproblem is solved at `points` places along the curve for radii
r = `fraction` |g| / |H| 2^-j, where the expansions apply.

Checks (each can fail):

1. per method, the order: the slope of log d_H against log h is 1 within 0.1. A method that follows another curve
   (the l-infinity trust region w - r sign(g), a projection onto the ball around w_0 instead of w_t) keeps d_H of
   order 1 (slope ~0); `tests/experiments/test_step_equivalence.py` runs both;
2. per method, the constant: d_H / h, extrapolated to h -> 0 from the two smallest steps (Richardson), equals C
   within 3%: a step of the wrong length (the proximal step at 1.1 eta, a test) changes C by as much;
3. the two trust regions: d_H between their paths over r, extrapolated, equals max_t |e_quadratic - e_linear| . nu
   = 2 C within 3%: a subproblem solver that drops H makes the paths coincide (0);
4. the clocks: steps x h to the level equal each method's duration (time 2.38, arc length 2.72, clipped time 2.77)
   within 0.5% at the smallest h: a step of another length, or a method on another clock, fails it;
5. the quadratic model: (1 - lambda(r) r / |g|) / (u^T H u r / |g|) -> 1 and the step's angle to -g over
   |(I - u u^T) H u| r / |g| -> 1 at the smallest radius, within 2% at every place: a subproblem solver that drops
   H gives 0 (lambda = |g| / r exactly, the step along -g), one that flips H's sign gives -1.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from numpy.typing import NDArray
from pydantic import Field, model_validator
from scipy.optimize import brentq
from scipy.spatial import cKDTree

from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.tidy import rows, select, series, table, value
from tdlab.theory.small_steps import (
    across_curve,
    one_step_error,
    small_radius_angle,
    small_radius_multiplier,
)
from tdlab.theory.trust_region_subproblem import trust_region_step

Array = NDArray[np.float64]
Step = Callable[[Array], Array]

METHODS = ("proximal", "trust-region", "projected", "trust-region-quadratic")
LABELS = {
    "proximal": "proximal (gradient) step",
    "trust-region": "trust region, linear model",
    "projected": "projected gradient step",
    "trust-region-quadratic": "trust region, quadratic model",
}
PARAMETER = {"proximal": "eta", "trust-region": "r", "projected": "eta", "trust-region-quadratic": "r"}
CLOCK = {
    "proximal": "time t",
    "trust-region": "arc length s",
    "projected": "clipped time",
    "trust-region-quadratic": "arc length s",
}
ORDER_TOLERANCE = 0.1  # on the slope of log d_H vs log h (quick: 1.01-1.06 over h_0 .. h_0/8, full 1.01-1.03)
CONSTANT_TOLERANCE = 0.03  # relative, on the extrapolated d_H / h (quick: within 0.4%, full: within 0.2%)
CLOCK_TOLERANCE = 0.005  # relative, on steps x h at the smallest h (quick: within 0.04%)
EXPANSION_TOLERANCE = 0.02  # relative, on the quadratic model's first-order terms at the smallest radius (0.3%)
RTOL, ATOL = 1e-11, 1e-13  # of the flow and error-coefficient integrations (LSODA)
DENSE = 50001  # equally spaced times at which each flow and its e(t) are evaluated; on the arc-length clock they
# give the curve for the distances, whose chords then stray from it by ~1e-8 (0.03% of the smallest distance)
HORIZON = 1e4  # the flows must reach the level before this time on their clock
FIGURE_POINTS = 400  # points of each method's transverse error kept for the figure


class StepEquivalenceConfig(ExperimentConfig):
    """The Rosenbrock valley, where the paths are cut, the largest step of each method and the halvings."""

    b: float = Field(10.0, gt=0.0, description="valley steepness of f = (1 - x)^2 + b (y - x^2)^2")
    start: tuple[float, float] = Field((-1.2, 1.0), description="the common starting point w_0")
    level: float = Field(0.05, gt=0.0, description="every path and the flow are cut where f first falls to this")
    eta: float = Field(0.004, gt=0.0, description="the largest eta of the proximal and projected steps")
    radius: float = Field(0.02, gt=0.0, description="the largest radius r of the two trust-region steps")
    clip: float = Field(1.5, gt=0.0, description="projected step: ball radius clip * eta (clipped where |g| > clip)")
    halvings: int = Field(4, ge=3, le=10, description="steps h_0 / 2^j, j = 0..halvings - 1")
    flow_points: int = Field(4000, ge=500, description="points of the stored flow curve (equal arc length, figures)")
    points: int = Field(3, ge=1, description="places along the flow where the quadratic model's subproblem is solved")
    fraction: float = Field(0.1, gt=0.0, lt=1.0, description="largest subproblem radius, in units of |g| / |H|")
    radii: int = Field(6, ge=3, description="subproblem radii fraction |g| / |H| 2^-j, j = 0..radii - 1")

    @model_validator(mode="after")
    def _consistent(self) -> StepEquivalenceConfig:
        f0 = float(Valley(self.b).value(np.asarray(self.start)))
        if self.level >= f0:
            raise ValueError(f"level: expected a value below f(start) = {f0:.4g}, got {self.level}")
        return self


def step_sizes(config: StepEquivalenceConfig, method: str) -> Array:
    """h_0 / 2^j: eta for the proximal and projected steps, r for the trust regions."""
    largest = config.radius if PARAMETER[method] == "r" else config.eta
    return largest / 2.0 ** np.arange(config.halvings)


# ------------------------------------------------------------------------------------------------ the valley
class Valley:
    """f(x, y) = (1 - x)^2 + b (y - x^2)^2 with its gradient and Hessian in NumPy, on points of shape (..., 2): the
    formulas of `tdlab.optim.test_functions.Rosenbrock` (a = 1), whose torch calls cost ~100x more for one point,
    and the paths take ~10^4 steps of one point.

    Example:
        >>> Valley(10.0).gradient(np.array([0.0, 1.0])).tolist()  # (-2 (1 - x) - 4 b x r, 2 b r), r = y - x^2
        [-2.0, 20.0]
    """

    def __init__(self, b: float):
        self.b = b

    def value(self, w: Array) -> Array:
        x, y = _coordinates(w)
        return (1.0 - x) ** 2 + self.b * (y - x * x) ** 2

    def gradient(self, w: Array) -> Array:
        x, y = _coordinates(w)
        r = y - x * x
        gx, gy = -2.0 * (1.0 - x) - 4.0 * self.b * x * r, 2.0 * self.b * r
        return np.array([gx, gy]) if w.ndim == 1 else np.stack([gx, gy], axis=-1)

    def hessian(self, w: Array) -> Array:
        x, y = _coordinates(w)
        fxx = 2.0 - 4.0 * self.b * y + 12.0 * self.b * x * x
        fxy, fyy = -4.0 * self.b * x, 2.0 * self.b + 0.0 * x
        if w.ndim == 1:
            return np.array([[fxx, fxy], [fxy, fyy]])
        return np.stack([np.stack([fxx, fxy], -1), np.stack([fxy, fyy], -1)], -2)


def _coordinates(w: Array) -> tuple:
    """x and y of points (..., 2); Python floats for one point (its arithmetic ~10x faster than NumPy scalars')."""
    return tuple(w.tolist()) if w.ndim == 1 else (w[..., 0], w[..., 1])


# ------------------------------------------------------------------------------------------------ the steps
def proximal_step(w: Array, g: Array, eta: float) -> Array:
    """argmin_v g^T (v - w) + |v - w|^2 / (2 eta) = w - eta g: the proximal step of the linear model.

    Example:
        >>> proximal_step(np.array([1.0, 1.0]), np.array([2.0, 0.0]), 0.25).tolist()
        [0.5, 1.0]
    """
    return w - eta * g


def trust_region_linear_step(w: Array, g: Array, radius: float) -> Array:
    """argmin_{|v - w| <= r} g^T (v - w) = w - r g / |g|: the linear model's minimum is on the boundary, along -g.

    Example:
        >>> trust_region_linear_step(np.zeros(2), np.array([3.0, 4.0]), 1.0).tolist()
        [-0.6, -0.8]
    """
    return w - radius * g / np.linalg.norm(g)


def projected_step(w: Array, g: Array, eta: float, radius: float) -> Array:
    """The gradient step u = w - eta g projected onto the ball of radius r around w: w + (u - w) min(1, r / |u - w|).

    Example:
        >>> projected_step(np.array([1.0, 0.0]), np.array([0.0, 10.0]), 1.0, 2.0).tolist()
        [1.0, -2.0]
    """
    offset = -eta * g
    return w + offset * min(1.0, radius / max(float(np.linalg.norm(offset)), np.finfo(float).tiny))


def trust_region_quadratic_step(w: Array, g: Array, H: Array, radius: float) -> Array:
    """w + argmin_{|p| <= r} g^T p + p^T H p / 2, p = -(H + lambda I)^{-1} g (Moré & Sorensen 1983).

    Example:
        >>> trust_region_quadratic_step(np.zeros(2), np.array([-3.0, -4.0]), np.eye(2), 1.0).round(12).tolist()
        [0.6, 0.8]
    """
    return w + trust_region_step(H, g, radius).step


def step_rule(method: str, f: Valley, h: float, clip: float) -> Step:
    """One step of `method` with parameter h (eta or r) on f, as a function of w."""
    if method == "proximal":
        return lambda w: proximal_step(w, f.gradient(w), h)
    if method == "trust-region":
        return lambda w: trust_region_linear_step(w, f.gradient(w), h)
    if method == "projected":
        return lambda w: projected_step(w, f.gradient(w), h, clip * h)
    if method == "trust-region-quadratic":
        return lambda w: trust_region_quadratic_step(w, f.gradient(w), f.hessian(w), h)
    raise ValueError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")


def descend(f: Valley, step: Step, start: Array, level: float, max_steps: int) -> tuple[Array, float, bool]:
    """Iterate `step` from `start` until f first falls to `level`; the path ends at the exact crossing on the last
    segment. Returns (the path, shape (k + 2, 2), the fractional number of steps k + alpha to the crossing, True),
    or (the path of max_steps steps, max_steps, False) if f never falls that far.

    Example:
        >>> path, steps, reached = descend(Valley(10.0), lambda w: w + 0.5, np.zeros(2), 0.0, 9)
        >>> path[-1].tolist(), steps, reached  # f = 0 only at (1, 1): one step and a full second
        ([1.0, 1.0], 2.0, True)
    """
    w = np.asarray(start, dtype=float)
    path = [w]
    for k in range(max_steps):
        new = step(w)
        if f.value(new) <= level:
            alpha = _crossing(f, w, new, level)
            path.append(w + alpha * (new - w))
            return np.array(path), k + alpha, True
        w = new
        path.append(w)
    return np.array(path), float(max_steps), False


def _crossing(f: Valley, w: Array, new: Array, level: float) -> float:
    """The alpha in (0, 1] with f(w + alpha (new - w)) = level, for f(w) > level >= f(new)."""
    return brentq(lambda a: f.value(w + a * (new - w)) - level, 0.0, 1.0, xtol=1e-15)


# ------------------------------------------------------------------------------------------------ the flows
def continuous_limit(method: str, f: Valley, clip: float) -> tuple[Callable, Callable, Callable | None]:
    """(F, J, D) of the method as a one-step method for x' = F(x) = -c(x) grad f (module docstring): c = 1, 1/|g|,
    min(1, clip/|g|); D = (I - u u^T) H u / |g| for the quadratic model, else None."""

    def speed(s: float) -> tuple[float, float]:  # c(|g|) and its derivative in |g|
        if method == "proximal":
            return 1.0, 0.0
        if method == "projected":
            return (1.0, 0.0) if s <= clip else (clip / s, -clip / s**2)
        return 1.0 / s, -1.0 / s**2

    def field(x: Array) -> Array:
        g = f.gradient(x)
        return -speed(math.hypot(*g))[0] * g

    def jacobian(x: Array) -> Array:
        g, H = f.gradient(x), f.hessian(x)
        s = math.hypot(*g)
        c, dc = speed(s)
        return -c * H - (dc / s) * g[:, None] * (H @ g)[None, :]

    def correction(x: Array) -> Array:
        g, H = f.gradient(x), f.hessian(x)
        s = math.hypot(*g)
        u = g / s
        Hu = H @ u
        return (Hu - (u @ Hu) * u) / s

    return field, jacobian, (correction if method == "trust-region-quadratic" else None)


def arc_length(path: Array) -> Array:
    """The cumulative length along a polyline (rows: points), starting at 0.

    Example:
        >>> arc_length(np.array([[0.0, 0.0], [3.0, 4.0], [3.0, 5.0]])).tolist()
        [0.0, 5.0, 6.0]
    """
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))])


# ------------------------------------------------------------------------------------------------ measure
def measure(config: StepEquivalenceConfig, context: Context) -> pd.DataFrame:
    """The flow curve, each method's path at each step size and its Hausdorff distance to the curve, the theory
    (durations, the error across the curve), and the quadratic model's trust-region subproblem along the curve.

    Rows: `flow` (index, coordinate): the gradient-flow curve at equal arc length; `path` (method, h, step,
    coordinate): the iterates, the last one the crossing of the level; `steps_to_level`, `reached` and `hausdorff`
    (method, h): the fractional steps to the level, whether it was reached, and d_H(path, flow curve);
    `pair_hausdorff` (h): d_H between the two trust regions' paths; `duration` (method): the flow's length on the
    method's clock; `across` (method, position): e . nu against the arc length along the curve, and
    `transverse_constant` (method), its largest size C; `pair_constant`: max |e_quadratic . nu - e_linear . nu|;
    `model_gradient` (point, coordinate), `model_hessian` (point, row, column), `multiplier` and `step_angle`
    (point, radius): lambda(r) and the angle between the step and -g.
    """
    f = Valley(config.b)
    start = np.asarray(config.start, dtype=float)

    def stop(x: Array) -> float:
        return float(f.value(x)) - config.level

    frames, durations, profiles = [], {}, {}
    for method in context.track(METHODS, "flows"):
        field, jacobian, correction = continuous_limit(method, f, config.clip)
        limit = one_step_error(field, jacobian, start, stop, HORIZON, correction, points=DENSE, rtol=RTOL, atol=ATOL)
        durations[method] = limit.duration
        profiles[method] = across_curve(limit.e, f.gradient(limit.x))
        position = arc_length(limit.x)
        keep = np.linspace(0, DENSE - 1, FIGURE_POINTS).round().astype(int)
        frames += [
            rows("duration", limit.duration, method=method),
            rows("transverse_constant", np.abs(profiles[method]).max(), method=method),
            rows("across", profiles[method][keep], method=method, position=position[keep]),
        ]
        if method == "trust-region":  # on the arc-length clock: the curve at equal arc length
            curve = limit.x
            stored = curve[np.linspace(0, DENSE - 1, config.flow_points).round().astype(int)]
            frames += [
                rows("flow", stored, index=np.arange(config.flow_points)[:, None], coordinate=[0, 1]),
                _subproblem_rows(f, curve, config),
            ]
    pair = np.abs(profiles["trust-region-quadratic"] - profiles["trust-region"]).max()  # same clock, same grid
    frames.append(rows("pair_constant", pair))
    paths = {}
    runs = [(method, h) for method in METHODS for h in step_sizes(config, method)]
    for method, h in context.track(runs, "paths"):
        max_steps = int(np.ceil(3.0 * durations[method] / h)) + 10
        path, steps, reached = descend(f, step_rule(method, f, float(h), config.clip), start, config.level, max_steps)
        paths[method, h] = path
        frames.append(path_rows(method, h, path, steps, reached, curve, stored))
    for h in step_sizes(config, "trust-region"):
        pair = hausdorff(paths["trust-region", h], paths["trust-region-quadratic", h])
        frames.append(rows("pair_hausdorff", pair, h=h))
    return pd.concat(frames, ignore_index=True)


def path_rows(
    method: str, h: float, path: Array, steps: float, reached: bool, curve: Array, samples: Array
) -> pd.DataFrame:
    """The rows of one path: `path` (step, coordinate), `steps_to_level`, `reached`, and `hausdorff`, its distance
    to the flow curve (a dense polyline `curve`, of which `samples` are the points whose distance to the path is
    taken)."""
    return pd.concat(
        [
            rows("path", path, method=method, h=h, step=np.arange(len(path))[:, None], coordinate=[0, 1]),
            rows("steps_to_level", steps, method=method, h=h),
            rows("reached", float(reached), method=method, h=h),
            rows("hausdorff", hausdorff(path, curve, samples), method=method, h=h),
        ],
        ignore_index=True,
    )


def _subproblem_rows(f: Valley, curve: Array, config: StepEquivalenceConfig) -> pd.DataFrame:
    """The quadratic model's trust-region step at `points` places of equal arc length along the curve (from the
    start on), for radii fraction |g| / |H| 2^-j: its multiplier and its angle to -g."""
    s = arc_length(curve)
    frames = []
    for i in range(config.points):
        x = curve[np.searchsorted(s, s[-1] * i / config.points)]
        g, H = f.gradient(x), f.hessian(x)
        radii = config.fraction * np.linalg.norm(g) / np.linalg.norm(H, 2) / 2.0 ** np.arange(config.radii)
        multipliers, angles = [], []
        for r in radii:
            p, lam = trust_region_step(H, g, r)
            multipliers.append(lam)
            angles.append(np.arctan2(abs(p[0] * g[1] - p[1] * g[0]), -(p @ g)))
        frames += [
            rows("model_gradient", g, point=i, coordinate=[0, 1]),
            rows("model_hessian", H, point=i, row=np.arange(2)[:, None], column=[0, 1]),
            rows("multiplier", multipliers, point=i, radius=radii),
            rows("step_angle", angles, point=i, radius=radii),
        ]
    return pd.concat(frames, ignore_index=True)


# ------------------------------------------------------------------------------------------------- checks
def polyline_distance(points: Array, polyline: Array, candidates: int = 4) -> Array:
    """The distance from each point to a polyline (rows: vertices), exact among the segments next to the point's
    `candidates` nearest vertices (all segments of a path that does not fold back on itself within that many
    vertices).

    Example:
        >>> polyline_distance(np.array([[0.5, 1.0], [3.0, 0.0]]), np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]]))
        array([1., 1.])
    """
    k = min(candidates, len(polyline))
    _, nearest = cKDTree(polyline).query(points, k=k)
    nearest = np.asarray(nearest).reshape(len(points), k)
    first = np.clip(np.concatenate([nearest - 1, nearest], axis=1), 0, len(polyline) - 2)  # segment starts
    a, b = polyline[first], polyline[first + 1]
    ab, ap = b - a, points[:, None, :] - a
    t = np.clip(np.sum(ap * ab, axis=2) / np.maximum(np.sum(ab * ab, axis=2), np.finfo(float).tiny), 0.0, 1.0)
    return np.linalg.norm(ap - t[..., None] * ab, axis=2).min(axis=1)


def hausdorff(a: Array, b: Array, b_samples: Array | None = None) -> float:
    """The Hausdorff distance between two polylines: the larger of the largest distance from a's vertices to the
    polyline b and from b's vertices (or `b_samples`, points on b) to the polyline a (the distance inside a segment
    differs by its sagitta, O(h^2)).

    Example:
        >>> hausdorff(np.array([[0.0, 0.0], [2.0, 0.0]]), np.array([[0.0, 0.5], [1.0, 0.1], [2.0, 0.5]]))
        0.5
    """
    samples = b if b_samples is None else b_samples
    return float(max(polyline_distance(a, b).max(), polyline_distance(samples, a).max()))


def flow_curve(metrics: pd.DataFrame) -> Array:
    """The stored gradient-flow curve, rows: points of equal arc length."""
    return table(metrics, "flow", "index", "coordinate").to_numpy()


def stored_path(metrics: pd.DataFrame, method: str, h: float) -> Array:
    """The stored path of `method` at step h, rows: iterates."""
    return table(metrics, "path", "step", "coordinate", method=method, h=h).to_numpy()


def distances(metrics: pd.DataFrame, method: str | None = None) -> tuple[Array, Array]:
    """(h, d_H between the method's path at h and the flow curve), h decreasing; without a method, the distance
    between the two trust regions' paths."""
    chosen = select(metrics, "pair_hausdorff") if method is None else select(metrics, "hausdorff", method=method)
    chosen = chosen.sort_values("h", ascending=False)
    return chosen["h"].to_numpy(dtype=float), chosen["value"].to_numpy(dtype=float)


def order(hs: Array, d: Array) -> float:
    """The least-squares slope of log d against log h (nan if a distance is not positive).

    Example:
        >>> round(order(np.array([0.1, 0.2, 0.4]), np.array([0.3, 0.6, 1.2])), 12)
        1.0
    """
    if np.any(~np.isfinite(d)) or np.any(d <= 0):
        return float("nan")
    return float(np.polyfit(np.log(hs), np.log(d), 1)[0])


def extrapolated_constant(hs: Array, d: Array) -> float:
    """d/h at h -> 0 from the two smallest steps h and 2h (Richardson: d/h = C + D h + O(h^2)).

    Example:
        >>> round(extrapolated_constant(np.array([0.2, 0.1]), np.array([0.2 * (3 + 0.2), 0.1 * (3 + 0.1)])), 12)
        3.0
    """
    smallest = np.argsort(hs)
    small, large = smallest[0], smallest[1]
    ratio = hs[large] / hs[small]
    return float((ratio * d[small] / hs[small] - d[large] / hs[large]) / (ratio - 1.0))


def expansion_ratios(metrics: pd.DataFrame) -> tuple[Array, Array, Array, Array]:
    """Per place along the curve: (1 - lambda r / |g|) over its prediction u^T H u r / |g| and the step's angle to
    -g over its prediction |(I - u u^T) H u| r / |g|, at the smallest radius; and the slopes of both against
    log r."""
    lam_ratio, angle_ratio, lam_order, angle_order = [], [], [], []
    for point in sorted(select(metrics, "multiplier")["point"].unique()):
        g = series(metrics, "model_gradient", "coordinate", point=point)[1]
        H = table(metrics, "model_hessian", "row", "column", point=point).to_numpy()
        radii, lam = series(metrics, "multiplier", "radius", point=point)
        angle = series(metrics, "step_angle", "radius", point=point)[1]
        deficit = 1.0 - lam * radii / np.linalg.norm(g)
        lam_ratio.append(deficit[0] / (1.0 - small_radius_multiplier(H, g, radii[0])))
        angle_ratio.append(angle[0] / small_radius_angle(H, g, radii[0]))
        lam_order.append(order(radii, np.abs(deficit)))
        angle_order.append(order(radii, angle))
    return np.array(lam_ratio), np.array(angle_ratio), np.array(lam_order), np.array(angle_order)


def _worst(ratios: Array) -> float:
    """The ratio farthest from 1 (nan if any is nan)."""
    if np.any(~np.isfinite(ratios)):
        return float("nan")
    return float(ratios[np.argmax(np.abs(ratios - 1.0))])


def _listed(hs: Array, d: Array) -> str:
    return ", ".join(f"{h:.3g}: {x / h:.4g}" for h, x in zip(hs, d, strict=True))


def checks(metrics: pd.DataFrame, config: StepEquivalenceConfig) -> list[Check]:
    """Per method the order and the constant of its distance to the flow curve; the two trust regions on opposite
    sides; the clocks; the quadratic model's multiplier and angle."""
    result = []
    clocks = {}
    for method in METHODS:
        hs, d = distances(metrics, method)
        p = PARAMETER[method]
        result += [
            Check.absolute(
                f"{LABELS[method]}: order of the Hausdorff distance to the flow curve (slope of log d_H vs log {p})",
                order(hs, d),
                1.0,
                ORDER_TOLERANCE,
                detail=f"{p} = {hs[0]:.3g} .. {hs[-1]:.3g}, d_H / {p} at each: {_listed(hs, d)}; theory: a one-step "
                "method of order 1 for a time change of gradient flow; a method that follows another curve (the "
                "l-infinity trust region, a projection around a fixed centre) keeps d_H of order 1 (slope ~0)",
            ),
            Check.relative(
                f"{LABELS[method]}: d_H / {p} extrapolated to {p} -> 0 vs max_t |(I - n n^T) e(t)|",
                extrapolated_constant(hs, d),
                value(metrics, "transverse_constant", method=method),
                CONSTANT_TOLERANCE,
                detail=f"Richardson from the two smallest steps (d_H / {p}: {_listed(hs, d)}); e' = J e + D - J F / 2 "
                f"along the flow on the {CLOCK[method]} clock, its part across the curve; a step of another length "
                "changes the constant",
            ),
        ]
        clocks[method] = (
            value(metrics, "steps_to_level", method=method, h=hs[-1]) * hs[-1],
            value(metrics, "duration", method=method),
        )
    hs, d = distances(metrics)
    result.append(
        Check.relative(
            "the two trust regions on opposite sides of the curve: d_H(quadratic, linear model) / r extrapolated to "
            "r -> 0 vs max_t |e_quadratic - e_linear| across the curve",
            extrapolated_constant(hs, d),
            value(metrics, "pair_constant"),
            CONSTANT_TOLERANCE,
            detail=f"d_H / r at each r: {_listed(hs, d)}; the quadratic model's h^2 term D = (I - u u^T) H u / |g| "
            "equals J F on the arc-length clock, so e_quadratic = -e_linear: the paths lie on either side of the "
            "curve, 2 C r apart; a subproblem that drops H gives the linear path (0)",
        )
    )
    worst = max(abs(c / t - 1.0) for c, t in clocks.values())
    listed = "; ".join(f"{LABELS[m]}: {c:.5g} vs {CLOCK[m]} {t:.5g}" for m, (c, t) in clocks.items())
    result.append(
        Check.at_most(
            "each method's clock: steps x h to the level vs the flow's duration in its parameterisation (worst "
            "relative error)",
            worst,
            CLOCK_TOLERANCE,
            detail=f"at the smallest h: {listed}; the proximal step runs on time, the trust regions on arc length, "
            "the projected step on clipped time: a method on another clock, or with a step of another length, fails",
        )
    )
    lam_ratio, angle_ratio, lam_order, angle_order = expansion_ratios(metrics)
    where = (
        f"at {len(lam_ratio)} places along the curve, smallest radius "
        f"{config.fraction / 2 ** (config.radii - 1):.3g} |g| / |H|"
    )
    result += [
        Check.relative(
            "quadratic model: (1 - lambda(r) r / |g|) / (u^T H u r / |g|) at the smallest radius (worst place)",
            _worst(lam_ratio),
            1.0,
            EXPANSION_TOLERANCE,
            detail=f"{where}; ratios {', '.join(f'{x:.4f}' for x in lam_ratio)}, orders of 1 - lambda r / |g| in r "
            f"{', '.join(f'{x:.3f}' for x in lam_order)} (theory 1): lambda(r) r / |g| -> 1 linearly; a solver that "
            "drops H (lambda = |g| / r) gives 0",
        ),
        Check.relative(
            "quadratic model: angle(step, -g) / (|(I - u u^T) H u| r / |g|) at the smallest radius (worst place)",
            _worst(angle_ratio),
            1.0,
            EXPANSION_TOLERANCE,
            detail=f"{where}; ratios {', '.join(f'{x:.4f}' for x in angle_ratio)}, orders in r "
            f"{', '.join(f'{x:.3f}' for x in angle_order)} (theory 1): the step turns to -g linearly in r; a solver "
            "that drops H gives angle 0",
        ),
    ]
    return result


# ------------------------------------------------------------------------------------------------ figures
MARKERS = {"proximal": "o", "trust-region": "s", "projected": "^", "trust-region-quadratic": "D"}


def figures(metrics: pd.DataFrame, config: StepEquivalenceConfig) -> dict[str, Figure]:
    """The paths over the contours with the flow curve, and the distances against the step with their theory."""
    return {"paths": _paths_figure(metrics, config), "convergence": _convergence_figure(metrics, config)}


def signed_offsets(path: Array, curve: Array) -> tuple[Array, Array]:
    """For each iterate: the arc length of its nearest point on the curve, and its signed distance to the curve
    (positive on the left of the direction of travel, as e . nu in `across`)."""
    nearest = np.clip(cKDTree(curve).query(path)[1], 0, len(curve) - 2)
    a, b = curve[nearest], curve[nearest + 1]
    ab, ap = b - a, path - a
    side = np.sign(ab[:, 0] * ap[:, 1] - ab[:, 1] * ap[:, 0])
    return arc_length(curve)[nearest], side * polyline_distance(path, curve)


def _paths_figure(metrics: pd.DataFrame, config: StepEquivalenceConfig) -> Figure:
    f = Valley(config.b)
    curve = flow_curve(metrics)
    fig = Figure(figsize=(14.0, 5.2), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=(1.0, 1.25))
    xs, ys = np.linspace(-1.6, 1.4, 300), np.linspace(-1.0, 1.8, 300)
    X, Y = np.meshgrid(xs, ys)
    left.contour(X, Y, np.log10(f.value(np.stack([X, Y], -1)) + 1e-2), levels=16, colors="0.8", linewidths=0.6)
    left.plot(curve[:, 0], curve[:, 1], "-", color="k", lw=2.5, label="gradient-flow curve")
    for k, method in enumerate(METHODS):
        h = step_sizes(config, method)[0]
        path = stored_path(metrics, method, h)
        left.plot(
            path[:, 0],
            path[:, 1],
            "-",
            marker=MARKERS[method],
            ms=2.0,
            lw=0.8,
            color=f"C{k}",
            markevery=max(1, len(path) // 60),
            label=f"{LABELS[method]}, {PARAMETER[method]} = {h:g}",
        )
    left.plot(*config.start, "k*", ms=11, label="start")
    left.set(xlabel="x", ylabel="y", xlim=(xs[0], xs[-1]), ylim=(ys[0], ys[-1]))
    left.set_title(f"The paths on the flow curve, cut at f = {config.level:g}; inset: two steps each", fontsize=10)
    left.legend(fontsize=8, loc="upper right")
    _zoom(left, metrics, config, curve)
    for k, method in enumerate(METHODS):
        hs = step_sizes(config, method)
        for j, ls in ((0, ":"), (len(hs) - 1, "-")):
            position, offset = signed_offsets(stored_path(metrics, method, hs[j]), curve)
            right.plot(
                position,
                offset / hs[j],
                ls,
                color=f"C{k}",
                lw=1.0,
                label=f"{LABELS[method]}, {PARAMETER[method]} = {hs[j]:.3g}",
            )
        theory_position, theory = series(metrics, "across", "position", method=method)
        right.plot(theory_position, theory, "-", color=f"C{k}", lw=4.0, alpha=0.25)
    right.plot([], [], "-", color="0.5", lw=4.0, alpha=0.35, label=r"theory $e(t) \cdot \nu$ (Euler's error)")
    right.axhline(0.0, color="k", lw=0.6)
    right.set(xlabel="arc length along the flow curve", ylabel="signed distance of the iterate to the curve / step")
    right.set_title("Each path strays across the curve by its own C(s) x step (two steps per method)", fontsize=10)
    right.legend(fontsize=7, ncols=2)
    fig.suptitle(f"Proximal, trust-region and projected steps on the valley (1 - x)^2 + {config.b:g} (y - x^2)^2")
    return fig


def _zoom(ax: Axes, metrics: pd.DataFrame, config: StepEquivalenceConfig, curve: Array) -> None:
    """An inset around the place where the proximal path strays farthest (theory), with every path at its largest
    step (dotted) and at its smallest (solid)."""
    position, offset = series(metrics, "across", "position", method="proximal")
    centre = curve[np.searchsorted(arc_length(curve), position[np.argmax(np.abs(offset))])]
    half = 1.5 * max(distances(metrics, method)[1][0] for method in METHODS)
    inset = ax.inset_axes((0.03, 0.03, 0.4, 0.36))
    inset.plot(curve[:, 0], curve[:, 1], "-", color="k", lw=2.0)
    for k, method in enumerate(METHODS):
        hs = step_sizes(config, method)
        for h, ls in ((hs[0], ":"), (hs[-1], "-")):
            path = stored_path(metrics, method, h)
            inset.plot(path[:, 0], path[:, 1], ls, marker=MARKERS[method], ms=3.0, lw=1.0, color=f"C{k}")
    inset.set(xlim=(centre[0] - half, centre[0] + half), ylim=(centre[1] - half, centre[1] + half), aspect="equal")
    inset.tick_params(labelsize=6)
    inset.set_title(f"dotted: largest step, solid: {2 ** (config.halvings - 1)}x smaller", fontsize=7)
    ax.indicate_inset_zoom(inset, edgecolor="0.3")


def _convergence_figure(metrics: pd.DataFrame, config: StepEquivalenceConfig) -> Figure:
    fig = Figure(figsize=(14.0, 5.0), layout="constrained")
    left, right = fig.subplots(1, 2)
    for k, method in enumerate(METHODS):
        hs, d = distances(metrics, method)
        left.loglog(
            hs / hs[0],
            d,
            MARKERS[method],
            color=f"C{k}",
            mfc="none" if k == 3 else None,
            label=f"{LABELS[method]} ({PARAMETER[method]}_0 = {hs[0]:g}): slope {order(hs, d):.2f}",
        )
        left.loglog(hs / hs[0], value(metrics, "transverse_constant", method=method) * hs, "--", color=f"C{k}", lw=1.0)
    hs = step_sizes(config, METHODS[0])
    left.plot([], [], "--", color="0.4", lw=1.0, label=r"theory $C h$, $C = \max_t |e(t) \cdot \nu|$")
    guide = 0.5 * min(distances(metrics, method)[1][0] for method in METHODS)
    left.loglog(hs / hs[0], guide * hs / hs[0], ":", color="0.5", lw=1.0, label="slope 1")
    left.set(
        xlabel=r"step relative to the largest, $h / h_0$ ($\eta / \eta_0$ or $r / r_0$)",
        ylabel="Hausdorff distance to the flow curve",
    )
    left.set_title("Every path converges to the gradient-flow curve at first order", fontsize=10)
    left.legend(fontsize=8)
    for point in sorted(select(metrics, "multiplier")["point"].unique()):
        g = series(metrics, "model_gradient", "coordinate", point=point)[1]
        H = table(metrics, "model_hessian", "row", "column", point=point).to_numpy()
        radii, lam = series(metrics, "multiplier", "radius", point=point)
        angle = series(metrics, "step_angle", "radius", point=point)[1]
        scaled = radii * np.linalg.norm(H, 2) / np.linalg.norm(g)
        c = f"C{int(point) + 4}"
        right.loglog(
            scaled,
            np.abs(1.0 - lam * radii / np.linalg.norm(g)),
            "o",
            color=c,
            label=rf"place {int(point)}: $|1 - \lambda r / |g||$",
        )
        right.loglog(scaled, np.abs(1.0 - small_radius_multiplier(H, g, radii)), "-", color=c, lw=1.0)
        right.loglog(scaled, angle, "s", color=c, mfc="none", label=f"place {int(point)}: angle(step, -g)")
        right.loglog(scaled, small_radius_angle(H, g, radii), "--", color=c, lw=1.0)
    right.plot([], [], "-", color="0.4", lw=1.0, label=r"theory $|u^T H u|\, r / |g|$")
    right.plot([], [], "--", color="0.4", lw=1.0, label=r"theory $|(I - uu^T) H u|\, r / |g|$")
    right.set(xlabel=r"radius $r$ in units of $|g| / \|H\|$", ylabel="deviation from the linear model's step")
    right.set_title(
        r"Quadratic model: $\lambda(r)\, r \to |g|$ and the step turns to $-g$, linearly in $r$", fontsize=10
    )
    right.legend(fontsize=7, ncols=2)
    return fig


EXPERIMENT = Experiment(
    name="step-equivalence",
    claim="Trust-region, proximal and projected steps are the same step: minimising the linear model within a "
    "ball of radius r, adding (1/2 eta)|w - w_t|^2, and projecting a gradient step onto the ball around w_t trace "
    "the same path as eta -> 0 <=> lambda -> infinity <=> r -> 0, the gradient-flow curve, each on its own clock.",
    config=StepEquivalenceConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={"full": {"halvings": 7, "radii": 8, "points": 5}},
    references=(
        "Moré & Sorensen (1983), Computing a trust region step, SIAM J. Sci. Stat. Comput.",
        "Nocedal & Wright (2006), Numerical Optimization, Ch. 4 (trust regions) and Thm. 4.1",
        "Hairer, Norsett & Wanner (1993), Solving Ordinary Differential Equations I, Thm II.8.1",
        "Parikh & Boyd (2014), Proximal algorithms, Foundations and Trends in Optimization, Sec. 4.1",
    ),
    part="optimisation",
)
