"""Reporting shells around runs: metric figures, the catalogue's HTML report, sweep pages, notebook display.

- `plot_dashboard(metrics)`: a training run's story: loss and step size, curvature against 2/eta and gradient
  noise, per-layer heatmaps (`tdlab.report.dashboard.plot_run(run)` for a stored run, as `tdlab train` draws it).
- `plot_metrics(wide)`: one plain panel per metric against the step.
- `write_report(runs, folder)`: `folder/index.html` for catalogue runs (claim, figures, checks, config, time).
- `write_sweep_report(sweep_folder)`: per metric, most important first: learning curves per configuration and the
  final value against the swept fields (mean and spread over seeds), a heatmap for a 2-D grid.
- `tdlab.report.notebook.show(outcome)`: a catalogue outcome's checks and figures in Jupyter.
"""

from tdlab.report.catalogue import write_report
from tdlab.report.dashboard import plot_dashboard
from tdlab.report.figures import plot_metrics
from tdlab.report.sweep import write_sweep_report

__all__ = ["plot_dashboard", "plot_metrics", "write_report", "write_sweep_report"]
