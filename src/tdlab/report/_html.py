"""Rendering the report templates (jinja2, HTML-escaped) and copying figures next to the page."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from tdlab.report.cells import number

_ENVIRONMENT = Environment(
    loader=PackageLoader("tdlab.report", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


_ENVIRONMENT.filters["number"] = number


def render(template: str, page: Path, **context: Any) -> Path:
    """Render `template` with `context` into `page` (parents created); returns `page`."""
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(_ENVIRONMENT.get_template(template).render(**context), encoding="utf-8")
    return page


def copy_figure(source: Path, folder: Path, relative: str) -> str:
    """Copy `source` to `folder/relative` and return `relative`, the path the page links to."""
    target = folder / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return relative
