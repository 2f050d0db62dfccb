"""mean-field-two-layer: the network's mean-field form, the GIF writer, config validation, and a quick run whose
check must pass (and whose GIF is written when asked)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError
from recheck import assert_rechecks

from tdlab.experiments.base import Context
from tdlab.experiments.catalogue import mean_field_two_layer as mf


def test_network_is_the_particle_average():
    net = mf._MeanFieldNet(7, 2, torch.Generator().manual_seed(0))
    x = torch.randn(5, 2)
    by_hand = sum(net.a[j] * torch.relu(x @ net.w[j]) for j in range(7)) / 7
    assert torch.allclose(net(x), by_hand, atol=1e-6)


def test_gif_writer(tmp_path):
    config = mf.MeanFieldTwoLayerConfig(widths=(5, 10), steps=2, record_every=1)
    frames = [np.random.default_rng(k).normal(size=(5, 3)) for k in range(3)]
    path = mf.write_gif(frames, config, tmp_path / "sub" / "particles.gif")
    assert path.read_bytes()[:6] in (b"GIF87a", b"GIF89a")


def test_config_rejects_bad_values():
    with pytest.raises(ValidationError, match="widths"):
        mf.EXPERIMENT.make_config(widths=(4000, 1000))
    with pytest.raises(ValidationError, match="gif_path"):
        mf.EXPERIMENT.make_config(gif_path="particles.png")


def test_small_run_rechecks_and_follows_gradient_descent(tmp_path):
    config = mf.EXPERIMENT.make_config(widths=(20, 40, 80), n_train=16, steps=6, record_every=4, trails=5)
    result = assert_rechecks(mf.EXPERIMENT, config, tmp_path)
    # ground truth: full-batch GD with step eta m on the particle average, written out by hand
    X, y = mf._teacher_data(config, torch.device("cpu"))
    net = mf._MeanFieldNet(20, 2, torch.Generator().manual_seed(20))
    losses = []
    for _ in range(config.steps + 1):
        loss = mf._logistic(net(X), y)
        losses.append(float(loss.detach()))
        a, w = torch.autograd.grad(loss, [net.a, net.w])
        with torch.no_grad():
            net.a -= config.eta * 20 * a
            net.w -= config.eta * 20 * w
    measured = result.metrics.query("name == 'train/loss' and width == 20").sort_values("step")
    np.testing.assert_allclose(measured["value"], losses, rtol=1e-5)
    frames = mf._frames(result.metrics)
    assert [f.shape for f in frames] == [(20, 3)] * 3  # steps 0, 4 and the last, 6
    assert set(np.unique(frames[0][:, 2])) <= {-1.0, 1.0}
    assert [c.name for c in result.checks] == ["loss curves at widths 40 and 80 agree (particle limit)"]


@pytest.mark.slow
def test_quick_run_passes_its_check_and_writes_the_gif(tmp_path):
    experiment = mf.EXPERIMENT
    config = experiment.make_config(gif_path=str(tmp_path / "particles.gif"))
    result = experiment.run(config, Context(torch.device("cpu")))
    failed = [(c.name, c.measured, c.theory, c.detail) for c in result.checks if not c.passed]
    assert not failed, failed
    assert [c.name for c in result.checks] == ["loss curves at widths 1000 and 4000 agree (particle limit)"]
    assert set(result.figures) == {"loss_curves", "particles"}
    assert all(isinstance(f, Figure) for f in result.figures.values())
    assert (tmp_path / "particles.gif").stat().st_size > 0
    assert len(result.metrics.query("name == 'train/loss' and width == 4000")) == config.steps + 1
