"""Argument checks shared by the closed forms: a clear ValueError naming the argument, else the value as floats."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def positive(name: str, value: ArrayLike) -> NDArray[np.float64]:
    """`value` as a float array, or ValueError unless it is non-empty, finite and > 0 everywhere."""
    array = np.asarray(value, dtype=float)
    if array.size == 0 or not np.all(np.isfinite(array)) or np.any(array <= 0):
        raise ValueError(f"{name}: expected finite positive values, got {value!r}")
    return array


def finite(name: str, value: ArrayLike) -> NDArray[np.float64]:
    """`value` as a float array, or ValueError unless it is finite everywhere."""
    array = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: expected finite values, got {value!r}")
    return array


def nonnegative_number(name: str, value: float) -> float:
    """`value` as a float, or ValueError unless it is finite and >= 0."""
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
    return value


def positive_number(name: str, value: float) -> float:
    """`value` as a float, or ValueError unless it is finite and > 0."""
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
    return value
