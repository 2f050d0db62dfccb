"""Probes: instruments called during training, each returning a flat dict of named scalars.

Add them to any loop in two lines (see `ProbeSet`), or by name from a config with `build_probe`:

    probes = ProbeSet([build_probe("loss"), build_probe("sharpness", every=10)], model, loss_fn, train=(X, y))
    with probes.step(step, batch=(xb, yb), optimizer=opt):   # step: optimiser steps taken after the block
        opt.step()

| name | probe | metrics | cost per measurement |
| --- | --- | --- | --- |
| loss | `LossProbe` | train/loss, train/accuracy, test/... | 1 forward pass per split |
| gradient-norm | `GradientNorm` | grad/norm, grad/norm/<param> | 1 forward + backward |
| update-norm | `UpdateNorm` | update/norm, update/ratio (+ per param) | none (a copy of the parameters) |
| parameter-norm | `ParameterNorm` | param/norm, param/norm/<param> | none |
| sharpness | `Sharpness` | sharpness, sharpness/<i>, sharpness/matvecs | Lanczos: a few to tens of HVPs |
| preconditioned-sharpness | `PreconditionedSharpness` | preconditioned-sharpness{,/threshold,/matvecs} | as sharpness |
| hessian-trace | `HessianTrace` | hessian/trace, hessian/trace_se | `samples` HVPs |
| gradient-noise | `GradientNoise` | noise/grad_var, noise/snr, ... | 1 per-example forward + backward |
| activations | `ActivationStats` | act/<layer>/{mean,var,dead,cosine,rel_var} | 1 forward, probe batch |
"""

from __future__ import annotations

import inspect
from typing import Any

from tdlab.probes.activations import ActivationStats, activation_statistics, hidden_modules
from tdlab.probes.base import Probe, ProbeContext, ProbeSet
from tdlab.probes.curvature import HessianTrace, Sharpness
from tdlab.probes.gradient import GradientNorm
from tdlab.probes.information import binned_information
from tdlab.probes.loss import LossProbe, loss_and_accuracy
from tdlab.probes.noise import GradientNoise, gradient_noise, per_example_gradients
from tdlab.probes.preconditioned import PreconditionedSharpness, adaptive_preconditioner
from tdlab.probes.updates import ParameterNorm, UpdateNorm, update_norms

PROBES: dict[str, type[Probe]] = {
    cls.name: cls
    for cls in (
        LossProbe,
        GradientNorm,
        UpdateNorm,
        ParameterNorm,
        Sharpness,
        PreconditionedSharpness,
        HessianTrace,
        GradientNoise,
        ActivationStats,
    )
}
"""The probes `build_probe` knows, by name."""


def build_probe(name: str, **kwargs: Any) -> Probe:
    """The probe registered as `name` (a key of `PROBES`), built with `kwargs` (e.g. `every`).

    Example:
        >>> build_probe("sharpness", every=10, k=2)
        Sharpness(every=10)
    """
    if name not in PROBES:
        raise ValueError(f"probe: expected one of {', '.join(map(repr, PROBES))}, got {name!r}")
    cls = PROBES[name]
    allowed = list(inspect.signature(cls).parameters)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(f"probe {name!r}: unknown arguments {unknown}; allowed: {', '.join(allowed)}")
    return cls(**kwargs)


__all__ = [
    "PROBES",
    "ActivationStats",
    "GradientNoise",
    "GradientNorm",
    "HessianTrace",
    "LossProbe",
    "ParameterNorm",
    "PreconditionedSharpness",
    "Probe",
    "ProbeContext",
    "ProbeSet",
    "Sharpness",
    "UpdateNorm",
    "activation_statistics",
    "adaptive_preconditioner",
    "binned_information",
    "build_probe",
    "gradient_noise",
    "hidden_modules",
    "loss_and_accuracy",
    "per_example_gradients",
    "update_norms",
]
