"""A sweep's HTML page: each metric's final value against the swept fields, mean and spread over seeds."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from tdlab.report._html import render
from tdlab.store import Store

SEED_FIELD = "seed"
_FIXED = ("run_id", "step", "name", "value", "kind", "status")


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


def plot_sweep_metric(summary: pd.DataFrame, metric: str, fields: list[str]) -> Figure:
    """`metric` against the first swept field, one line per value of the others; error bars are +- one sd."""
    rows = summary[summary["name"] == metric]
    x_field, others = fields[0], fields[1:]
    figure = Figure(figsize=(5.0, 3.4), layout="constrained")
    ax = figure.subplots()
    keys = list(zip(*(rows[f].astype(str) for f in others), strict=True)) if others else [()] * len(rows)
    for key in dict.fromkeys(keys):
        group = rows[[k == key for k in keys]]
        legend = ", ".join(f"{f}={v}" for f, v in zip(others, key, strict=True)) or None
        ax.errorbar(group[x_field], group["mean"], yerr=group["sd"].fillna(0.0), marker="o", capsize=3, label=legend)
    x = pd.to_numeric(rows[x_field], errors="coerce")
    if x.notna().all() and (x > 0).all() and x.max() / x.min() >= 10:
        ax.set_xscale("log")
    values = rows["mean"].dropna()
    if len(values) and (values > 0).all() and values.max() / values.min() > 100:
        ax.set_yscale("log")
    ax.set_xlabel(x_field)
    ax.set_ylabel(metric)
    if others:
        ax.legend(fontsize=7)
    return figure


def write_sweep_report(sweep_folder: str | os.PathLike[str], to: str | os.PathLike[str] | None = None) -> Path:
    """Write `to/index.html` (default `<sweep_folder>/report`) with a figure and a table per metric.

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
    finals = final_values(store.metrics())
    summary = summarise(finals, fields)
    sections = []
    for metric in sorted(summary["name"].unique()):
        rows = summary[summary["name"] == metric]
        image = None
        if fields:
            image = f"figures/{metric.replace('/', '_')}.png"
            (folder / "figures").mkdir(parents=True, exist_ok=True)
            plot_sweep_metric(summary, metric, fields).savefig(folder / image, dpi=110)
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
