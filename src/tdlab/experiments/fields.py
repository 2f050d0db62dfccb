"""Config fields shared by catalogue experiments: pydantic `Annotated` types validated when a config is made, and
the seeding of the shared config sections.

Example:
    >>> from pydantic import BaseModel
    >>> class Sweep(BaseModel):
    ...     etas: StepSizes = (0.1, 0.2)
    >>> Sweep(etas=(0.5,)).etas
    (0.5,)
"""

from __future__ import annotations

import math
from typing import Annotated, TypeVar

from pydantic import AfterValidator, BaseModel

Section = TypeVar("Section", bound=BaseModel)


def distinct_step_sizes(value: tuple[float, ...]) -> tuple[float, ...]:
    """`value` if it is a non-empty tuple of distinct finite step sizes > 0, else a ValueError.

    Example:
        >>> distinct_step_sizes((0.1, 0.2))
        (0.1, 0.2)
    """
    if not value or any(not (math.isfinite(e) and e > 0) for e in value) or len(set(value)) != len(value):
        raise ValueError(f"expected distinct finite step sizes > 0, got {value}")
    return value


StepSizes = Annotated[tuple[float, ...], AfterValidator(distinct_step_sizes)]
"""A sweep over step sizes eta: a non-empty tuple of distinct finite numbers > 0."""


def seeded(section: Section, seed: int) -> Section:
    """The config section (`data`, `model`) with `seed` added unless it sets its own: an experiment's `seed` seeds
    the data it draws and the network it initialises.

    Example:
        >>> from tdlab.train.config import ModelConfig
        >>> seeded(ModelConfig(name="mlp", width=8), 3).kwargs(), seeded(ModelConfig(name="mlp", seed=1), 3).kwargs()
        ({'seed': 3, 'width': 8}, {'seed': 1})
    """
    return type(section).model_validate({"seed": seed, **section.model_dump()})


def describe(section: BaseModel) -> str:
    """A config section as `name(key=value, ...)` (without the seed), for figure titles.

    Example:
        >>> from tdlab.train.config import ModelConfig
        >>> describe(ModelConfig(name="mlp", width=8, depth=2, seed=0))
        'mlp(width=8, depth=2)'
    """
    values = {key: value for key, value in section.model_dump().items() if key not in ("name", "seed")}
    return f"{section.model_dump()['name']}({', '.join(f'{k}={v}' for k, v in values.items())})"
