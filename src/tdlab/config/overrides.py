"""`--set key=value` overrides of a nested config mapping: dotted keys, values parsed as YAML."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from tdlab.config.yamltext import parse_yaml

_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


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
    if not all(_FIELD.fullmatch(part) for part in parts):
        raise ValueError(f"--set: malformed key {key!r} (expected dotted field names such as optimizer.lr)")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(f"--set: {key!r}: {part!r} is not a group of fields")
        node = child
    node[parts[-1]] = parse_yaml(text, f"--set {key.strip()}")


def apply_overrides(raw: dict[str, Any], items: Iterable[str]) -> dict[str, Any]:
    """`apply_override` for each item in order; returns `raw` (modified in place)."""
    for item in items:
        apply_override(raw, item)
    return raw
