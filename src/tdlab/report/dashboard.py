"""A training run's dashboard: a fixed layout that tells the run's story in the order a reader asks about it.

In the spirit of Cockpit (Schneider, Dangel and Hennig, 2021), one figure in four sections, each panel drawn only
when its metrics were recorded:

1. loss and step size: loss (train / test, the mini-batch loss faint behind), accuracy, the learning rate, the
   update / parameter norm ratio (with the 1e-3 rule of thumb);
2. curvature and gradient noise: sharpness against the stability threshold 2/eta of the learning rate at each
   step (and 2(1+beta)/eta for heavy-ball momentum), the Hessian trace with its standard-error band, the gradient
   norm against the mini-batch noise sqrt(tr Sigma / B), the gradient noise scale tr Sigma / |g|^2 against the
   batch size;
3. per layer: one layer-by-step heatmap per family ("grad/norm/<tensor>", "act/<layer>/dead", ...) instead of a
   panel per tensor;
4. the remaining scalar metrics, at most `max_other` small panels, the rest named in a note.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from tdlab.report.figures import LOG_SPAN, draw_series, log_if_wide
from tdlab.report.names import family_label, family_rank, importance, natural_key, per_layer
from tdlab.store import Run

COLUMNS = 4
WIDTH = 16.0  # inches; with the heights below the example config's dashboard is about 1800 px tall at 110 dpi
HEIGHTS = {"line": 2.8, "heatmap": 2.4, "other": 2.0}
UPDATE_RATIO_RULE = 1e-3  # Karpathy's rule of thumb for |update| / |parameter| per step
SPLIT_COLOURS = {"train": "C0", "test": "C1", "val": "C2", "valid": "C2", "validation": "C2"}


@dataclass(frozen=True)
class Panel:
    """One axes of the dashboard: its title, the metrics it draws and how it draws them."""

    title: str
    uses: tuple[str, ...]
    draw: Callable[[Axes], None]


def plot_dashboard(
    metrics: pd.DataFrame,
    title: str = "",
    lr: float | None = None,
    momentum: float = 0.0,
    batch_size: int | None = None,
    max_other: int = 12,
) -> Figure:
    """Draw the dashboard of one run from its tidy metrics (columns step, name, value, as `Run.metrics()`).

    Args:
        lr: the base learning rate, used for the 2/eta line only when no "lr" metric was logged.
        momentum: heavy-ball momentum beta; when positive the threshold 2(1+beta)/eta is drawn as well.
        batch_size: the training batch size B, drawn against the gradient noise scale.
        max_other: most panels for metrics outside the fixed layout; the rest are named in a note.

    A repeated (step, name) keeps its last value. Non-finite values are cut from lines (the first one marked)
    and left blank in heatmaps.

    Example:
        >>> rows = pd.DataFrame({"step": [0, 10, 0, 10], "name": ["train/loss"] * 2 + ["test/loss"] * 2,
        ...                      "value": [2.0, 1.0, 2.1, 1.3]})
        >>> [ax.get_title() for ax in plot_dashboard(rows).axes if ax.get_visible()]
        ['loss']
    """
    if not isinstance(metrics, pd.DataFrame) or not {"step", "name", "value"} <= set(metrics.columns):
        raise TypeError("metrics: expected a pandas DataFrame with columns step, name, value (Run.metrics())")
    if not isinstance(max_other, int) or max_other < 0:
        raise ValueError(f"max_other: expected a non-negative integer, got {max_other!r}")
    series = _by_name(metrics)
    sections = [
        ("loss and step size", "line", _headline(series)),
        ("curvature and gradient noise", "line", _dynamics(series, lr, momentum, batch_size)),
        ("per layer: layer x step", "heatmap", _heatmaps(series)),
    ]
    placed = {name for _, _, panels in sections for panel in panels for name in panel.uses}
    rest = sorted((name for name in series if name not in placed), key=importance)
    sections.append(("other metrics", "other", [_single(name, series[name]) for name in rest[:max_other]]))
    return _compose(title, [s for s in sections if s[2]], rest[max_other:])


def plot_run(run: Run) -> Figure:
    """`plot_dashboard` of a stored run, with the learning rate, momentum and batch size of its config."""
    config = run.config
    optimizer = config.get("optimizer") if isinstance(config.get("optimizer"), dict) else {}
    heavy_ball = optimizer.get("name") == "sgd" and not optimizer.get("nesterov") and not optimizer.get("dampening")
    lr, summary = optimizer.get("lr"), _summary(config)
    return plot_dashboard(
        run.metrics(),
        title=f"{run.id} ({run.status})" + (f"  ·  {summary}" if summary else ""),
        lr=float(lr) if isinstance(lr, int | float) else None,
        momentum=float(optimizer.get("momentum") or 0.0) if heavy_ball else 0.0,
        batch_size=config.get("batch_size") if isinstance(config.get("batch_size"), int) else None,
    )


def _summary(config: dict) -> str:
    """The config fields a reader of the dashboard needs, e.g. "mlp on mnist1d · sgd lr=0.05 momentum=0.9 ..."."""
    model, data = config.get("model"), config.get("data")
    optimizer, schedule = config.get("optimizer"), config.get("schedule")
    parts = []
    if isinstance(model, dict) and isinstance(data, dict):
        parts.append(f"{model.get('name')} on {data.get('name')}")
    if isinstance(optimizer, dict):
        settings = [f"{k}={v}" for k, v in optimizer.items() if k != "name" and isinstance(v, int | float)]
        parts.append(" ".join([str(optimizer.get("name")), *settings]))
    if isinstance(schedule, dict) and schedule.get("name"):
        parts.append(f"{schedule['name']} schedule")
    parts += [f"{key} {config[key]}" for key in ("batch_size", "steps") if key in config]
    return "  ·  ".join(parts)


# ---------------------------------------------------------------------------------------------- sections
def _headline(series: dict[str, pd.Series]) -> list[Panel]:
    panels = []
    losses = [n for n in series if _is_split(n, "loss") and n != "train/batch_loss"]
    if losses or "train/batch_loss" in series:
        panels.append(
            Panel("loss", (*losses, "train/batch_loss"), lambda ax: _draw_splits(ax, series, losses, faint=True))
        )
    accuracies = [n for n in series if _is_split(n, "accuracy")]
    if accuracies:
        panels.append(Panel("accuracy", tuple(accuracies), lambda ax: _draw_splits(ax, series, accuracies)))
    if "lr" in series:
        panels.append(Panel("learning rate η", ("lr",), lambda ax: _draw_lines(ax, [(series["lr"], None, {})])))
    if "update/ratio" in series:
        panels.append(Panel("update / parameter norm", ("update/ratio",), lambda ax: _draw_ratio(ax, series)))
    return panels


def _dynamics(series: dict[str, pd.Series], lr: float | None, momentum: float, batch_size: int | None) -> list[Panel]:
    panels = []
    if "sharpness" in series:
        top = tuple(n for n in series if n.startswith("sharpness/") and n.split("/", 1)[1].isdigit())
        panels.append(
            Panel(
                "sharpness λ_max vs 2/η",
                ("sharpness", "sharpness/se", *top),
                lambda ax: _draw_sharpness(ax, series, top, lr, momentum),
            )
        )
    if "hessian/trace" in series:
        panels.append(
            Panel(
                "Hessian trace ± 1 s.e.",
                ("hessian/trace", "hessian/trace_se"),
                lambda ax: _draw_band(ax, series["hessian/trace"], series.get("hessian/trace_se"), "C4"),
            )
        )
    gradient = [n for n in ("grad/norm", "noise/grad_mean_norm", "noise/batch_var") if n in series]
    if gradient:
        panels.append(Panel("gradient norm vs mini-batch noise", tuple(gradient), lambda ax: _draw_noise(ax, series)))
    if "noise/scale" in series:
        panels.append(
            Panel(
                "gradient noise scale tr Σ / ‖g‖²",
                ("noise/scale",),
                lambda ax: _draw_noise_scale(ax, series["noise/scale"], batch_size),
            )
        )
    return panels


def _heatmaps(series: dict[str, pd.Series]) -> list[Panel]:
    families: dict[str, dict[str, str]] = {}
    for name in series:
        layered = per_layer(name)
        if layered is not None:
            families.setdefault(layered[0], {})[layered[1]] = name
    panels = []
    for family in sorted(families, key=family_rank):
        layers = dict(sorted(families[family].items(), key=lambda item: natural_key(item[0])))
        matrix = layer_matrix({layer: series[name] for layer, name in layers.items()})
        panels.append(
            Panel(f"{family_label(family)}  [{family}]", tuple(layers.values()), lambda ax, m=matrix: _draw_heat(ax, m))
        )
    return panels


def layer_matrix(layers: dict[str, pd.Series]) -> pd.DataFrame:
    """Rows: the layers in the given order; columns: every step any of them was logged at (NaN where not).

    Example:
        >>> layer_matrix({"a": pd.Series([1.0, 2.0], index=[0, 5]), "b": pd.Series([3.0], index=[5])}).values.tolist()
        [[1.0, 2.0], [nan, 3.0]]
    """
    return pd.DataFrame(layers).T.sort_index(axis=1)


def _single(name: str, series: pd.Series) -> Panel:
    return Panel(name, (name,), lambda ax: _draw_lines(ax, [(series, None, {})]))


def _compose(title: str, sections: list[tuple[str, str, list[Panel]]], unplaced: list[str]) -> Figure:
    rows = [max(1, math.ceil(len(panels) / COLUMNS)) for _, _, panels in sections]
    heights = [HEIGHTS[kind] * n for (_, kind, _), n in zip(sections, rows, strict=True)] or [1.0]
    figure = Figure(figsize=(WIDTH, sum(heights) + (0.4 if title else 0.0)), layout="constrained")
    if title:
        figure.suptitle(title, fontsize=12, fontweight="bold")
    if not sections:
        figure.text(0.5, 0.5, "no metrics recorded", ha="center", va="center")
        return figure
    subfigures = figure.subfigures(len(sections), 1, height_ratios=heights, squeeze=False).ravel()
    for sub, (label, _, panels), n in zip(subfigures, sections, rows, strict=True):
        sub.suptitle(label, x=0.005, ha="left", fontsize=10, fontweight="bold", color="0.3")
        axes = sub.subplots(n, COLUMNS, squeeze=False).ravel()
        for ax, panel in zip(axes, panels, strict=False):
            panel.draw(ax)
            ax.set_title(panel.title, fontsize=9)
            ax.set_xlabel("step", fontsize=8)
            ax.tick_params(labelsize=7)
        for ax in axes[len(panels) :]:
            ax.set_visible(False)
    if unplaced:
        note = f"not drawn ({len(unplaced)}): " + ", ".join(unplaced)
        subfigures[-1].supxlabel(textwrap.fill(note, 220), fontsize=7, color="0.3")
    return figure


# ---------------------------------------------------------------------------------------------- drawing
def _by_name(metrics: pd.DataFrame) -> dict[str, pd.Series]:
    """One series per metric name, indexed by step (sorted), the last value kept for a repeated step."""
    rows = metrics[["step", "name", "value"]].drop_duplicates(["step", "name"], keep="last")
    return {
        str(name): group.set_index("step")["value"].astype(float).sort_index()
        for name, group in rows.groupby("name", sort=True)
    }


def _is_split(name: str, quantity: str) -> bool:
    return per_layer(name) is None and (name == quantity or name.endswith("/" + quantity))


def _draw_lines(ax: Axes, lines: list[tuple[pd.Series, str | None, dict]]) -> None:
    for series, label, style in lines:
        draw_series(ax, series, label=label, **style)
    log_if_wide(ax, np.concatenate([s.to_numpy(dtype=float) for s, _, _ in lines]))
    if any(label for _, label, _ in lines):
        ax.legend(fontsize=7)


def _draw_splits(ax: Axes, series: dict[str, pd.Series], names: list[str], faint: bool = False) -> None:
    """train / test (/ val) of one quantity, split-coloured; with `faint` the mini-batch loss faint behind."""
    lines = []
    if faint and "train/batch_loss" in series:
        lines.append((series["train/batch_loss"], "train (mini-batch)", {"color": "0.75", "lw": 0.6}))
    for name in sorted(names, key=importance):
        split = name.split("/", 1)[0] if "/" in name else name
        lines.append((series[name], split, {"color": SPLIT_COLOURS.get(split), "lw": 1.6}))
    _draw_lines(ax, lines)


def _draw_ratio(ax: Axes, series: dict[str, pd.Series]) -> None:
    _draw_lines(ax, [(series["update/ratio"], "all parameters", {"color": "C5"})])
    ax.axhline(UPDATE_RATIO_RULE, color="0.4", ls="--", lw=1, label="1e-3 rule of thumb")
    ax.legend(fontsize=7)


def _draw_sharpness(
    ax: Axes, series: dict[str, pd.Series], top: tuple[str, ...], lr: float | None, momentum: float
) -> None:
    sharpness = series["sharpness"]
    _draw_band(ax, sharpness, series.get("sharpness/se"), "C3", label="λ_max")
    for i, name in enumerate(top):
        draw_series(ax, series[name], label="λ_2 … λ_k" if i == 0 else None, color="C3", alpha=0.35, lw=0.8)
    if "lr" in series:
        lrs = series["lr"][series["lr"] > 0]
    else:
        lrs = pd.Series([lr, lr], index=[sharpness.index.min(), sharpness.index.max()]) if lr else pd.Series()
    styles = [(2.0, "2/η", "--")] + ([(2.0 + 2.0 * momentum, "2(1+β)/η", ":")] if momentum > 0 else [])
    thresholds = []
    for factor, label, style in styles if len(lrs) else []:
        threshold = factor / lrs
        ax.plot(threshold.index, threshold.to_numpy(), color="k", ls=style, lw=1.1, label=label)
        thresholds.append(threshold.min())
    finite = sharpness.to_numpy(dtype=float)
    finite = finite[np.isfinite(finite)]
    if thresholds and finite.size:  # thresholds grow without bound as eta decays: keep the eigenvalues in view
        ax.set_ylim(min(0.0, finite.min()), 1.15 * max(finite.max(), *thresholds))
    ax.legend(fontsize=7)


def _draw_band(ax: Axes, centre: pd.Series, error: pd.Series | None, colour: str, label: str | None = None) -> None:
    draw_series(ax, centre, label=label, color=colour, lw=1.5)
    if error is not None:
        both = pd.concat([centre, error], axis=1, keys=["centre", "error"]).dropna()
        ax.fill_between(
            both.index,
            both["centre"] - both["error"],
            both["centre"] + both["error"],
            color=colour,
            alpha=0.25,
            lw=0,
            label="± 1 s.e.",
        )


def _draw_noise(ax: Axes, series: dict[str, pd.Series]) -> None:
    lines = []
    if "grad/norm" in series:
        lines.append((series["grad/norm"], "‖∇L‖ (train set)", {"color": "C0"}))
    if "noise/grad_mean_norm" in series:
        lines.append((series["noise/grad_mean_norm"], "‖g‖ (noise sample)", {"color": "C0", "ls": "--"}))
    if "noise/batch_var" in series:
        lines.append((np.sqrt(series["noise/batch_var"]), "noise √(tr Σ / B)", {"color": "C1"}))
    _draw_lines(ax, lines)


def _draw_noise_scale(ax: Axes, scale: pd.Series, batch_size: int | None) -> None:
    _draw_lines(ax, [(scale, "tr Σ / ‖g‖²", {"color": "C2"})])
    if batch_size:
        ax.axhline(batch_size, color="0.4", ls="--", lw=1, label=f"batch size B = {batch_size}")
        ax.legend(fontsize=7)


def _draw_heat(ax: Axes, matrix: pd.DataFrame) -> None:
    """`matrix` (layers x steps) as a heatmap, first layer on top; a log colour scale for a wide positive range."""
    values = np.ma.masked_invalid(matrix.to_numpy(dtype=float))
    finite = values.compressed()
    norm = None
    if finite.size and finite.min() > 0 and finite.max() / finite.min() > LOG_SPAN:
        norm = LogNorm(vmin=finite.min(), vmax=finite.max())
    steps = matrix.columns.to_numpy(dtype=float)
    mesh = ax.pcolormesh(_edges(steps), np.arange(len(matrix) + 1), values, norm=norm, cmap="viridis")
    labels = list(matrix.index)
    every = max(1, math.ceil(len(labels) / 12))
    ax.set_yticks(np.arange(len(labels))[::every] + 0.5, labels[::every], fontsize=6)
    ax.invert_yaxis()
    ax.figure.colorbar(mesh, ax=ax, pad=0.01).ax.tick_params(labelsize=6)


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges around sorted cell centres: midpoints inside, half a spacing beyond the ends."""
    if len(centres) == 1:
        return np.array([centres[0] - 0.5, centres[0] + 0.5])
    middle = (centres[1:] + centres[:-1]) / 2
    return np.concatenate([[2 * centres[0] - middle[0]], middle, [2 * centres[-1] - middle[-1]]])
