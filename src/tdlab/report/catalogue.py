"""The catalogue's HTML report: per experiment its claim, figures, checks table, config and run time."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from tdlab.report._html import copy_figure, render
from tdlab.store import Run

PARTS = ("optimisation", "signal propagation", "loss landscapes", "linear models", "generalisation")
"""The lecture blocks in teaching order: the report's sections."""


def write_report(runs: Sequence[Run], folder: str | os.PathLike[str] = "report", redraw: bool = False) -> Path:
    """Write `folder/index.html` for catalogue runs and copy their PNG figures into `folder/figures/`.

    With `redraw`, each run's figures are first drawn again from its stored metrics (`tdlab.experiments.runner.redraw`),
    so the page shows what the stored numbers say, also for runs written by an older tdlab.

    Experiments are grouped by the lecture part they belong to (in the order of `PARTS`, then any other part),
    each part's runs in the order given; a summary table at the top
    counts the passing checks of each. The page is self-contained with its folder (figures are copied, not linked).

    Example:
        >>> import tempfile
        >>> write_report([], tempfile.mkdtemp()).name
        'index.html'
    """
    from tdlab.experiments import experiments
    from tdlab.experiments.runner import redraw as draw_again

    folder = Path(folder)
    catalogue = experiments()
    entries = []
    for run in runs:
        kind = run.meta["kind"]
        experiment = catalogue.get(kind)
        checks = run.checks()
        if redraw and experiment is not None:
            draw_again(run)
        figures = [
            copy_figure(png, folder, f"figures/{run.id}/{png.name}")
            for png in sorted((run.path / "figures").glob("*.png"))
        ]
        entries.append(
            {
                "name": kind,
                "run": run,
                "part": experiment.part if experiment else "",
                "claim": experiment.claim if experiment else "",
                "references": experiment.references if experiment else (),
                "checks": checks,
                "passed": sum(bool(c.get("passed")) for c in checks),
                "figures": figures,
                "config": json.dumps(run.config, indent=2),
                "duration_s": run.meta.get("duration_s"),
                "preset": run.meta.get("preset") or "quick",
            }
        )
    parts: dict[str, list[dict]] = {part: [] for part in PARTS}
    for entry in entries:
        parts.setdefault(entry["part"] or "other", []).append(entry)
    parts = {part: items for part, items in parts.items() if items}
    return render(
        "catalogue.html",
        folder / "index.html",
        parts=parts,
        entries=entries,
        passed=sum(e["passed"] for e in entries),
        total=sum(len(e["checks"]) for e in entries),
        duration_s=sum(e["duration_s"] or 0.0 for e in entries),
        written=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
