"""Up-front checks of hyperparameters, with messages that name the argument and its allowed values."""

from __future__ import annotations

import math


def check_positive(name: str, value: float) -> None:
    """Raise ValueError unless `value` is a finite number > 0."""
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")


def check_nonnegative(name: str, value: float) -> None:
    """Raise ValueError unless `value` is a finite number >= 0."""
    if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")


def check_in_interval(name: str, value: float, low: float, high: float, *, closed_high: bool) -> None:
    """Raise ValueError unless low <= value < high (or <= high when `closed_high`)."""
    inside = isinstance(value, int | float) and low <= value and (value <= high if closed_high else value < high)
    if not inside:
        bracket = "]" if closed_high else ")"
        raise ValueError(f"{name}: expected a number in [{low:g}, {high:g}{bracket}, got {value!r}")
