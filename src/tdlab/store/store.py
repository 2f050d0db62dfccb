"""A store: a folder of run directories, queried as two SQL tables through DuckDB.

    runs     one row per run: id, kind, status, created (UTC), duration_s, path, and the config flattened
             into columns with dotted names ({"optimizer": {"lr": 0.1}} -> "optimizer.lr")
    metrics  one row per logged value: run_id, step, name, value, the run's kind and status, and the same
             config columns, so that "loss against step, coloured by optimizer.lr" is one query

The metric chunks are read in place by DuckDB's `read_parquet` (nothing is copied or imported); the
flattened configs are built in Python as an Arrow table, registered with DuckDB and joined in SQL. Runs whose
configs have different fields still union: a field a run lacks is NULL there. A column whose values have
different JSON types across runs becomes text (lists are always stored as their JSON text, e.g. '[64, 64]');
integers mixed with floats become floats. A top-level config key that equals a fixed column name (id, kind,
status, created, duration_s, path, run_id, step, name, value) is renamed "config.<key>".

Every query opens a fresh in-memory DuckDB connection, so it sees the runs as they are on disk at that moment
(rows still buffered in a live `Run` are not visible). Queries are read only and confined to the store folder:
once the views exist, external access is off (no network, no extension installs, no file outside the folder to
read, write or attach) and the configuration is locked; `query` runs exactly one SELECT statement, and a `where`
filter must parse as one SQL expression.

Runs at any depth. A run is a directory holding meta.json; the store finds runs anywhere under its folder, so a
sweep's runs (`<store>/<sweep name>/<run>`) are listed and queried beside the runs at the top. A run's id in the
tables is its path relative to the store folder with "/" between parts (`lr-sweep/train-...-ab12cd`; a run at
the top keeps its plain name), so two sweeps may hold runs of the same name. `Store.run` and the `runs=` filter
also take a run's plain name when exactly one run in the store has it. The search never enters a run (its
metrics/, figures/, checkpoints/ are not searched), nor a directory holding config.json (what is left of a run
whose meta.json was moved aside), a directory whose name starts with ".", or a symbolic link to a directory
that is not a run.

Damaged files. A run file that cannot be read (an empty or truncated metric chunk or results.parquet, a
garbled meta.json, config.json or status, a missing status) does not break the store: the run that holds it is
left out of all three tables (`runs`, `metrics`, `results`), so no table mixes complete runs with partial ones,
and every other run is listed and queried as usual. Each call that reads the store lists the damaged files in
`Store.damaged` and issues one `DamagedFileWarning` per file; `Store.check()` lists them without reading the
tables, and `Store.repair()` (`tdlab doctor --fix`) moves each one into `<run>/damaged/` (never deletes it),
after which the run is read again without that file (a run whose meta.json was moved aside is no longer a
run). Parquet files are checked by their footer and columns: empty and truncated files are caught.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from tdlab.store.atomic import atomic_write_bytes, fsync_directory
from tdlab.store.run import (
    METRIC_SCHEMA,
    Damage,
    DamagedFileError,
    Run,
    check_parquet,
    metric_chunks,
    read_json_file,
    read_status,
)

RUN_COLUMNS = ("id", "kind", "status", "created", "duration_s", "path")
METRIC_COLUMNS = ("run_id", "step", "name", "value")
_RESERVED = frozenset(RUN_COLUMNS + METRIC_COLUMNS)


class DamagedFileWarning(UserWarning):
    """A run file could not be read; its run is left out of the tables (see the module docstring)."""


@dataclass(frozen=True)
class _RunFiles:
    """What the tables need of one healthy run directory."""

    path: Path
    meta: dict[str, Any]
    config: dict[str, Any]
    status: str | None
    chunks: list[Path]
    results: Path | None


def find_runs(root: str | os.PathLike[str]) -> list[Path]:
    """The run directories under `root` at any depth (see "Runs at any depth" in the module docstring).

    One `scandir` per folder that is not a run and one `stat` per subfolder, so listing is linear in the number
    of folders outside the runs, however many files the runs hold.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> for folder, run_id in [(".", "a"), ("sweep", "a"), ("sweep/inner", "b")]:
        ...     _ = Run.create(root / folder, {}, kind="train", run_id=run_id)
        >>> sorted(p.relative_to(root).as_posix() for p in find_runs(root))
        ['a', 'sweep/a', 'sweep/inner/b']
    """
    found: list[Path] = []
    pending = [os.fspath(root)]
    while pending:
        folder = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue  # removed meanwhile, or unreadable: nothing to list there
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            if os.path.isfile(os.path.join(entry.path, "meta.json")):
                found.append(Path(entry.path))
            elif not entry.is_symlink() and not os.path.exists(os.path.join(entry.path, "config.json")):
                pending.append(entry.path)
    return found


def _inspect(directory: Path) -> tuple[_RunFiles | None, list[Damage]]:
    """Read and check one run directory: its files if all are readable, else None and every damaged file."""
    damage: list[Damage] = []

    def attempt(read: Any, *args: Any) -> Any:
        try:
            return read(*args)
        except DamagedFileError as err:
            damage.append(err.damage)
            return None

    meta = attempt(read_json_file, directory / "meta.json", dict)
    config_file = directory / "config.json"
    config = attempt(read_json_file, config_file, dict) if config_file.is_file() else {}
    status = attempt(read_status, directory / "status")
    chunks = metric_chunks(directory)
    for chunk in chunks:
        attempt(check_parquet, chunk, METRIC_SCHEMA.names)
    results = directory / "results.parquet"
    if results.is_file():
        attempt(check_parquet, results, ("name", "value"))
    if damage:
        return None, damage
    return _RunFiles(directory, meta, config, status, chunks, results if results.is_file() else None), []


def check_run(path: str | os.PathLike[str]) -> list[Damage]:
    """The damaged files of the run directory `path` ([] for a healthy run), checked as the store checks them.

    Example:
        >>> import tempfile
        >>> run = Run.create(tempfile.mkdtemp(), {}, kind="train", run_id="a")
        >>> check_run(run.path)
        []
    """
    return _inspect(Path(path))[1]


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings into one level with dotted keys; lists and scalars are leaves.

    Example:
        >>> flatten_config({"optimizer": {"name": "sgd", "lr": 0.1}, "widths": [8, 8]})
        {'optimizer.name': 'sgd', 'optimizer.lr': 0.1, 'widths': [8, 8]}
    """
    flat: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, prefix=f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def _config_columns(config: Mapping[str, Any]) -> dict[str, Any]:
    """Flattened config with top-level keys that clash with a fixed column renamed to "config.<key>"."""
    return {(f"config.{key}" if key in _RESERVED else key): value for key, value in flatten_config(config).items()}


def _arrow_column(values: list[Any]) -> pa.Array:
    """One typed column from the values of a config field over runs (None = field missing or null)."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pa.array(values, pa.bool_())
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        if all(-(2**63) <= v < 2**63 for v in present):
            return pa.array(values, pa.int64())
    elif present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    return pa.array(
        [v if v is None or isinstance(v, str) else json.dumps(v) for v in values],
        pa.string(),
    )


def _naive_utc(iso: str | None) -> datetime | None:
    if iso is None:
        return None
    return datetime.fromisoformat(iso).astimezone(UTC).replace(tzinfo=None)


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _expression(where: str) -> str:
    """`where` parsed as one SQL expression and written back (comments and stacked statements cannot pass).

    Example:
        >>> _expression('"optimizer.lr" > 0.1 -- a comment')
        '"optimizer.lr" > 0.1'
    """
    try:
        return str(duckdb.SQLExpression(where))
    except duckdb.Error as err:
        raise ValueError(f"where: expected one SQL boolean expression, got {where!r}: {_first_line(err)}") from None


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


class Store:
    """A folder of run directories (see the module docstring for the `runs` and `metrics` tables).

    The folder need not exist: a missing or empty folder is an empty store.

    Args:
        path: the folder that `Run.create(root=path, ...)` writes runs into; runs in its subfolders (a sweep's
            `path/<sweep name>/<run>`) belong to the store too, under ids that are their paths in it.

    Example:
        >>> import tempfile
        >>> root = tempfile.mkdtemp()
        >>> for lr in (0.1, 0.01):
        ...     with Run.create(root, {"optimizer": {"lr": lr}}, kind="train") as run:
        ...         run.log(0, {"loss": 1.0})
        ...         run.log(1, {"loss": 1.0 - lr})
        ...         run.set_status("done")
        >>> store = Store(root)
        >>> len(store), store.runs(where='"optimizer.lr" > 0.05')["optimizer.lr"].tolist()
        (2, [0.1])
        >>> store.metrics(where='step = 1').sort_values("optimizer.lr")["value"].tolist()
        [0.99, 0.9]
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.damaged: list[Damage] = []
        """The damaged files found by the latest call that read the store (see the module docstring)."""

    def _run_dirs(self) -> dict[str, Path]:
        """Every run directory by its id (its path relative to the store, "/"-separated), in id order."""
        if not self.path.is_dir() or (self.path / "meta.json").is_file():
            return {}
        found = {p.relative_to(self.path).as_posix(): p for p in find_runs(self.path)}
        return dict(sorted(found.items()))

    def _resolve(self, names: list[str], runs: dict[str, Path], argument: str) -> tuple[dict[str, Path], list[str]]:
        """The runs named by `names` (each an id, or the plain name of exactly one run) by id, and the names that
        name no run; KeyError for a plain name that several runs have."""
        by_leaf: dict[str, list[str]] = {}
        for run_id in runs:
            by_leaf.setdefault(run_id.rsplit("/", 1)[-1], []).append(run_id)
        chosen, unknown = {}, []
        for name in names:
            if name in runs:
                chosen[name] = runs[name]
            elif len(by_leaf.get(name, ())) == 1:
                chosen[by_leaf[name][0]] = runs[by_leaf[name][0]]
            elif name in by_leaf:
                raise KeyError(
                    f"{argument}: {name!r} names {len(by_leaf[name])} runs in {str(self.path)!r} "
                    f"({', '.join(by_leaf[name])}); give the id (its path in the store)"
                )
            else:
                unknown.append(name)
        return chosen, unknown

    def ids(self) -> list[str]:
        """The ids of the runs, sorted: each run's path relative to the store folder ("/" between parts).

        Example:
            >>> import tempfile
            >>> root = tempfile.mkdtemp()
            >>> _ = Run.create(root, {}, kind="train", run_id="a")
            >>> _ = Run.create(f"{root}/lr-sweep", {}, kind="train", run_id="a")
            >>> Store(root).ids()
            ['a', 'lr-sweep/a']
        """
        return list(self._run_dirs())

    def __len__(self) -> int:
        return len(self._run_dirs())

    def __iter__(self) -> Iterator[Run]:
        """The runs, in id order; a run whose meta.json or config.json is damaged is skipped with a warning."""
        self.damaged = []
        for directory in self._run_dirs().values():
            try:
                run = Run.open(directory)
            except DamagedFileError as err:
                self._report([err.damage], stacklevel=2)
                continue
            yield run

    def __contains__(self, run_id: object) -> bool:
        return isinstance(run_id, str) and run_id in self._run_dirs()

    def __repr__(self) -> str:
        return f"Store(path={str(self.path)!r})"

    def run(self, run_id: str) -> Run:
        """Open the run `run_id`: its id, or its plain name when exactly one run in the store has that name.

        Raises:
            KeyError: no run has that id or name, or several runs have that name (their ids are listed).

        Example:
            >>> import tempfile
            >>> root = tempfile.mkdtemp()
            >>> _ = Run.create(f"{root}/lr-sweep", {}, kind="train", run_id="a")
            >>> Store(root).run("lr-sweep/a").status, Store(root).run("a").path == Store(root).run("lr-sweep/a").path
            ('running', True)
        """
        if not isinstance(run_id, str):
            raise TypeError(f"run_id: expected a string, got {type(run_id).__name__}")
        chosen, unknown = self._resolve([run_id], self._run_dirs(), "run_id")
        if unknown:
            raise KeyError(f"run_id: no run {run_id!r} in {str(self.path)!r}")
        return Run.open(*chosen.values())

    # ------------------------------------------------------------------ damage
    def _survey(self, runs: Mapping[str, Path]) -> tuple[dict[str, _RunFiles], list[Damage]]:
        """The healthy runs by id, and the damaged files of the others."""
        healthy, damage = {}, []
        for run_id, directory in runs.items():
            files, found = _inspect(directory)
            if files is not None:
                healthy[run_id] = files
            damage.extend(found)
        return healthy, damage

    def _report(self, damage: list[Damage], stacklevel: int) -> None:
        """Record the damage and warn once per file, at the caller `stacklevel` frames above this one."""
        self.damaged.extend(damage)
        for item in damage:
            warnings.warn(f"damaged: {item}", DamagedFileWarning, stacklevel=stacklevel + 1)

    def check(self) -> list[Damage]:
        """Every damaged file in the store (also kept in `damaged`), without a warning; [] for a healthy store.

        Example:
            >>> import tempfile
            >>> root = tempfile.mkdtemp()
            >>> _ = Run.create(root, {}, kind="train", run_id="a")
            >>> _ = (Path(root) / "a" / "meta.json").write_text("{")
            >>> [(d.path.name, d.reason.split(":")[0]) for d in Store(root).check()]
            [('meta.json', 'not valid JSON')]
        """
        self.damaged = self._survey(self._run_dirs())[1]
        return list(self.damaged)

    def repair(self) -> list[tuple[Damage, Path]]:
        """Move every damaged file into `<run>/damaged/` (same name; `.1`, `.2`, ... appended if taken).

        Nothing is deleted. A missing `status` file is written as `failed` instead (the run can then be resumed;
        its path is returned as the new path). Returns (damage, new path) per file moved; afterwards `check()` is
        [] unless a file was damaged meanwhile.

        Example:
            >>> import tempfile
            >>> root = tempfile.mkdtemp()
            >>> with Run.create(root, {}, kind="train", run_id="a") as run:
            ...     run.log(0, {"loss": 1.0})
            >>> (Path(root) / "a" / "metrics" / "part-00000.parquet").write_bytes(b"")
            0
            >>> store = Store(root)
            >>> [str(new.relative_to(root)) for _, new in store.repair()], store.check()
            (['a/damaged/part-00000.parquet'], [])
        """
        moved = []
        for run_dir in self._run_dirs().values():
            for item in _inspect(run_dir)[1]:
                if item.path.name == "status" and not item.path.exists():  # nothing to move: the run is `failed`
                    atomic_write_bytes(item.path, b"failed\n")
                    moved.append((item, item.path))
                else:
                    moved.append((item, self._move_aside(item, run_dir / "damaged")))
        self.damaged = []
        return moved

    @staticmethod
    def _move_aside(item: Damage, folder: Path) -> Path:
        """Move the damaged file into `folder` under a free name; returns its new path."""
        folder.mkdir(exist_ok=True)
        target, n = folder / item.path.name, 0
        while target.exists():
            n += 1
            target = folder / f"{item.path.name}.{n}"
        os.rename(item.path, target)
        fsync_directory(folder)
        fsync_directory(item.path.parent)
        return target

    # ------------------------------------------------------------------ tables
    def _runs_table(self, records: dict[str, _RunFiles]) -> pa.Table:
        directories = [r.path for r in records.values()]
        metas = [r.meta for r in records.values()]
        configs = [_config_columns(r.config) for r in records.values()]
        statuses = [r.status for r in records.values()]
        columns: dict[str, pa.Array] = {
            "id": pa.array(list(records), pa.string()),
            "kind": pa.array([m.get("kind") for m in metas], pa.string()),
            "status": pa.array(statuses, pa.string()),
            "created": pa.array([_naive_utc(m.get("created")) for m in metas], pa.timestamp("us")),
            "duration_s": pa.array([m.get("duration_s") for m in metas], pa.float64()),
            "path": pa.array([str(d) for d in directories], pa.string()),
        }
        names = sorted({name for config in configs for name in config})
        for name in names:
            columns[name] = _arrow_column([config.get(name) for config in configs])
        return pa.table(columns)

    def _connect(self, run_ids: list[str] | None = None, stacklevel: int = 2) -> tuple[duckdb.DuckDBPyConnection, int]:
        """A fresh connection with the views `runs` and `metrics`, and the number of runs in them.

        Runs with a damaged file are left out; `damaged` lists those files and each one is warned about.
        """
        directories = self._run_dirs()
        if run_ids is not None:
            try:
                wanted, unknown = self._resolve(run_ids, directories, "runs")
            except KeyError as err:
                raise ValueError(err.args[0]) from None
            if unknown:
                raise ValueError(f"runs: expected ids of runs in {str(self.path)!r}, got unknown {unknown}")
            directories = {run_id: path for run_id, path in directories.items() if run_id in wanted}
        records, damage = self._survey(directories)
        self.damaged = []
        self._report(damage, stacklevel + 1)
        files, owners = [], []
        for run_id, record in records.items():
            for chunk in record.chunks:
                files.append(str(chunk))
                owners.append(run_id)
        con = duckdb.connect()
        con.register("runs", self._runs_table(records))
        if files:
            con.register("chunk_owners", pa.table({"file": files, "run_id": owners}))
            listing = ", ".join(_sql_string(f) for f in files)
            rows = (
                "SELECT o.run_id, p.step, p.name, p.value "
                f"FROM read_parquet([{listing}], filename = true) AS p "
                "JOIN chunk_owners AS o ON p.filename = o.file"
            )
        else:
            rows = (
                "SELECT CAST(NULL AS VARCHAR) AS run_id, CAST(NULL AS BIGINT) AS step, "
                "CAST(NULL AS VARCHAR) AS name, CAST(NULL AS DOUBLE) AS value WHERE false"
            )
        results = [(run_id, r.results) for run_id, r in records.items() if r.results is not None]
        if results:
            con.register(
                "result_owners",
                pa.table({"file": [str(f) for _, f in results], "run_id": [r for r, _ in results]}),
            )
            listing = ", ".join(_sql_string(str(f)) for _, f in results)
            con.execute(
                "CREATE VIEW results AS SELECT o.run_id, p.* EXCLUDE (filename) "
                f"FROM read_parquet([{listing}], filename = true, union_by_name = true) AS p "
                "JOIN result_owners AS o ON p.filename = o.file"
            )
        else:
            con.execute(
                "CREATE VIEW results AS SELECT CAST(NULL AS VARCHAR) AS run_id, CAST(NULL AS VARCHAR) AS name, "
                "CAST(NULL AS DOUBLE) AS value WHERE false"
            )
        con.execute(
            "CREATE VIEW metrics AS SELECT m.run_id, m.step, m.name, m.value, "
            "r.* EXCLUDE (id, created, duration_s, path) "
            f"FROM ({rows}) AS m JOIN runs AS r ON m.run_id = r.id"
        )
        self._confine(con)
        return con, len(records)

    def _confine(self, con: duckdb.DuckDBPyConnection) -> None:
        """Once the views exist: files only inside the store folder, no external access (no network, no
        extensions, no other files to read, write or attach), and a locked configuration that a query cannot
        change back."""
        folder = str(self.path.resolve()).rstrip(os.sep) + os.sep
        con.execute(f"SET allowed_directories = [{_sql_string(folder)}]")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")

    # ------------------------------------------------------------------ queries
    def runs(self, where: str | None = None) -> pd.DataFrame:
        """One row per run (fixed columns, then config columns), ordered by creation time.

        A run with a damaged file is left out of this and every other table, with a `DamagedFileWarning` naming
        the file; `damaged` lists those files afterwards (see the module docstring).

        Args:
            where: a SQL boolean expression over the columns, dotted names double-quoted,
                e.g. `"optimizer.lr" < 0.1 AND status = 'done'`. Not evaluated on an empty store.

        Example:
            >>> import tempfile
            >>> Store(tempfile.mkdtemp()).runs().columns.tolist()
            ['id', 'kind', 'status', 'created', 'duration_s', 'path']
        """
        return self._select("runs", where, "created, id")

    def metrics(
        self, names: list[str] | None = None, where: str | None = None, runs: list[str] | None = None
    ) -> pd.DataFrame:
        """Metric rows of all runs, joined with each run's kind, status and config columns.

        Args:
            names: keep only these metric names.
            where: a SQL boolean expression over config columns and step, name, value,
                e.g. `"optimizer.name" = 'sgd' AND step >= 100`. Not evaluated on an empty store.
            runs: keep only these run ids (ValueError for an id not in the store).

        Returns:
            Columns run_id, step, name, value, kind, status, config columns; ordered by run_id, step, name.
            NaN and inf values are kept. In DuckDB NaN compares above every number (`value > 1` keeps NaN
            rows); use `isnan(value)` / `isfinite(value)` to select or drop them.

        Example:
            >>> import tempfile
            >>> Store(tempfile.mkdtemp()).metrics(names=["loss"]).columns.tolist()
            ['run_id', 'step', 'name', 'value', 'kind', 'status']
        """
        if names is not None and (isinstance(names, str) or not all(isinstance(n, str) for n in names)):
            raise TypeError(f"names: expected a list of metric names, got {names!r}")
        if runs is not None and (isinstance(runs, str) or not all(isinstance(r, str) for r in runs)):
            raise TypeError(f"runs: expected a list of run ids, got {runs!r}")
        return self._select("metrics", where, "run_id, step, name", names=names, run_ids=runs)

    def _select(
        self,
        view: str,
        where: str | None,
        order: str,
        names: list[str] | None = None,
        run_ids: list[str] | None = None,
    ) -> pd.DataFrame:
        if where is not None and not isinstance(where, str):
            raise TypeError(f"where: expected a SQL expression (str) or None, got {type(where).__name__}")
        if where is not None:
            where = _expression(where)
        con, num_runs = self._connect(run_ids, stacklevel=3)
        try:
            conditions = [f"({where})"] if where is not None and num_runs > 0 else []
            if names is not None:
                listed = ", ".join(_sql_string(n) for n in names)
                conditions.append(f"name IN ({listed})" if names else "false")
            sql = f"SELECT * FROM {view}" + (f" WHERE {' AND '.join(conditions)}" if conditions else "")
            try:
                return con.execute(f"{sql} ORDER BY {order}").df()
            except duckdb.Error as err:
                raise ValueError(f"where: cannot evaluate {where!r}: {_first_line(err)}") from err
        finally:
            con.close()

    def query(self, sql: str) -> pd.DataFrame:
        """Run raw SQL (DuckDB dialect) in which the views `runs`, `metrics` and `results` are defined.

        `results` holds the tidy rows of catalogue experiments (run_id, name, value and their own columns).

        Example:
            >>> import tempfile
            >>> Store(tempfile.mkdtemp()).query("SELECT count(*) AS n FROM metrics")["n"].tolist()
            [0]
        """
        if not isinstance(sql, str):
            raise TypeError(f"sql: expected a string, got {type(sql).__name__}")
        con, _ = self._connect(stacklevel=2)
        try:
            statements = con.extract_statements(sql)
            if len(statements) != 1:
                raise ValueError(f"sql: expected one statement, got {len(statements)}")
            kind = statements[0].type
            if kind != duckdb.StatementType.SELECT:
                raise ValueError(f"sql: only a SELECT query is allowed (the store is read only), got {kind.name}")
            return con.execute(sql).df()
        except duckdb.Error as err:
            raise ValueError(f"sql: cannot run the query: {_first_line(err)}") from err
        finally:
            con.close()
