"""The contract every catalogue experiment follows.

An experiment answers five questions, so that the CLI, the sweep runner and the report treat all alike:

- **claim**: the one sentence of the lectures it tests;
- **config**: a pydantic model whose defaults run in under a minute on 2 CPU cores, with named presets
  (``full`` reproduces the paper-scale figure);
- **measure**: ``measure(config, context) -> metrics``, tidy rows (a `name` and a `value` column, and whatever
  identifies a row: `step`, `eta`, `seed`, ...), through `tdlab.train.fit` and the probes where it trains a network;
- **checks**: ``checks(metrics, config) -> list[Check]``, named comparisons of a measured number with its theory,
  each with a tolerance and a verdict;
- **figures**: ``figures(metrics, config) -> {name: Figure}``, matplotlib figures a reader of the lectures would
  recognise.

Checks and figures read only the metrics, so a stored run is re-checked (`tdlab check RUN`) and redrawn from its
metrics alone. Adding an experiment means adding one module to `tdlab.experiments.catalogue` that defines
``EXPERIMENT = Experiment(...)`` (`tdlab new experiment NAME` writes one that runs); nothing else changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import pandas as pd
import torch
from matplotlib.figure import Figure
from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")
CheckKind = Literal["relative", "absolute", "interval", "at_most", "at_least", "boolean"]


class ExperimentConfig(BaseModel):
    """Base of every experiment's config: unknown fields are errors, every field is validated up front."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    seed: int = Field(0, ge=0, lt=2**63)
    device: str = "auto"


class Check(BaseModel):
    """One measured number compared with its theory.

    `kind` says how `passed` was decided:
      relative  |measured - theory| <= tolerance * |theory|
      absolute  |measured - theory| <= tolerance
      interval  low <= measured <= high (theory is the interval's centre, tolerance its half-width)
      at_most   measured <= theory (+ tolerance)
      at_least  measured >= theory (- tolerance)
      boolean   a qualitative statement (an ordering, a monotone trend); measured is 1.0 when it holds
    Build checks with the constructors below rather than by hand.
    """

    name: str
    measured: float
    theory: float | None = None
    tolerance: float | None = None
    kind: CheckKind
    passed: bool
    detail: str = ""

    @classmethod
    def relative(cls, name: str, measured: float, theory: float, tolerance: float, detail: str = "") -> Check:
        passed = _finite(measured) and abs(measured - theory) <= tolerance * abs(theory)
        return cls(
            name=name,
            measured=measured,
            theory=theory,
            tolerance=tolerance,
            kind="relative",
            passed=passed,
            detail=detail,
        )

    @classmethod
    def absolute(cls, name: str, measured: float, theory: float, tolerance: float, detail: str = "") -> Check:
        passed = _finite(measured) and abs(measured - theory) <= tolerance
        return cls(
            name=name,
            measured=measured,
            theory=theory,
            tolerance=tolerance,
            kind="absolute",
            passed=passed,
            detail=detail,
        )

    @classmethod
    def interval(cls, name: str, measured: float, low: float, high: float, detail: str = "") -> Check:
        passed = _finite(measured) and low <= measured <= high
        return cls(
            name=name,
            measured=measured,
            theory=(low + high) / 2,
            tolerance=(high - low) / 2,
            kind="interval",
            passed=passed,
            detail=detail or f"in [{low:g}, {high:g}]",
        )

    @classmethod
    def at_most(cls, name: str, measured: float, bound: float, tolerance: float = 0.0, detail: str = "") -> Check:
        passed = _finite(measured) and measured <= bound + tolerance
        return cls(
            name=name,
            measured=measured,
            theory=bound,
            tolerance=tolerance,
            kind="at_most",
            passed=passed,
            detail=detail,
        )

    @classmethod
    def at_least(cls, name: str, measured: float, bound: float, tolerance: float = 0.0, detail: str = "") -> Check:
        passed = _finite(measured) and measured >= bound - tolerance
        return cls(
            name=name,
            measured=measured,
            theory=bound,
            tolerance=tolerance,
            kind="at_least",
            passed=passed,
            detail=detail,
        )

    @classmethod
    def holds(cls, name: str, condition: bool, detail: str = "", measured: float | None = None) -> Check:
        value = float(bool(condition)) if measured is None else measured
        return cls(name=name, measured=value, kind="boolean", passed=bool(condition), detail=detail)

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"


def _finite(x: float) -> bool:
    return math.isfinite(x)


@dataclass
class Result:
    """What an experiment's `run` returns.

    metrics: tidy rows, one measured number each: columns `name` and `value`, and whatever else identifies the
        row (`step`, `eta`, `kappa`, `seed`, ...).
    checks: the comparisons with theory.
    figures: name -> matplotlib Figure (saved as PNG and SVG by the runner).
    """

    metrics: pd.DataFrame
    checks: list[Check]
    figures: dict[str, Figure] = field(default_factory=dict)


class Context:
    """What the runner hands to an experiment: the device, `track` for progress over long loops, and `files`,
    a folder for artefacts other than matplotlib figures (an animated GIF, say), or None outside a run."""

    def __init__(
        self,
        device: torch.device,
        track: Callable[[Iterable[Any], str, int | None], Iterator[Any]] | None = None,
        files: Path | None = None,
    ):
        self.device = device
        self._track = track
        self.files = files

    def track(self, iterable: Iterable[T], description: str = "", total: int | None = None) -> Iterator[T]:
        """Iterate with a progress bar when the runner shows one; plain iteration otherwise."""
        if self._track is None:
            return iter(iterable)
        return self._track(iterable, description, total)


Measure = Callable[[Any, Context], pd.DataFrame]
Checks = Callable[[pd.DataFrame, Any], list[Check]]
Figures = Callable[[pd.DataFrame, Any], dict[str, Figure]]


@dataclass(frozen=True)
class Experiment:
    """A catalogue entry: its name, claim, config type, presets and its three functions.

    `part` names the lecture block it belongs to ("optimisation", "signal propagation", ...) for the report;
    `references` are the papers whose claim or figure it reproduces.
    """

    name: str
    claim: str
    config: type[ExperimentConfig]
    measure: Measure
    checks: Checks
    figures: Figures
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    references: tuple[str, ...] = ()
    part: str = ""

    def run(self, config: ExperimentConfig, context: Context) -> Result:
        """Measure, then check and draw from the metrics alone."""
        metrics = self.measure(config, context)
        return Result(metrics, self.checks(metrics, config), self.figures(metrics, config))

    def make_config(self, preset: str | None = None, **overrides: Any) -> ExperimentConfig:
        """Defaults, then the preset's values, then `overrides`; validated by pydantic."""
        if preset is not None and preset not in self.presets:
            allowed = ", ".join(sorted(self.presets)) or "none"
            raise ValueError(f"preset: {self.name} has presets {allowed}, got {preset!r}")
        values = {**(self.presets.get(preset, {}) if preset else {}), **overrides}
        return self.config(**values)
