"""preconditioned-sharpness: the probe against a dense P^{-1} H built by hand, the operator, the thresholds, the errors.

Ground truth is independent of tdlab's oracles: the loss is written as a function of one flat vector, its Hessian
comes from `torch.autograd.functional.hessian`, and the preconditioner P is rebuilt from each optimiser's update
rule by replaying the gradients of the run, the replay checked against the parameters torch's optimiser produced.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tdlab.curvature import MatrixOperator, PreconditionedOperator, hessian_eigs
from tdlab.probes import PROBES, PreconditionedSharpness, ProbeContext, ProbeSet, adaptive_preconditioner, build_probe
from tdlab.theory.adaptive_stability import (
    adagrad_stability_threshold,
    adam_stability_threshold,
    rmsprop_stability_threshold,
)

D = torch.float64
STEPS = 6


def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    X = torch.randn(24, 3, generator=generator, dtype=D)
    Y = torch.randn(24, 2, generator=generator, dtype=D)
    return X, Y


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 2)).to(D)


def _flat_loss(theta: torch.Tensor, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """The mean squared error of the 3-6-2 tanh network with flat parameters (W1, b1, W2, b2), nn.Linear layout."""
    W1, b1 = theta[:18].view(6, 3), theta[18:24]
    W2, b2 = theta[24:36].view(2, 6), theta[36:38]
    outputs = torch.tanh(X @ W1.T + b1) @ W2.T + b2
    return ((outputs - Y) ** 2).mean()


def _flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).clone()


def _train(make_optimizer, steps: int = STEPS, seed: int = 0):
    """`steps` torch.optim steps on the flat loss; the flat parameters before each step and the gradients."""
    X, Y = _data(seed)
    model = _model(seed)
    optimizer = make_optimizer(model.parameters())
    thetas, grads = [_flat(model)], []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = _flat_loss(torch.cat([p.reshape(-1) for p in model.parameters()]), X, Y)
        loss.backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]).clone())
        optimizer.step()
        thetas.append(_flat(model))
    return model, optimizer, thetas, grads, (X, Y)


def _replay_adam(thetas, grads, lr, betas, eps, weight_decay=0.0, amsgrad=False, decoupled=False):
    """Adam by hand (Kingma & Ba 2015 with torch's eps placement); returns the trajectory and the last P."""
    b1, b2 = betas
    theta, m, v, vmax = thetas[0].clone(), 0.0, 0.0, 0.0
    trajectory, P = [theta], None
    for t, g in enumerate(grads, start=1):
        if weight_decay and not decoupled:
            g = g + weight_decay * thetas[t - 1]
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = torch.maximum(torch.as_tensor(vmax, dtype=D), v)
        second = vmax if amsgrad else v
        P = (1 - b1**t) * (torch.sqrt(second / (1 - b2**t)) + eps)
        decay = 1 - lr * weight_decay if decoupled else 1.0
        theta = decay * trajectory[-1] - lr * m / P
        trajectory.append(theta)
    return trajectory, P


def _replay_rmsprop(thetas, grads, lr, alpha, eps, momentum=0.0, centered=False, weight_decay=0.0):
    theta, square, mean, buf = thetas[0].clone(), 0.0, 0.0, 0.0
    trajectory, P = [theta], None
    for t, g in enumerate(grads, start=1):
        g = g + weight_decay * thetas[t - 1]
        square = alpha * square + (1 - alpha) * g * g
        mean = alpha * mean + (1 - alpha) * g
        P = torch.sqrt(square - mean * mean if centered else square) + eps
        if momentum:
            buf = momentum * buf + g / P
            theta = trajectory[-1] - lr * buf
        else:
            theta = trajectory[-1] - lr * g / P
        trajectory.append(theta)
    return trajectory, P


def _replay_adagrad(thetas, grads, lr, eps, lr_decay=0.0, initial=0.0, weight_decay=0.0):
    theta, total = thetas[0].clone(), initial
    trajectory, P = [theta], None
    for t, g in enumerate(grads, start=1):
        g = g + weight_decay * thetas[t - 1]
        total = total + g * g
        P = torch.sqrt(total) + eps
        theta = trajectory[-1] - lr / (1 + (t - 1) * lr_decay) * g / P
        trajectory.append(theta)
    return trajectory, P


# name: (optimiser factory, replay, coupled weight decay, threshold by hand)
CASES = {
    "adam": (
        lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.9, 0.99), eps=1e-2),
        lambda th, g: _replay_adam(th, g, 0.01, (0.9, 0.99), 1e-2),
        0.0,
        38 / 0.01,
    ),
    "adam-amsgrad-l2": (
        lambda p: torch.optim.Adam(p, lr=0.02, betas=(0.5, 0.9), eps=3e-3, weight_decay=0.1, amsgrad=True),
        lambda th, g: _replay_adam(th, g, 0.02, (0.5, 0.9), 3e-3, weight_decay=0.1, amsgrad=True),
        0.1,
        2 * 1.5 / (0.5 * 0.02),
    ),
    "adamw": (
        lambda p: torch.optim.AdamW(p, lr=0.01, betas=(0.8, 0.999), eps=1e-3, weight_decay=0.5),
        lambda th, g: _replay_adam(th, g, 0.01, (0.8, 0.999), 1e-3, weight_decay=0.5, decoupled=True),
        0.0,
        1.8 * (2 - 0.01 * 0.5) / (0.2 * 0.01),
    ),
    "rmsprop": (
        lambda p: torch.optim.RMSprop(p, lr=0.003, alpha=0.9, eps=1e-2),
        lambda th, g: _replay_rmsprop(th, g, 0.003, 0.9, 1e-2),
        0.0,
        2 / 0.003,
    ),
    "rmsprop-centered-momentum-l2": (
        lambda p: torch.optim.RMSprop(p, lr=0.002, alpha=0.8, eps=1e-3, momentum=0.7, centered=True, weight_decay=0.05),
        lambda th, g: _replay_rmsprop(th, g, 0.002, 0.8, 1e-3, momentum=0.7, centered=True, weight_decay=0.05),
        0.05,
        2 * 1.7 / 0.002,
    ),
    "adagrad": (
        lambda p: torch.optim.Adagrad(p, lr=0.05, eps=1e-2),
        lambda th, g: _replay_adagrad(th, g, 0.05, 1e-2),
        0.0,
        2 / 0.05,
    ),
    "adagrad-decay-initial": (
        lambda p: torch.optim.Adagrad(p, lr=0.05, lr_decay=0.1, eps=1e-3, initial_accumulator_value=0.2),
        lambda th, g: _replay_adagrad(th, g, 0.05, 1e-3, lr_decay=0.1, initial=0.2),
        0.0,
        2 * (1 + (STEPS - 1) * 0.1) / 0.05,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_probe_matches_the_top_eigenvalue_of_the_dense_preconditioned_hessian(case):
    make_optimizer, replay, wd, threshold = CASES[case]
    model, optimizer, thetas, grads, (X, Y) = _train(make_optimizer)
    trajectory, P = replay(thetas, grads)
    # the hand-written rule is torch's: same parameters after every step, so P is the preconditioner torch used
    for mine, torch_theta in zip(trajectory, thetas, strict=True):
        torch.testing.assert_close(mine, torch_theta, rtol=1e-12, atol=1e-13)
    H = torch.autograd.functional.hessian(lambda theta: _flat_loss(theta, X, Y), thetas[-1])
    dense = np.diag(1 / P.numpy()) @ (H.numpy() + wd * np.eye(len(P)))
    expected = float(np.max(np.linalg.eigvals(dense).real))
    ctx = ProbeContext(STEPS, model, nn.MSELoss(), train=(X, Y), optimizer=optimizer)
    metrics = PreconditionedSharpness(tol=1e-10).measure(ctx)
    assert metrics["preconditioned-sharpness"] == pytest.approx(expected, rel=1e-8)
    assert metrics["preconditioned-sharpness/threshold"] == pytest.approx(threshold, rel=1e-12)
    assert metrics["preconditioned-sharpness/matvecs"] >= 1
    torch.testing.assert_close(adaptive_preconditioner(optimizer, model).diagonal, P, rtol=1e-12, atol=0)


def test_top_k_and_the_unpreconditioned_sharpness_differ():
    model, optimizer, thetas, grads, (X, Y) = _train(CASES["adam"][0])
    _, P = CASES["adam"][1](thetas, grads)
    H = torch.autograd.functional.hessian(lambda theta: _flat_loss(theta, X, Y), thetas[-1]).numpy()
    expected = np.sort(np.linalg.eigvals(np.diag(1 / P.numpy()) @ H).real)[::-1][:3]
    ctx = ProbeContext(STEPS, model, nn.MSELoss(), train=(X, Y), optimizer=optimizer)
    metrics = PreconditionedSharpness(k=3, tol=1e-10).measure(ctx)
    measured = [
        metrics[n] for n in ("preconditioned-sharpness", "preconditioned-sharpness/2", "preconditioned-sharpness/3")
    ]
    np.testing.assert_allclose(measured, expected, rtol=1e-8)
    assert abs(metrics["preconditioned-sharpness"] - np.linalg.eigvalsh(H)[-1]) > 0.1 * np.linalg.eigvalsh(H)[-1]


def test_probe_in_a_loop_warm_starts_and_survives_a_resume():
    X, Y = _data()
    model = _model()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    probe = build_probe("preconditioned-sharpness", every=2, criterion="ritz", tol=1e-4)
    assert PROBES["preconditioned-sharpness"] is PreconditionedSharpness
    probes = ProbeSet([probe], model, nn.MSELoss(), train=(X, Y))
    for step in range(1, 9):
        optimizer.zero_grad()
        nn.functional.mse_loss(model(X), Y).backward()
        with probes.step(step, optimizer=optimizer):
            optimizer.step()
    frame = probes.to_frame()
    assert sorted(frame["step"].unique()) == [2, 4, 6, 8]
    matvecs = frame.query("name == 'preconditioned-sharpness/matvecs'")["value"].to_numpy()
    assert matvecs[-1] < matvecs[0]  # warm start from the previous eigenvector
    fresh = PreconditionedSharpness(criterion="ritz", tol=1e-4)
    fresh.load_state_dict(probe.state_dict())
    torch.testing.assert_close(fresh.v0, probe.v0)
    with pytest.raises(ValueError, match="unknown keys"):
        fresh.load_state_dict({"v1": probe.v0})


def test_error_without_an_optimiser():
    X, Y = _data()
    ctx = ProbeContext(1, _model(), nn.MSELoss(), train=(X, Y))
    with pytest.raises(ValueError, match=r"optimizer: .*pass optimizer= to ProbeSet.step"):
        PreconditionedSharpness().measure(ctx)


def test_error_for_an_unsupported_optimiser_names_the_supported_ones():
    model, optimizer, *_ = _train(lambda p: torch.optim.SGD(p, lr=0.1), steps=1)
    with pytest.raises(
        ValueError, match=r"torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop, torch.optim.Adagrad"
    ):
        adaptive_preconditioner(optimizer, model)
    with pytest.raises(ValueError, match="got SGD"):
        adaptive_preconditioner(optimizer, model)


@pytest.mark.parametrize("make_optimizer", [CASES["adam"][0], CASES["rmsprop"][0], CASES["adagrad"][0]])
def test_error_before_the_first_step(make_optimizer):
    model, optimizer, *_ = _train(make_optimizer, steps=0)
    with pytest.raises(ValueError, match="measure after the first optimiser step"):
        adaptive_preconditioner(optimizer, model)


def test_errors_for_parameters_the_optimiser_does_not_hold_or_groups_without_one_threshold():
    model = _model()
    X, Y = _data()
    only_first = torch.optim.Adam(model[0].parameters(), lr=0.01)
    nn.functional.mse_loss(model(X), Y).backward()
    only_first.step()
    with pytest.raises(ValueError, match=r"'2.weight' of the model is not in the optimiser's param_groups"):
        adaptive_preconditioner(only_first, model)
    groups = torch.optim.Adam([{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.1}])
    groups.step()
    with pytest.raises(ValueError, match=r"param_groups differ in 'lr'"):
        adaptive_preconditioner(groups, model)
    ascending = torch.optim.Adam(model.parameters(), maximize=True)
    ascending.step()
    with pytest.raises(ValueError, match="maximize"):
        adaptive_preconditioner(ascending, model)


def test_groups_may_differ_in_eps_and_weight_decay():
    model = _model()
    X, Y = _data()
    optimizer = torch.optim.AdamW(
        [{"params": model[0].parameters(), "eps": 1e-3}, {"params": model[2].parameters(), "weight_decay": 0.0}],
        lr=0.01,
    )
    nn.functional.mse_loss(model(X), Y).backward()
    optimizer.step()
    pre = adaptive_preconditioner(optimizer, model)
    assert pre.optimizer == "AdamW" and pre.diagonal.shape == (38,)
    assert pre.threshold == pytest.approx(38 / 0.01)  # no single decoupled decay: the threshold without it
    assert bool((pre.diagonal[:24] >= 0.1 * 1e-3).all())  # (1 - beta1) eps at t = 1


def test_preconditioned_operator_is_the_dense_similarity_transform():
    generator = torch.Generator().manual_seed(0)
    B = torch.randn(7, 7, generator=generator, dtype=D)
    A = B + B.T
    p = torch.rand(7, generator=generator, dtype=D) + 0.1
    s = torch.rand(7, generator=generator, dtype=D)
    op = PreconditionedOperator(MatrixOperator(A), p, shift=s)
    dense = torch.diag(p.rsqrt()) @ (A + torch.diag(s)) @ torch.diag(p.rsqrt())
    V = torch.randn(7, 3, generator=generator, dtype=D)
    torch.testing.assert_close(op @ V, dense @ V)
    torch.testing.assert_close(op @ V[:, 0], dense @ V[:, 0])
    assert op.matvecs == 4 and op.op.matvecs == 4
    result = hessian_eigs(op, k=1, tol=1e-12)
    x = op.eigenvector(result.eigenvectors[:, 0])  # an eigenvector of P^{-1} (A + diag(s))
    torch.testing.assert_close(torch.diag(1 / p) @ (A + torch.diag(s)) @ x, result.eigenvalues[0] * x)
    top = np.max(np.linalg.eigvals(np.diag(1 / p.numpy()) @ (A + torch.diag(s)).numpy()).real)
    assert float(result.eigenvalues[0]) == pytest.approx(top, rel=1e-10)


@pytest.mark.parametrize(
    ("diagonal", "shift", "word"),
    [
        (torch.ones(3), 0.0, "diagonal"),
        (torch.tensor([1.0, 0.0, 1.0, 1.0]), 0.0, "diagonal"),
        (torch.tensor([1.0, -1.0, 1.0, 1.0]), 0.0, "diagonal"),
        (torch.ones(4), torch.ones(3), "shift"),
        (torch.ones(4), float("nan"), "shift"),
    ],
)
def test_preconditioned_operator_rejects_bad_input(diagonal, shift, word):
    with pytest.raises(ValueError, match=word):
        PreconditionedOperator(MatrixOperator(torch.eye(4)), diagonal, shift=shift)


def test_thresholds_hand_values():
    assert float(adam_stability_threshold(0.1)) == pytest.approx(380.0)  # beta1 = 0.9: 38/lr
    assert float(adam_stability_threshold(1e-3, beta1=0.9)) == pytest.approx(38 / 1e-3)
    assert float(adam_stability_threshold(1.0, beta1=0.0)) == pytest.approx(2.0)  # no momentum: GD's 2/lr
    assert float(adam_stability_threshold(0.1, decoupled_weight_decay=1.0)) == pytest.approx(380.0 * 0.95)
    assert float(rmsprop_stability_threshold(0.01)) == pytest.approx(200.0)
    assert float(rmsprop_stability_threshold(0.01, momentum=0.9)) == pytest.approx(380.0)
    np.testing.assert_allclose(adagrad_stability_threshold([0.1, 0.4]), [20.0, 5.0])


def _frozen_adam(eta: float, beta1: float, wd: float, curvature: float, steps: int = 4000) -> float:
    """|theta_T| of the Adam recurrence on f = curvature theta^2 / 2 with a frozen preconditioner (P = 1)."""
    theta, m = 1.0, 0.0
    for _ in range(steps):
        m = beta1 * m + (1 - beta1) * curvature * theta
        theta = (1 - eta * wd) * theta - eta * m
        if abs(theta) > 1e6:
            break
    return abs(theta)


def _frozen_heavy_ball(eta: float, mu: float, curvature: float, steps: int = 4000) -> float:
    """|theta_T| of torch's RMSprop momentum, b <- mu b + g / P, theta <- theta - eta b, with P = 1."""
    theta, b = 1.0, 0.0
    for _ in range(steps):
        b = mu * b + curvature * theta
        theta = theta - eta * b
        if abs(theta) > 1e6:
            break
    return abs(theta)


@pytest.mark.parametrize(("eta", "beta1", "wd"), [(0.01, 0.9, 0.0), (0.1, 0.5, 0.0), (0.05, 0.9, 2.0), (0.2, 0.0, 0.0)])
def test_adam_threshold_separates_convergence_from_divergence(eta, beta1, wd):
    bound = float(adam_stability_threshold(eta, beta1, decoupled_weight_decay=wd))
    assert _frozen_adam(eta, beta1, wd, 0.98 * bound) < 1e-3
    assert _frozen_adam(eta, beta1, wd, 1.02 * bound) > 1e3


@pytest.mark.parametrize(("eta", "mu"), [(0.01, 0.0), (0.05, 0.5), (0.02, 0.9)])
def test_rmsprop_threshold_separates_convergence_from_divergence(eta, mu):
    bound = float(rmsprop_stability_threshold(eta, momentum=mu))
    assert _frozen_heavy_ball(eta, mu, 0.98 * bound) < 1e-3
    assert _frozen_heavy_ball(eta, mu, 1.02 * bound) > 1e3


@pytest.mark.parametrize(
    ("call", "word"),
    [
        (lambda: adam_stability_threshold(0.0), "eta"),
        (lambda: adam_stability_threshold(0.1, beta1=1.0), "beta1"),
        (lambda: adam_stability_threshold(0.1, decoupled_weight_decay=10.0), "decoupled_weight_decay"),
        (lambda: rmsprop_stability_threshold(0.1, momentum=-0.1), "momentum"),
        (lambda: adagrad_stability_threshold(-1.0), "eta"),
    ],
)
def test_thresholds_reject_bad_input(call, word):
    with pytest.raises(ValueError, match=word):
        call()


def test_probe_rejects_bad_arguments():
    for kwargs, word in [
        ({"k": 0}, "k"),
        ({"tol": 0.0}, "tol"),
        ({"criterion": "x"}, "criterion"),
        ({"subset": 0}, "subset"),
    ]:
        with pytest.raises(ValueError, match=word):
            PreconditionedSharpness(**kwargs)


def test_a_diverged_optimiser_gives_nan_not_an_error():
    model, optimizer, _, _, (X, Y) = _train(CASES["adam"][0], steps=2)
    for state in optimizer.state.values():
        state["exp_avg_sq"].fill_(float("inf"))
    ctx = ProbeContext(2, model, nn.MSELoss(), train=(X, Y), optimizer=optimizer)
    metrics = PreconditionedSharpness(k=2).measure(ctx)
    assert np.isnan(metrics["preconditioned-sharpness"]) and np.isnan(metrics["preconditioned-sharpness/2"])
    assert metrics["preconditioned-sharpness/threshold"] == pytest.approx(3800.0)


def test_a_wrapped_model_and_a_parameter_selection():
    model, optimizer, thetas, grads, (X, Y) = _train(CASES["rmsprop"][0])
    _, P = CASES["rmsprop"][1](thetas, grads)
    wrapped = nn.DataParallel(model)  # on the CPU: calls the module; names gain a "module." prefix
    ctx = ProbeContext(STEPS, wrapped, nn.MSELoss(), train=(X, Y), optimizer=optimizer)
    plain = ProbeContext(STEPS, model, nn.MSELoss(), train=(X, Y), optimizer=optimizer)
    probe, reference = PreconditionedSharpness(tol=1e-10), PreconditionedSharpness(tol=1e-10)
    assert probe.measure(ctx)["preconditioned-sharpness"] == pytest.approx(
        reference.measure(plain)["preconditioned-sharpness"], rel=1e-10
    )
    last = adaptive_preconditioner(optimizer, wrapped, ["2.weight", "2.bias"])
    torch.testing.assert_close(last.diagonal, P[24:])


def test_the_trainer_measures_it_after_each_due_step(tmp_path):
    from tdlab.train import TrainConfig, train

    config = TrainConfig.model_validate(
        {
            "name": "tiny-adam",
            "batch_size": 64,
            "steps": 20,
            "data": {"name": "synthetic-regression", "n_train": 64, "n_test": 16, "in_features": 5},
            "model": {"name": "mlp", "width": 8, "depth": 1, "activation": "tanh"},
            "optimizer": {"name": "adam", "lr": 0.01},
            "probes": [{"name": "preconditioned-sharpness", "every": 10, "criterion": "ritz", "tol": 1e-3}],
        }
    )
    metrics = train(config, out=tmp_path).metrics()
    rows = metrics[metrics["name"].str.startswith("preconditioned-sharpness")]
    assert sorted(set(rows["step"])) == [10, 20]  # not at step 0: no optimiser state yet
    threshold = rows.loc[rows["name"] == "preconditioned-sharpness/threshold", "value"]
    np.testing.assert_allclose(threshold, 38 / 0.01)
    assert (rows.loc[rows["name"] == "preconditioned-sharpness", "value"] > 0).all()
