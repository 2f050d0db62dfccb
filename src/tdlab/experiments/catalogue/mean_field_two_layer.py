"""mean-field-two-layer: a wide two-layer ReLU network in the mean-field scaling, its neurons as particles.

Chizat & Bach (2018) (also Mei, Montanari & Nguyen 2018; Rotskoff & Vanden-Eijnden 2018) write a two-layer
network as an average over m particles theta_j = (a_j, w_j),

    f(x) = (1/m) sum_j a_j relu(w_j . x),

and train it by gradient descent with the step scaled by m, theta_j <- theta_j - eta m grad_{theta_j} L, so that
every particle moves by O(1) whatever m. As m -> infinity the empirical measure of the particles follows a
Wasserstein gradient flow (the particle limit), and a finite network stays within O(1/sqrt(m)) of it, up to
logarithms (Mei et al. 2018, Thm. 3): the loss curves of wide networks coincide. As in the lecture, the loss is the
exponential loss L = (1/n) sum_i exp(-y_i f(x_i)); the experiment trains independently initialised networks
(a_j ~ N(0, 1), w_j ~ N(0, I_2)) of several widths on a 2-D task whose labels come from a teacher of four ReLU
neurons,

    y = sign(relu(x_1) - relu(x_2) + relu(-x_1) - relu(-x_2)) = sign(|x_1| - |x_2|),

by full-batch GD (`tdlab.train.fit` with `torch.optim.SGD`, step eta m), and checks:

1. the particle limit: the loss curves of widths 1000 and 4000 (the two widest when these are not run) agree within
   2% at every step (the issue's tolerance; max_t |L_m(t) - L_M(t)| / L_M(t)). Fails when the step or the output is
   not scaled with m as above (the curves then depend on m). It cannot tell a network that does not move (two flat
   curves agree): checks 2 and 3 can.
2. the particles move to the teacher: the concentration C_eps, the share of the second-layer mass
   |a_j| ||w_j|| (a ReLU particle's weight in f, by homogeneity) held by particles within angle eps of a teacher
   neuron's direction with the teacher's sign of a, grows during training by more than three standard deviations
   of its value at initialisation (smallest gain over the widths). Fails for a frozen or lazy network (the NTK
   scaling, or a step not scaled by m), whose particles stay where they started.
3. they concentrate there: at the end C_eps >= 1/2, the majority of the mass, in every width, against 2 eps / pi
   for particles spread uniformly (at eps = 15 degrees, 1/6: the cones of half-angle eps around the four teacher
   directions cover 4 (2 eps) / (2 pi) of the circle, and the sign matches half the time). Fails when the mass
   spreads or gathers elsewhere (a wrong teacher, labels not from it).

The standard deviation of check 2: at initialisation directions are uniform and independent of the weights
r_j = |a_j| ||w_j||, so C_eps is a ratio of sums with mean p = 2 eps / pi and, by the delta method, variance
p (1 - p) E[r^2] / (m E[r]^2) = 2 p (1 - p) / m (E a^2 E||w||^2 / (E|a| E||w||)^2 = 1 * 2 / (sqrt(2/pi) sqrt(pi/2))^2
= 2 for a ~ N(0, 1), w ~ N(0, I_2)).

Figures: the loss curves and their gaps to the widest, and the particles in the plane, each at radius
log(1 + |a_j| |w_j|) along the direction of w_j (red a_j > 0, blue a_j < 0; the log radius because the
exponential loss grows them without bound), at initialisation and the end, with the paths of a subsample: they
gather on the teacher's directions +-e_1 (positive) and +-e_2 (negative), the sparse measure of the teacher
(Chizat & Bach's global convergence for homogeneous networks).

The animated version: the particles' motion is written as a GIF to `gif_path`, or by default next to the run's
figures (`particles.gif`), with matplotlib's Pillow writer, one frame every `record_every` steps. Computed in
float32 (the loss curves are compared at the 1e-2 level; float32 halves the cost of the widest network).
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib import animation
from matplotlib.figure import Figure
from pydantic import Field, field_validator
from torch import Tensor, nn

from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.tidy import select
from tdlab.probes import LossProbe, ProbeSet
from tdlab.train.trainer import fit

PARTICLE_LIMIT_TOLERANCE = 0.02  # the issue's: loss curves at widths 1000 and 4000 agree within 2%
MAJORITY = 0.5  # check 3: at the end, at least half of the second-layer mass lies near the teacher's directions
TEACHER = ((1.0, 0.0, 1.0), (0.0, 1.0, -1.0), (-1.0, 0.0, 1.0), (0.0, -1.0, -1.0))  # (w_1, w_2, sign of a)


class MeanFieldTwoLayerConfig(ExperimentConfig):
    """Quick defaults: widths 1000 and 4000, 128 Gaussian points in the plane, 200 GD steps with eta m, eta = 1;
    concentration measured within 15 degrees of the teacher's directions."""

    widths: tuple[int, ...] = Field((1000, 4000), min_length=2, description="numbers of particles m to compare")
    n_train: int = Field(128, ge=4, description="training points x ~ N(0, I_2)")
    eta: float = Field(1.0, gt=0, description="mean-field step: each particle moves by eta m grad_theta_j L")
    steps: int = Field(200, ge=1, description="gradient-descent steps")
    record_every: int = Field(10, ge=1, description="steps between recorded particle positions (GIF frames)")
    trails: int = Field(150, ge=0, description="particles whose paths are drawn in the still")
    gif_path: str | None = Field(None, description="if set, write the particles' motion as an animated GIF there")
    epsilon_deg: float = Field(
        15.0, gt=0, lt=45, description="half-angle of the cones around the teacher's directions (concentration)"
    )

    @field_validator("widths")
    @classmethod
    def _increasing(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(m < 1 for m in value) or list(value) != sorted(set(value)):
            raise ValueError(f"widths: expected distinct positive widths in increasing order, got {value}")
        return value

    @field_validator("gif_path")
    @classmethod
    def _gif(cls, value: str | None) -> str | None:
        if value is not None and not value.endswith(".gif"):
            raise ValueError(f"gif_path: expected a path ending in .gif or None, got {value!r}")
        return value


class _MeanFieldNet(nn.Module):
    """f(x) = (1/m) sum_j a_j relu(w_j . x), a_j ~ N(0, 1), w_j ~ N(0, I_d) from `generator`."""

    def __init__(self, m: int, d: int, generator: torch.Generator):
        super().__init__()
        self.a = nn.Parameter(torch.randn(m, generator=generator))
        self.w = nn.Parameter(torch.randn(m, d, generator=generator))

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(x @ self.w.T) @ self.a / self.a.shape[0]


def _exponential(outputs: Tensor, labels: Tensor) -> Tensor:
    """exp(-y f(x)), averaged over examples (labels +-1): the lecture's loss."""
    return torch.exp(-labels * outputs).mean()


def concentration(a: Tensor, w: Tensor, epsilon: float) -> float:
    """The share of the second-layer mass |a_j| ||w_j|| held by particles whose w_j lies within angle `epsilon`
    (radians) of a teacher neuron's direction and whose a_j has that neuron's sign (module docstring, check 2).

    Example:
        >>> a, w = torch.tensor([2.0, -1.0, 1.0]), torch.tensor([[1.0, 0.1], [0.0, -3.0], [1.0, 1.0]])
        >>> round(concentration(a, w, math.radians(15)), 4)  # the first two: mass 2.01 + 3 of 6.42
        0.7799
    """
    teacher = torch.tensor(TEACHER, dtype=w.dtype, device=w.device)
    norm = w.norm(dim=1)
    cosine = (w / norm.clamp_min(torch.finfo(w.dtype).tiny)[:, None]) @ teacher[:, :2].T  # (m, 4)
    near = (cosine >= math.cos(epsilon)) & (torch.sign(a)[:, None] == teacher[:, 2])
    mass = a.abs() * norm
    return float((mass * near.any(dim=1)).sum() / mass.sum())


def uniform_concentration(epsilon: float) -> float:
    """C_eps of particles with uniform directions and signs independent of their mass: 2 eps / pi (eps <= pi/4).

    Example:
        >>> uniform_concentration(math.radians(15))  # 1/6
        0.16666666666666666
    """
    return 2 * epsilon / math.pi


def _teacher_data(config: MeanFieldTwoLayerConfig, device: torch.device) -> tuple[Tensor, Tensor]:
    X = torch.randn(config.n_train, 2, generator=torch.Generator().manual_seed(config.seed))
    y = torch.sign(X[:, 0].abs() - X[:, 1].abs())
    return X.to(device), y.to(device)


def measure(config: MeanFieldTwoLayerConfig, context: Context) -> pd.DataFrame:
    """Rows (width, step, name, value): "train/loss" at steps 0..steps (`LossProbe`; a diverged run ends with its
    non-finite loss), "concentration" (`concentration`) at step 0 and the last, and for the smallest width
    "particle/x", "particle/y", "particle/sign" (`_particles`, one row per particle `index`) every `record_every`
    steps. Writes the GIF (`gif_path`, else `particles.gif` among the
    run's files)."""
    data = _teacher_data(config, context.device)
    frames = []
    for m in context.track(config.widths, "widths"):
        generator = torch.Generator().manual_seed(1_000_003 * config.seed + m)  # independent draws for each width
        model = _MeanFieldNet(m, 2, generator).to(context.device)
        recorded = [_particles(model, 0)]
        epsilon = math.radians(config.epsilon_deg)
        start = concentration(model.a.detach().double(), model.w.detach().double(), epsilon)

        def record(step: int, loss: float, model: nn.Module = model, recorded: list = recorded) -> None:
            if step % config.record_every == 0 or step == config.steps:
                recorded.append(_particles(model, step))

        optimizer = torch.optim.SGD(model.parameters(), lr=config.eta * m)  # the mean-field step eta m
        probes = ProbeSet([LossProbe(batch_size=None)], model, _exponential, data, task="regression")
        trained = fit(model, _exponential, data, optimizer, config.steps, probes=probes, callbacks=[record])
        end = concentration(model.a.detach().double(), model.w.detach().double(), epsilon)
        frames += [select(trained.metrics, "train/loss").assign(width=m)]
        frames += [
            pd.DataFrame({"step": [0, trained.steps], "name": "concentration", "value": [start, end], "width": m})
        ]
        frames += [f.assign(width=m) for f in recorded] if m == config.widths[0] else []
    metrics = pd.concat(frames, ignore_index=True).reindex(columns=["width", "step", "index", "name", "value"])
    gif = Path(config.gif_path) if config.gif_path else (context.files / "particles.gif" if context.files else None)
    if gif is not None:
        write_gif(_frames(metrics), config, gif)
    return metrics


def _particles(model: _MeanFieldNet, step: int) -> pd.DataFrame:
    """Each particle drawn at log(1 + |a_j| |w_j|) along the direction of w_j, with the sign of a_j.

    On separable data the exponential loss keeps growing the particles (|a_j| |w_j| reaches hundreds), so the radius
    is drawn on a log scale to show the initial cloud and the final configuration on one picture."""
    a, w = model.a.detach().double().cpu(), model.w.detach().double().cpu()
    norm = w.norm(dim=1).clamp_min(torch.finfo(torch.float32).tiny)
    xy = torch.log1p(a.abs() * norm)[:, None] * w / norm[:, None]
    frame = pd.DataFrame({"particle/x": xy[:, 0], "particle/y": xy[:, 1], "particle/sign": torch.sign(a)})
    return frame.rename_axis("index").reset_index().melt(id_vars="index", var_name="name").assign(step=step)


def _frames(metrics: pd.DataFrame) -> list[np.ndarray]:
    """The recorded particles of the smallest width, one (m, 3) array (x, y, sign of a_j) per recorded step."""
    rows = metrics[metrics["name"].str.startswith("particle/")]
    table = rows.pivot_table(index=["step", "index"], columns="name", values="value")
    table = table[["particle/x", "particle/y", "particle/sign"]]
    return [group.to_numpy() for _, group in table.groupby(level="step")]


def _curves(metrics: pd.DataFrame) -> dict[int, np.ndarray]:
    """The loss curves L_m(t), t = 0..steps, of the widths whose training stayed finite."""
    loss = select(metrics, "train/loss").sort_values("step")
    curves = {int(m): rows["value"].to_numpy() for m, rows in loss.groupby("width")}
    return {m: c for m, c in curves.items() if np.isfinite(c).all()}


def checks(metrics: pd.DataFrame, config: MeanFieldTwoLayerConfig) -> list[Check]:
    """The loss curves of the compared pair agree within 2% at every step; the mass near the teacher's directions
    grows beyond the noise of its initial value and ends as the majority (module docstring)."""
    return [_limit_check(metrics, config), *_concentration_checks(metrics, config)]


def _limit_check(metrics: pd.DataFrame, config: MeanFieldTwoLayerConfig) -> Check:
    finite = _curves(metrics)
    small, large = _compared(config.widths)
    if small not in finite or large not in finite:
        return Check.holds(
            f"widths {small} and {large}: training stays finite",
            False,
            detail=f"a loss became non-finite with eta = {config.eta:g}",
        )
    gap = _gap(finite[small], finite[large])
    return Check.at_most(
        f"loss curves at widths {small} and {large} agree (particle limit)",
        float(gap.max()),
        PARTICLE_LIMIT_TOLERANCE,
        detail=f"max over {config.steps + 1} steps of |L_{small}(t) - L_{large}(t)| / L_{large}(t) (largest "
        f"at step {int(gap.argmax())}), independent initialisations, same data; deviations from the "
        "mean-field limit are at most O(1/sqrt(m)) up to logarithms; tolerance 2% (the issue's). Fails when the "
        "dynamics depend on m; blind to a network that does not move (checks 2 and 3 are not)",
    )


def _concentration_checks(metrics: pd.DataFrame, config: MeanFieldTwoLayerConfig) -> list[Check]:
    """Checks 2 and 3 of the module docstring, each on its worst width."""
    rows = select(metrics, "concentration").sort_values("step")
    start = rows.groupby("width")["value"].first().reindex(list(config.widths))
    end = rows.groupby("width")["value"].last().reindex(list(config.widths))
    baseline = uniform_concentration(math.radians(config.epsilon_deg))
    noise = pd.Series({m: 3 * math.sqrt(2 * baseline * (1 - baseline) / m) for m in config.widths})
    excess = (end - start) - noise  # the gain beyond three initial standard deviations
    worst_gain, worst_end = excess.idxmin(), end.idxmin()
    eps = f"{config.epsilon_deg:g} degrees"
    values = ", ".join(f"m = {m}: {a:.3f} -> {b:.3f}" for m, a, b in zip(config.widths, start, end, strict=True))
    return [
        Check.at_least(
            f"mass within {eps} of the teacher's directions grows (width {worst_gain}, gain at init -> end)",
            float(end[worst_gain] - start[worst_gain]),
            float(noise[worst_gain]),
            detail=f"C_eps at init -> after {config.steps} steps: {values}; bound 3 sqrt(2 p (1 - p) / m) = "
            f"{noise[worst_gain]:.4f}, three standard deviations of C_eps at a uniform initialisation "
            f"(p = 2 eps / pi = {baseline:.4f}); fails for particles that do not move to the teacher",
        ),
        Check.at_least(
            f"mass within {eps} of the teacher's directions at the end is the majority (width {worst_end}; "
            f"uniform spread: {baseline:.3f})",
            float(end[worst_end]),
            MAJORITY,
            detail=f"C_eps after {config.steps} steps: {values}; bound 1/2 = {MAJORITY / baseline:.1f} x the "
            f"closed form 2 eps / pi = {baseline:.4f} of particles spread uniformly; fails when the mass spreads "
            "or gathers elsewhere",
        ),
    ]


def figures(metrics: pd.DataFrame, config: MeanFieldTwoLayerConfig) -> dict[str, Figure]:
    """The loss curves and their gaps to the widest; the particles of the smallest width (module docstring)."""
    return {
        "loss_curves": _loss_figure(_curves(metrics), config),
        "particles": _particle_figure(_frames(metrics), metrics, config),
    }


def _compared(widths: tuple[int, ...]) -> tuple[int, int]:
    """The pair of the check: the issue's widths 1000 and 4000 when both are run, else the two widest."""
    return (1000, 4000) if {1000, 4000} <= set(widths) else (widths[-2], widths[-1])


def _gap(curve: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """|L_m(t) - L_M(t)| / L_M(t) at every step."""
    return np.abs(curve - reference) / reference


def _loss_figure(finite: dict[int, np.ndarray], config: MeanFieldTwoLayerConfig) -> Figure:
    widest = config.widths[-1]
    sweep = len(finite) >= 3 and widest in finite
    fig, axes = plt.subplots(1, 3 if sweep else 2, figsize=(16.0 if sweep else 11.0, 4.6))
    for k, (m, r) in enumerate(finite.items()):
        t = np.arange(len(r))
        if m == widest:
            axes[0].semilogy(t, r, "-", color="k", lw=1.5, label=f"m = {m} (widest)")
            continue
        stride = max(1, len(t) // 50)
        axes[0].semilogy(t[::stride], r[::stride], "o", ms=4, color=f"C{k}", label=f"m = {m}")
        if widest in finite:
            axes[1].plot(t, _gap(r, finite[widest]), "-", color=f"C{k}", label=f"m = {m} against m = {widest}")
    axes[1].axhline(PARTICLE_LIMIT_TOLERANCE, color="tab:red", ls="--", label="tolerance 2%")
    axes[0].set_xlabel("gradient-descent step")
    axes[0].set_ylabel("training loss (exponential)")
    axes[0].set_title(f"Loss curves, step eta m (eta = {config.eta:g}), n = {config.n_train}", fontsize=10)
    axes[0].legend(fontsize=8)
    axes[1].set_xlabel("gradient-descent step")
    axes[1].set_ylabel("relative gap |L_m - L_M| / L_M")
    axes[1].set_title("Distance to the widest network's curve", fontsize=10)
    axes[1].legend(fontsize=8)
    if sweep:
        widths = np.array([m for m in finite if m != widest], dtype=float)
        gaps = np.array([_gap(finite[int(m)], finite[widest]).max() for m in widths])
        axes[2].loglog(widths, gaps, "o", color="k", label="measured max_t gap (one draw per width)")
        for power, style in ((0.5, "--"), (1.0, ":")):
            axes[2].loglog(
                widths,
                gaps[0] * (widths / widths[0]) ** -power,
                style,
                color="tab:red",
                label=f"guide m^-{power:g} through the smallest m",
            )
        axes[2].set_xlabel("width m")
        axes[2].set_ylabel("max_t relative gap to the widest")
        axes[2].set_title("Approach to the particle limit", fontsize=10)
        axes[2].legend(fontsize=8)
    fig.suptitle("Mean-field two-layer ReLU networks: the particle limit")
    fig.tight_layout()
    return fig


def _draw_particles(ax: plt.Axes, frame: np.ndarray, title: str, limit: float) -> None:
    positive = frame[:, 2] > 0
    ax.scatter(frame[positive, 0], frame[positive, 1], s=3, color="tab:red", alpha=0.5, label="a_j > 0")
    ax.scatter(frame[~positive, 0], frame[~positive, 1], s=3, color="tab:blue", alpha=0.5, label="a_j < 0")
    for w1, w2, sign in TEACHER:
        ax.plot([0, limit * w1], [0, limit * w2], "--", color="tab:red" if sign > 0 else "tab:blue", lw=0.8)
    ax.plot([], [], "k--", lw=0.8, label="teacher neurons (direction, sign)")
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)
    ax.set_aspect("equal")
    ax.set_xlabel("log(1 + |a_j| |w_j|) w_j1 / |w_j|")
    ax.set_ylabel("log(1 + |a_j| |w_j|) w_j2 / |w_j|")
    ax.set_title(title, fontsize=10)


def _limit(frames: list[np.ndarray]) -> float:
    return 1.1 * max(float(np.quantile(np.abs(f[:, :2]), 0.995)) for f in frames)


def _particle_figure(frames: list[np.ndarray], metrics: pd.DataFrame, config: MeanFieldTwoLayerConfig) -> Figure:
    limit = _limit(frames)
    fig, axes = plt.subplots(1, 2, figsize=(11.0, 5.4))
    m = frames[0].shape[0]
    start, end = select(metrics, "concentration", width=m).sort_values("step")["value"].iloc[[0, -1]]
    share = f"of the mass within {config.epsilon_deg:g} deg of a teacher neuron"
    _draw_particles(axes[0], frames[0], f"initialisation (m = {m}): {start:.0%} {share}", limit)
    _draw_particles(axes[1], frames[-1], f"after {config.steps} steps: {end:.0%} {share}", limit)
    if config.trails:
        chosen = np.random.default_rng(config.seed).choice(m, size=min(config.trails, m), replace=False)
        path = np.stack([f[chosen, :2] for f in frames])  # (frames, trails, 2)
        for j in range(path.shape[1]):
            color = "tab:red" if frames[-1][chosen[j], 2] > 0 else "tab:blue"
            axes[1].plot(path[:, j, 0], path[:, j, 1], "-", color=color, lw=0.4, alpha=0.4)
    axes[1].legend(fontsize=8, loc="upper right", markerscale=3)
    baseline = uniform_concentration(math.radians(config.epsilon_deg))
    fig.suptitle(
        "Neurons as particles (a_j, w_j): they gather on the teacher's directions (Chizat & Bach 2018); "
        f"uniform spread: {baseline:.0%}"
    )
    fig.tight_layout()
    return fig


def write_gif(frames: list[np.ndarray], config: MeanFieldTwoLayerConfig, path: Path) -> Path:
    """Write the particles' motion, one frame per recorded step, as an animated GIF (Pillow writer).

    Example:
        >>> import tempfile
        >>> cfg = MeanFieldTwoLayerConfig(widths=(10, 20), steps=2, record_every=1)
        >>> frames = [np.random.default_rng(k).normal(size=(10, 3)) for k in range(3)]
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     write_gif(frames, cfg, Path(folder) / "particles.gif").stat().st_size > 0
        True
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    limit = _limit(frames)
    fig, ax = plt.subplots(figsize=(5.4, 5.4))

    def draw(k: int) -> None:
        ax.clear()
        _draw_particles(ax, frames[k], f"step {min(k * config.record_every, config.steps)}", limit)

    movie = animation.FuncAnimation(fig, draw, frames=len(frames))
    movie.save(path, writer=animation.PillowWriter(fps=8))
    plt.close(fig)
    return path


EXPERIMENT = Experiment(
    name="mean-field-two-layer",
    claim="In the mean-field scaling a wide two-layer ReLU network is a system of particles whose loss curve "
    "does not depend on the width once it is large (the particle limit of Chizat & Bach 2018).",
    config=MeanFieldTwoLayerConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={"full": {"widths": (250, 1000, 4000, 16000), "n_train": 512, "steps": 2000, "record_every": 20}},
    references=(
        "Chizat & Bach (2018), On the global convergence of gradient descent for over-parameterized models using "
        "optimal transport, NeurIPS",
        "Mei, Montanari & Nguyen (2018), A mean field view of the landscape of two-layer neural networks, PNAS",
        "Rotskoff & Vanden-Eijnden (2018), Parameters as interacting particles, arXiv:1805.00915",
    ),
    part="loss landscapes",
)
