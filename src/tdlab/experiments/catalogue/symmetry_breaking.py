"""symmetry-breaking: a constant initialisation never breaks the symmetry between hidden units; random
initialisation is needed to break it.

An MLP (`tdlab.models.MLP`, tanh, `depth` hidden layers of `width` units) is trained by full-batch gradient descent
(`tdlab.train.fit`) on a regression task whose target is a teacher of `teacher_width` tanh units along orthonormal
directions. Every weight of a layer starts at the same constant, the standard deviation of the Xavier scheme for
that layer (`tdlab.models.init.init_variance`), every bias at 0. Then all units of a hidden layer compute the same
function, receive the same gradient and stay equal: by induction over steps, the network is at every step a
width-1 network in disguise, with weights

    r (the shared incoming row of layer 1),  v_l = width * c_l (layer l >= 2),  v_out = width * c_out,

and the width-1 network trained with per-layer steps eta / width (layer-1 weights and every hidden bias), eta
(hidden-to-hidden weights), eta * width (readout weights) and eta (readout bias) takes exactly the same steps
(each tied weight receives 1/width of the width-1 gradient per copy, and the copies add up). The same
architecture from random (Xavier) initialisations is trained alongside, in one stacked ensemble
(`tdlab.ensemble.Members`), and so are `restarts` width-1 networks from random initialisations, by Adam (which
reaches a width-1 network's best loss within the budget where plain GD is still descending).

Checks (each can fail):

1. constant start: the largest pairwise relative difference between the units of a hidden layer (their
   incoming weights, bias and outgoing weights), over every layer and recorded step, stays at float64 rounding
   (<= 1e-9); a network or optimiser that breaks the tie (dropout, per-unit noise, a random bias) fails it;
2. random start: the units stay distinct, the smallest pairwise relative distance >= 0.01 at the end, every
   seed and layer; a random initialisation that duplicated units fails it;
3. the constant-start network is a width-1 network: its loss equals that of the width-1 network above at every
   recorded step, max relative difference <= 1e-9; a wrong reduction (or a broken symmetry) fails it;
4. its loss plateaus at the best loss a width-1 network reaches: its final loss against the best of `restarts`
   width-1 networks from random starts (Adam, the same steps), relative difference <= 5%: it fails if the
   constant start found a worse width-1 solution, or a better one than any width-1 network (impossible unless
   the width-m network were not a width-1 network);
5. breaking the symmetry is what helps: every random-start network of the same width ends with at most half the
   constant-start loss.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from pydantic import Field, model_validator
from torch import Tensor, nn

from tdlab.ensemble import Members, StackedModels
from tdlab.ensemble.members import summed
from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.tidy import rows, select
from tdlab.models import MLP, init_variance
from tdlab.train.trainer import fit

ROUNDING = 1e-9  # float64: ~1e-16 per operation, far below this after thousands of steps
DISTINCT = 1e-2
PLATEAU_TOLERANCE = 0.05
HELP_RATIO = 0.5
MSE = nn.MSELoss()


class SymmetryBreakingConfig(ExperimentConfig):
    """A 2-hidden-layer tanh MLP of width 8 on a width-3 teacher; constant vs random starts; width-1 networks."""

    in_features: int = Field(4, ge=1, description="input dimension d")
    examples: int = Field(64, ge=2, description="training inputs, standard Gaussian")
    teacher_width: int = Field(3, ge=2, description="tanh units of the teacher (>= 2: width 1 cannot fit it)")
    width: int = Field(8, ge=2, description="hidden units per layer of the student")
    depth: int = Field(2, ge=1, description="hidden layers")
    random_seeds: int = Field(3, ge=1, description="random (Xavier) starts of the same width")
    restarts: int = Field(8, ge=1, description="width-1 networks from random starts, for the best width-1 loss")
    lr: float = Field(0.1, gt=0.0, description="the GD step eta")
    adam_lr: float = Field(0.02, gt=0.0, description="Adam's step for the width-1 restarts (the best width-1 loss)")
    steps: int = Field(600, ge=1, description="GD steps for every network")
    record_every: int = Field(20, ge=1, description="steps between records of the losses and the units' spread")

    @model_validator(mode="after")
    def _consistent(self) -> SymmetryBreakingConfig:
        if self.teacher_width > self.in_features:
            raise ValueError(
                f"teacher_width: expected at most in_features = {self.in_features} (orthonormal directions), "
                f"got {self.teacher_width}"
            )
        return self


def teacher_data(config: SymmetryBreakingConfig) -> tuple[Tensor, Tensor]:
    """Gaussian inputs X (n, d) and targets y = sum_j (-1)^j tanh(2 w_j . x) (n, 1) with orthonormal w_j, scaled
    to unit variance (float64): units of equal weight along different directions, which no single unit can fit.

    Example:
        >>> X, y = teacher_data(SymmetryBreakingConfig(examples=5))
        >>> X.shape, y.shape
        (torch.Size([5, 4]), torch.Size([5, 1]))
    """
    generator = torch.Generator().manual_seed(config.seed)
    d, k = config.in_features, config.teacher_width
    X = torch.randn(config.examples, d, generator=generator, dtype=torch.float64)
    W = torch.linalg.qr(torch.randn(d, k, generator=generator, dtype=torch.float64))[0].T  # (k, d), orthonormal rows
    signs = torch.tensor([(-1.0) ** j for j in range(k)], dtype=torch.float64)
    y = torch.tanh(2.0 * X @ W.T) @ signs[:, None]
    return X, y / y.std()


def _layers(model: MLP) -> list[nn.Linear]:
    return [layer.linear for layer in model.hidden_layers()] + [model.readout]


def constant_mlp(config: SymmetryBreakingConfig) -> MLP:
    """The width-m MLP whose every weight of layer l is c_l = sqrt(Xavier variance of l), every bias 0."""
    model = MLP(config.in_features, 1, width=config.width, depth=config.depth, activation="tanh", init="zeros")
    model = model.double()
    with torch.no_grad():
        for layer in _layers(model):
            fan_out, fan_in = layer.weight.shape
            layer.weight.fill_(math.sqrt(init_variance("xavier", fan_in, fan_out)))
    return model


def width_one_twin(config: SymmetryBreakingConfig, device: torch.device | str = "cpu") -> tuple[MLP, list[dict]]:
    """The width-1 MLP that the constant-start network is, and its parameter groups with the per-layer steps that
    make GD on it take the width-m network's steps (module docstring)."""
    m, eta = config.width, config.lr
    twin = MLP(config.in_features, 1, width=1, depth=config.depth, activation="tanh", init="zeros")
    twin = twin.to(device=device, dtype=torch.float64)
    wide = constant_mlp(config).to(device)
    groups = []
    with torch.no_grad():
        for l, (layer, source) in enumerate(zip(_layers(twin), _layers(wide), strict=True)):
            readout = l == config.depth
            if l == 0:
                layer.weight.copy_(source.weight[:1])
                weight_lr = eta / m
            else:
                layer.weight.fill_(m * float(source.weight[0, 0]))
                weight_lr = eta * m if readout else eta
            groups += [
                {"params": [layer.weight], "lr": weight_lr},
                {"params": [layer.bias], "lr": eta if readout else eta / m},
            ]
    return twin, groups


def unit_spread(weights: list[Tensor], biases: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Per hidden layer of stacked members (weights[l]: (N, out, in), biases[l]: (N, out), the readout last): the
    largest and the smallest distance between two units' vectors (incoming row, bias, outgoing column), relative
    to the largest unit norm; shapes (N, layers).

    Example:
        >>> W1 = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])  # two equal units
        >>> W2 = torch.tensor([[[2.0, 2.0]]])
        >>> largest, smallest = unit_spread([W1, W2], [torch.zeros(1, 2), torch.zeros(1, 1)])
        >>> largest.tolist(), smallest.tolist()
        ([[0.0]], [[0.0]])
    """
    largest, smallest = [], []
    for l in range(len(weights) - 1):
        units = torch.cat([weights[l], biases[l].unsqueeze(-1), weights[l + 1].transpose(1, 2)], dim=2)
        distances = torch.cdist(units, units, compute_mode="donot_use_mm_for_euclid_dist")  # exact differences
        scale = units.norm(dim=2).amax(dim=1).clamp_min(torch.finfo(units.dtype).tiny)
        off = ~torch.eye(units.shape[1], dtype=torch.bool, device=units.device)
        largest.append(distances.amax(dim=(1, 2)) / scale)
        smallest.append(distances[:, off].amin(dim=1) / scale)
    return torch.stack(largest, dim=1), torch.stack(smallest, dim=1)


def _train_members(
    models: list[MLP], X: Tensor, y: Tensor, config: SymmetryBreakingConfig, spread: bool, adam: bool = False
) -> dict:
    """Train stacked members by GD (or Adam at `adam_lr`); every `record_every` steps their losses (and the units'
    spread)."""
    members = Members(StackedModels.of(models, device=X.device))
    N = len(models)
    targets = y.unsqueeze(1).expand(-1, N, -1)
    record: dict[str, list] = {"step": [], "loss": [], "largest": [], "smallest": []}
    names = [f"hidden.{l}.linear" for l in range(config.depth)] + ["readout"]
    params = members.models.params

    def watch(step: int, *_: object) -> None:
        if step % config.record_every and step != config.steps:
            return
        with torch.no_grad():
            record["step"].append(step)
            record["loss"].append(((members(X) - y) ** 2).mean(dim=(1, 2)).cpu().numpy())
            if spread:
                largest, smallest = unit_spread(
                    [params[f"{n}.weight"] for n in names], [params[f"{n}.bias"] for n in names]
                )
                record["largest"].append(largest.cpu().numpy())
                record["smallest"].append(smallest.cpu().numpy())

    watch(0)
    if adam:
        optimizer = torch.optim.Adam(members.parameters(), lr=config.adam_lr)
    else:
        optimizer = torch.optim.SGD(members.parameters(), lr=config.lr)
    fit(members, summed(MSE), (X, targets), optimizer, config.steps, callbacks=[watch])
    return {key: np.array(value) for key, value in record.items()}


def measure(config: SymmetryBreakingConfig, context: Context) -> pd.DataFrame:
    """Rows (every `record_every` steps, column step): "loss" by network ("constant", "random", "twin",
    "width-1") and seed; "largest_spread" and "smallest_spread" by network, seed and layer."""
    X, y = (t.to(context.device) for t in teacher_data(config))
    d, L = config.in_features, config.depth
    wide = [constant_mlp(config)] + [
        MLP(d, 1, width=config.width, depth=L, activation="tanh", init="xavier", seed=config.seed * 1000 + s).double()
        for s in range(1, config.random_seeds + 1)
    ]
    narrow = [
        MLP(d, 1, width=1, depth=L, activation="tanh", init="xavier", seed=config.seed * 1000 + 500 + s).double()
        for s in range(config.restarts)
    ]
    frames = []
    wide_run = _train_members(wide, X, y, config, spread=True)
    steps = wide_run["step"]
    kinds = np.array(["constant"] + ["random"] * config.random_seeds)
    seeds = np.arange(len(wide))
    frames.append(
        rows("loss", wide_run["loss"], step=steps[:, None], seed=seeds).assign(network=np.tile(kinds, len(steps)))
    )
    for name in ("largest", "smallest"):
        frame = rows(
            f"{name}_spread", wide_run[name], step=steps[:, None, None], seed=seeds[:, None], layer=np.arange(L)
        )
        frames.append(frame.assign(network=np.tile(np.repeat(kinds, L), len(steps))))
    narrow_run = _train_members(narrow, X, y, config, spread=False, adam=True)
    narrow_steps = narrow_run["step"][:, None]
    frames.append(
        rows("loss", narrow_run["loss"], step=narrow_steps, seed=np.arange(len(narrow))).assign(network="width-1")
    )

    twin, groups = width_one_twin(config, context.device)
    twin_steps: list[int] = []
    twin_losses: list[float] = []

    def watch(step: int, *_: object) -> None:
        if step % config.record_every == 0 or step == config.steps:
            with torch.no_grad():
                twin_steps.append(step)
                twin_losses.append(float(MSE(twin(X), y)))

    watch(0)
    fit(twin, MSE, (X, y), torch.optim.SGD(groups, lr=config.lr), config.steps, callbacks=[watch])
    frames.append(rows("loss", twin_losses, step=twin_steps, seed=0).assign(network="twin"))
    return pd.concat(frames, ignore_index=True)


def _losses(metrics: pd.DataFrame, network: str) -> pd.DataFrame:
    """Loss, step x seed."""
    return select(metrics, "loss", network=network).pivot_table(index="step", columns="seed", values="value")


def checks(metrics: pd.DataFrame, config: SymmetryBreakingConfig) -> list[Check]:
    """The tie stays, random units stay apart, the tied net is its width-1 twin, plateau, and the benefit."""
    constant = select(metrics, "largest_spread", network="constant")
    worst = constant.loc[constant["value"].idxmax()] if len(constant) else None
    last = metrics["step"].max()
    random_end = select(metrics, "smallest_spread", network="random", step=last)
    tied = _losses(metrics, "constant")[0]
    twin = _losses(metrics, "twin")[0].reindex(tied.index)
    gap = float(((tied - twin).abs() / twin.abs()).max())
    final = float(tied.iloc[-1])
    width_one = _losses(metrics, "width-1").iloc[-1]
    best = float(width_one.min())
    random_final = _losses(metrics, "random").iloc[-1]
    return [
        Check.at_most(
            "constant start: units of a hidden layer stay equal, largest pairwise relative difference",
            float(constant["value"].max()),
            ROUNDING,
            detail=f"max over {config.depth} hidden layers and {tied.size} recorded steps of max_ij |u_i - u_j| / "
            f"max_i |u_i|, u = (incoming weights, bias, outgoing weights); worst at step "
            f"{int(worst.step) if worst is not None else -1}, layer {int(worst.layer) + 1 if worst is not None else -1}"
            f"; float64 rounding; a tie broken anywhere grows to O(1) and fails it",
        ),
        Check.at_least(
            "random start: units stay distinct, smallest pairwise relative distance at the end",
            float(random_end["value"].min()),
            DISTINCT,
            detail=f"min over {config.random_seeds} seeds and {config.depth} layers of min_(i != j) |u_i - u_j| / "
            "max_i |u_i| after training; duplicated units give 0",
        ),
        Check.at_most(
            "the constant-start network is a width-1 network: max relative loss difference from its width-1 twin",
            gap,
            ROUNDING,
            detail=f"over {tied.size} recorded steps; the twin: width 1, weights (r, {config.width} c_l, "
            f"{config.width} c_out), per-layer GD steps eta/{config.width}, eta, eta*{config.width}; a broken tie "
            "or a wrong width-1 reduction fails it",
        ),
        Check.relative(
            "constant start plateaus at the best width-1 loss: its final loss vs the best of the width-1 restarts",
            final,
            best,
            PLATEAU_TOLERANCE,
            detail=f"final training MSE {final:.4g}; width-1 networks from {config.restarts} Xavier starts, Adam "
            f"lr {config.adam_lr:g}, {config.steps} steps: {', '.join(f'{v:.4g}' for v in sorted(width_one))}; "
            f"tolerance {PLATEAU_TOLERANCE}; a worse width-1 solution, or one better than any width-1 network, "
            "fails it",
        ),
        Check.at_most(
            "breaking the symmetry helps: worst random-start final loss / constant-start final loss",
            float(random_final.max() / final),
            HELP_RATIO,
            detail=f"random starts of width {config.width}: {', '.join(f'{v:.4g}' for v in random_final)} vs "
            f"{final:.4g}; fails if width does not help once the tie is broken",
        ),
    ]


def figures(metrics: pd.DataFrame, config: SymmetryBreakingConfig) -> dict[str, Figure]:
    """Loss curves of every network, and the units' spread over training."""
    fig = Figure(figsize=(12.5, 4.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    styles = {
        "constant": ("C3", "-", 2.0),
        "twin": ("k", ":", 1.5),
        "random": ("C0", "-", 1.0),
        "width-1": ("0.6", "-", 0.8),
    }
    labels = {
        "constant": f"width {config.width}, constant start",
        "twin": "its width-1 twin (per-layer steps)",
        "random": f"width {config.width}, random starts",
        "width-1": "width 1, random starts (Adam)",
    }
    for network in ("width-1", "random", "constant", "twin"):
        color, style, lw = styles[network]
        losses = _losses(metrics, network)
        for k, seed in enumerate(losses.columns):
            left.semilogy(
                losses.index, losses[seed], style, color=color, lw=lw, label=labels[network] if k == 0 else None
            )
    left.set(xlabel="GD step", ylabel="training MSE")
    left.set_title("A constant start trains a width-1 network")
    left.legend(fontsize=8)
    floor = 1e-18
    for network, color in (("constant", "C3"), ("random", "C0")):
        for name, style in (("largest_spread", "-"), ("smallest_spread", "--")):
            chosen = select(metrics, name, network=network)
            for (seed, layer), group in chosen.groupby(["seed", "layer"]):
                group = group.sort_values("step")
                label = f"{network}: {name.split('_')[0]} pairwise distance" if seed in (0, 1) and layer == 0 else None
                label = label and (label + " (0 drawn at 1e-18)" if network == "constant" else label)
                right.semilogy(
                    group["step"], np.maximum(group["value"], floor), style, color=color, lw=0.9, label=label
                )
    right.axhline(ROUNDING, color="k", lw=0.8, ls=":", label="check: float64 rounding bound")
    right.set(xlabel="GD step", ylabel=r"$|u_i - u_j| / \max|u|$ between units of a layer")
    right.set_title("Tied units never separate; random ones never merge")
    right.legend(fontsize=8)
    fig.suptitle(f"Symmetry breaking: tanh MLP, {config.depth} hidden layers, teacher of width {config.teacher_width}")
    return {"symmetry": fig}


EXPERIMENT = Experiment(
    name="symmetry-breaking",
    claim="A constant initialisation never breaks the symmetry between hidden units: under gradient descent all "
    "units of a layer stay equal, so the network trains as a width-1 network and its loss plateaus at a width-1 "
    "network's; random initialisation breaks the symmetry.",
    config=SymmetryBreakingConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={
        "full": {
            "in_features": 6,
            "examples": 256,
            "teacher_width": 4,
            "width": 16,
            "depth": 2,
            "random_seeds": 5,
            "restarts": 16,
            "lr": 0.05,
            "steps": 3000,
            "record_every": 20,
        }
    },
    references=(
        "Goodfellow, Bengio & Courville (2016), Deep Learning, Sec. 8.4 (breaking the symmetry between units)",
        "Rumelhart, Hinton & Williams (1986), Learning representations by back-propagating errors, Nature",
    ),
    part="signal propagation",
)
