"""Numbers as table cells, shared by the HTML pages and the CLI's tables."""

from __future__ import annotations

import math
from typing import Any


def number(value: Any) -> str:
    """A number as a table cell: 4 significant digits, scientific outside [1e-3, 1e5); other values as text.

    Example:
        >>> number(0.123456), number(2.5e-7), number(None), number(float("nan"))
        ('0.1235', '2.500e-07', '', 'nan')
    """
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if not math.isfinite(value) or value == 0:
        return str(float(value))
    return f"{value:.4g}" if 1e-3 <= abs(value) < 1e5 else f"{value:.3e}"
