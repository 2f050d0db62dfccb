"""Reporting shells around runs: metric figures, the catalogue's HTML report, sweep pages, notebook display.

- `plot_metrics(wide)`: one panel per metric of a training run against the step.
- `write_report(runs, folder)`: `folder/index.html` for catalogue runs (claim, figures, checks, config, time).
- `write_sweep_report(sweep_folder)`: each metric's final value against the swept fields, mean and sd over seeds.
- `tdlab.report.notebook.show(outcome)`: a catalogue outcome's checks and figures in Jupyter.
"""

from tdlab.report.catalogue import write_report
from tdlab.report.figures import plot_metrics
from tdlab.report.sweep import write_sweep_report

__all__ = ["plot_metrics", "write_report", "write_sweep_report"]
