"""Sweeps: grids over config fields times seeds, run resumably in local processes or on Ray."""

from tdlab.sweep.executor import SweepInterrupted, SweepSummary, plan_jobs, run_group, run_point, run_sweep, validate
from tdlab.sweep.spec import SweepPoint, SweepSpec, expand, load_spec

__all__ = [
    "SweepPoint",
    "SweepInterrupted",
    "SweepSpec",
    "SweepSummary",
    "expand",
    "load_spec",
    "plan_jobs",
    "run_group",
    "run_point",
    "run_sweep",
    "validate",
]
