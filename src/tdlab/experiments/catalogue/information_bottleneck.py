r"""information-bottleneck: in the information plane (I(X;T), I(T;Y) of every hidden layer T over training, binning
estimator) a tanh network first fits and then compresses, I(X;T) falling late in training (Shwartz-Ziv & Tishby
2017); a ReLU network does not compress: the compression comes from tanh's saturation (Saxe et al. 2018).

The setting of both papers at its original size: the inputs are all 4096 patterns x of 12 bits, X uniform over
them; the label is a fixed rule of the pattern with I(X;Y) = H(Y) close to 1 bit; the network is 12-10-7-5-4-3-2
(five hidden layers of tanh or ReLU units, a two-class softmax readout), trained on all patterns by Adam on the
cross-entropy. The rule is spherically symmetric like Shwartz-Ziv & Tishby's: the 12 bits sit at the 12 vertices
v_i of an icosahedron, s = 2x - 1, f(x) = |sum_i s_i v_i|^2 (invariant under the icosahedron's 120 symmetries
and under flipping every bit), and y = [f(x) > theta] with theta between the two distinct values of f where the
fraction of patterns above is nearest 1/2 (here 2036 of 4096: H(Y) = 0.99998 bit). The code behind both papers
trains with Adam at lr 4e-4 on batches of 256 for 8000-10000 epochs, from weights drawn from a normal truncated
at two deviations and zero biases (deviation 1/sqrt(fan-out) in Saxe et al.'s replication, 1/sqrt(fan-in) in
Shwartz-Ziv's); here the initialisation is Saxe et al.'s, and Adam takes full-batch steps at a larger lr to fit
the time budget (5e-3 for 600 steps, full preset 3e-3 for 3000; Saxe et al., Sec. 4: full-batch gradient descent
gives the same information plane; `batch_size` = 256 and `lr` = 4e-4 give the papers' steps). The networks of every
seed train at once, side by side (`StackedPerceptrons`), through `tdlab.train.fit`; the tanh and ReLU nets of
one seed start from the same weights.

The estimator (`tdlab.probes.information`): every unit's activation is cut into `bins` = 30 equal bins of its
range, [-1, 1] for tanh, [0, the layer's largest activation over the recorded steps] for ReLU (Saxe et al.); the
bin vector T_b is a deterministic function of X, so I(X;T_b) = H(T_b) and I(T_b;Y) = H(T_b) - H(T_b|Y), the
entropies over the 4096 equally likely patterns. I(X;T_b) <= 12 bits = H(X), I(T_b;Y) <= I(X;Y).

Measured per net and hidden layer at log-spaced steps: I(X;T), I(T;Y), training accuracy. Compression of a layer:
c = max over the recorded steps of I(X;T) - I(X;T) at the last step (>= 0 by definition, so the tests ask for more
than a margin delta = 1 bit). Nets that do not fit (training accuracy < 0.95) are left out of the tests and
counted by the premise check: a narrow ReLU layer can die, at initialisation (1% of nets) or during training (at
lr 1e-2 a net that had fitted lost its last layer and fell back to the majority class, its I(X;T) to 0: a ReLU
net "compresses" only by dying).

Checks (alpha = 0.05 for every test, over nets; `tested_layers`: the last hidden layer in the quick run, the last
two in the full one):

1. premise, each activation: the fraction of nets that fit the labels (accuracy >= 0.95) is at least 3/4: nets
   stuck at the majority class (tested: three of eight) or too short a training fail it;
2. fitting phase, each activation: I(T;Y) of the last hidden layer closes at least 90% of its gap to I(X;Y)
   (mean over nets of (end - start) / (I(X;Y) - start)): a layer that never learns the label (tested: ratio 0),
   or an estimator whose I(T;Y) is I(X;Y) from the start (bins so fine that T_b is injective; tested: 0/0),
   fails it;
3. tanh compresses: for each tested layer, a one-sided Wilcoxon signed-rank test of c > delta over nets (the
   largest p must be <= alpha): a tanh net whose I(X;T) stays at its peak (tested), or ReLU's numbers in its
   place (tested), fails it;
4. ReLU does not: for each tested layer, a one-sided Wilcoxon test of c < delta (positive evidence of no
   compression beyond delta, not a failure to reject): tanh's numbers in its place (tested) or a late drop of
   3 bits (tested) fail it;
5. the contrast: tanh's c exceeds ReLU's, a one-sided Mann-Whitney test per tested layer: swapped or equal
   activations fail it.

Why the quick run tests the last hidden layer only: with 8 nets and 600 steps, layer 4's compression is still
growing (tanh: 0.3-4 bits) and a ReLU net that loses a unit drops 1-2 bits there; over six seeds of the quick
config the layer-4 tests failed twice (tanh p 0.074; ReLU p 0.125 with one net at 2.2 bits), while every layer-5
test passed (tanh c >= 3.5 bits, ReLU c <= 1.2). The full run (16 nets, 3000 steps) tests layers 4 and 5.

Definitional facts of the estimator (identity layer: 12 bits; constant layer: 0; a copy of the label:
I(T;Y) = H(Y); I(T;Y) <= I(X;Y); saturated tanh units keep only their signs) are tested in tests/, not here.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from numpy.typing import NDArray
from pydantic import Field, field_validator
from scipy import stats
from torch import Tensor, nn

from tdlab.config.threads import one_thread
from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.tidy import rows, select, value
from tdlab.probes.information import binned_information, code_entropy
from tdlab.train.trainer import fit

ACTIVATIONS = ("tanh", "relu")
WIDTHS = (12, 10, 7, 5, 4, 3, 2)  # the network of Shwartz-Ziv & Tishby and Saxe et al.
HIDDEN = len(WIDTHS) - 2
SHOWN_LAYERS = (HIDDEN - 1, HIDDEN)  # the last two hidden layers, drawn over training
FIT_ACCURACY = 0.95  # a net fits the labels when its final training accuracy reaches this
MIN_FITTED = 0.75  # the premise: at least this fraction of nets of each activation fit
GAP_CLOSED = 0.9  # the fitting phase: I(T;Y) of the last hidden layer closes this fraction of its gap to I(X;Y)
LABELS = {"tanh": "tanh", "relu": "ReLU"}


class InformationBottleneckConfig(ExperimentConfig):
    """The 12-bit task, the 12-10-7-5-4-3-2 networks, Adam's full-batch steps, the binning and the tests."""

    seeds: int = Field(8, ge=5, description="networks per activation (independent initialisations)")
    steps: int = Field(600, ge=10, description="Adam steps (epochs when full-batch)")
    batch_size: int | None = Field(
        None, ge=1, le=4096, description="examples per step, None for the full batch (the papers' code: 256)"
    )
    lr: float = Field(0.005, gt=0.0, description="Adam's learning rate")
    records: int = Field(30, ge=5, description="log-spaced steps at which the information is measured")
    bins: int = Field(30, ge=2, description="equal bins per unit over the activation's range")
    margin: float = Field(1.0, gt=0.0, description="compression counts above this many bits (delta)")
    tested_layers: tuple[int, ...] = Field(
        (HIDDEN,), min_length=1, description=f"hidden layers (1..{HIDDEN}) whose compression is tested"
    )
    alpha: float = Field(0.05, gt=0.0, lt=0.5, description="significance level of every test")

    @field_validator("tested_layers")
    @classmethod
    def _layers(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if len(set(value)) < len(value) or not all(1 <= l <= HIDDEN for l in value):
            raise ValueError(f"tested_layers: expected distinct hidden layers in 1..{HIDDEN}, got {list(value)}")
        return tuple(sorted(value))


# ---------------------------------------------------------------------------------------------------- data
def patterns(bits: int = 12) -> Tensor:
    """All 2^bits binary patterns, one per row, bit j of row i the j-th binary digit of i (float32, 0/1).

    Example:
        >>> patterns(2).tolist()
        [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
    """
    return ((torch.arange(2**bits)[:, None] >> torch.arange(bits)) & 1).to(torch.float32)


def icosahedron() -> NDArray[np.float64]:
    """The 12 vertices of the regular icosahedron on the unit sphere, (0, +-1, +-phi) and its cyclic
    permutations, normalised (phi the golden ratio).

    Example:
        >>> v = icosahedron()
        >>> v.shape, bool(np.allclose(np.linalg.norm(v, axis=1), 1.0)), bool(np.allclose(v.sum(axis=0), 0.0))
        ((12, 3), True, True)
    """
    phi = (1 + math.sqrt(5)) / 2
    vertices = [vertex for a in (-1.0, 1.0) for b in (-phi, phi) for vertex in ((0.0, a, b), (a, b, 0.0), (b, 0.0, a))]
    v = np.array(vertices)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def icosahedral_labels(X: Tensor) -> Tensor:
    """y = [f(x) > theta], f(x) = |sum_i (2 x_i - 1) v_i|^2 over the icosahedron's vertices v_i (module
    docstring), theta midway between the consecutive distinct values of f where the fraction of rows above is
    nearest 1/2. Labels int64, one per row of X (n, 12).

    Example:
        >>> y = icosahedral_labels(patterns())
        >>> int(y.sum()), len(y)
        (2036, 4096)
    """
    f = np.square((2 * X.double().numpy() - 1) @ icosahedron()).sum(axis=1).round(9)
    values = np.unique(f)
    above = np.array([(f > v).mean() for v in values[:-1]])
    k = int(np.argmin(np.abs(above - 0.5)))
    theta = (values[k] + values[k + 1]) / 2
    return torch.as_tensor(f > theta, dtype=torch.int64)


# --------------------------------------------------------------------------------------------------- model
class StackedPerceptrons(nn.Module):
    """`members` fully connected networks widths[0] -> widths[1] -> ... -> widths[-1], `activation` on every
    hidden layer, side by side: weights (members, out, in) and biases (members, out, 1), examples last
    (h_l = phi(W_l h_{l-1} + b_l) on inputs h_0 = x^T), so that each layer is one batched matrix product with the
    4096 examples as its long side (7x faster on a CPU than examples first, for layers this narrow).

    Initialisation as in the papers' code: weights normal with standard deviation 1/sqrt(fan-out), truncated
    at two deviations; biases zero. Members are independent: the loss `member_sum_cross_entropy` sums their
    losses, so each receives the gradient of its own.

    Example:
        >>> model = StackedPerceptrons((3, 4, 2), "tanh", members=5, generator=torch.Generator().manual_seed(0))
        >>> model(torch.zeros(7, 3)).shape, [tuple(h.shape) for h in model.hidden(torch.zeros(7, 3))]
        (torch.Size([5, 2, 7]), [(5, 4, 7)])
    """

    def __init__(self, widths: tuple[int, ...], activation: str, members: int, generator: torch.Generator):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation: expected one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        self.phi = torch.tanh if activation == "tanh" else torch.relu
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
            std = 1 / math.sqrt(fan_out)
            weight = torch.empty(members, fan_out, fan_in)
            nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std, generator=generator)
            self.weights.append(nn.Parameter(weight))
            self.biases.append(nn.Parameter(torch.zeros(members, fan_out, 1)))

    def hidden(self, x: Tensor) -> list[Tensor]:
        """The hidden layers' activations (members, width, n) on inputs x (n, in)."""
        return self.layers(x)[:-1]

    def forward(self, x: Tensor) -> Tensor:
        """Logits (members, classes, n) on inputs x (n, in)."""
        return self.layers(x)[-1]

    def layers(self, x: Tensor) -> list[Tensor]:
        """The hidden layers' activations and then the logits, each (members, width, n), on inputs x (n, in)."""
        members, n = self.weights[0].shape[0], x.shape[0]
        first, bias = self.weights[0], self.biases[0]  # one matrix product for every member's first layer
        h = torch.addmm(bias.reshape(-1, 1), first.reshape(-1, first.shape[-1]), x.T).reshape(members, -1, n)
        outputs = []
        for weight, bias in zip(self.weights[1:], self.biases[1:], strict=True):
            outputs.append(self.phi(h))
            h = torch.baddbmm(bias, weight, outputs[-1])
        return [*outputs, h]


def member_sum_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """sum over members of each member's mean cross-entropy, logits (members, classes, n), labels (n,).

    Example:
        >>> loss = member_sum_cross_entropy(torch.zeros(3, 2, 5), torch.zeros(5, dtype=torch.int64))
        >>> round(loss.item(), 5)  # three members, log 2 each
        2.07944
    """
    members = logits.shape[0]
    return nn.functional.cross_entropy(logits, labels.expand(members, -1)) * members


def record_steps(config: InformationBottleneckConfig) -> NDArray[np.int64]:
    """Step 0 and `records` log-spaced steps in [1, steps] (distinct, the last one `steps`)."""
    spaced = np.unique(np.geomspace(1, config.steps, config.records).round().astype(np.int64))
    return np.concatenate([[0], spaced])


# ------------------------------------------------------------------------------------------------- measure
def measure(config: InformationBottleneckConfig, context: Context) -> pd.DataFrame:
    """Train `seeds` tanh and ReLU nets and bin their hidden layers at `record_steps`.

    Rows: "I_XT" and "I_TY" (bits; activation, seed, layer 1..5, step), "accuracy" (activation, seed, step),
    "bin_high" (the upper end of the binned range; activation, seed, layer) and "I_XY" (= H(Y), the labels'
    entropy: Y is a function of X).
    """
    X = patterns(WIDTHS[0])
    y = icosahedral_labels(X)
    frames = [rows("I_XY", float(code_entropy(y)))]
    with one_thread():
        for activation in context.track(ACTIVATIONS, "activations"):
            frames += train_and_bin(config, activation, X.to(context.device), y.to(context.device))
    return pd.concat(frames, ignore_index=True)


def train_and_bin(config: InformationBottleneckConfig, activation: str, X: Tensor, y: Tensor) -> list[pd.DataFrame]:
    """The rows of `measure` for one activation: train its `seeds` nets and bin every hidden layer at the recorded
    steps. tanh layers are binned on [-1, 1] as they are recorded; ReLU layers are kept until training ends (29 x
    4096 floats per net and record: 0.12 GB in the quick run, 0.4 GB in the full one), then binned on [0, their
    largest activation over the recorded steps]."""
    recorded = record_steps(config)
    model = StackedPerceptrons(WIDTHS, activation, config.seeds, torch.Generator().manual_seed(config.seed))
    model = model.to(X.device)
    labels = y.cpu()
    accuracy: list[Tensor] = []
    kept: list[list[Tensor]] = []  # per record, the hidden layers (members, n, width), for ReLU
    high = [torch.full((config.seeds,), 1.0 if activation == "tanh" else 0.0) for _ in range(HIDDEN)]

    def bin_layers(layers: list[Tensor]) -> list[tuple[Tensor, Tensor]]:
        low = -1.0 if activation == "tanh" else 0.0
        return [
            binned_information(h, labels, low, top.clamp_min(1e-12)[:, None, None], config.bins)
            for h, top in zip(layers, high, strict=True)
        ]  # a dead ReLU layer (all zero) gets a tiny range: every input in bin 0

    binned: list[list[tuple[Tensor, Tensor]]] = []  # per record and layer, (I(X;T), I(T;Y)) of every member

    def record(step: int, _: float = 0.0) -> None:
        if step not in recorded:
            return
        with torch.no_grad():
            *layers, logits = model.layers(X)
        accuracy.append((logits.argmax(dim=1) == y).double().mean(dim=1).cpu())
        layers = [h.transpose(1, 2).cpu() for h in layers]  # (members, n, width)
        if activation == "tanh":
            binned.append(bin_layers(layers))
        else:
            kept.append(layers)
            for l, h in enumerate(layers):
                high[l] = torch.maximum(high[l], h.amax(dim=(1, 2)))

    record(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    fit(
        model,
        member_sum_cross_entropy,
        (X, y),
        optimizer,
        config.steps,
        batch_size=config.batch_size,
        seed=config.seed,
        callbacks=[record],
    )
    while kept:
        binned.append(bin_layers(kept.pop(0)))
    seeds, steps = np.arange(config.seeds), recorded[:, None]
    frames = [rows("accuracy", torch.stack(accuracy).numpy(), step=steps, seed=seeds)]
    for l in range(HIDDEN):
        keys = {"step": steps, "seed": seeds, "layer": l + 1}
        frames += [
            rows("I_XT", torch.stack([record[l][0] for record in binned]).numpy(), **keys),
            rows("I_TY", torch.stack([record[l][1] for record in binned]).numpy(), **keys),
            rows("bin_high", high[l].numpy(), seed=seeds, layer=l + 1),
        ]
    return [frame.assign(activation=activation) for frame in frames]


# -------------------------------------------------------------------------------------------------- checks
def information(metrics: pd.DataFrame, name: str, activation: str, layer: int) -> pd.DataFrame:
    """The rows `name` ("I_XT" or "I_TY") of one activation and hidden layer as a table step x seed."""
    chosen = select(metrics, name, activation=activation, layer=layer)
    return chosen.pivot(index="step", columns="seed", values="value").sort_index()


def fitted_seeds(metrics: pd.DataFrame, activation: str) -> list[int]:
    """The seeds whose net of `activation` ends with training accuracy >= FIT_ACCURACY."""
    chosen = select(metrics, "accuracy", activation=activation)
    final = chosen[chosen["step"] == chosen["step"].max()].set_index("seed")["value"]
    return sorted(int(s) for s in final.index[final >= FIT_ACCURACY])


def compression(metrics: pd.DataFrame, activation: str, layer: int) -> pd.Series:
    """c = max over steps of I(X;T) - I(X;T) at the last step, per fitted seed."""
    table = information(metrics, "I_XT", activation, layer)[fitted_seeds(metrics, activation)]
    return table.max() - table.iloc[-1]


def gap_closed(metrics: pd.DataFrame, activation: str) -> tuple[float, float, float]:
    """(mean over fitted seeds of (end - start) / (I(X;Y) - start) for I(T;Y) of the last hidden layer, the mean
    start, the mean end)."""
    table = information(metrics, "I_TY", activation, HIDDEN)[fitted_seeds(metrics, activation)]
    start, end = table.iloc[0], table.iloc[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (end - start) / (value(metrics, "I_XY") - start)
    return float(ratio.mean()), float(start.mean()), float(end.mean())


def _wilcoxon(differences: pd.Series, alternative: str) -> float:
    """One-sided Wilcoxon signed-rank p-value of `differences` (nan with fewer than 2 of them)."""
    if len(differences) < 2:
        return float("nan")
    return float(stats.wilcoxon(differences.to_numpy(), alternative=alternative).pvalue)


def _listed(values: pd.Series) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def checks(metrics: pd.DataFrame, config: InformationBottleneckConfig) -> list[Check]:
    """The premise, the fitting phase, tanh's compression, ReLU's absence of it, and their contrast."""
    delta, alpha = config.margin, config.alpha
    out: list[Check] = []
    for activation in ACTIVATIONS:
        fitted = fitted_seeds(metrics, activation)
        chosen = select(metrics, "accuracy", activation=activation)
        final = chosen[chosen["step"] == chosen["step"].max()].sort_values("seed")["value"]
        out.append(
            Check.at_least(
                f"premise, {LABELS[activation]}: fraction of nets fitting the labels (training accuracy >= "
                f"{FIT_ACCURACY})",
                len(fitted) / config.seeds,
                MIN_FITTED,
                detail=f"final training accuracies {_listed(final)}; the tests below use the {len(fitted)} nets "
                "that fit (a net whose narrow ReLU layer dies stays at the majority class, ~0.50); too small a "
                "learning rate or a broken trainer fails it",
            )
        )
    i_xy = value(metrics, "I_XY")
    for activation in ACTIVATIONS:
        closed, start, end = gap_closed(metrics, activation)
        out.append(
            Check.at_least(
                f"fitting phase, {LABELS[activation]}: I(T;Y) of the last hidden layer closes its gap to I(X;Y) "
                "(mean of (end - start) / (I(X;Y) - start))",
                closed,
                GAP_CLOSED,
                detail=f"I(T;Y) from {start:.3f} to {end:.3f} bit (means over the fitted nets), I(X;Y) = H(Y) = "
                f"{i_xy:.5f} bit; a layer that never learns the label (ratio ~0) or an estimator whose I(T;Y) "
                "equals I(X;Y) from the start (0/0 = nan) fails it",
            )
        )
    tested = config.tested_layers
    c = {(a, l): compression(metrics, a, l) for a in ACTIVATIONS for l in tested}
    tanh_p = {l: _wilcoxon(c["tanh", l] - delta, "greater") for l in tested}
    relu_p = {l: _wilcoxon(c["relu", l] - delta, "less") for l in tested}
    contrast_p = {
        l: float(stats.mannwhitneyu(c["tanh", l], c["relu", l], alternative="greater").pvalue) for l in tested
    }

    def per_layer(activation: str) -> str:
        return "; ".join(f"layer {l}: {_listed(c[activation, l])} bits" for l in tested)

    def ps(p: dict[int, float]) -> str:
        return ", ".join(f"layer {l}: {v:.2g}" for l, v in p.items())

    layers = ("hidden layer " if len(tested) == 1 else "hidden layers ") + " and ".join(map(str, tested))
    largest = "" if len(tested) == 1 else "largest "
    out += [
        Check.at_most(
            f"tanh compresses: I(X;T) of {layers} ends more than {delta:g} bit below its peak, "
            f"{largest}one-sided Wilcoxon p (alpha = {alpha:g})",
            max(tanh_p.values()),
            alpha,
            detail=f"c = peak - end per fitted net: {per_layer('tanh')}; H1: c > {delta:g} bit, p {ps(tanh_p)}; "
            "a tanh net whose I(X;T) stays at its peak (units that never saturate), or ReLU's values, fail it",
        ),
        Check.at_most(
            f"ReLU does not: I(X;T) of {layers} ends within {delta:g} bit of its peak, "
            f"{largest}one-sided Wilcoxon p (alpha = {alpha:g})",
            max(relu_p.values()),
            alpha,
            detail=f"c per fitted net: {per_layer('relu')}; H1: c < {delta:g} bit, p {ps(relu_p)}; a ReLU net "
            "that compresses like tanh (c of several bits), or a late drop of a few bits, fails it",
        ),
        Check.at_most(
            f"tanh compresses more than ReLU in {layers}: {largest}one-sided Mann-Whitney p (alpha = {alpha:g})",
            max(contrast_p.values()),
            alpha,
            detail=f"H1: c(tanh) > c(ReLU), p {ps(contrast_p)}; equal or swapped activations fail it",
        ),
    ]
    return out


# ------------------------------------------------------------------------------------------------- figures
def figures(metrics: pd.DataFrame, config: InformationBottleneckConfig) -> dict[str, Figure]:
    """The information plane of each activation (means over the fitted nets, points coloured by step, layers
    at one step joined), and I(X;T) of the last two hidden layers over training."""
    fig = Figure(figsize=(17.0, 5.2), layout="constrained")
    *planes, trace = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 1.1]})
    i_xy = value(metrics, "I_XY")
    norm = LogNorm(1, config.steps)
    shown = None
    for ax, activation in zip(planes, ACTIVATIONS, strict=True):
        seeds = fitted_seeds(metrics, activation)
        means = [
            (
                information(metrics, "I_XT", activation, l)[seeds].mean(axis=1),
                information(metrics, "I_TY", activation, l)[seeds].mean(axis=1),
            )
            for l in range(1, HIDDEN + 1)
        ]
        steps = means[0][0].index.to_numpy(dtype=float)
        for k in range(len(steps)):
            ax.plot([m[0].iloc[k] for m in means], [m[1].iloc[k] for m in means], color="0.8", lw=0.5, zorder=1)
        for l, (i_xt, i_ty) in enumerate(means, start=1):
            shown = ax.scatter(i_xt, i_ty, c=np.maximum(steps, 1), cmap="gnuplot", norm=norm, s=18, zorder=2)
            ax.annotate(f"T{l}", (i_xt.iloc[-1], i_ty.iloc[-1]), textcoords="offset points", xytext=(4, -10))
        ax.axhline(i_xy, color="k", ls="--", lw=0.8, label=f"I(X;Y) = H(Y) = {i_xy:.3f} bit")
        ax.axvline(WIDTHS[0], color="k", ls=":", lw=0.8, label=f"H(X) = {WIDTHS[0]} bits")
        ax.set(xlabel="I(X;T) (bits)", ylabel="I(T;Y) (bits)", xlim=(-0.3, WIDTHS[0] + 0.5), ylim=(-0.03, 1.08))
        ax.set_title(f"{LABELS[activation]}: information plane, mean of {len(seeds)} nets")
        ax.legend(loc="lower right", fontsize=8)
    fig.colorbar(shown, ax=planes, label="training step (full-batch epoch)")
    for activation, style in zip(ACTIVATIONS, ("-", "--"), strict=True):
        seeds = fitted_seeds(metrics, activation)
        for l, color in zip(SHOWN_LAYERS, ("C0", "C3"), strict=True):
            table = information(metrics, "I_XT", activation, l)[seeds]
            steps = np.maximum(table.index.to_numpy(dtype=float), 1)
            trace.plot(steps, table.mean(axis=1), style, color=color, label=f"{LABELS[activation]}, layer {l}")
            trace.fill_between(
                steps, table.min(axis=1), table.max(axis=1), color=color, alpha=0.12 if style == "-" else 0.06
            )
    trace.set(xscale="log", xlabel="training step", ylabel="I(X;T) (bits)")
    trace.set_title("Compression: tanh's I(X;T) falls after its peak, ReLU's does not\n(mean and range over nets)")
    trace.legend(fontsize=8)
    fig.suptitle(
        f"Information plane of 12-10-7-5-4-3-2 networks on the 12-bit task, binning into {config.bins} bins per "
        f"unit (Adam, lr {config.lr:g}, {config.steps} full-batch steps)"
    )
    return {"information_plane": fig}


EXPERIMENT = Experiment(
    name="information-bottleneck",
    claim="In the information plane (binning estimator) a tanh network first fits (I(T;Y) rises) and then compresses "
    "(I(X;T) of its last hidden layers falls late in training), while a ReLU network fits without compressing: the "
    "compression comes from tanh's saturation, not from learning itself.",
    config=InformationBottleneckConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={"full": {"seeds": 16, "steps": 3000, "lr": 0.003, "records": 50, "tested_layers": (4, 5)}},
    references=(
        "Shwartz-Ziv & Tishby (2017), Opening the black box of deep neural networks via information, arXiv:1703.00810",
        "Saxe, Bansal, Dapello, Advani, Kolchinsky, Tracey & Cox (2018), On the information bottleneck theory of deep "
        "learning, ICLR",
        "Tishby & Zaslavsky (2015), Deep learning and the information bottleneck principle, IEEE ITW",
    ),
    part="generalisation",
)
