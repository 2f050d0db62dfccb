"""Reports: metric figures, the catalogue page, the sweep page's numbers against hand-computed ones."""

import html

import numpy as np
import pandas as pd
import pytest

from tdlab.report import plot_metrics, write_report, write_sweep_report
from tdlab.report.cells import number
from tdlab.report.sweep import final_values, summarise, swept_fields
from tdlab.store import Run


def test_plot_metrics_pairs_splits_and_logs_wide_positive_series():
    steps = np.arange(50)
    wide = pd.DataFrame(
        {"train/loss": 10.0 ** -(steps / 10), "test/loss": 10.0 ** -(steps / 12), "grad_norm": 1.0 + steps},
        index=steps,
    )
    wide.loc[40:, "grad_norm"] = np.inf  # a diverged tail is cut from the line and marked
    figure = plot_metrics(wide, title="t")
    panels = {ax.get_title(): ax for ax in figure.axes if ax.get_visible()}
    assert set(panels) == {"loss", "grad_norm"}
    assert len(panels["loss"].get_lines()) == 2 and panels["loss"].get_yscale() == "log"
    assert panels["grad_norm"].get_yscale() == "linear"
    line, marker = panels["grad_norm"].get_lines()
    assert len(line.get_xdata()) == 40 and marker.get_xdata()[0] == 40
    with pytest.raises(TypeError, match="wide"):
        plot_metrics({"loss": [1.0]})


def test_number_cells():
    assert [number(v) for v in (1234.5678, 1e-9, 0, True, "x")] == ["1235", "1.000e-09", "0.0", "True", "x"]


def test_catalogue_report_lists_every_check_and_copies_figures(tmp_path):
    import matplotlib.pyplot as plt

    runs = []
    for kind, passed in [("relu-collapse", True), ("momentum", True), ("quadratic-step-size", False)]:
        run = Run.create(tmp_path / "runs", {"seed": 0}, kind=kind, run_id=kind)
        run.write_checks(
            [
                {
                    "name": f"{kind} <rate>",
                    "measured": 0.5,
                    "theory": 0.5,
                    "tolerance": 0.01,
                    "kind": "relative",
                    "passed": passed,
                    "detail": "",
                }
            ]
        )
        figure = plt.figure()
        figure.savefig(run.figure_path("curve", "png"))
        plt.close(figure)
        run.set_status("done", duration_s=1.5)
        runs.append(run)
    page = write_report(runs, tmp_path / "report").read_text()
    # lecture order of the parts (optimisation before signal propagation), given order within a part
    assert page.index('id="momentum"') < page.index('id="quadratic-step-size"') < page.index('id="relu-collapse"')
    assert html.escape("momentum <rate>") in page and "<rate>" not in page
    assert "2/3 checks pass" in page and page.count('class="FAIL"') == 2  # the summary row and the check row
    for kind in ("momentum", "quadratic-step-size", "relu-collapse"):
        assert (tmp_path / "report" / "figures" / kind / "curve.png").is_file()
        assert f'src="figures/{kind}/curve.png"' in page


def _sweep_runs(root):
    # lr in {0.1, 0.2} x seeds {0, 1, 2}; the last logged loss is lr * (seed + 1); one run diverges
    for lr in (0.1, 0.2):
        for seed in range(3):
            config = {"optimizer": {"lr": lr}, "seed": seed}
            with Run.create(root, config, kind="train", run_id=f"lr{lr}-s{seed}") as run:
                run.log(0, {"loss": 9.0})
                final = np.nan if (lr, seed) == (0.2, 2) else lr * (seed + 1)
                run.log(10, {"loss": final})
                run.set_status("diverged" if np.isnan(final) else "done")


def test_sweep_summary_matches_hand_computed_mean_and_sd(tmp_path):
    from tdlab.store import Store

    _sweep_runs(tmp_path)
    store = Store(tmp_path)
    fields = swept_fields(store.runs())
    assert fields == ["optimizer.lr"]
    finals = final_values(store.metrics())
    assert len(finals) == 6 and (finals["step"] == 10).all()
    summary = summarise(finals, fields).set_index("optimizer.lr")
    assert summary.loc[0.1, "mean"] == pytest.approx(0.2)
    assert summary.loc[0.1, "sd"] == pytest.approx(np.std([0.1, 0.2, 0.3], ddof=1))
    assert summary.loc[0.2, "mean"] == pytest.approx(0.3) and summary.loc[0.2, "diverged"] == 1
    assert summary.loc[0.2, "runs"] == 3
    page = write_sweep_report(tmp_path, tmp_path / "page").read_text()
    assert "optimizer.lr" in page and "5 done" in page and "1 diverged" in page
    assert (tmp_path / "page" / "figures" / "loss.png").is_file()


def test_sweep_report_of_an_empty_folder_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="sweep_folder"):
        write_sweep_report(tmp_path)
