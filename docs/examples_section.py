"""Griffe extension for the API reference: tdlab's docstrings title their doctests `Example:`, which the Google
parser reads as a note; as `Examples:` they render as Python console code blocks."""

from __future__ import annotations

import re
from typing import Any

import griffe

_TITLE = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)


class ExamplesSection(griffe.Extension):
    """Rename each docstring's `Example:` section to `Examples:` before the docstring is parsed."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _TITLE.sub(r"\1Examples:", obj.docstring.value)
