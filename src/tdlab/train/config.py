"""The configuration of a training run (`tdlab train CONFIG.yaml`), validated up front by pydantic.

Example YAML:

    name: mnist1d-mlp
    seed: 0
    steps: 1000
    batch_size: 128            # null: full batch
    data: {name: mnist1d, n_train: 4000}
    model: {name: mlp, width: 128, depth: 3, activation: relu}
    optimizer: {name: sgd, lr: 0.05, momentum: 0.9}
    schedule: {name: cosine}
    probes:
      - {name: loss, every: 50}
      - {name: sharpness, every: 100}

`data`, `model` and each probe are a `name` plus the keyword arguments of `tdlab.data.load_dataset`,
`tdlab.models.build_model` and `tdlab.probes.build_probe`; those builders validate their own arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tdlab.config import apply_overrides, read_yaml
from tdlab.optim.registry import canonical_name
from tdlab.train.batches import BatchOrder


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Named(BaseModel):
    """A component chosen by `name`, with any further fields passed on as keyword arguments."""

    model_config = ConfigDict(extra="allow")

    name: str

    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class DataConfig(_Named):
    name: str = "mnist1d"


class ModelConfig(_Named):
    name: str = "mlp"


class ProbeConfig(_Named):
    every: int = Field(1, ge=1, description="measure every `every` optimiser steps")

    def kwargs(self) -> dict[str, Any]:
        return {"every": self.every, **super().kwargs()}


class OptimizerConfig(_Named):
    """An optimiser of the registry `tdlab.optim.registry` (torch.optim's and tdlab's own): `name`, `lr` and its
    other keyword arguments (momentum, betas, l1, projection, ...), checked against its class when it is built."""

    name: str = "sgd"
    lr: float = Field(0.05, gt=0, allow_inf_nan=False)

    @field_validator("name")
    @classmethod
    def _registered(cls, value: str) -> str:
        try:
            return canonical_name(value)
        except ValueError as error:
            raise ValueError(str(error).removeprefix("optimizer.name: ")) from None


ScheduleName = Literal["constant", "exponential", "power", "step", "cosine"]


class ScheduleConfig(_Strict):
    """Learning-rate schedule over optimiser steps t (a factor multiplying `optimizer.lr`).

    constant: 1; exponential: gamma^t; power: (1 + t/t0)^-power; step: gamma^(number of milestones <= t);
    cosine: (1 + cos(pi t / steps)) / 2.
    """

    name: ScheduleName = "constant"
    gamma: float = Field(0.999, gt=0)
    t0: float = Field(100.0, gt=0)
    power: float = Field(1.0, gt=0)
    milestones: list[int] = Field(default_factory=list)


class TrainConfig(_Strict):
    name: str = "run"
    seed: int = Field(0, ge=0, lt=2**63, description="seeds data order, initialisation and probes")
    device: str = "auto"
    dtype: Literal["float32", "float64"] = "float32"
    steps: int = Field(1000, ge=1)
    batch_size: int | None = Field(128, ge=1, description="mini-batch size; null for full-batch GD")
    batch_order: BatchOrder = Field("reshuffle", description="reshuffle (each epoch), replacement or cyclic")
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    probes: list[ProbeConfig] = Field(default_factory=lambda: [ProbeConfig(name="loss", every=10)])
    checkpoint_every: int = Field(100, ge=1, description="optimiser steps between checkpoints")

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value != "auto" and not value.startswith(("cpu", "cuda", "mps")):
            raise ValueError(f"expected 'auto', 'cpu', 'cuda[:N]' or 'mps', got {value!r}")
        return value


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config and apply `key=value` overrides (dotted keys, YAML values: `optimizer.lr=0.1`)."""
    path = Path(path)
    raw = read_yaml(path, "config") or {}
    if not isinstance(raw, dict):
        raise ValueError(f"config: {path} must hold a mapping of fields, got {type(raw).__name__}")
    apply_overrides(raw, overrides or [])
    return TrainConfig.model_validate(raw)
