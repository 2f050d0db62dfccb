"""weight-symmetries: the rescaled-sharpness bound against exact Hessians of a small ReLU network, config
validation, and a quick run whose checks must all pass."""

from __future__ import annotations

import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError
from recheck import assert_rechecks
from torch import nn

from tdlab import Objective
from tdlab.curvature import exact_hessian
from tdlab.experiments.base import Context
from tdlab.experiments.catalogue import weight_symmetries as ws
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
    with pytest.raises(ValidationError, match="scales"):
        ws.EXPERIMENT.make_config(scales=(1.0, 0.1))
    with pytest.raises(ValidationError, match="sweep_widths"):
        ws.EXPERIMENT.make_config(sweep_widths=(64, 32))
    with pytest.raises(ValidationError, match="rescale_layer"):
        ws.EXPERIMENT.make_config(rescale_layer=1)


def test_small_run_rechecks_and_measures_the_symmetries(tmp_path):
    config = ws.EXPERIMENT.make_config(
        data={"name": "mnist1d", "n_train": 100, "n_test": 10},
        model={"name": "mlp", "width": 8, "depth": 1, "activation": "relu"},
        steps=30,
        scales=(0.1, 1.0, 10.0),
        sweep_widths=(4, 8),
        num_alphas=5,
    )
    result = assert_rechecks(ws.EXPERIMENT, config, tmp_path)
    m = result.metrics
    assert sorted(m.loc[m["name"] == "barrier_before", "width"]) == [4, 8]
    # the path from A to B starts at A's loss whatever B is aligned to, and the barrier is never negative
    main = m[m["width"] == 8]
    before, after = (
        main[main["name"] == n].sort_values("alpha")["value"].to_numpy() for n in ("loss_before", "loss_after")
    )
    assert before[0] == after[0] and before[-1] == pytest.approx(after[-1], rel=1e-10)
    assert (m.loc[m["name"].str.startswith("barrier_"), "value"] >= 0).all()
    # rescaling by k leaves the loss unchanged: same value at every k
    losses = main.loc[main["name"] == "loss", "value"]
    assert losses.max() - losses.min() < 1e-12
    assert [c.name for c in result.checks][:3] == [f"function unchanged by {what}" for what in ws.SYMMETRIES]


@pytest.mark.slow
def test_quick_run_passes_its_checks():
    experiment = ws.EXPERIMENT
    result = experiment.run(experiment.make_config(), Context(torch.device("cpu")))
    failed = [(c.name, c.measured, c.theory, c.detail) for c in result.checks if not c.passed]
    assert not failed, failed
    assert any(c.name.startswith("barrier after weight matching") for c in result.checks)
    assert set(result.figures) == {"barrier", "sharpness"}
    assert all(isinstance(f, Figure) for f in result.figures.values())
    losses = result.metrics.query("name == 'loss'")["value"]
    assert losses.max() - losses.min() < 1e-12  # the rescaled networks all have the same loss
