"""linear-depth: a network without non-linearities is one affine map, so depth does not enlarge its function class.

f(x) = W_L (... (W_2 (W_1 x + b_1) + b_2) ...) + b_L = A x + c for every depth L: a deep linear network can
represent exactly the affine maps (when no hidden layer is narrower than the input and output), and its best fit
to any data is the least-squares affine fit, a closed form (`numpy.linalg.lstsq` on [X, 1]). On a non-linear
target (a sum of a sine, a square and a product of inputs) the experiment trains, through `tdlab.train.fit` with
L-BFGS (strong Wolfe line search, float64) to convergence, linear networks (`tdlab.models.MLP`, activation
"linear") of L = 1, 2, 4 layers and ReLU networks of the same width and L = 2, 4 layers (L = 1 has no hidden layer,
so no non-linearity), and measures their training mean squared errors and the linear networks' end-to-end maps.

Checks (each can fail):

1. per depth L: the trained linear network's training MSE equals the least-squares affine MSE, relative
   difference <= 1e-6 (both directions: lower would mean depth added functions, higher that training did not
   reach the global minimum, which for deep linear networks has no worse local minima, Kawaguchi 2016);
2. per depth L: its end-to-end map (A, c), read off by evaluating the network at 0 and at the unit vectors, equals
   the least-squares solution, relative distance <= 1e-3 (the minimiser is unique when X has full column rank;
   a loss within 1e-6 bounds the distance by sqrt(1e-6 / smallest eigenvalue of the design));
3. per depth L >= 2: the ReLU network of the same depth and width fits better, its training MSE at most half the
   affine one: a non-linearity that did not act (or a target that were affine) fails it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from pydantic import Field, field_validator
from torch import Tensor, nn

from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.tidy import rows, select, value
from tdlab.models import MLP
from tdlab.train.trainer import fit

LOSS_TOLERANCE = 1e-6
MAP_TOLERANCE = 1e-3
RELU_MARGIN = 0.5
MSE = nn.MSELoss()


class LinearDepthConfig(ExperimentConfig):
    """Depths 1, 2, 4; width 16; a non-linear target in 3 dimensions; L-BFGS to convergence."""

    in_features: int = Field(3, ge=2, description="input dimension d (the target uses the first 3 when d >= 3)")
    examples: int = Field(128, ge=8, description="training inputs, standard Gaussian")
    depths: tuple[int, ...] = Field((1, 2, 4), min_length=2, description="numbers of weight matrices L")
    width: int = Field(16, ge=1, description="hidden width (>= in_features so the linear nets are not rank-limited)")
    steps: int = Field(10, ge=1, description="L-BFGS steps (each up to `max_iter` evaluations)")
    max_iter: int = Field(15, ge=1, description="L-BFGS iterations per step")

    @field_validator("depths")
    @classmethod
    def _depths(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(L < 1 for L in value) or len(set(value)) != len(value):
            raise ValueError(f"expected distinct depths >= 1, got {value}")
        return tuple(sorted(value))


def target_data(config: LinearDepthConfig) -> tuple[Tensor, Tensor]:
    """Gaussian X (n, d) and y = sin(2 x_1) + x_2^2 / 2 - x_1 x_3 (n, 1), standardised (float64).

    Example:
        >>> X, y = target_data(LinearDepthConfig(examples=10))
        >>> X.shape, y.shape, abs(float(y.mean())) < 1e-12, round(float(y.std()), 12)
        (torch.Size([10, 3]), torch.Size([10, 1]), True, 1.0)
    """
    generator = torch.Generator().manual_seed(config.seed)
    X = torch.randn(config.examples, config.in_features, generator=generator, dtype=torch.float64)
    x3 = X[:, 2] if config.in_features >= 3 else X[:, 1]
    y = torch.sin(2 * X[:, 0]) + X[:, 1] ** 2 / 2 - X[:, 0] * x3
    return X, ((y - y.mean()) / y.std())[:, None]


def affine_fit(X: Tensor, y: Tensor) -> tuple[np.ndarray, float]:
    """The least-squares affine fit: (coefficients [A, c] as a (d + 1,) array, its training MSE).

    Example:
        >>> X = torch.tensor([[0.0], [1.0], [2.0]], dtype=torch.float64)
        >>> coefficients, mse = affine_fit(X, 2 * X + 1)
        >>> np.round(coefficients, 12).tolist(), round(mse, 12)
        ([2.0, 1.0], 0.0)
    """
    design = np.hstack([X.cpu().numpy(), np.ones((X.shape[0], 1))])
    coefficients = np.linalg.lstsq(design, y.cpu().numpy()[:, 0], rcond=None)[0]
    return coefficients, float(np.mean((design @ coefficients - y.cpu().numpy()[:, 0]) ** 2))


def end_to_end(model: nn.Module, d: int, like: Tensor) -> np.ndarray:
    """[A, c] of an affine network: c = f(0), A_j = f(e_j) - f(0).

    Example:
        >>> layer = nn.Linear(2, 1).double()
        >>> with torch.no_grad():
        ...     _ = layer.weight.copy_(torch.tensor([[3.0, -1.0]])), layer.bias.fill_(0.5)
        >>> end_to_end(layer, 2, torch.zeros(1, dtype=torch.float64)).tolist()
        [3.0, -1.0, 0.5]
    """
    points = torch.cat([torch.zeros(1, d), torch.eye(d)]).to(like)
    with torch.no_grad():
        f = model(points)[:, 0].cpu().numpy()
    return np.append(f[1:] - f[0], f[0])


def _train(model: MLP, X: Tensor, y: Tensor, config: LinearDepthConfig) -> float:
    optimizer = torch.optim.LBFGS(
        model.parameters(),
        lr=1.0,
        max_iter=config.max_iter,
        history_size=50,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-14,
        tolerance_change=1e-16,
    )
    fit(model, MSE, (X, y), optimizer, config.steps)
    with torch.no_grad():
        return float(MSE(model(X), y))


def measure(config: LinearDepthConfig, context: Context) -> pd.DataFrame:
    """Rows: "affine_mse" and "affine_coefficient" (by index); per depth "linear_mse", "linear_map_distance"
    (|[A, c] - lstsq| / |lstsq|) and, for depth >= 2, "relu_mse"."""
    X, y = (t.to(context.device) for t in target_data(config))
    d = config.in_features
    coefficients, affine_mse = affine_fit(X, y)
    frames = [rows("affine_mse", affine_mse), rows("affine_coefficient", coefficients, index=np.arange(d + 1))]
    for depth in context.track(config.depths, "depths"):
        for activation in ("linear", "relu") if depth > 1 else ("linear",):
            model = MLP(
                d,
                1,
                width=config.width,
                depth=depth - 1,
                activation=activation,
                init="xavier",
                seed=config.seed * 1000 + depth,
            ).to(X)
            mse = _train(model, X, y, config)
            frames.append(rows(f"{activation}_mse", mse, depth=depth))
            if activation == "linear":
                distance = np.linalg.norm(end_to_end(model, d, X) - coefficients) / np.linalg.norm(coefficients)
                frames.append(rows("linear_map_distance", distance, depth=depth))
    return pd.concat(frames, ignore_index=True)


def checks(metrics: pd.DataFrame, config: LinearDepthConfig) -> list[Check]:
    """Per depth: the linear net's loss and map against least squares; the ReLU net's improvement."""
    affine = value(metrics, "affine_mse")
    out = []
    for depth in config.depths:
        linear = value(metrics, "linear_mse", depth=depth)
        out.append(
            Check.absolute(
                f"depth {depth}: linear network's training MSE vs the least-squares affine fit's, relative difference",
                (linear - affine) / affine,
                0.0,
                LOSS_TOLERANCE,
                detail=f"MSE {linear:.10g} vs lstsq {affine:.10g}; L-BFGS to convergence in float64; below 0 would "
                "mean depth added functions, above that training missed the global minimum",
            )
        )
        out.append(
            Check.at_most(
                f"depth {depth}: the network's end-to-end map (A, c) vs the least-squares solution, relative distance",
                value(metrics, "linear_map_distance", depth=depth),
                MAP_TOLERANCE,
                detail="(A, c) read off from f(0) and f(e_j); the affine minimiser is unique (X has full column rank)",
            )
        )
    for depth in config.depths:
        if depth > 1:
            relu = value(metrics, "relu_mse", depth=depth)
            out.append(
                Check.at_most(
                    f"depth {depth}: the ReLU network of the same depth fits better: its MSE / the affine MSE",
                    relu / affine,
                    RELU_MARGIN,
                    detail=f"ReLU MSE {relu:.4g} vs affine {affine:.4g}, width {config.width}, the same training; "
                    "a non-linearity that did not act gives 1",
                )
            )
    return out


def figures(metrics: pd.DataFrame, config: LinearDepthConfig) -> dict[str, Figure]:
    """Training MSE against depth: linear networks on the least-squares line, ReLU networks below."""
    fig = Figure(figsize=(7.0, 4.6), layout="constrained")
    ax = fig.subplots()
    affine = value(metrics, "affine_mse")
    ax.axhline(affine, color="k", lw=1.2, ls="--", label="least-squares affine fit (closed form)")
    linear = select(metrics, "linear_mse").sort_values("depth")
    ax.plot(linear["depth"], linear["value"], "o-", color="C0", ms=7, mfc="none", label="linear networks (trained)")
    relu = select(metrics, "relu_mse").sort_values("depth")
    ax.plot(relu["depth"], relu["value"], "s-", color="C3", ms=6, label=f"ReLU networks, width {config.width}")
    ax.set_yscale("log")
    ax.set_xticks(list(config.depths))
    ax.set(xlabel="depth L (weight matrices)", ylabel="training MSE (target variance 1)")
    ax.set_title("Without non-linearities depth adds nothing: every linear net is the affine fit")
    ax.legend(fontsize=8)
    return {"depth": fig}


EXPERIMENT = Experiment(
    name="linear-depth",
    claim="A network without non-linearities is one affine map: its function class does not grow with depth, so a "
    "deep linear network trained to convergence fits exactly as well as least squares, while a ReLU network of "
    "the same depth fits better.",
    config=LinearDepthConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={"full": {"in_features": 6, "examples": 1024, "depths": (1, 2, 4, 8), "width": 64, "steps": 150}},
    references=(
        "Goodfellow, Bengio & Courville (2016), Deep Learning, Sec. 6.1 (learning XOR) and 6.3",
        "Kawaguchi (2016), Deep learning without poor local minima, NeurIPS",
        "Baldi & Hornik (1989), Neural networks and principal component analysis: learning from examples without "
        "local minima, Neural Networks",
    ),
    part="loss landscapes",
)
