"""Reading YAML written by someone else: safe types only, and a bounded size once aliases are expanded.

`yaml.safe_load` builds only plain Python values, but an alias (`*a`) shares its anchor's value instead of copying
it, so a few hundred bytes of nested aliases (the "billion laughs") load into a small graph that expands into
billions of values as soon as it is printed, copied or serialised (a MemoryError, or a process that never
finishes). `parse_yaml` counts the nodes of the document with every alias expanded, before any value is built,
and refuses a document above `MAX_NODES` nodes, one that refers to itself, or one nested deeper than
`MAX_DEPTH` levels, with one `ValueError` line naming the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MAX_NODES = 100_000
"""The most nodes (scalars, lists, mappings) a document may hold with its aliases expanded."""

MAX_DEPTH = 200
"""The deepest nesting of lists and mappings a document may have."""


def _expanded_size(root: yaml.Node, field: str) -> int:
    """The node count of the tree `root` stands for (aliases expanded), memoised over the shared nodes and
    computed without recursion; ValueError above MAX_NODES, on a cycle or beyond MAX_DEPTH."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        children = _children(node)
        if children_done:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in children)
            if sizes[key] > MAX_NODES:
                raise ValueError(
                    f"{field}: the YAML expands to more than {MAX_NODES:,} values once its aliases are expanded; "
                    "refused (write the values out, or use fewer aliases)"
                )
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise ValueError(f"{field}: the YAML refers to itself (an alias inside its own anchor); refused")
        on_path.add(key)
        if len(on_path) > MAX_DEPTH:
            raise ValueError(f"{field}: the YAML is nested more than {MAX_DEPTH} levels deep; refused")
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def parse_yaml(text: str, field: str) -> Any:
    """The plain Python value of the YAML `text` (None when empty); ValueError naming `field` when the text is
    not YAML, or too large once its aliases are expanded (see the module docstring).

    Example:
        >>> parse_yaml("lr: &x 0.1\\nmomentum: *x", "config")
        {'lr': 0.1, 'momentum': 0.1}
    """
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise ValueError(f"{field}: the YAML is nested too deeply; refused") from None
        except yaml.YAMLError as error:
            where = getattr(error, "problem_mark", None)
            at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
            problem = getattr(error, "problem", None) or error.__class__.__name__
            raise ValueError(f"{field}: not valid YAML{at} ({problem})") from None
        if node is None:
            return None
        _expanded_size(node, field)
        try:
            return loader.construct_document(node)
        except yaml.YAMLError as error:
            raise ValueError(f"{field}: not valid YAML ({getattr(error, 'problem', None) or error})") from None
    finally:
        loader.dispose()


def read_yaml(path: str | Path, field: str) -> Any:
    """`parse_yaml` of the file `path`; ValueError naming `field` if it is missing, unreadable or not UTF-8."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{field}: no such file {str(path)!r}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{field}: cannot read {str(path)!r} ({type(error).__name__})") from None
    return parse_yaml(text, f"{field}: {path}")
