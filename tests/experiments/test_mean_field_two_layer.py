"""mean-field-two-layer: the network's mean-field form, the concentration against a count by angles and its
uniform baseline and spread against Monte Carlo, the GIF writer, config validation, gradient descent by hand, the
concentration checks failing on a network that does not move, and a quick run whose checks must pass (and whose GIF
is written when asked)."""

from __future__ import annotations

import math

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


def test_concentration_against_a_count_by_angles():
    """C_eps vs the mass of the particles whose angle (atan2) is within eps of a teacher neuron's, with its sign."""
    generator = torch.Generator().manual_seed(3)
    a, w = torch.randn(500, generator=generator, dtype=torch.float64), torch.randn(500, 2, dtype=torch.float64)
    eps = math.radians(20)
    mass = (a.abs() * w.norm(dim=1)).numpy()
    angle = np.arctan2(w[:, 1].numpy(), w[:, 0].numpy())
    near = np.zeros(500, dtype=bool)
    for t1, t2, sign in mf.TEACHER:
        apart = np.abs((angle - math.atan2(t2, t1) + math.pi) % (2 * math.pi) - math.pi)
        near |= (apart <= eps) & (np.sign(a.numpy()) == sign)
    assert mf.concentration(a, w, eps) == pytest.approx(mass[near].sum() / mass.sum(), rel=1e-12)


def test_uniform_baseline_and_spread_at_initialisation():
    """Over 400 initialisations of m = 300 particles, C_eps has mean 2 eps / pi (within 4 standard errors) and
    standard deviation sqrt(2 p (1 - p) / m) (within 15%, the sampling error of a standard deviation of 400 draws
    is 3.5%): the baseline of check 3 and the noise of check 2."""
    eps, m = math.radians(15), 300
    draws = []
    for s in range(400):
        net = mf._MeanFieldNet(m, 2, torch.Generator().manual_seed(s))
        draws.append(mf.concentration(net.a.detach().double(), net.w.detach().double(), eps))
    p = mf.uniform_concentration(eps)
    sd = math.sqrt(2 * p * (1 - p) / m)
    assert abs(np.mean(draws) - p) < 4 * sd / math.sqrt(400)
    assert np.std(draws, ddof=1) == pytest.approx(sd, rel=0.15)


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
    with pytest.raises(ValidationError, match="epsilon_deg"):
        mf.EXPERIMENT.make_config(epsilon_deg=45)  # the cones around the four directions would overlap


def test_small_run_rechecks_and_follows_gradient_descent(tmp_path):
    config = mf.EXPERIMENT.make_config(widths=(20, 40, 80), n_train=16, steps=6, record_every=4, trails=5)
    result = assert_rechecks(mf.EXPERIMENT, config, tmp_path)
    # ground truth: full-batch GD with step eta m on the particle average, written out by hand
    X, y = mf._teacher_data(config, torch.device("cpu"))
    net = mf._MeanFieldNet(20, 2, torch.Generator().manual_seed(20))
    losses = []
    for step in range(config.steps + 1):
        loss = torch.exp(-y * net(X)).mean()  # the exponential loss
        losses.append(float(loss.detach()))
        if step == config.steps:
            break
        a, w = torch.autograd.grad(loss, [net.a, net.w])
        with torch.no_grad():
            net.a -= config.eta * 20 * a
            net.w -= config.eta * 20 * w
    measured = result.metrics.query("name == 'train/loss' and width == 20").sort_values("step")
    np.testing.assert_allclose(measured["value"], losses, rtol=1e-5)
    frames = mf._frames(result.metrics)
    assert [f.shape for f in frames] == [(20, 3)] * 3  # steps 0, 4 and the last, 6
    assert set(np.unique(frames[0][:, 2])) <= {-1.0, 1.0}
    assert len(result.checks) == 3 and result.checks[0].name == "loss curves at widths 40 and 80 agree (particle limit)"
    concentrations = result.metrics.query("name == 'concentration' and width == 20").sort_values("step")
    assert concentrations["step"].tolist() == [0, 6]
    by_hand = mf.concentration(net.a.detach().double(), net.w.detach().double(), math.radians(15))
    assert concentrations["value"].iloc[-1] == pytest.approx(by_hand, rel=1e-5)


def test_concentration_checks_fail_when_the_particles_do_not_move():
    """With a step 1e6 times too small the loss curves agree (check 1 is blind to it) but the mass stays spread:
    checks 2 and 3 fail."""
    config = mf.EXPERIMENT.make_config(widths=(1000, 2000), n_train=32, steps=5, eta=1e-6, trails=0)
    result = mf.EXPERIMENT.run(config, Context(torch.device("cpu")))
    assert [c.passed for c in result.checks] == [True, False, False]
    assert result.checks[2].measured < 0.3  # near the uniform 1/6


@pytest.mark.slow
def test_quick_run_passes_its_check_and_writes_the_gif(tmp_path):
    experiment = mf.EXPERIMENT
    config = experiment.make_config(gif_path=str(tmp_path / "particles.gif"))
    result = experiment.run(config, Context(torch.device("cpu")))
    failed = [(c.name, c.measured, c.theory, c.detail) for c in result.checks if not c.passed]
    assert not failed, failed
    assert result.checks[0].name == "loss curves at widths 1000 and 4000 agree (particle limit)"
    assert len(result.checks) == 3
    assert set(result.figures) == {"loss_curves", "particles"}
    assert all(isinstance(f, Figure) for f in result.figures.values())
    assert (tmp_path / "particles.gif").stat().st_size > 0
    assert len(result.metrics.query("name == 'train/loss' and width == 4000")) == config.steps + 1
