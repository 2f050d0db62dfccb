"""Figures of a run's metrics: one small panel per metric against the training step, and the line-drawing rules
(a diverged tail cut and marked, a log axis for a wide positive range) that every panel of the reports follows."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

LOG_SPAN = 100.0  # a positive series spanning more than this factor is drawn on a log axis


def draw_series(ax: Axes, series: pd.Series, label: str | None = None, **style) -> None:
    """Draw `series` (index: step) as a line of its finite values; a red dotted line marks the first
    non-finite one (where a run diverged). `style` goes to `Axes.plot`."""
    values = series.to_numpy(dtype=float)
    finite = np.isfinite(values)
    ax.plot(series.index[finite], values[finite], label=label, **{"lw": 1.2, **style})
    if not finite.all():
        ax.axvline(series.index[~finite][0], color="red", ls=":", lw=1)


def log_if_wide(ax: Axes, values: np.ndarray) -> None:
    """Put `ax` on a log y axis when the finite `values` are positive and span more than `LOG_SPAN`."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size and values.min() > 0 and values.max() / values.min() > LOG_SPAN:
        ax.set_yscale("log")


def plot_metrics(wide: pd.DataFrame, title: str = "", columns: int = 3) -> Figure:
    """Draw every column of `wide` (index: step, one column per metric, as `Run.metrics_wide()` returns).

    Metrics sharing a name after their split prefix (`train/loss` and `test/loss`) share a panel; a positive
    series spanning more than two decades gets a log axis. Non-finite values (a diverged run) are left out of the
    lines and the step of the first one is marked. `tdlab.report.dashboard` draws the designed view of a
    training run; this is the plain one for any set of metrics.

    Example:
        >>> frame = pd.DataFrame({"train/loss": [1.0, 0.5], "test/loss": [1.1, 0.7]}, index=[0, 1])
        >>> [ax.get_title() for ax in plot_metrics(frame).axes if ax.get_visible()]
        ['loss']
    """
    if not isinstance(wide, pd.DataFrame):
        raise TypeError(f"wide: expected a pandas DataFrame, got {type(wide).__name__}")
    panels: dict[str, list[str]] = {}
    for column in wide.columns:
        panels.setdefault(str(column).split("/", 1)[-1], []).append(column)
    rows = max(1, math.ceil(len(panels) / columns))
    figure = Figure(figsize=(4.2 * min(columns, max(1, len(panels))), 2.8 * rows), layout="constrained")
    axes = figure.subplots(rows, min(columns, max(1, len(panels))), squeeze=False).ravel()
    for ax, (panel, names) in zip(axes, panels.items(), strict=False):
        for name in names:
            draw_series(ax, wide[name].dropna(), label=str(name))
        log_if_wide(ax, wide[names].to_numpy(dtype=float))
        ax.set_title(panel)
        ax.set_xlabel("step")
        if len(names) > 1:
            ax.legend(fontsize=7)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    if title:
        figure.suptitle(title)
    return figure
