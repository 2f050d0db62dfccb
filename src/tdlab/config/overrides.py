"""`--set key=value` overrides of a nested config mapping: dotted keys, values parsed as YAML."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Set `raw[a][b] = value` for an override `a.b=value`; the value is parsed as YAML (numbers, lists, null).

    Example:
        >>> raw = {"optimizer": {"name": "sgd"}}
        >>> apply_override(raw, "optimizer.lr=0.1")
        >>> raw
        {'optimizer': {'name': 'sgd', 'lr': 0.1}}
    """
    if "=" not in item:
        raise ValueError(f"--set: expected key=value, got {item!r}")
    key, text = item.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ValueError(f"--set: malformed key {key!r}")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(f"--set: {key!r}: {part!r} is not a group of fields")
        node = child
    try:
        node[parts[-1]] = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(f"--set: {key!r}: the value {text!r} is not valid YAML ({error.__class__.__name__})") from None


def apply_overrides(raw: dict[str, Any], items: Iterable[str]) -> dict[str, Any]:
    """`apply_override` for each item in order; returns `raw` (modified in place)."""
    for item in items:
        apply_override(raw, item)
    return raw
