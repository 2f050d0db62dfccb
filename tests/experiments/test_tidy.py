"""tdlab.experiments.tidy: rows broadcast their keys, survive the store's Parquet round trip (inf and NaN included),
and read back by name, sorted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tdlab.experiments.tidy import rows, select, series, table, value


def test_rows_broadcast_keys_over_an_array():
    frame = rows("x", np.arange(6.0).reshape(2, 3), step=[[10], [20]], index=[0, 1, 2], seed=7)
    assert frame["value"].tolist() == [0, 1, 2, 3, 4, 5]
    assert frame["step"].tolist() == [10, 10, 10, 20, 20, 20]
    assert frame["index"].tolist() == [0, 1, 2, 0, 1, 2]
    assert set(frame["seed"]) == {7} and set(frame["name"]) == {"x"}
    with pytest.raises(ValueError):
        rows("x", [1.0, 2.0], step=[1, 2, 3])


def test_round_trip_through_parquet_and_read_back(tmp_path):
    metrics = pd.concat(
        [rows("a", [np.inf, 1.0, np.nan], step=[2, 0, 1]), rows("b", [[1.0, 2.0]], lam=0.5, index=[0, 1])],
        ignore_index=True,
    )
    metrics.to_parquet(tmp_path / "m.parquet", index=False)
    stored = pd.read_parquet(tmp_path / "m.parquet")
    steps, values = series(stored, "a")
    assert steps.tolist() == [0, 1, 2] and values[0] == 1.0 and np.isnan(values[1]) and values[2] == np.inf
    assert table(stored, "b", "lam").loc[0.5].tolist() == [1.0, 2.0]
    assert value(stored, "b", index=1) == 2.0
    assert len(select(stored, "b", lam=0.5)) == 2
    with pytest.raises(ValueError, match="b: expected one row, got 2"):
        value(stored, "b")


def test_where_none_selects_the_rows_without_that_column(tmp_path):
    metrics = pd.concat(
        [rows("d", 5.0), rows("d", [1.0, 2.0], h=[0.1, 0.01]), rows("e", 7.0), rows("e", 8.0, h=0.1)],
        ignore_index=True,
    )
    metrics.to_parquet(tmp_path / "m.parquet", index=False)
    stored = pd.read_parquet(tmp_path / "m.parquet")
    assert select(stored, "d", h=None)["value"].tolist() == [5.0]
    assert value(stored, "e", h=None) == 7.0 and value(stored, "e", h=0.1) == 8.0
    hs, values = series(stored, "d", "h", h=0.01)
    assert hs.tolist() == [0.01] and values.tolist() == [2.0]
