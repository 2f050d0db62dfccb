"""Tidy metric rows, the form of an experiment's metrics (`tdlab.experiments.base`): writing them in `measure` and
reading them back in `checks` and `figures`.

A metric frame has a `name` and a `value` column and whatever columns identify a row (`step`, `eta`, `index`, ...);
an array becomes one row per entry, its position in the identifying columns.

Example:
    >>> metrics = pd.concat([rows("loss", [3.0, 2.0], step=[0, 1]), rows("width", 64)], ignore_index=True)
    >>> series(metrics, "loss")
    (array([0., 1.]), array([3., 2.]))
    >>> value(metrics, "width")
    64.0
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def rows(name: str, values: object, **keys: object) -> pd.DataFrame:
    """Rows `name`, one per entry of `values` (a number or an array of any shape), with the `keys` broadcast to its
    shape as further columns.

    Example:
        >>> frame = rows("residual", [[1.0, 0.5], [0.2, 0.1]], step=[[0], [1]], mode=[0, 1])
        >>> frame[["value", "step", "mode"]].values.tolist()
        [[1.0, 0.0, 0.0], [0.5, 0.0, 1.0], [0.2, 1.0, 0.0], [0.1, 1.0, 1.0]]
    """
    values = np.asarray(values, dtype=float)
    columns = {k: np.broadcast_to(np.asarray(v), values.shape).ravel() for k, v in keys.items()}
    return pd.DataFrame({"name": name, "value": values.ravel(), **columns})


def select(metrics: pd.DataFrame, name: str, **where: object) -> pd.DataFrame:
    """The rows `name` whose columns equal `where`'s values; a value None selects the rows where that column is
    missing (NaN).

    Example:
        >>> metrics = pd.concat([rows("curvature", 2.0), rows("curvature", [2.5, 2.1], h=[0.1, 0.01])])
        >>> select(metrics, "curvature", h=None)["value"].tolist()
        [2.0]
        >>> select(metrics, "curvature", h=0.1)["value"].tolist()
        [2.5]
    """
    chosen = metrics[metrics["name"] == name]
    for column, wanted in where.items():
        chosen = chosen[chosen[column].isna() if wanted is None else chosen[column] == wanted]
    return chosen


def series(metrics: pd.DataFrame, name: str, by: str = "step", **where: object) -> tuple[np.ndarray, np.ndarray]:
    """(the `by` column, the values) of the rows `name` (and `where`), sorted by `by`, as float arrays."""
    chosen = select(metrics, name, **where).sort_values(by)
    return chosen[by].to_numpy(dtype=float), chosen["value"].to_numpy(dtype=float)


def table(metrics: pd.DataFrame, name: str, index: str, columns: str = "index", **where: object) -> pd.DataFrame:
    """The rows `name` (and `where`) as a table: one row per `index` value, one column per `columns` value, sorted.

    Example:
        >>> table(rows("w", [[1.0, 2.0], [3.0, 4.0]], lam=[[0.1], [1.0]], index=[0, 1]), "w", "lam").loc[1.0].tolist()
        [3.0, 4.0]
    """
    return select(metrics, name, **where).pivot(index=index, columns=columns, values="value").sort_index()


def value(metrics: pd.DataFrame, name: str, **where: object) -> float:
    """The value of the single row `name` (and `where`)."""
    chosen = select(metrics, name, **where)
    if len(chosen) != 1:
        raise ValueError(f"{name}: expected one row, got {len(chosen)}")
    return float(chosen["value"].iloc[0])
