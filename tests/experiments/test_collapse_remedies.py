"""collapse-remedies: the residual network against its formula, the measured cosines, gradients, curvature and
training against direct computation, checks that fail on a false claim, config validation, a re-check from the
stored metrics, and a quick run whose checks must all pass."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError
from recheck import assert_rechecks
from torch import nn

from tdlab.curvature import exact_hessian
from tdlab.data import circle_inputs, synthetic_regression
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


CPU = Context(torch.device("cpu"))


def _small(**overrides) -> cr.CollapseRemediesConfig:
    base = dict(width=8, depth=3, seeds=2, num_inputs=5, in_features=3, n_train=16, hessian_width=4)
    base |= dict(hessian_depths=(2, 3), lanczos_tol=1e-6, lanczos_steps=100, train_width=4, train_depth=2)
    return cr.CollapseRemediesConfig(**(base | dict(train_steps=6, target_loss=1e-9) | overrides))


def test_measure_against_direct_computation():
    config = _small(trained_variants=("batchnorm",))
    metrics = cr.measure(config, CPU)
    # the networks drawn in measure's order from one generator: circle, variants x seeds, Hessians, training
    generator = torch.Generator().manual_seed(config.seed)
    circle, _ = circle_inputs(5, 3, generator)
    nets = {(v, s): cr.build_variant(v, 3, 1, 8, 3, generator) for v in config.variants for s in range(2)}
    hessian_nets = [cr.build_variant("batchnorm", 3, 1, 4, depth, generator) for depth in (2, 3)]
    trained = cr.build_variant("batchnorm", 3, 1, 4, 2, generator).double()
    data = synthetic_regression(16, 1, 3, 1, 0.0, "mlp", seed=config.seed)
    X, y = data.X_train.double(), data.y_train.double()

    # resnet, seed 1: h_1 = W_1 x, h_l = h_{l-1} + W_l relu(h_{l-1}); mean off-diagonal cosine of h_3
    net = nets[("resnet", 1)].double()
    weights = [layer.linear.weight for layer in net.hidden]
    h = circle.double() @ weights[0].T
    for w in weights[1:]:
        h = h + torch.relu(h) @ w.T
    unit = nn.functional.normalize(h.detach(), dim=1)
    cosine = float((unit @ unit.T)[~torch.eye(5, dtype=torch.bool)].mean())
    rows = metrics.query("variant == 'resnet' and seed == 1")
    assert rows.query("name == 'cosine' and layer == 3")["value"].item() == pytest.approx(cosine, rel=1e-5)
    # rel_var: per unit Var_i h / E_i h^2 over the 5 inputs, averaged over units that are not zero on every input
    second = h.detach().square().mean(dim=0)
    rel_var = float((h.detach().var(dim=0, correction=0)[second > 0] / second[second > 0]).mean())
    assert rows.query("name == 'rel_var' and layer == 3")["value"].item() == pytest.approx(rel_var, rel=1e-5)
    grads = torch.autograd.grad(nn.functional.mse_loss(net(X), y), weights)
    np.testing.assert_allclose(rows.query("name == 'grad_norm'")["value"], [float(g.norm()) for g in grads], rtol=1e-5)

    exact = [
        torch.linalg.eigvalsh(exact_hessian(Objective(n.double(), nn.MSELoss(), (X, y))))[-1] for n in hessian_nets
    ]
    np.testing.assert_allclose(metrics.query("name == 'hessian_top'")["value"], exact, rtol=1e-4)

    # w <- w - eta grad with eta = 1 / lambda_max at initialisation, the loss recorded before each step
    obj = Objective(trained, nn.MSELoss(), (X, y))
    theta = obj.flat_parameters()
    eta, losses = 1.0 / float(torch.linalg.eigvalsh(exact_hessian(obj, theta))[-1]), []
    for _ in range(config.train_steps + 1):
        loss, g = obj.value_and_gradient(theta)
        losses.append(float(loss))
        theta = theta - eta * g
    curve = metrics.query("name == 'train_loss'")
    np.testing.assert_array_equal(curve["step"], np.arange(config.train_steps + 1))
    np.testing.assert_allclose(curve["value"], losses, rtol=1e-4)
    assert curve["eta"].iloc[0] == pytest.approx(eta, rel=1e-4)


def test_training_stops_at_the_target():
    curve = [("train_loss", v, "vanilla", t) for t, v in enumerate((2.0, 1.0, 0.25))]
    frame = pd.DataFrame(curve, columns=["name", "value", "variant", "step"])
    assert cr.steps_to_target(frame, "vanilla", 0.3) == 2 and math.isinf(cr.steps_to_target(frame, "vanilla", 0.1))
    config = _small(trained_variants=("vanilla",), target_loss=1e9)
    stopped = cr.measure(config, CPU).query("name == 'train_loss'")
    assert stopped["step"].tolist() == [0]  # the target is reached before the first step


def test_checks_fail_on_a_false_claim():
    config = cr.CollapseRemediesConfig(depth=2, seeds=1)
    cosines = {"vanilla": 0.99, "batchnorm": 0.3, "resnet": 0.9, "resnet-scaled": 0.8}
    rows = [("cosine", c, v, layer, 0) for v, c in cosines.items() for layer in (1, 2)]
    frame = pd.DataFrame(rows, columns=["name", "value", "variant", "layer", "seed"])
    assert all(c.passed for c in cr.checks(frame, config))
    # BatchNorm collapsing too, vanilla not collapsing, a residual net above vanilla: each fails its check
    for variant, value, failed in (("batchnorm", 0.7, 0), ("vanilla", 0.9, 1), ("resnet-scaled", 0.995, 3)):
        changed = frame.assign(value=np.where(frame["variant"] == variant, value, frame["value"]))
        assert [i for i, c in enumerate(cr.checks(changed, config)) if not c.passed] == [failed], variant


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
    assert len(result.checks) == 10
    assert set(result.figures) == {"cosine_vs_depth", "gradients_curvature_training"}
    assert all(isinstance(f, Figure) for f in result.figures.values())
    hessian = result.metrics.query("name == 'hessian_top'")
    assert set(hessian["variant"]) == {"vanilla", "batchnorm", "resnet", "resnet-scaled"}
    # the plain residual net's curvature explodes with depth: its output grows like 2^(L/2)
    plain = hessian.query("variant == 'resnet'").sort_values("depth")["value"].to_numpy()
    assert np.all(np.diff(np.log(plain)) > math.log(4))


def test_checks_and_figures_come_from_the_stored_metrics(tmp_path):
    result = assert_rechecks(cr.EXPERIMENT, _small(trained_variants=("vanilla", "resnet"), target_loss=0.5), tmp_path)
    assert len(result.checks) == 10 and set(result.figures) == {"cosine_vs_depth", "gradients_curvature_training"}


def test_collapse_checks_fail_on_a_network_that_does_not_collapse():
    """Stored-metric corruption: with resnet-scaled's cosines and gradients in place of mlp-residual's and vanilla's,
    and a flat resnet Hessian, the new checks fail."""
    import numpy as np
    import pandas as pd

    from tdlab.experiments.catalogue import collapse_remedies as cr

    config = cr.EXPERIMENT.make_config(width=8, depth=4, seeds=1)
    rows = []
    for variant, cos, grad in (
        ("vanilla", [0.5, 0.9, 0.995, 0.999], [1.0, 1.0, 5.0, 20.0]),
        ("mlp-residual", [0.6, 0.995, 0.999, 1.0], [1.0, 1.0, 1.0, 1.0]),
        ("batchnorm", [0.3] * 4, [1e4, 1e4, 10.0, 1.0]),
        ("resnet", [0.2, 0.4, 0.6, 0.8], [1.0] * 4),
        ("resnet-scaled", [0.0, 0.1, 0.2, 0.3], [1.0] * 4),
    ):
        for layer in range(4):
            where = {"variant": variant, "layer": layer + 1, "seed": 0}
            rows += [
                {"name": "cosine", "value": cos[layer], **where},
                {"name": "grad_norm", "value": grad[layer], **where},
            ]
    rows += [{"name": "hessian_top", "value": 2.0**d, "variant": "resnet", "depth": d} for d in (2, 6, 18)]
    good = pd.DataFrame(rows)
    assert all(c.passed for c in cr._collapse_checks(good, config))
    bad = good.copy()
    scaled = bad["variant"] == "resnet-scaled"
    for name in ("cosine", "grad_norm"):
        for variant in ("vanilla", "mlp-residual", "batchnorm"):
            target = (bad["variant"] == variant) & (bad["name"] == name)
            bad.loc[target, "value"] = bad.loc[scaled & (bad["name"] == name), "value"].to_numpy()
    bad.loc[bad["name"] == "hessian_top", "value"] = np.array([50.0, 60.0, 70.0])
    assert not any(c.passed for c in cr._collapse_checks(bad, config))


def test_variance_checks_against_theory_and_a_false_claim():
    """rel_var of relu(z) for z ~ N(0, 1) is 1 - 1/pi (sampled here); a BatchNorm that keeps it passes, vanilla
    keeping its first-layer variance fails the loss check, BatchNorm at vanilla's value fails the theory check."""
    z = torch.randn(2_000_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64).relu()
    assert float(z.var(correction=0) / z.square().mean()) == pytest.approx(cr.BATCHNORM_REL_VAR, abs=2e-3)
    config = cr.CollapseRemediesConfig(depth=3, seeds=1)
    curves = {"vanilla": [0.59, 0.4, 0.17], "batchnorm": [0.59, 0.66, 0.68]}
    rows = [("rel_var", v, name, l + 1, 0) for name, c in curves.items() for l, v in enumerate(c)]
    good = pd.DataFrame(rows, columns=["name", "value", "variant", "layer", "seed"])
    assert [c.passed for c in cr._variance_checks(good, config)] == [True, True]
    kept = good.assign(value=np.where(good["variant"] == "vanilla", 0.59, good["value"]))
    assert [c.passed for c in cr._variance_checks(kept, config)] == [False, True]
    lost = good.assign(value=np.where(good["variant"] == "batchnorm", 0.17, good["value"]))
    assert [c.passed for c in cr._variance_checks(lost, config)] == [True, False]
