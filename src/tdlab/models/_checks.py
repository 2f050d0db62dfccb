"""Argument checks of the model constructors: one-line errors naming the argument and what it allows."""

from __future__ import annotations

from collections.abc import Iterable


def check_choice(field: str, value: object, allowed: Iterable[object]) -> None:
    """Raise ValueError unless `value` is in `allowed`: "norm: expected one of None, 'batchnorm', ..."."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{field}: expected one of {', '.join(map(repr, allowed))}, got {value!r}")


def check_int(field: str, value: object, minimum: int, maximum: int | None = None) -> None:
    """Raise ValueError unless `value` is an int in [minimum, maximum] (bool excluded)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{field}: expected an integer >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{field}: expected an integer in [{minimum}, {maximum}], got {value!r}")
