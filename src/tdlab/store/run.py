"""A run: one directory holding everything a training run or an experiment produced.

Layout (every file is written atomically, see `tdlab.store.atomic`)::

    <root>/<run id>/
        config.json          the full config, written once at creation
        meta.json            id, kind, created, finished, duration_s, tdlab_version, seed
                             (+ diverged_step, error)
        status               one word: running | done | diverged | failed
        metrics/part-00000.parquet, part-00001.parquet, ...
                             metric rows in long form (step int64, name string, value float64), one file per
                             flushed chunk; a chunk file is written once and never rewritten
        arrays/<name>-<step:08d>.npz     array-valued measurements
        checks.json          list of check records
        figures/<name>.<ext> figures written by the report
        checkpoints/last.pt  {"state": <any state dict>, "num_chunks": <chunks on disk when it was written>}
        lock                 the writer's lock: host, pid and start of the process that owns (or last owned) the run

A run directory is assembled under a hidden temporary name and renamed into place, so a reader never sees a
half-created run.

One writer per run (`tdlab.store.lock`): `Run.create` returns a run its process owns from the start (the lock is
taken before the directory is renamed into place), and a writer that reopens a run takes it with `own()` (which
`load_checkpoint` calls too) and raises `RunBusyError`, naming the owner's host and pid, while another live
process owns it. Ownership ends with `release()`, the end of a `with` block, the garbage collection of the
`Run`, or the death of its process; a dead owner's lock is free and the next writer takes it over. Readers
(`Run.open` and every reading method) take no lock.

Resume protocol (no metric row lost, none duplicated):

    1. The loop logs the rows of step t, then calls `save_checkpoint(state)` at step t. `save_checkpoint`
       first flushes the buffer, so every row up to step t is in chunks 0 .. n-1, then records
       n = `num_chunks` inside the checkpoint (written atomically, after the flush).
    2. The loop goes on, logs steps t+1, ... and may flush more chunks n, n+1, ... before it is killed. Rows
       still in the buffer at the kill are lost; that is fine, they come after the checkpoint.
    3. On restart, `Run.open(path).load_checkpoint()` returns the state of step t and deletes every chunk with
       index >= n (highest first, so an interrupted truncation leaves a contiguous prefix and can simply be
       redone). The loop restores the state and continues from step t+1, logging those rows again.
       Without a checkpoint it returns None and deletes all chunks: the run starts over from step 0.

If the process dies between the flush and the checkpoint write, the previous checkpoint (with its smaller
`num_chunks`) stays valid and the truncation drops the newer chunks, matching the state it restores. Array
files are keyed by (name, step), so re-logging them after a resume overwrites them instead of
duplicating them. Truncating is safe only for the run's one writer, which is why `load_checkpoint` takes the
run's lock first.

A file that cannot be read (empty, truncated or garbled JSON or Parquet) raises `DamagedFileError`, a
ValueError that names the file; `tdlab doctor --fix` (`Store.repair`) moves such files into `<run>/damaged/`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from tdlab.store.atomic import atomic_open, atomic_write_bytes, atomic_write_json, fsync_directory, to_json
from tdlab.store.lock import RunLock

STATUSES = ("running", "done", "diverged", "failed")
FINAL_STATUSES = ("done", "diverged", "failed")
METRIC_SCHEMA = pa.schema([("step", pa.int64()), ("name", pa.string()), ("value", pa.float64())])
FIGURE_EXTENSIONS = ("png", "svg", "pdf")

_NAME = re.compile(r"[A-Za-z0-9_=,+@-][A-Za-z0-9_.=,+@-]*")
_CHUNK = re.compile(r"part-(\d{5,})\.parquet")


def _check_name(argument: str, value: object) -> str:
    """A name used inside a file name: letters, digits and `_.=,+@-`, not starting with a dot."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValueError(f"{argument}: expected letters, digits and '_.=,+@-' (not starting with '.'), got {value!r}")
    return value


def _check_step(step: object) -> int:
    if isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0:
        raise ValueError(f"step: expected a non-negative integer, got {step!r}")
    return int(step)


def _check_metrics(metrics: object) -> Mapping[str, Any]:
    if not isinstance(metrics, Mapping):
        raise TypeError(f"metrics: expected a mapping of name -> number, got {type(metrics).__name__}")
    for name in metrics:
        if not isinstance(name, str) or not name:
            raise ValueError(f"metrics: expected non-empty string names, got {name!r}")
    return metrics


@dataclass(frozen=True)
class Damage:
    """A run file that cannot be read: its path and why (e.g. "empty file (0 bytes)")."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path} ({self.reason})"


class DamagedFileError(ValueError):
    """A run file is empty, truncated or garbled; `damage` names it and says why."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.damage = Damage(Path(path), reason)
        super().__init__(f"damaged: {self.damage}; `tdlab doctor --fix` repairs it")


def read_json_file(path: str | os.PathLike[str], kind: type = object) -> Any:
    """The JSON value in `path` (which must exist), checked to be a `kind`; DamagedFileError if it is not.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "meta.json"
        >>> _ = target.write_text('{"id": "a", ')
        >>> read_json_file(target, dict)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        tdlab.store.run.DamagedFileError: damaged: .../meta.json (not valid JSON: ...); `tdlab doctor --fix` ...
    """
    data = Path(path).read_bytes()
    if not data.strip():
        raise DamagedFileError(path, f"empty file ({len(data)} bytes)")
    try:
        value = json.loads(data)
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise DamagedFileError(path, f"not valid JSON: {_first_line(err)}") from None
    if not isinstance(value, kind):
        raise DamagedFileError(path, f"expected a JSON {'object' if kind is dict else kind.__name__}")
    return value


def read_status(path: str | os.PathLike[str]) -> str:
    """The status word in the file `path`; DamagedFileError if it is missing, not text or not a status word.

    A run directory is renamed into place with its status file, so a run without one lost it afterwards;
    `tdlab doctor --fix` writes `failed` into it, which `tdlab train --resume` continues.

    Example:
        >>> import tempfile
        >>> read_status(Path(tempfile.mkdtemp()) / "status")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        tdlab.store.run.DamagedFileError: damaged: .../status (missing); `tdlab doctor --fix` repairs it
    """
    try:
        word = Path(path).read_bytes().decode().strip()
    except FileNotFoundError:
        raise DamagedFileError(path, "missing") from None
    except UnicodeDecodeError:
        raise DamagedFileError(path, "not text") from None
    if word not in STATUSES:
        raise DamagedFileError(path, f"{word[:40]!r} is not a status word ({', '.join(STATUSES)})")
    return word


def check_parquet(path: str | os.PathLike[str], columns: Sequence[str]) -> None:
    """DamagedFileError unless `path` is a Parquet file (a readable footer) with these columns.

    Only the footer is read: this catches empty and truncated files, not a corrupt page inside an intact file.
    """
    if os.path.getsize(path) == 0:
        raise DamagedFileError(path, "empty file (0 bytes)")
    try:
        names = pq.read_schema(path).names
    except (pa.ArrowException, OSError) as err:
        raise DamagedFileError(path, _parquet_reason(path, err)) from None
    missing = [c for c in columns if c not in names]
    if missing:
        raise DamagedFileError(path, f"no column {', '.join(missing)}")


def read_parquet_file(path: str | os.PathLike[str], schema: pa.Schema | None = None) -> pa.Table:
    """`pq.read_table` that raises DamagedFileError naming the file when it is empty, truncated or garbled."""
    if os.path.getsize(path) == 0:
        raise DamagedFileError(path, "empty file (0 bytes)")
    try:
        return pq.read_table(path, schema=schema)
    except (pa.ArrowException, OSError) as err:
        raise DamagedFileError(path, _parquet_reason(path, err)) from None


def _parquet_reason(path: str | os.PathLike[str], err: Exception) -> str:
    """Why pyarrow could not read `path`, without the path itself (the message names it already)."""
    text = _first_line(err).replace(f"Could not open Parquet input source '{path}': ", "")
    return "not a readable Parquet file: " + text.replace(str(path), "the file")


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _utc_now() -> datetime:
    return datetime.now(UTC)


@functools.cache
def _tdlab_version() -> str:
    try:
        return metadata.version("tdlab")
    except metadata.PackageNotFoundError:
        return "unknown"


def default_run_id(kind: str, config: Mapping[str, Any], now: datetime | None = None) -> str:
    """The default id `<kind>-<UTC yyyymmdd-HHMMSS>-<6 hex>`, the hex from a SHA-256 of config and time.

    The hash also covers the time in nanoseconds and the process id, so runs of one config created in the same
    second by different workers get different ids.

    Example:
        >>> from datetime import datetime, timezone
        >>> default_run_id("train", {"lr": 0.1}, datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc))[:21]
        'train-20240501-120000'
    """
    now = _utc_now() if now is None else now
    salt = f"{now.isoformat()}|{time.time_ns()}|{os.getpid()}"
    digest = hashlib.sha256((to_json(config) + salt).encode()).hexdigest()[:6]
    return f"{kind}-{now:%Y%m%d-%H%M%S}-{digest}"


class Run:
    """One run directory: config, meta, status, chunked metrics, arrays, checks, figures and a checkpoint.

    Create one with `Run.create`, reopen one with `Run.open`; the module docstring gives the layout and the
    checkpoint/resume protocol.

    Args:
        path: the run directory (must exist and hold `config.json` and `meta.json`).
        flush_every: buffered metric rows that trigger a flush into a new chunk file.

    Example:
        >>> import tempfile
        >>> root = tempfile.mkdtemp()
        >>> with Run.create(root, {"lr": 0.1}, kind="train", run_id="demo", seed=0) as run:
        ...     run.log(0, {"loss": 1.0})
        ...     run.log(1, {"loss": 0.5})
        ...     run.set_status("done")
        >>> Run.open(f"{root}/demo").metrics()["value"].tolist()
        [1.0, 0.5]
    """

    def __init__(self, path: str | os.PathLike[str], flush_every: int = 2000) -> None:
        if isinstance(flush_every, bool) or not isinstance(flush_every, int) or flush_every < 1:
            raise ValueError(f"flush_every: expected a positive integer, got {flush_every!r}")
        path = Path(path)
        for required in ("config.json", "meta.json"):
            if not (path / required).is_file():
                raise FileNotFoundError(f"path: {str(path)!r} is not a run directory (no {required})")
        self.path = path
        self.flush_every = flush_every
        self._config: dict[str, Any] = read_json_file(path / "config.json", dict)
        self._meta: dict[str, Any] = read_json_file(path / "meta.json", dict)
        self._steps: list[int] = []
        self._names: list[str] = []
        self._values: list[float] = []
        chunks = metric_chunks(self.path)
        self._num_chunks = _chunk_index(chunks[-1]) + 1 if chunks else 0
        self._lock: RunLock | None = None

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(
        cls,
        root: str | os.PathLike[str],
        config: Mapping[str, Any],
        kind: str,
        run_id: str | None = None,
        seed: int | None = None,
        flush_every: int = 2000,
    ) -> Self:
        """Create the run directory `<root>/<run_id>` with config, meta and status `running`, owned by this process.

        Args:
            root: the store folder (created if missing).
            config: the full config, any JSON-able mapping (e.g. `model_dump(mode="json")` of a pydantic
                model).
            kind: "train" or the experiment's name.
            run_id: the directory name; default `default_run_id(kind, config)`.
            seed: recorded in meta.json.
            flush_every: see the class docstring.

        Raises:
            FileExistsError: a run with this id already exists in `root`.

        Example:
            >>> import tempfile
            >>> run = Run.create(tempfile.mkdtemp(), {"optimizer": {"lr": 0.1}}, kind="train", run_id="a")
            >>> run.id, run.status, run.config["optimizer"]["lr"]
            ('a', 'running', 0.1)
        """
        if not isinstance(config, Mapping):
            raise TypeError(f"config: expected a mapping (dict), got {type(config).__name__}")
        _check_name("kind", kind)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer)):
            raise TypeError(f"seed: expected an integer or None, got {seed!r}")
        try:
            config_json = to_json(dict(config))
        except (TypeError, ValueError) as err:
            raise TypeError(f"config: not JSON-serialisable ({err})") from err
        now = _utc_now()
        run_id = default_run_id(kind, config, now) if run_id is None else _check_name("run_id", run_id)
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise ValueError(f"out: {str(root)!r} is a file; the store is a folder of runs")
        root.mkdir(parents=True, exist_ok=True)
        final = root / run_id
        if final.exists():
            raise FileExistsError(f"run_id: a run {run_id!r} already exists in {str(root)!r}")
        meta = {
            "id": run_id,
            "kind": kind,
            "created": now.isoformat(),
            "finished": None,
            "duration_s": None,
            "tdlab_version": _tdlab_version(),
            "torch_version": torch.__version__,
            "threads": torch.get_num_threads(),  # CPU results are bit-identical only at the same thread count
            "seed": None if seed is None else int(seed),
        }
        staging = root / f".{run_id}.{uuid.uuid4().hex[:12]}.creating"
        staging.mkdir()
        lock = None
        try:
            lock = RunLock.acquire(staging)  # the lock moves with the directory: the run is owned from birth
            atomic_write_bytes(staging / "config.json", (config_json + "\n").encode())
            atomic_write_json(staging / "meta.json", meta)
            atomic_write_bytes(staging / "status", b"running\n")
            try:
                # fails on an existing non-empty directory: a concurrent creator won
                os.rename(staging, final)
            except OSError as err:
                raise FileExistsError(f"run_id: a run {run_id!r} already exists in {str(root)!r}") from err
        except BaseException:
            if lock is not None:
                lock.release()
            shutil.rmtree(staging, ignore_errors=True)
            raise
        fsync_directory(root)
        run = cls(final, flush_every=flush_every)
        run._lock = lock
        return run

    @classmethod
    def open(cls, path: str | os.PathLike[str], flush_every: int = 2000) -> Self:
        """Open an existing run directory (to read it, or to resume it with `load_checkpoint`).

        Example:
            >>> import tempfile
            >>> root = tempfile.mkdtemp()
            >>> _ = Run.create(root, {}, kind="train", run_id="b")
            >>> Run.open(f"{root}/b").meta["kind"]
            'train'
        """
        return cls(path, flush_every=flush_every)

    # ------------------------------------------------------------------ ownership
    def own(self) -> Self:
        """Become the run's one writer (take its lock); RunBusyError, naming the owner, if a live process owns it.

        Owning twice is harmless. A writer that reopens a run (to resume it) calls this before it reads the status,
        so that two processes never both decide to continue one run.

        Example:
            >>> import tempfile
            >>> root = tempfile.mkdtemp()
            >>> Run.create(root, {}, kind="train", run_id="o").release()  # its writer ended
            >>> Run.open(f"{root}/o").own().owned
            True
        """
        if self._lock is None:
            self._lock = RunLock.acquire(self.path)
        return self

    def release(self) -> None:
        """Stop being the run's writer (free its lock for another process); the run stays readable."""
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    @property
    def owned(self) -> bool:
        """Whether this `Run` holds the run's lock (created here, or `own()` called)."""
        return self._lock is not None

    # ------------------------------------------------------------------ description
    @property
    def id(self) -> str:
        return self._meta["id"]

    @property
    def config(self) -> dict[str, Any]:
        """The config as written at creation (a fresh copy)."""
        return json.loads(json.dumps(self._config))

    @property
    def meta(self) -> dict[str, Any]:
        """The content of meta.json (a fresh copy)."""
        return json.loads(json.dumps(self._meta))

    @property
    def status(self) -> str:
        """The current status word, read from the `status` file (DamagedFileError if it is missing or garbled)."""
        return read_status(self.path / "status")

    def set_status(self, status: str, **meta_updates: Any) -> None:
        """Set the status word and update meta.json (meta first, so a final status always has complete meta).

        A final status (done, diverged, failed) also records `finished` (UTC, ISO 8601) and
        `duration_s` = finished - created, unless given in `meta_updates`; `running` clears them (a resume).

        Example:
            >>> import tempfile
            >>> run = Run.create(tempfile.mkdtemp(), {}, kind="train", run_id="c")
            >>> run.set_status("diverged", diverged_step=17)
            >>> run.status, run.meta["diverged_step"]
            ('diverged', 17)
        """
        if status not in STATUSES:
            allowed = ", ".join(repr(s) for s in STATUSES)
            raise ValueError(f"status: expected one of {allowed}, got {status!r}")
        meta = dict(self._meta)
        if status in FINAL_STATUSES:
            finished = _utc_now()
            meta["finished"] = finished.isoformat()
            meta["duration_s"] = (finished - datetime.fromisoformat(meta["created"])).total_seconds()
        else:
            meta["finished"] = None
            meta["duration_s"] = None
        meta.update(meta_updates)
        atomic_write_json(self.path / "meta.json", meta)
        self._meta = json.loads(to_json(meta))
        atomic_write_bytes(self.path / "status", f"{status}\n".encode())

    # ------------------------------------------------------------------ experiment results
    def write_results(self, frame: pd.DataFrame) -> None:
        """Write an experiment's tidy result rows as `results.parquet` (atomically, once per run).

        Unlike training metrics, these rows carry whatever columns identify them besides `name` and `value`
        (step, eta, kappa, seed, ...), so they live in one file of their own rather than in the metric chunks.
        """
        missing = {"name", "value"} - set(frame.columns)
        if missing:
            raise ValueError(f"frame: expected columns 'name' and 'value', missing {sorted(missing)}")
        with atomic_open(self.path / "results.parquet", "wb") as handle:
            frame.reset_index(drop=True).to_parquet(handle, index=False)

    def results(self) -> pd.DataFrame:
        """The rows written by `write_results` (an empty frame with columns name, value if none)."""
        path = self.path / "results.parquet"
        if not path.is_file():
            return pd.DataFrame({"name": pd.Series(dtype=str), "value": pd.Series(dtype=float)})
        check_parquet(path, ("name", "value"))
        try:
            return pd.read_parquet(path)
        except (pa.ArrowException, OSError) as err:
            raise DamagedFileError(path, _parquet_reason(path, err)) from None

    # ------------------------------------------------------------------ metrics
    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        """Buffer one row (step, name, value) per metric; flush when `flush_every` rows are buffered.

        Values go through `float()` (Python/NumPy numbers, one-element tensors); NaN and inf are kept as they
        are, since a diverged loss is a result.

        Example:
            >>> import tempfile
            >>> run = Run.create(tempfile.mkdtemp(), {}, kind="train", run_id="d")
            >>> run.log(3, {"loss": float("nan"), "accuracy": 0.5})
            >>> run.metrics()["name"].tolist()
            ['accuracy', 'loss']
        """
        columns = {}
        for name, value in _check_metrics(metrics).items():
            try:
                columns[name] = [float(value)]
            except (TypeError, ValueError) as err:
                raise TypeError(f"metrics[{name!r}]: expected a number, got {value!r}") from err
        self._buffer([_check_step(step)], columns)

    def log_steps(self, steps: Sequence[int], metrics: Mapping[str, Sequence[float]]) -> None:
        """`log` for many steps at once: buffer the rows `(steps[k], name, metrics[name][k])` of every name.

        Example:
            >>> import tempfile
            >>> run = Run.create(tempfile.mkdtemp(), {}, kind="train", run_id="d2")
            >>> run.log_steps([1, 2], {"loss": [0.5, 0.25]})
            >>> run.metrics()["value"].tolist()
            [0.5, 0.25]
        """
        steps = [_check_step(step) for step in steps]
        columns = {}
        for name, values in _check_metrics(metrics).items():
            try:
                columns[name] = [float(value) for value in values]
            except (TypeError, ValueError) as err:
                raise TypeError(f"metrics[{name!r}]: expected numbers, got {values!r}") from err
            if len(columns[name]) != len(steps):
                raise ValueError(
                    f"metrics[{name!r}]: expected {len(steps)} values (one per step), got {len(columns[name])}"
                )
        self._buffer(steps, columns)

    def _buffer(self, steps: list[int], columns: dict[str, list[float]]) -> None:
        """Append checked rows to the buffer; flush when it holds `flush_every` rows."""
        for name, column in columns.items():
            self._steps.extend(steps)
            self._names.extend([name] * len(steps))
            self._values.extend(column)
        if len(self._steps) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows as the next chunk `metrics/part-<n:05d>.parquet` (nothing if empty).

        Example:
            >>> import tempfile
            >>> run = Run.create(tempfile.mkdtemp(), {}, kind="train", run_id="e")
            >>> run.log(0, {"loss": 1.0}); run.flush(); run.flush()
            >>> sorted(p.name for p in (run.path / "metrics").iterdir())
            ['part-00000.parquet']
        """
        if not self._steps:
            return
        table = self._buffer_table()
        (self.path / "metrics").mkdir(exist_ok=True)
        with atomic_open(self.path / "metrics" / f"part-{self._num_chunks:05d}.parquet", "wb") as handle:
            pq.write_table(table, handle)
        self._num_chunks += 1
        self._steps, self._names, self._values = [], [], []

    def _buffer_table(self) -> pa.Table:
        return pa.table(
            [pa.array(self._steps, pa.int64()), pa.array(self._names, pa.string()), pa.array(self._values)],
            schema=METRIC_SCHEMA,
        )

    def metrics(self) -> pd.DataFrame:
        """All rows logged so far (chunks on disk and the unflushed buffer), long form, sorted by step, name.

        Columns step (int64), name (string), value (float64); an empty frame with these columns if none.

        Example:
            >>> import tempfile
            >>> run = Run.create(tempfile.mkdtemp(), {}, kind="train", run_id="f")
            >>> run.metrics().columns.tolist()
            ['step', 'name', 'value']
        """
        frame = self._raw_metrics()
        return frame.sort_values(["step", "name"], kind="stable").reset_index(drop=True)

    def _raw_metrics(self) -> pd.DataFrame:
        """Rows in the order they were logged."""
        tables = [read_parquet_file(p, schema=METRIC_SCHEMA) for p in metric_chunks(self.path)]
        tables.append(self._buffer_table())
        return pa.concat_tables(tables).to_pandas()

    def metrics_wide(self) -> pd.DataFrame:
        """One row per step (the index), one column per metric name; the last value wins on a repeated log.

        Example:
            >>> import tempfile
            >>> run = Run.create(tempfile.mkdtemp(), {}, kind="train", run_id="g")
            >>> run.log(0, {"loss": 1.0, "sharpness": 2.0}); run.log(1, {"loss": 0.5})
            >>> run.metrics_wide()["loss"].tolist()
            [1.0, 0.5]
        """
        frame = self._raw_metrics().drop_duplicates(["step", "name"], keep="last")
        wide = frame.pivot(index="step", columns="name", values="value")
        wide.columns.name = None
        return wide

    # ------------------------------------------------------------------ arrays, checks, figures
    def log_arrays(self, step: int, name: str, **arrays: Any) -> Path:
        """Save array-valued measurements as `arrays/<name>-<step:08d>.npz` (tensors are moved to the CPU).

        Example:
            >>> import tempfile, numpy as np
            >>> run = Run.create(tempfile.mkdtemp(), {}, kind="train", run_id="h")
            >>> run.log_arrays(5, "spectrum", eigenvalues=np.array([3.0, 1.0])).name
            'spectrum-00000005.npz'
            >>> run.load_arrays(5, "spectrum")["eigenvalues"].tolist()
            [3.0, 1.0]
        """
        step = _check_step(step)
        _check_name("name", name)
        if not arrays:
            raise ValueError("arrays: expected at least one keyword array, got none")
        plain = {
            key: value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
            for key, value in arrays.items()
        }
        buffer = io.BytesIO()
        np.savez(buffer, **plain)
        (self.path / "arrays").mkdir(exist_ok=True)
        target = self.path / "arrays" / f"{name}-{step:08d}.npz"
        atomic_write_bytes(target, buffer.getvalue())
        return target

    def load_arrays(self, step: int, name: str) -> dict[str, np.ndarray]:
        """The arrays saved by `log_arrays(step, name, ...)` (see its example)."""
        target = self.path / "arrays" / f"{_check_name('name', name)}-{_check_step(step):08d}.npz"
        with np.load(target, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}

    def array_steps(self, name: str) -> list[int]:
        """The sorted steps at which arrays named `name` were saved.

        Example:
            >>> import tempfile
            >>> run = Run.create(tempfile.mkdtemp(), {}, kind="train", run_id="i")
            >>> _ = run.log_arrays(10, "w", x=[1.0]); _ = run.log_arrays(2, "w", x=[0.0])
            >>> run.array_steps("w")
            [2, 10]
        """
        pattern = re.compile(re.escape(_check_name("name", name)) + r"-(\d{8,})\.npz")
        folder = self.path / "arrays"
        files = folder.iterdir() if folder.is_dir() else []
        return sorted(int(m.group(1)) for p in files if (m := pattern.fullmatch(p.name)))

    def write_checks(self, checks: list[dict[str, Any]]) -> None:
        """Store the experiment's check records (a list of JSON-able dicts) in checks.json, replacing them.

        Example:
            >>> import tempfile
            >>> run = Run.create(tempfile.mkdtemp(), {}, kind="eos", run_id="j")
            >>> run.write_checks([{"name": "sharpness", "measured": 1.02, "theory": 1.0, "passed": True}])
            >>> run.checks()[0]["passed"]
            True
        """
        if not isinstance(checks, list) or not all(isinstance(c, Mapping) for c in checks):
            raise TypeError(f"checks: expected a list of dicts, got {type(checks).__name__}")
        atomic_write_json(self.path / "checks.json", [dict(c) for c in checks])

    def checks(self) -> list[dict[str, Any]]:
        """The check records, or an empty list if none were written."""
        target = self.path / "checks.json"
        return read_json_file(target, list) if target.is_file() else []

    def figure_path(self, name: str, ext: str = "png") -> Path:
        """The path `figures/<name>.<ext>` for a figure (the folder is created; nothing is written).

        Example:
            >>> import tempfile
            >>> run = Run.create(tempfile.mkdtemp(), {}, kind="train", run_id="k")
            >>> run.figure_path("loss", "svg").name
            'loss.svg'
        """
        _check_name("name", name)
        if ext not in FIGURE_EXTENSIONS:
            allowed = ", ".join(repr(e) for e in FIGURE_EXTENSIONS)
            raise ValueError(f"ext: expected one of {allowed}, got {ext!r}")
        (self.path / "figures").mkdir(exist_ok=True)
        return self.path / "figures" / f"{name}.{ext}"

    # ------------------------------------------------------------------ checkpoint / resume
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Flush the metric buffer, then write `checkpoints/last.pt` = {"state", "num_chunks"} atomically.

        Call it after logging the rows of the step the state belongs to (module docstring, step 1).

        Example:
            >>> import tempfile
            >>> run = Run.create(tempfile.mkdtemp(), {}, kind="train", run_id="l")
            >>> run.log(0, {"loss": 1.0}); run.save_checkpoint({"step": 0})
            >>> Run.open(run.path).load_checkpoint()
            {'step': 0}
        """
        if not isinstance(state, dict):
            raise TypeError(f"state: expected a dict, got {type(state).__name__}")
        self.flush()
        (self.path / "checkpoints").mkdir(exist_ok=True)
        with atomic_open(self.path / "checkpoints" / "last.pt", "wb") as handle:
            torch.save({"state": state, "num_chunks": self._num_chunks}, handle)

    def load_checkpoint(
        self, map_location: str | torch.device | None = None, weights_only: bool = True
    ) -> dict[str, Any] | None:
        """Own the run, return the checkpointed state and truncate the metrics back to it (module docstring, step 3).

        Chunks with index >= the checkpoint's `num_chunks` are deleted and the unflushed buffer is discarded;
        with no checkpoint, all chunks are deleted and None is returned (the run restarts from scratch).
        RunBusyError (nothing deleted) if another live process owns the run.

        Args:
            map_location: passed to `torch.load` (e.g. "cpu" to read a CUDA checkpoint on a CPU machine).
            weights_only: passed to `torch.load`; set False for states holding arbitrary Python objects.

        Example:
            >>> import tempfile
            >>> run = Run.create(tempfile.mkdtemp(), {}, kind="train", run_id="m")
            >>> run.log(0, {"loss": 1.0}); run.save_checkpoint({"step": 0})
            >>> run.log(1, {"loss": 0.5}); run.flush(); run.release()  # then the process is killed
            >>> resumed = Run.open(run.path)
            >>> resumed.load_checkpoint(), resumed.metrics()["step"].tolist()
            ({'step': 0}, [0])
        """
        self.own()
        target = self.path / "checkpoints" / "last.pt"
        if target.is_file() and target.stat().st_size == 0:
            raise ValueError(f"checkpoint: {target} is empty (0 bytes); move it aside to restart the run from scratch")
        if target.is_file():
            try:
                checkpoint = torch.load(target, map_location=map_location, weights_only=weights_only)
                state, keep = checkpoint["state"], int(checkpoint["num_chunks"])
            except Exception as error:  # truncated, empty, foreign or unsafe file: nothing is deleted
                raise ValueError(
                    f"checkpoint: {target} is not a readable tdlab checkpoint ({type(error).__name__}); "
                    "move it aside to restart the run from scratch"
                ) from None
        else:
            state, keep = None, 0
        for chunk in reversed(metric_chunks(self.path)):
            if _chunk_index(chunk) >= keep:
                chunk.unlink()
        self._num_chunks = keep
        self._steps, self._names, self._values = [], [], []
        return state

    # ------------------------------------------------------------------ context manager
    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Flush; on an exception or KeyboardInterrupt, set status `failed` (error in meta) and re-raise; release."""
        try:
            try:
                self.flush()
            except Exception as flush_error:
                if exc is None:
                    self.set_status("failed", error=_describe(flush_error))
                    raise
            if isinstance(exc, Exception | KeyboardInterrupt):
                with contextlib.suppress(Exception):  # never mask the original exception
                    self.set_status("failed", error=_describe(exc))
        finally:
            self.release()

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, kind={self._meta.get('kind')!r}, path={str(self.path)!r})"


def metric_chunks(path: str | os.PathLike[str]) -> list[Path]:
    """The metric chunk files `metrics/part-<n>.parquet` of the run directory `path`, in chunk order.

    Example:
        >>> import tempfile
        >>> run = Run.create(tempfile.mkdtemp(), {}, kind="train", run_id="n")
        >>> run.log(0, {"loss": 1.0}); run.flush()
        >>> [p.name for p in metric_chunks(run.path)]
        ['part-00000.parquet']
    """
    folder = Path(path) / "metrics"
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if _CHUNK.fullmatch(p.name)), key=_chunk_index)


def _chunk_index(path: Path) -> int:
    match = _CHUNK.fullmatch(path.name)
    assert match is not None
    return int(match.group(1))


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
