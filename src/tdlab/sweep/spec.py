"""Sweep specifications: a base config, a grid (and zipped lists) over any config field, times seeds.

Example YAML (paths are relative to the spec file):

    name: lr-width
    kind: train                    # `train` (a tdlab train config) or a catalogue experiment's name
    base: ../examples/mnist1d-mlp.yaml   # or `config: {...}` inline; both may be given (inline wins)
    grid:                          # the Cartesian product of these lists
      optimizer.lr: [0.01, 0.05, 0.1]
      model.width: [64, 256]
    zip:                           # lists that vary together (all of one length), crossed with the grid
      model.depth: [2, 4]
      steps: [400, 800]
    seeds: [0, 1, 2]

Each point gets a stable id, `<name>-<hash of its config>`, so a rerun of the same spec finds its runs again.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tdlab.config import apply_override, read_yaml


class SweepSpec(BaseModel):
    """A sweep: `kind` of run, its base config, the grid, zipped lists and seeds."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.=,+@-]*$")
    kind: str = "train"
    base: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    zip: dict[str, list[Any]] = Field(default_factory=dict)
    seeds: list[int] = Field(default_factory=lambda: [0])

    @field_validator("grid", "zip")
    @classmethod
    def _non_empty_lists(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in value.items():
            if not values:
                raise ValueError(f"{key}: expected a non-empty list of values")
        return value

    @model_validator(mode="after")
    def _zip_lengths(self) -> SweepSpec:
        lengths = {len(values) for values in self.zip.values()}
        if len(lengths) > 1:
            raise ValueError(f"zip: all lists must have one length, got lengths {sorted(lengths)}")
        if not self.seeds:
            raise ValueError("seeds: expected at least one seed")
        return self

    def swept_fields(self) -> list[str]:
        return [*self.grid, *self.zip]


@dataclass(frozen=True)
class SweepPoint:
    """One run of a sweep: its id, the values of the swept fields, and the full config."""

    run_id: str
    values: dict[str, Any]
    config: dict[str, Any]


def load_spec(path: str | Path) -> tuple[SweepSpec, dict[str, Any]]:
    """Read a spec and its base config (the base file's content updated by the inline `config`)."""
    path = Path(path)
    raw = read_yaml(path, "spec") or {}
    if not isinstance(raw, dict):
        raise ValueError(f"spec: {path} must hold a mapping of fields, got {type(raw).__name__}")
    spec = SweepSpec.model_validate(raw)
    base: dict[str, Any] = {}
    if spec.base is not None:
        base = read_yaml((path.parent / spec.base).resolve(), "base") or {}
        if not isinstance(base, dict):
            raise ValueError(f"base: {spec.base} must hold a mapping of fields, got {type(base).__name__}")
    return spec, _merge(base, spec.config)


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _set(config: dict[str, Any], dotted: str, value: Any) -> None:
    apply_override(config, f"{dotted}={json.dumps(value)}")


def config_hash(config: dict[str, Any]) -> str:
    """Sixteen hex digits (64 bits) of a SHA-256 of the canonical JSON of `config`: the first collision is expected
    after about 2^32 points (eight digits collided after 55,759)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def expand(spec: SweepSpec, base: dict[str, Any]) -> list[SweepPoint]:
    """All points: grid product x zipped rows x seeds, in a stable order."""
    grid_keys = list(spec.grid)
    zip_keys = list(spec.zip)
    zip_rows = list(zip(*spec.zip.values(), strict=True)) if zip_keys else [()]
    points = []
    for grid_values in itertools.product(*spec.grid.values()):
        for zip_values in zip_rows:
            for seed in spec.seeds:
                values = {
                    **dict(zip(grid_keys, grid_values, strict=True)),
                    **dict(zip(zip_keys, zip_values, strict=True)),
                }
                config = copy.deepcopy(base)
                for key, value in values.items():
                    _set(config, key, value)
                config["seed"] = seed
                points.append(SweepPoint(f"{spec.name}-{config_hash(config)}", {**values, "seed": seed}, config))
    seen: dict[str, dict[str, Any]] = {}
    for point in points:
        if point.run_id in seen:
            raise ValueError(f"grid: the points {seen[point.run_id]} and {point.values} have the same config")
        seen[point.run_id] = point.values
    return points
