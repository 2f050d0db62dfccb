"""The bottom layer shared by the training engine, the catalogue and the CLI: device resolution and `--set`
overrides. It imports nothing from tdlab."""

from tdlab.config.device import resolve_device
from tdlab.config.overrides import apply_override, apply_overrides

__all__ = ["apply_override", "apply_overrides", "resolve_device"]
