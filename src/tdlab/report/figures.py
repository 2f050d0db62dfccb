"""Figures of a run's metrics: one small panel per metric, against the training step."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

LOG_SPAN = 100.0  # a positive series spanning more than this factor is drawn on a log axis


def plot_metrics(wide: pd.DataFrame, title: str = "", columns: int = 3) -> Figure:
    """Draw every column of `wide` (index: step, one column per metric, as `Run.metrics_wide()` returns).

    Metrics sharing a name after their split prefix (`train/loss` and `test/loss`) share a panel; a positive
    series spanning more than two decades gets a log axis. Non-finite values (a diverged run) are left out of the
    lines and the step of the first one is marked.

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
            series = wide[name].dropna()
            finite = series[np.isfinite(series.to_numpy(dtype=float))]
            ax.plot(finite.index, finite.to_numpy(), label=str(name), lw=1.2)
            if len(finite) < len(series):
                ax.axvline(series.index[~np.isfinite(series.to_numpy(dtype=float))][0], color="red", ls=":", lw=1)
        values = wide[names].to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        if values.size and values.min() > 0 and values.max() / values.min() > LOG_SPAN:
            ax.set_yscale("log")
        ax.set_title(panel)
        ax.set_xlabel("step")
        if len(names) > 1:
            ax.legend(fontsize=7)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    if title:
        figure.suptitle(title)
    return figure
