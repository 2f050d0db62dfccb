"""Showing a catalogue outcome in Jupyter: its checks as a table, then its figures."""

from __future__ import annotations

import pandas as pd

from tdlab.experiments.runner import ExperimentRun


def checks_frame(outcome: ExperimentRun) -> pd.DataFrame:
    """The outcome's checks: one row each with check, measured, theory, tolerance, kind and verdict."""
    return pd.DataFrame(
        [(c.name, c.measured, c.theory, c.tolerance, c.kind, c.verdict) for c in outcome.result.checks],
        columns=["check", "measured", "theory", "tolerance", "kind", "verdict"],
    )


def show(outcome: ExperimentRun) -> None:
    """Display the checks table, a one-line verdict and the PNG figures of `outcome` (from `experiments.run`)."""
    from IPython.display import Image, display

    table = checks_frame(outcome)
    display(table)
    passed = int((table["verdict"] == "PASS").sum())
    print(f"{outcome.experiment.name}: {passed}/{len(table)} checks pass in {outcome.duration_s:.1f} s")
    for name in outcome.result.figures:
        display(Image(filename=str(outcome.run.figure_path(name, "png"))))
