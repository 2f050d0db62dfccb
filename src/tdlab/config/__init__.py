"""The bottom layer shared by the training engine, the catalogue and the CLI: device resolution, `--set`
overrides, bounded YAML reading and the CPU thread count. It imports nothing from tdlab."""

from tdlab.config.device import resolve_device
from tdlab.config.overrides import apply_override, apply_overrides
from tdlab.config.threads import configure_threads, usable_cores, worker_threads
from tdlab.config.yamltext import parse_yaml, read_yaml

__all__ = [
    "apply_override",
    "apply_overrides",
    "configure_threads",
    "parse_yaml",
    "read_yaml",
    "resolve_device",
    "usable_cores",
    "worker_threads",
]
