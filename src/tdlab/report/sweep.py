"""A sweep's HTML page, the metrics that matter first (losses and accuracies, then curvature and noise, per-layer
values and schedules last). Per metric: its learning curve per configuration (mean over seeds against the step,
band from the lowest to the highest seed), its final value against each swept field (mean +- sd over seeds; not
for schedules such as the learning rate, whose final value says nothing about the run), a heatmap over a 2-D grid,
and a table of the final values."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from tdlab.report._html import render
from tdlab.report.cells import number
from tdlab.report.figures import LOG_SPAN, log_if_wide
from tdlab.report.names import SCHEDULES, importance
from tdlab.store import Store

SEED_FIELD = "seed"


def final_values(metrics: pd.DataFrame) -> pd.DataFrame:
    """The last logged value of every metric of every run: one row per (run, metric), config columns kept.

    Example:
        >>> rows = pd.DataFrame({"run_id": ["a", "a", "a"], "step": [0, 5, 5], "name": ["loss", "loss", "acc"],
        ...                      "value": [1.0, 0.2, 0.9], "lr": [0.1, 0.1, 0.1]})
        >>> final_values(rows)[["name", "value"]].values.tolist()
        [['acc', 0.9], ['loss', 0.2]]
    """
    ordered = metrics.sort_values(["run_id", "name", "step"], kind="stable")
    return ordered.groupby(["run_id", "name"], sort=True).tail(1).reset_index(drop=True)


def swept_fields(runs: pd.DataFrame) -> list[str]:
    """Config columns (other than the seed) that take more than one value across `runs` (`Store.runs()`), the
    one with the most values first (the x axis of the sweep's figures)."""
    fixed = {"id", "kind", "status", "created", "duration_s", "path", SEED_FIELD}
    counts = {c: runs[c].astype(str).nunique() for c in runs.columns if c not in fixed}
    return sorted((c for c, n in counts.items() if n > 1), key=lambda c: -counts[c])


def summarise(finals: pd.DataFrame, fields: list[str]) -> pd.DataFrame:
    """Mean, standard deviation (ddof=1; NaN for one seed) and count over seeds per swept point and metric.

    Non-finite values (diverged runs) are counted in `diverged` and left out of mean and sd.
    """
    frame = finals.assign(finite=np.isfinite(finals["value"].to_numpy(dtype=float)))
    keys = [*fields, "name"]
    grouped = frame.groupby(keys, sort=True, dropna=False)
    finite = frame[frame["finite"]].groupby(keys, sort=True, dropna=False)["value"]
    summary = pd.DataFrame({"runs": grouped.size(), "diverged": grouped["finite"].apply(lambda s: int((~s).sum()))})
    summary["mean"] = finite.mean()
    summary["sd"] = finite.std(ddof=1)
    return summary.reset_index()


def learning_curves(metrics: pd.DataFrame, fields: list[str]) -> pd.DataFrame:
    """Mean, lowest and highest value over seeds of every metric at every step, per configuration (a point of
    the swept fields): columns fields..., name, step, mean, low, high, runs (the seeds with a finite value there).

    Non-finite values (diverged runs) are left out; a step where every seed diverged has no row.

    Example:
        >>> rows = pd.DataFrame({"run_id": ["a", "b", "a", "b"], "step": [0, 0, 1, 1], "name": ["loss"] * 4,
        ...                      "value": [2.0, 4.0, 1.0, float("nan")], "lr": [0.1] * 4})
        >>> learning_curves(rows, ["lr"])[["step", "mean", "low", "high", "runs"]].values.tolist()
        [[0.0, 3.0, 2.0, 4.0, 2.0], [1.0, 1.0, 1.0, 1.0, 1.0]]
    """
    finite = metrics[np.isfinite(metrics["value"].to_numpy(dtype=float))]
    grouped = finite.groupby([*fields, "name", "step"], sort=True, dropna=False)["value"]
    curves = grouped.agg(mean="mean", low="min", high="max", runs="size")
    return curves.reset_index()


def plot_sweep_metric(summary: pd.DataFrame, curves: pd.DataFrame, metric: str, fields: list[str]) -> Figure:
    """One metric of a sweep: its learning curve per configuration, then (unless it is a schedule) its final
    value against each swept field, one line per value of the other fields (error bars +- one sd over seeds),
    and a heatmap of the mean final value when exactly two fields are swept."""
    finals = fields if metric not in SCHEDULES else []
    heatmap = len(finals) == 2
    panels = 1 + len(finals) + heatmap
    figure = Figure(figsize=(4.8 * panels, 3.5), layout="constrained")
    axes = figure.subplots(1, panels, squeeze=False).ravel()
    rows = summary[summary["name"] == metric]
    styles = Styles(rows, fields)
    _draw_curves(axes[0], curves[curves["name"] == metric], fields, styles)
    for ax, field in zip(axes[1:], finals, strict=False):
        _draw_finals(ax, rows, field, [f for f in fields if f != field], styles)
        ax.set_ylabel(f"final {metric}")
    if heatmap:
        _draw_grid(axes[-1], rows, fields)
    figure.suptitle(metric, fontsize=11, fontweight="bold")
    return figure


LINESTYLES = ("-", "--", ":", "-.")


class Styles:
    """Line styles shared by every panel of a sweep's figure: the colour from the first swept field's value
    (along viridis, so that ordered values read as a gradient), the line style from the other fields' values."""

    def __init__(self, rows: pd.DataFrame, fields: list[str]) -> None:
        self.fields = fields
        self.colours: dict[str, Any] = {}
        self.dashes: dict[tuple[str, ...], str] = {}
        if fields:
            values = [str(v) for v in rows[fields[0]].drop_duplicates().sort_values()]
            shades = np.linspace(0.0, 0.8, len(values)) if len(values) > 1 else [0.0]
            self.colours = {v: colormaps["viridis"](x) for v, x in zip(values, shades, strict=True)}
            rest = sorted({tuple(str(v) for v in row) for row in rows[fields[1:]].itertuples(index=False)})
            self.dashes = {key: LINESTYLES[i % len(LINESTYLES)] for i, key in enumerate(rest)}

    def __call__(self, fields: list[str], key: tuple) -> dict[str, Any]:
        """`plot` keywords of the group whose `fields` take the values `key` (fields not grouped on: neutral)."""
        values = dict(zip(fields, (str(v) for v in key), strict=True))
        colour = self.colours.get(values.get(self.fields[0]), "0.25") if self.fields else "C0"
        rest = self.fields[1:]
        dashes = self.dashes.get(tuple(values[f] for f in rest), "-") if all(f in values for f in rest) else "-"
        return {"color": colour, "ls": dashes}


def _label(fields: list[str], key: tuple) -> str:
    return ", ".join(f"{f}={v}" for f, v in zip(fields, key, strict=True))


def _groups(frame: pd.DataFrame, fields: list[str]) -> list[tuple[tuple, pd.DataFrame]]:
    if not fields:
        return [((), frame)]
    return [(key if isinstance(key, tuple) else (key,), group) for key, group in frame.groupby(fields, dropna=False)]


def _draw_curves(ax, curves: pd.DataFrame, fields: list[str], styles: Styles) -> None:
    configurations = _groups(curves, fields)
    for key, group in configurations:
        style = styles(fields, key)
        ax.plot(group["step"], group["mean"], lw=1.4, label=_label(fields, key) or None, **style)
        if (group["runs"] > 1).any():
            ax.fill_between(group["step"], group["low"], group["high"], color=style["color"], alpha=0.15, lw=0)
    log_if_wide(ax, curves[["low", "high"]].to_numpy(dtype=float))
    seeds = int(curves["runs"].max()) if len(curves) else 0
    ax.set_title(f"learning curves: mean over {seeds} seed{'s' * (seeds != 1)}, band min-max", fontsize=9)
    ax.set_xlabel("step")
    if fields and len(configurations) <= 12:
        ax.legend(fontsize=6)


def _draw_finals(ax, rows: pd.DataFrame, x_field: str, others: list[str], styles: Styles) -> None:
    groups = _groups(rows, others)
    for key, group in groups:
        group = group.sort_values(x_field)
        ax.errorbar(
            group[x_field],
            group["mean"],
            yerr=group["sd"].fillna(0.0),
            marker="o",
            ms=4,
            capsize=3,
            label=_label(others, key) or None,
            **styles(others, key),
        )
    x = pd.to_numeric(rows[x_field], errors="coerce")
    if x.notna().all() and (x > 0).all() and x.max() / x.min() >= 10:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
    if x.notna().all():  # ticks at the swept values, written as they are in the config
        ticks = sorted(set(x))
        ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
    log_if_wide(ax, rows["mean"].to_numpy(dtype=float))
    ax.set_xlabel(x_field)
    ax.set_title(f"final value against {x_field} (mean ± sd)", fontsize=9)
    if others and len(groups) <= 12:
        ax.legend(fontsize=6)


def _draw_grid(ax, rows: pd.DataFrame, fields: list[str]) -> None:
    """The mean final value over the grid of two swept fields, each cell annotated with its value."""
    grid = rows.pivot_table(index=fields[1], columns=fields[0], values="mean", aggfunc="first", dropna=False)
    values = np.ma.masked_invalid(grid.to_numpy(dtype=float))
    finite = values.compressed()
    low, high = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    wide = low > 0 and high / low > LOG_SPAN
    norm = LogNorm(vmin=low, vmax=high) if wide else Normalize(vmin=low, vmax=high)
    image = ax.imshow(values, origin="lower", aspect="auto", cmap="viridis", norm=norm)
    for (i, j), value in np.ndenumerate(grid.to_numpy(dtype=float)):
        light = np.isfinite(value) and norm(value) > 0.6  # dark text on the light (yellow) end of viridis
        ax.text(j, i, number(value), ha="center", va="center", fontsize=7, color="k" if light else "w")
    ax.set_xticks(range(grid.shape[1]), [str(v) for v in grid.columns], fontsize=7)
    ax.set_yticks(range(grid.shape[0]), [str(v) for v in grid.index], fontsize=7)
    ax.set_xlabel(fields[0])
    ax.set_ylabel(fields[1])
    ax.set_title("mean final value", fontsize=9)
    ax.figure.colorbar(image, ax=ax)


def write_sweep_report(sweep_folder: str | os.PathLike[str], to: str | os.PathLike[str] | None = None) -> Path:
    """Write `to/index.html` (default `<sweep_folder>/report`) with a figure and a table per metric, the metrics
    that matter first (`tdlab.report.names.importance`).

    The swept fields are found from the runs' configs (the fields that vary, the seed excepted), so any folder of
    runs works, not only one written by `tdlab sweep`.

    Raises:
        ValueError: when `sweep_folder` holds no runs.
    """
    store = Store(sweep_folder)
    if len(store) == 0:
        raise ValueError(f"sweep_folder: no runs in {sweep_folder}")
    folder = Path(to) if to is not None else Path(sweep_folder) / "report"
    fields = swept_fields(store.runs())
    metrics = store.metrics()
    summary = summarise(final_values(metrics), fields)
    curves = learning_curves(metrics, fields)
    (folder / "figures").mkdir(parents=True, exist_ok=True)
    sections = []
    for metric in sorted(summary["name"].unique(), key=importance):
        image = f"figures/{metric.replace('/', '_')}.png"
        plot_sweep_metric(summary, curves, metric, fields).savefig(folder / image, dpi=100)
        rows = summary[summary["name"] == metric]
        sections.append({"metric": metric, "image": image, "rows": rows.to_dict("records")})
    statuses = store.runs()["status"].value_counts().to_dict()
    return render(
        "sweep.html",
        folder / "index.html",
        name=Path(sweep_folder).resolve().name,
        fields=fields,
        sections=sections,
        statuses=statuses,
    )
