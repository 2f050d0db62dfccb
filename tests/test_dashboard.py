"""The training dashboard and the sweep page's figures: what each panel draws, checked against the numbers put in."""

import io

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection, QuadMesh
from PIL import Image

from tdlab.report.dashboard import plot_dashboard
from tdlab.report.names import importance, per_layer
from tdlab.report.sweep import final_values, learning_curves, plot_sweep_metric, summarise, swept_fields
from tdlab.store import Run, Store

STEPS = np.arange(0, 101, 10)


def _rows(name, steps, values):
    return pd.DataFrame({"step": np.asarray(steps), "name": name, "value": np.asarray(values, dtype=float)})


def _frame(extra: int = 0) -> pd.DataFrame:
    """Loss, accuracy, a cosine learning rate, sharpness and trace with errors, two per-layer families (one
    layer missing a step), and `extra` metrics outside the layout."""
    lr_steps = np.arange(1, 101)
    frames = [
        _rows("train/loss", STEPS, 2.0 / (1 + STEPS)),
        _rows("test/loss", STEPS, 2.5 / (1 + STEPS)),
        _rows("train/accuracy", STEPS, STEPS / 100),
        _rows("test/accuracy", STEPS, STEPS / 120),
        _rows("train/batch_loss", lr_steps, 2.0 / lr_steps),
        _rows("lr", lr_steps, 0.05 * (1 + np.cos(np.pi * lr_steps / 101)) / 2),
        _rows("sharpness", STEPS, 10 + STEPS / 10),
        _rows("sharpness/se", STEPS, np.full(len(STEPS), 0.5)),
        _rows("hessian/trace", STEPS[::2], 100.0 + STEPS[::2]),
        _rows("hessian/trace_se", STEPS[::2], np.full(len(STEPS[::2]), 4.0)),
    ]
    for i, layer in enumerate(["hidden.10.weight", "hidden.2.weight", "readout.weight"]):
        steps = STEPS if i != 1 else STEPS[1:]  # hidden.2 not logged at step 0
        frames.append(_rows(f"grad/norm/{layer}", steps, (i + 1) * 10.0 + steps))
    for i, layer in enumerate(["hidden.0", "hidden.1"]):
        frames.append(_rows(f"act/{layer}/dead", STEPS, np.full(len(STEPS), 0.1 * i)))
    frames += [_rows(f"custom/m{k:02d}", STEPS, np.full(len(STEPS), float(k))) for k in range(extra)]
    return pd.concat(frames, ignore_index=True)


def _panels(figure):
    return {ax.get_title(): ax for ax in figure.axes if ax.get_visible() and ax.get_title()}


def test_headline_and_curvature_panels_come_first_and_per_layer_metrics_become_heatmaps():
    figure = plot_dashboard(_frame(), title="run")
    titles = [ax.get_title() for ax in figure.axes if ax.get_visible() and ax.get_title()]
    assert titles[:5] == ["loss", "accuracy", "learning rate η", "sharpness λ_max vs 2/η", "Hessian trace ± 1 s.e."]
    assert titles[5:] == ["gradient norm  [grad/norm]", "dead units (fraction)  [act/dead]"]  # no panel per tensor
    loss = _panels(figure)["loss"]
    labels = [line.get_label() for line in loss.get_lines()]
    assert labels == ["train (mini-batch)", "test", "train"]
    np.testing.assert_allclose(loss.get_lines()[1].get_ydata(), 2.5 / (1 + STEPS))


def test_heatmap_is_the_layer_by_step_matrix_in_natural_layer_order():
    ax = _panels(plot_dashboard(_frame()))["gradient norm  [grad/norm]"]
    mesh = next(c for c in ax.collections if isinstance(c, QuadMesh))
    shown = np.ma.filled(mesh.get_array().astype(float), np.nan).reshape(3, len(STEPS))
    expected = np.array([[(i + 1) * 10.0 + s for s in STEPS] for i in (1, 0, 2)])  # hidden.2, hidden.10, readout
    expected[0, 0] = np.nan  # hidden.2 was not logged at step 0: a blank cell, not a zero
    np.testing.assert_array_equal(shown, expected)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["hidden.2.weight", "hidden.10.weight", "readout.weight"]
    assert ax.yaxis_inverted()  # the first layer on top


def test_sharpness_is_drawn_against_two_over_the_learning_rate_of_each_step():
    frame = _frame()
    lr = frame[frame["name"] == "lr"].set_index("step")["value"]
    ax = _panels(plot_dashboard(frame, momentum=0.9))["sharpness λ_max vs 2/η"]
    lines = {line.get_label(): line for line in ax.get_lines()}
    np.testing.assert_allclose(lines["2/η"].get_xdata(), lr.index)
    np.testing.assert_allclose(lines["2/η"].get_ydata(), 2.0 / lr.to_numpy())
    np.testing.assert_allclose(lines["2(1+β)/η"].get_ydata(), 3.8 / lr.to_numpy())
    np.testing.assert_allclose(lines["λ_max"].get_ydata(), 10 + STEPS / 10)
    band = next(c for c in ax.collections if isinstance(c, PolyCollection)).get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(10 - 0.5) and band.max() == pytest.approx(20 + 0.5)
    # the thresholds reach 2/eta ~ 1e5 at the end of the cosine; the axis keeps the eigenvalues readable
    assert ax.get_ylim()[1] == pytest.approx(1.15 * 3.8 / lr.max())


def test_without_a_logged_learning_rate_the_configured_one_gives_a_constant_threshold():
    frame = _frame()
    ax = _panels(plot_dashboard(frame[frame["name"] != "lr"], lr=0.1))["sharpness λ_max vs 2/η"]
    threshold = next(line for line in ax.get_lines() if line.get_label() == "2/η")
    np.testing.assert_allclose(threshold.get_ydata(), [20.0, 20.0])
    assert "learning rate η" not in _panels(plot_dashboard(frame[frame["name"] != "lr"], lr=0.1))


def test_trace_band_is_one_standard_error():
    ax = _panels(plot_dashboard(_frame()))["Hessian trace ± 1 s.e."]
    band = next(c for c in ax.collections if isinstance(c, PolyCollection)).get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(100 - 4) and band.max() == pytest.approx(200 + 4)


def test_other_metrics_are_capped_and_the_rest_named():
    figure = plot_dashboard(_frame(extra=15), max_other=12)
    titles = set(_panels(figure))
    drawn = {f"custom/m{k:02d}" for k in range(12)}
    assert drawn <= titles and not {f"custom/m{k:02d}" for k in range(12, 15)} & titles
    note = figure.subfigs[-1].get_supxlabel()
    assert note.startswith("not drawn (3): ") and "custom/m14" in note and "custom/m11" not in note


def test_a_diverged_loss_is_cut_and_marked():
    frame = _frame()
    frame.loc[(frame["name"] == "train/loss") & (frame["step"] >= 70), "value"] = np.nan
    loss = _panels(plot_dashboard(frame))["loss"]
    train = next(line for line in loss.get_lines() if line.get_label() == "train")
    assert list(train.get_xdata()) == [0, 10, 20, 30, 40, 50, 60]
    assert any(list(line.get_xdata()) == [70, 70] for line in loss.get_lines())


def test_example_sized_run_fits_in_two_thousand_pixels():
    # the probe names of examples/mnist1d-mlp.yaml: 8 tensors x 4 families, 3 layers x 5 activation statistics
    tensors = [f"{m}.{p}" for m in ("hidden.0.linear", "hidden.1.linear", "hidden.2.linear", "readout") for p in "wb"]
    names = [f"{f}/{t}" for f in ("grad/norm", "param/norm", "update/norm", "update/ratio") for t in tensors]
    names += [f"act/hidden.{i}/{s}" for i in range(3) for s in ("mean", "var", "dead", "cosine", "rel_var")]
    names += ["grad/norm", "param/norm", "update/norm", "update/ratio", "sharpness/matvecs"]
    names += [f"noise/{n}" for n in ("grad_mean_norm", "grad_var", "batch_var", "snr", "scale")]
    frame = pd.concat([_frame(), *(_rows(n, STEPS, 1.0 + STEPS) for n in names)], ignore_index=True)
    buffer = io.BytesIO()
    plot_dashboard(frame, batch_size=128).savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    width, height = Image.open(buffer).size
    assert height <= 2000 and width <= 1800


def test_no_metrics_and_bad_input():
    figure = plot_dashboard(pd.DataFrame({"step": [], "name": [], "value": []}))
    assert [t.get_text() for t in figure.texts] == ["no metrics recorded"]
    with pytest.raises(TypeError, match="metrics"):
        plot_dashboard(pd.DataFrame({"loss": [1.0]}))


def test_names_order_and_families():
    assert per_layer("act/block.0/attn/mean") == ("act/mean", "block.0/attn")
    assert per_layer("hessian/trace_se") is None and per_layer("sharpness/2") is None
    assert sorted(["lr", "noise/snr", "act/h/dead", "test/accuracy", "val/loss"], key=importance) == [
        "test/accuracy",
        "val/loss",
        "noise/snr",
        "act/h/dead",
        "lr",
    ]


# ------------------------------------------------------------------------------------------------ sweeps
def _sweep(root):
    """lr {0.1, 0.2} x width {8, 16} x seeds {0, 1, 2}; loss = lr * width * (seed + 1) / (1 + step), and the
    (constant) learning rate logged as the schedule metric "lr"."""
    for lr in (0.1, 0.2):
        for width in (8, 16):
            for seed in range(3):
                config = {"optimizer": {"lr": lr}, "width": width, "seed": seed}
                with Run.create(root, config, kind="train", run_id=f"lr{lr}-w{width}-s{seed}") as run:
                    for step in range(5):
                        run.log(step, {"test/loss": lr * width * (seed + 1) / (1 + step), "lr": lr})
                    run.set_status("done")


def test_learning_curves_are_the_mean_and_range_over_seeds(tmp_path):
    _sweep(tmp_path)
    store = Store(tmp_path)
    assert sorted(swept_fields(store.runs())) == ["optimizer.lr", "width"]
    fields = ["optimizer.lr", "width"]
    metrics = store.metrics()
    curves = learning_curves(metrics, fields)
    loss = curves[(curves["name"] == "test/loss") & (curves["optimizer.lr"] == 0.2) & (curves["width"] == 16)]
    seeds = np.array([[0.2 * 16 * (s + 1) / (1 + step) for step in range(5)] for s in range(3)])
    np.testing.assert_allclose(loss["mean"], seeds.mean(axis=0))
    np.testing.assert_allclose(loss["low"], seeds.min(axis=0))
    np.testing.assert_allclose(loss["high"], seeds.max(axis=0))
    assert (loss["runs"] == 3).all()

    summary = summarise(final_values(metrics), fields)
    figure = plot_sweep_metric(summary, curves, "test/loss", fields)
    first = figure.axes[0]
    drawn = {line.get_label(): line.get_ydata() for line in first.get_lines()}
    np.testing.assert_allclose(drawn["optimizer.lr=0.2, width=16"], seeds.mean(axis=0))
    assert len(figure.axes) == 1 + 2 + 1 + 1  # curves, one panel per field, the 2-D grid and its colour bar
    grid = figure.axes[3].get_images()[0].get_array()
    expected = np.array([[lr * w * 2 / 5 for lr in (0.1, 0.2)] for w in (8, 16)])  # rows: width, columns: lr
    np.testing.assert_allclose(grid, expected)
    schedule = plot_sweep_metric(summary, curves, "lr", fields)
    assert len(schedule.axes) == 1  # a schedule's final value is not plotted against the fields


def test_sweep_page_puts_the_metrics_that_matter_first(tmp_path):
    from tdlab.report import write_sweep_report

    _sweep(tmp_path)
    page = write_sweep_report(tmp_path, tmp_path / "page").read_text()
    assert page.index("<h2>test/loss</h2>") < page.index("<h2>lr</h2>")
    assert (tmp_path / "page" / "figures" / "test_loss.png").is_file()
