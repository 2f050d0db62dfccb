"""collapse-remedies: the residual network against its formula, the gradient, curvature and training helpers
against direct computation, config validation, and a quick run whose checks must all pass."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError
from torch import nn

from tdlab.curvature import exact_hessian
from tdlab.experiments.base import Context
from tdlab.experiments.catalogue import collapse_remedies as cr
from tdlab.experiments.registry import get
from tdlab.oracles import Objective


def test_resnet_variant_computes_the_pre_activation_formula():
    net = cr.build_variant("resnet-scaled", 3, 2, 5, 4, torch.Generator().manual_seed(1))
    x = torch.randn(7, 3)
    layers = net.hidden_layers()
    h = x @ layers[0].linear.weight.T
    for block in layers[1:]:
        h = h + 0.5 * torch.relu(h) @ block.linear.weight.T  # alpha = 1/sqrt(4), no biases
    torch.testing.assert_close(net(x), h @ net.readout.weight.T)
    # He initialisation: Var W = 2 / fan_in
    wide = cr.build_variant("resnet", 400, 1, 300, 2, torch.Generator().manual_seed(0))
    assert float(wide.hidden[0].linear.weight.detach().var()) == pytest.approx(2 / 400, rel=0.02)
    assert float(wide.hidden[1].linear.weight.detach().var()) == pytest.approx(2 / 300, rel=0.02)


def test_build_variant_gives_the_named_architectures():
    g = torch.Generator().manual_seed(0)
    assert isinstance(cr.build_variant("batchnorm", 3, 1, 4, 3, g).hidden[0].norm, nn.BatchNorm1d)
    assert cr.build_variant("mlp-residual-scaled", 3, 1, 4, 4, g).residual_scale == pytest.approx(0.5)
    assert cr.build_variant("resnet", 3, 1, 4, 4, g).hidden[1].alpha == 1.0
    with pytest.raises(ValueError, match="variant"):
        cr.build_variant("densenet", 3, 1, 4, 4, g)


def test_layer_gradient_norms_match_autograd():
    net = cr.build_variant("vanilla", 3, 1, 6, 3, torch.Generator().manual_seed(2))
    X, y = torch.randn(10, 3), torch.randn(10, 1)
    weights = [net.hidden[l].linear.weight for l in range(3)]
    grads = torch.autograd.grad(nn.functional.mse_loss(net(X), y), weights)
    np.testing.assert_allclose(cr.layer_gradient_norms(net, X, y), [float(g.norm()) for g in grads], rtol=1e-6)


def test_top_hessian_eigenvalue_matches_the_exact_hessian():
    net = cr.build_variant("resnet-scaled", 2, 1, 4, 3, torch.Generator().manual_seed(0)).double()
    X, y = torch.randn(12, 2, dtype=torch.float64), torch.randn(12, 1, dtype=torch.float64)
    exact = torch.linalg.eigvalsh(exact_hessian(Objective(net, nn.MSELoss(), (X, y))))[-1]
    assert cr.top_hessian_eigenvalue(net, X, y, tol=1e-10, max_iter=200) == pytest.approx(float(exact), rel=1e-8)


def test_steps_to_loss_is_plain_gradient_descent_and_stops_at_the_target():
    net = cr.build_variant("vanilla", 2, 1, 4, 2, torch.Generator().manual_seed(0)).double()
    copy = cr.build_variant("vanilla", 2, 1, 4, 2, torch.Generator().manual_seed(0)).double()
    X, y = torch.randn(8, 2, dtype=torch.float64), torch.randn(8, 1, dtype=torch.float64)
    losses = cr.steps_to_loss(net, X, y, lr=0.05, steps=3, target=0.0)
    by_hand = []
    for _ in range(4):  # w <- w - eta grad, the loss recorded before each step
        loss = nn.functional.mse_loss(copy(X), y)
        by_hand.append(float(loss.detach()))
        grads = torch.autograd.grad(loss, list(copy.parameters()))
        with torch.no_grad():
            for p, g in zip(copy.parameters(), grads, strict=True):
                p -= 0.05 * g
    np.testing.assert_allclose(losses, by_hand, rtol=1e-12)
    stopped = cr.steps_to_loss(net, X, y, lr=0.05, steps=10, target=1e9)
    assert stopped[0] <= 1e9 and np.isnan(stopped[1:]).all()
    linear_path = cr.build_variant("resnet", 2, 1, 4, 2, torch.Generator().manual_seed(0)).double()
    diverged = cr.steps_to_loss(linear_path, X, y, lr=1e3, steps=50, target=0.0)
    assert np.isinf(diverged[-1])


def test_config_rejects_bad_values():
    with pytest.raises(ValidationError, match="variants"):
        cr.CollapseRemediesConfig(variants=("vanilla", "batchnorm"))
    with pytest.raises(ValidationError):
        cr.CollapseRemediesConfig(hessian_depths=(1, 4))
    with pytest.raises(ValidationError):
        cr.CollapseRemediesConfig(variants=("vanilla", "batchnorm", "resnet", "resnet-scaled", "vgg"))


def test_quick_run_passes_every_check():
    experiment = get("collapse-remedies")
    result = experiment.run(experiment.make_config(), Context(torch.device("cpu")))
    failed = [f"{c.name}: {c.measured} vs {c.theory} ({c.detail})" for c in result.checks if not c.passed]
    assert not failed, failed
    assert len(result.checks) == 4
    assert set(result.figures) == {"cosine_vs_depth", "gradients_curvature_training"}
    assert all(isinstance(f, Figure) for f in result.figures.values())
    hessian = result.metrics.query("name == 'hessian_top'")
    assert set(hessian["variant"]) == {"vanilla", "batchnorm", "resnet", "resnet-scaled"}
    # the plain residual net's curvature explodes with depth: its output grows like 2^(L/2)
    plain = hessian.query("variant == 'resnet'").sort_values("depth")["value"].to_numpy()
    assert np.all(np.diff(np.log(plain)) > math.log(4))
