"""Run directories (config, meta, status, chunked metrics, checkpoints) and a DuckDB store over many runs."""

from tdlab.store.atomic import atomic_open, atomic_write_bytes, atomic_write_json, atomic_write_text
from tdlab.store.run import STATUSES, Damage, DamagedFileError, Run, metric_chunks
from tdlab.store.store import DamagedFileWarning, Store, check_run, flatten_config

__all__ = [
    "STATUSES",
    "Damage",
    "DamagedFileError",
    "DamagedFileWarning",
    "Run",
    "Store",
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "check_run",
    "flatten_config",
    "metric_chunks",
]
