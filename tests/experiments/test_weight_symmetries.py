"""weight-symmetries: the rescaled-sharpness bound against exact Hessians of a small ReLU network, config
validation, and a quick run whose checks must all pass."""

from __future__ import annotations

import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError
from torch import nn

from tdlab import Objective
from tdlab.curvature import exact_hessian
from tdlab.experiments.base import Context
from tdlab.experiments.registry import get
from tdlab.landscape import mlp_chain, rescale_units
from tdlab.models import MLP
from tdlab.oracles.flat import flatten
from tdlab.theory import landscape as theory


def test_rescaled_sharpness_bound_holds_and_is_tight_far_from_one():
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(40, 3, generator=g, dtype=torch.float64), torch.randn(40, 2, generator=g, dtype=torch.float64)
    model = MLP(3, 2, width=6, depth=1, activation="relu", bias_init_std=0.2, seed=0).double()
    obj = Objective(model, nn.MSELoss(), (X, y))
    chain = mlp_chain(model)
    H = exact_hessian(obj)
    names = list(obj.params)
    sizes = [obj.params[n].numel() for n in names]
    index = torch.repeat_interleave(torch.arange(len(names)), torch.tensor(sizes))
    incoming = torch.isin(
        index, torch.tensor([names.index("hidden.0.linear.weight"), names.index("hidden.0.linear.bias")])
    )
    outgoing = index == names.index("readout.weight")
    top_in = float(torch.linalg.eigvalsh(H[incoming][:, incoming])[-1])
    top_out = float(torch.linalg.eigvalsh(H[outgoing][:, outgoing])[-1])
    for k in (1e-3, 0.1, 1.0, 10.0, 1e3):
        theta = flatten(rescale_units(obj.params, chain, 0, k))
        sharpness = float(torch.linalg.eigvalsh(exact_hessian(obj, theta))[-1])
        bound = float(theory.rescaled_sharpness_bound(k, top_out, top_in))
        assert sharpness >= bound * (1 - 1e-10)
        if k in (1e-3, 1e3):
            assert sharpness == pytest.approx(bound, rel=1e-4)
    with pytest.raises(ValueError, match="scale: expected positive values"):
        theory.rescaled_sharpness_bound(0.0, 1.0, 1.0)


def test_config_rejects_bad_values():
    experiment = get("weight-symmetries")
    with pytest.raises(ValidationError, match="scales"):
        experiment.make_config(scales=(1.0, 0.1))
    with pytest.raises(ValidationError, match="sweep_widths"):
        experiment.make_config(sweep_widths=(64, 32))
    with pytest.raises(ValueError, match="rescale_layer"):
        experiment.run(experiment.make_config(rescale_layer=1), Context(torch.device("cpu")))


@pytest.mark.slow
def test_quick_run_passes_its_checks():
    experiment = get("weight-symmetries")
    result = experiment.run(experiment.make_config(), Context(torch.device("cpu")))
    failed = [(c.name, c.measured, c.theory, c.detail) for c in result.checks if not c.passed]
    assert not failed, failed
    assert any(c.name.startswith("barrier after weight matching") for c in result.checks)
    assert set(result.figures) == {"barrier", "sharpness"}
    assert all(isinstance(f, Figure) for f in result.figures.values())
    losses = result.metrics.query("name == 'loss'")["value"]
    assert losses.max() - losses.min() < 1e-12  # the rescaled networks all have the same loss
