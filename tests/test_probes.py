"""Probes against ground truth: hand-computed losses, autograd gradients, exact Hessians of small float64
MLPs, per-example gradient loops, hand-computed activation statistics; and the ProbeSet bookkeeping."""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from tdlab.oracles import flatten, trainable_parameters, unflatten
from tdlab.probes import (
    PROBES,
    ActivationStats,
    GradientNoise,
    GradientNorm,
    HessianTrace,
    LossProbe,
    ParameterNorm,
    Probe,
    ProbeContext,
    ProbeSet,
    Sharpness,
    UpdateNorm,
    build_probe,
)

DT = torch.float64


def mlp(seed: int = 0, outputs: int = 3, hidden: int = 5, inputs: int = 4) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(inputs, hidden), nn.Tanh(), nn.Linear(hidden, outputs)).to(DT)


def classification_data(n: int = 24, seed: int = 1, inputs: int = 4, classes: int = 3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, inputs, generator=g, dtype=DT), torch.randint(0, classes, (n,), generator=g)


def regression_data(n: int = 24, seed: int = 2, inputs: int = 4, outputs: int = 2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, inputs, generator=g, dtype=DT), torch.randn(n, outputs, generator=g, dtype=DT)


def context(model, loss_fn, train, **kwargs) -> ProbeContext:
    return ProbeContext(step=0, model=model, loss_fn=loss_fn, train=train, **kwargs)


def exact_hessian(model: nn.Module, loss_fn, X, y) -> torch.Tensor:
    params = trainable_parameters(model)

    def f(theta):
        return loss_fn(functional_call(model, unflatten(theta, params), (X,)), y)

    return torch.autograd.functional.hessian(f, flatten(params).clone())


# ------------------------------------------------------------------------------------------------ loss
def test_loss_probe_equals_hand_computed_loss_and_accuracy():
    model = mlp()
    X, y = classification_data(10)
    Xt, yt = classification_data(7, seed=5)
    ctx = context(model, nn.CrossEntropyLoss(), (X, y), test=(Xt, yt))
    metrics = LossProbe(batch_size=3).measure(ctx)  # chunks 3+3+3+1 (uneven)
    for split, (inputs, targets) in (("train", (X, y)), ("test", (Xt, yt))):
        losses, correct = [], 0
        with torch.no_grad():
            for x, t in zip(inputs, targets, strict=True):
                logits = model(x)
                losses.append(-(logits[t] - torch.logsumexp(logits, 0)).item())
                correct += int(int(logits.argmax()) == int(t))
        assert metrics[f"{split}/loss"] == pytest.approx(sum(losses) / len(losses), rel=1e-12)
        assert metrics[f"{split}/accuracy"] == correct / len(losses)
    assert set(metrics) == {"train/loss", "train/accuracy", "test/loss", "test/accuracy"}


def test_loss_probe_regression_has_no_accuracy():
    model = mlp(outputs=2)
    X, y = regression_data(9)
    metrics = LossProbe(batch_size=4).measure(context(model, nn.MSELoss(), (X, y), task="regression"))
    with torch.no_grad():
        expected = ((model(X) - y) ** 2).mean().item()
    assert metrics == {"train/loss": pytest.approx(expected, rel=1e-12)}


def test_loss_probe_binary_single_logit_accuracy():
    model = mlp(outputs=1)
    X, _ = classification_data(12)
    y = (torch.arange(12) % 2).to(DT)
    ctx = context(model, lambda o, t: nn.functional.binary_cross_entropy_with_logits(o.squeeze(1), t), (X, y))
    ctx.task = "classification"
    with torch.no_grad():
        expected = sum(int((model(x).item() > 0) == bool(t)) for x, t in zip(X, y, strict=True)) / 12
    assert LossProbe().measure(ctx)["train/accuracy"] == expected


# -------------------------------------------------------------------------------------------- gradient
def test_gradient_norm_equals_autograd():
    model = mlp()
    X, y = classification_data()
    metrics = GradientNorm().measure(context(model, nn.CrossEntropyLoss(), (X, y)))
    model.zero_grad()
    nn.functional.cross_entropy(model(X), y).backward()
    total = 0.0
    for name, p in model.named_parameters():
        assert metrics[f"grad/norm/{name}"] == pytest.approx(p.grad.norm().item(), rel=1e-10)
        total += p.grad.norm().item() ** 2
    assert metrics["grad/norm"] == pytest.approx(math.sqrt(total), rel=1e-10)
    assert len(metrics) == 1 + len(list(model.parameters()))


# ------------------------------------------------------------------------------------ updates, params
def test_update_norm_after_one_sgd_step_is_lr_times_gradient_norm():
    model, lr = mlp(), 0.3
    X, y = classification_data()
    xb, yb = X[:8], y[:8]
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    probes = ProbeSet([UpdateNorm(), ParameterNorm()], model, nn.CrossEntropyLoss(), train=(X, y))
    before = {k: v.clone() for k, v in trainable_parameters(model).items()}
    opt.zero_grad()
    nn.functional.cross_entropy(model(xb), yb).backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    with probes.step(1, batch=(xb, yb), optimizer=opt) as metrics:
        opt.step()
    assert probes.history[0][0] == 1
    for name, g in grads.items():
        assert metrics[f"update/norm/{name}"] == pytest.approx(lr * g.norm().item(), rel=1e-12)
        assert metrics[f"update/ratio/{name}"] == pytest.approx(
            lr * g.norm().item() / before[name].norm().item(), rel=1e-12
        )
        assert metrics[f"param/norm/{name}"] == pytest.approx(
            dict(model.named_parameters())[name].norm().item(), rel=1e-12
        )
    total = math.sqrt(sum(g.norm().item() ** 2 for g in grads.values()))
    assert metrics["update/norm"] == pytest.approx(lr * total, rel=1e-12)
    assert metrics["update/ratio"] == pytest.approx(lr * total / flatten(before).norm().item(), rel=1e-12)
    assert metrics["param/norm"] == pytest.approx(flatten(trainable_parameters(model)).norm().item())


def test_update_norm_skipped_without_previous_params_and_zero_weight_ratio_is_inf():
    model = mlp()
    X, y = classification_data()
    probes = ProbeSet([UpdateNorm(), ParameterNorm()], model, nn.CrossEntropyLoss(), train=(X, y))
    metrics = probes.measure(0)  # at initialisation there is no update to measure
    assert "param/norm" in metrics and not any(k.startswith("update/") for k in metrics)
    with torch.no_grad():
        model[0].bias.zero_()
    previous = {k: v.clone() for k, v in trainable_parameters(model).items()}
    with torch.no_grad():
        model[0].bias.add_(1.0)
    metrics = UpdateNorm().measure(context(model, nn.CrossEntropyLoss(), (X, y), previous_params=previous))
    assert metrics["update/ratio/0.bias"] == math.inf
    assert metrics["update/ratio/2.bias"] == 0.0
    with pytest.raises(ValueError, match="previous_params"):
        UpdateNorm().measure(context(model, nn.CrossEntropyLoss(), (X, y)))


# ------------------------------------------------------------------------------------------- curvature
def test_sharpness_equals_top_eigenvalues_of_exact_hessian_and_warm_start_saves_matvecs():
    model = mlp(outputs=2)
    X, y = regression_data()
    eigenvalues = torch.linalg.eigvalsh(exact_hessian(model, nn.MSELoss(), X, y))
    probe = Sharpness(k=2, tol=1e-8)
    ctx = context(model, nn.MSELoss(), (X, y), task="regression")
    first = probe.measure(ctx)
    assert first["sharpness"] == pytest.approx(eigenvalues[-1].item(), rel=1e-6)
    assert first["sharpness/2"] == pytest.approx(eigenvalues[-2].item(), rel=1e-6)
    second = probe.measure(ctx)
    assert second["sharpness"] == pytest.approx(eigenvalues[-1].item(), rel=1e-6)
    assert second["sharpness/matvecs"] < first["sharpness/matvecs"]

    resumed = Sharpness(k=2, tol=1e-8)
    resumed.load_state_dict(copy.deepcopy(probe.state_dict()))
    assert resumed.measure(ctx)["sharpness/matvecs"] < first["sharpness/matvecs"]


def test_sharpness_with_one_warm_product_is_the_power_iteration_across_measurements():
    """warm_products=1: the cold measurement runs to tol; each warm one is the Rayleigh quotient of the carried
    vector v (one product), reports ||H v - theta v|| as its residual and carries H v / ||H v||: the power iteration,
    whose error falls like (lambda_2 / lambda_1)^(2t) on a fixed Hessian (the exact one of a small net)."""
    model = mlp(outputs=2)
    X, y = regression_data()
    H = exact_hessian(model, nn.MSELoss(), X, y).double()
    eigenvalues = torch.linalg.eigvalsh(H)
    ctx = context(model, nn.MSELoss(), (X, y), task="regression")
    probe = Sharpness(warm_products=1)
    start = torch.randn(H.shape[0], generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    probe.load_state_dict({"v0": start.float()})
    v, errors = start / start.norm(), []
    for _ in range(40):
        metrics = probe.measure(ctx)
        theta = (v @ H @ v).item()
        assert metrics["sharpness/matvecs"] == 1
        assert metrics["sharpness"] == pytest.approx(theta, rel=1e-5)
        assert metrics["sharpness/residual"] == pytest.approx((H @ v - theta * v).norm().item(), rel=1e-3, abs=1e-6)
        v = H @ v / (H @ v).norm()
        assert probe.v0.double() == pytest.approx(v, abs=1e-5)
        errors.append(eigenvalues[-1].item() - metrics["sharpness"])
    assert all(e >= -1e-5 * eigenvalues[-1].item() for e in errors)  # a Rayleigh quotient: never above lambda_1
    assert errors[-1] < 1e-3 * errors[0]

    cold = Sharpness(warm_products=1, tol=1e-6)
    assert cold.measure(ctx)["sharpness/matvecs"] > 1  # the first measurement is not capped
    assert cold.measure(ctx)["sharpness/matvecs"] == 1
    assert Sharpness(warm_products=2, tol=1e-12).measure(ctx)["sharpness/matvecs"] > 2
    with pytest.raises(ValueError, match="warm_products"):
        Sharpness(k=2, warm_products=1)


def test_sharpness_ritz_criterion_is_passed_on_and_validated():
    model = mlp(outputs=2)
    X, y = regression_data()
    top = torch.linalg.eigvalsh(exact_hessian(model, nn.MSELoss(), X, y))[-1].item()
    ctx = context(model, nn.MSELoss(), (X, y), task="regression")
    bound = Sharpness(tol=1e-3, criterion="residual").measure(ctx)
    settled = Sharpness(tol=1e-3, criterion="ritz").measure(ctx)
    assert settled["sharpness/matvecs"] < bound["sharpness/matvecs"]
    assert settled["sharpness"] == pytest.approx(top, rel=1e-2)
    with pytest.raises(ValueError, match="criterion"):
        Sharpness(criterion="fast")


def test_sharpness_on_a_subset_is_the_top_eigenvalue_of_that_subset():
    model = mlp()
    X, y = classification_data(30)
    probe = Sharpness(subset=12, tol=1e-9, seed=3)
    value = probe.measure(context(model, nn.CrossEntropyLoss(), (X, y)))["sharpness"]
    index = torch.randperm(30, generator=torch.Generator().manual_seed(3))[:12]
    exact = torch.linalg.eigvalsh(exact_hessian(model, nn.CrossEntropyLoss(), X[index], y[index]))[-1]
    full = torch.linalg.eigvalsh(exact_hessian(model, nn.CrossEntropyLoss(), X, y))[-1]
    assert value == pytest.approx(exact.item(), rel=1e-6)
    assert abs(value - full.item()) > 1e-6 * abs(full.item())  # a different matrix indeed


def test_sharpness_state_with_wrong_size_is_rejected():
    model = mlp()
    probe = Sharpness()
    probe.load_state_dict({"v0": torch.ones(3, dtype=DT)})
    with pytest.raises(ValueError, match="warm-start"):
        probe.measure(context(model, nn.CrossEntropyLoss(), classification_data()))
    with pytest.raises(ValueError, match="unknown keys"):
        probe.load_state_dict({"v1": torch.ones(3)})


@pytest.mark.parametrize("method", ["hutchinson", "hutch++"])
def test_hessian_trace_within_three_standard_errors_of_exact_trace(method):
    model = mlp()
    X, y = classification_data()
    exact = torch.trace(exact_hessian(model, nn.CrossEntropyLoss(), X, y)).item()
    metrics = HessianTrace(samples=60, method=method).measure(context(model, nn.CrossEntropyLoss(), (X, y)))
    assert metrics["hessian/trace_se"] > 0
    assert abs(metrics["hessian/trace"] - exact) <= 3 * metrics["hessian/trace_se"]


# ----------------------------------------------------------------------------------------------- noise
def _loop_noise(model, loss_fn, X, y):
    grads = []
    for x, t in zip(X, y, strict=True):
        model.zero_grad()
        loss_fn(model(x.unsqueeze(0)), t.unsqueeze(0)).backward()
        grads.append(torch.cat([p.grad.reshape(-1).clone() for p in model.parameters()]))
    G = torch.stack(grads)
    mean = G.mean(0)
    return mean, ((G - mean) ** 2).sum().item() / (G.shape[0] - 1)


@pytest.mark.parametrize("chunk_size", [None, 3])
def test_gradient_noise_equals_loop_over_examples(chunk_size):
    model = mlp()
    X, y = classification_data(10)
    loss_fn = nn.CrossEntropyLoss()
    mean, trace = _loop_noise(model, loss_fn, X, y)
    probe = GradientNoise(source="batch", chunk_size=chunk_size)
    metrics = probe.measure(context(model, loss_fn, (X, y), batch=(X, y)))
    assert metrics["noise/grad_var"] == pytest.approx(trace, rel=1e-10)
    assert metrics["noise/grad_mean_norm"] == pytest.approx(mean.norm().item(), rel=1e-10)
    assert metrics["noise/batch_var"] == pytest.approx(trace / 10, rel=1e-10)
    assert metrics["noise/snr"] == pytest.approx(mean.norm().item() ** 2 / (trace / 10), rel=1e-10)
    assert metrics["noise/scale"] == pytest.approx(trace / mean.norm().item() ** 2, rel=1e-10)


def test_gradient_noise_on_fixed_subset_with_training_batch_size():
    model = mlp(outputs=2)
    X, y = regression_data(40)
    probe = GradientNoise(num_examples=16, batch_size=4, seed=7)
    metrics = probe.measure(context(model, nn.MSELoss(), (X, y), task="regression"))
    index = torch.randperm(40, generator=torch.Generator().manual_seed(7))[:16]
    mean, trace = _loop_noise(model, nn.MSELoss(), X[index], y[index])
    assert metrics["noise/grad_var"] == pytest.approx(trace, rel=1e-10)
    assert metrics["noise/snr"] == pytest.approx(mean.norm().item() ** 2 / (trace / 4), rel=1e-10)
    assert probe.measure(context(model, nn.MSELoss(), (X, y))) == metrics  # same subset every time


def test_gradient_noise_rejects_batchnorm_in_train_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 3)).to(DT)
    X, y = classification_data()
    ctx = context(model, nn.CrossEntropyLoss(), (X, y))
    with pytest.raises(ValueError, match="BatchNorm in train mode"):
        GradientNoise().measure(ctx)
    model.eval()  # running statistics: examples independent, per-example gradients exist
    mean, trace = _loop_noise(model, nn.CrossEntropyLoss(), X, y)
    assert GradientNoise().measure(ctx)["noise/grad_var"] == pytest.approx(trace, rel=1e-10)
    with pytest.raises(ValueError, match="source"):
        GradientNoise(source="batch").measure(ctx)


# ------------------------------------------------------------------------------------------ activations
def test_activation_stats_equal_hand_computation():
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)).to(DT)
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
        model[0].bias.copy_(torch.tensor([0.0, 0.0, -10.0]))  # unit 2 is dead on the inputs below
    X = torch.tensor([[1.0, 2.0], [3.0, -1.0], [-1.0, 1.0], [2.0, 2.0], [5.0, 5.0]], dtype=DT)
    y = torch.zeros(5, 1, dtype=DT)
    metrics = ActivationStats(num_inputs=4).measure(context(model, nn.MSELoss(), (X, y)))
    H = [[max(x1, 0.0), max(x2, 0.0), 0.0] for x1, x2 in X[:4].tolist()]  # h = relu(W x + b)
    cosines = []
    for i, j in itertools.permutations(range(4), 2):
        dot = sum(a * b for a, b in zip(H[i], H[j], strict=True))
        ni, nj = math.sqrt(sum(a * a for a in H[i])), math.sqrt(sum(b * b for b in H[j]))
        cosines.append(dot / (ni * nj))
    entries = [v for row in H for v in row]
    mean = sum(entries) / len(entries)
    ratios = []
    for u in range(2):  # the live units
        column = [row[u] for row in H]
        m1, m2 = sum(column) / 4, sum(c * c for c in column) / 4
        ratios.append((m2 - m1 * m1) / m2)
    assert metrics["act/1/cosine"] == pytest.approx(sum(cosines) / len(cosines), rel=1e-12)
    assert metrics["act/1/dead"] == pytest.approx(1 / 3)
    assert metrics["act/1/mean"] == pytest.approx(mean, rel=1e-12)
    assert metrics["act/1/var"] == pytest.approx(sum((v - mean) ** 2 for v in entries) / len(entries), rel=1e-12)
    assert metrics["act/1/rel_var"] == pytest.approx(sum(ratios) / 2, rel=1e-12)
    assert set(metrics) == {f"act/1/{k}" for k in ("mean", "var", "dead", "cosine", "rel_var")}


class TwoLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.out = nn.Linear(2, 4), nn.Linear(4, 4), nn.Linear(4, 1)
        self.act = nn.ReLU()  # shared: called twice per forward pass

    def forward(self, x):
        return self.out(self.act(self.b(self.act(self.a(x)))))


class Named(TwoLayers):
    def hidden_layers(self):
        return [self.b]


def test_activation_stats_layer_choice():
    X, y = torch.randn(8, 2), torch.randn(8, 1)
    shared = ActivationStats().measure(context(TwoLayers(), nn.MSELoss(), (X, y)))
    assert {k.rsplit("/", 1)[0] for k in shared} == {"act/act[0]", "act/act[1]"}
    named = ActivationStats().measure(context(Named(), nn.MSELoss(), (X, y)))
    assert {k.rsplit("/", 1)[0] for k in named} == {"act/b"}
    given = ActivationStats(layers=["a", "b"]).measure(context(TwoLayers(), nn.MSELoss(), (X, y)))
    assert {k.rsplit("/", 1)[0] for k in given} == {"act/a", "act/b"}
    with pytest.raises(ValueError, match="layers: no module named"):
        ActivationStats(layers=["c"]).measure(context(TwoLayers(), nn.MSELoss(), (X, y)))
    with pytest.raises(ValueError, match="no activation module"):
        ActivationStats().measure(context(nn.Linear(2, 1), nn.MSELoss(), (X, y)))


# -------------------------------------------------------------------------------------------- ProbeSet
class ModeRecorder(Probe):
    name = "mode"

    def __init__(self, every: int = 1):
        super().__init__(every)
        self.seen: list[bool] = []

    def measure(self, ctx):
        self.seen.append(ctx.model.training)
        return {"mode/training": float(ctx.model.training)}


def _train(model, X, y, probes: ProbeSet | None, steps: int = 5):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(steps):
        xb, yb = X[4 * step : 4 * step + 8], y[4 * step : 4 * step + 8]
        opt.zero_grad()
        nn.functional.cross_entropy(model(xb), yb).backward()
        if probes is None:
            opt.step()
        else:
            with probes.step(step + 1, batch=(xb, yb), optimizer=opt):
                opt.step()
    return flatten(trainable_parameters(model))


def test_probe_set_records_due_steps_and_leaves_model_untouched():
    X, y = classification_data(32)
    model = mlp()
    model.train()
    recorder = ModeRecorder(every=1)
    sunk = []
    probes = ProbeSet(
        [recorder, ParameterNorm(every=2), GradientNorm(every=5), Sharpness(every=2), UpdateNorm(every=5)],
        model,
        nn.CrossEntropyLoss(),
        train=(X, y),
        sink=lambda step, metrics: sunk.append((step, dict(metrics))),
    )
    with_probes = _train(model, X, y, probes)
    without = _train(mlp(), X, y, None)
    assert torch.equal(with_probes, without)
    assert model.training and all(m.training for m in model.modules())
    assert recorder.seen == [False] * 5  # eval mode while measuring
    frame = probes.to_frame()
    steps = frame.groupby("name")["step"].apply(list).to_dict()
    assert steps["mode/training"] == [1, 2, 3, 4, 5]
    assert steps["param/norm"] == steps["sharpness"] == [2, 4]
    assert steps["grad/norm"] == steps["update/norm"] == [5]
    assert [s for s, _ in probes.history] == [1, 2, 3, 4, 5]
    assert sunk == probes.history
    assert list(frame.columns) == ["step", "name", "value"]
    assert set(probes.state_dict()) == {"mode", "parameter-norm", "gradient-norm", "sharpness", "update-norm"}
    assert "v0" in probes.state_dict()["sharpness"]


def test_probe_set_train_mode_measurement_restores_buffers_and_random_stream():
    X, y = classification_data(32)

    def net():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Dropout(0.3), nn.Linear(6, 3)).to(DT)

    model = net()
    probes = ProbeSet([LossProbe(), ModeRecorder()], model, nn.CrossEntropyLoss(), train=(X, y), eval_mode=False)
    torch.manual_seed(1)
    with_probes = _train(model, X, y, probes)
    reference = net()
    torch.manual_seed(1)
    without = _train(reference, X, y, None)
    assert torch.equal(with_probes, without)  # dropout masks drawn as without probes
    assert torch.equal(model[1].running_mean, reference[1].running_mean)
    assert int(model[1].num_batches_tracked) == 5
    assert probes.probes[1].seen == [True] * 5


class AutogradGradientNorm(Probe):
    name = "autograd"
    needs_grad = True  # differentiates with torch.autograd, so it must not run under torch.no_grad

    def measure(self, ctx):
        X, y = ctx.train.tensors
        grads = torch.autograd.grad(ctx.loss_fn(ctx.model(X), y), list(ctx.model.parameters()))
        return {"autograd/norm": torch.cat([g.reshape(-1) for g in grads]).norm().item()}


def test_probe_set_runs_autograd_probes_with_grad_and_others_without():
    X, y = classification_data()
    model = mlp()
    probes = ProbeSet([AutogradGradientNorm(), GradientNorm()], model, nn.CrossEntropyLoss(), train=(X, y))
    metrics = probes.measure(0)
    assert metrics["autograd/norm"] == pytest.approx(metrics["grad/norm"], rel=1e-10)

    class Undeclared(AutogradGradientNorm):
        needs_grad = False

    undeclared = ProbeSet([Undeclared()], model, nn.CrossEntropyLoss(), train=(X, y))
    with pytest.raises(RuntimeError, match="does not require grad"):
        undeclared.measure(0)


def test_probe_set_block_that_raises_measures_nothing():
    X, y = classification_data()
    probes = ProbeSet([ParameterNorm()], mlp(), nn.CrossEntropyLoss(), train=(X, y))
    with pytest.raises(RuntimeError, match="boom"), probes.step(1):
        raise RuntimeError("boom")
    assert probes.history == []


def test_probe_set_infers_task_and_validates_arguments():
    X, y = classification_data()
    Xr, yr = regression_data()
    assert ProbeSet([], mlp(), nn.CrossEntropyLoss(), train=(X, y)).task == "classification"
    assert ProbeSet([], mlp(outputs=2), nn.MSELoss(), train=(Xr, yr)).task == "regression"
    with pytest.raises(ValueError, match="task: expected one of"):
        ProbeSet([], mlp(), nn.CrossEntropyLoss(), train=(X, y), task="ranking")
    with pytest.raises(TypeError, match="train: expected a pair"):
        ProbeSet([], mlp(), nn.CrossEntropyLoss(), train=X)
    with pytest.raises(ValueError, match="names must be unique"):
        ProbeSet([LossProbe(), LossProbe(every=2)], mlp(), nn.CrossEntropyLoss(), train=(X, y))

    class Clash(Probe):
        name = "clash"

        def measure(self, ctx):
            return {"train/loss": 0.0}

    clashing = ProbeSet([LossProbe(), Clash()], mlp(), nn.CrossEntropyLoss(), train=(X, y))
    with pytest.raises(ValueError, match="'train/loss' is returned by both 'loss' and 'clash'"):
        clashing.measure(0)
    with pytest.raises(ValueError, match="no probe named"):
        clashing.load_state_dict({"sharpness": {}})


# -------------------------------------------------------------------------------------------- registry
def test_build_probe_registry_and_errors():
    assert set(PROBES) == {
        "loss",
        "gradient-norm",
        "update-norm",
        "parameter-norm",
        "sharpness",
        "preconditioned-sharpness",
        "hessian-trace",
        "gradient-noise",
        "activations",
    }
    for name, cls in PROBES.items():
        probe = build_probe(name, every=3)
        assert type(probe) is cls and probe.every == 3 and probe.name == name
    assert build_probe("sharpness", k=3).k == 3
    with pytest.raises(ValueError, match="probe: expected one of 'loss', .*'activations', got 'sharp'"):
        build_probe("sharp")
    with pytest.raises(TypeError, match=r"probe 'loss': unknown arguments \['lr'\]; allowed: every, batch_size"):
        build_probe("loss", lr=0.1)
    with pytest.raises(ValueError, match="every: expected a positive integer, got 0"):
        build_probe("loss", every=0)
    with pytest.raises(ValueError, match="k: expected a positive integer"):
        build_probe("sharpness", k=0)
    with pytest.raises(ValueError, match="method: expected one of 'hutchinson', 'hutch\\+\\+', got 'exact'"):
        build_probe("hessian-trace", method="exact")
    with pytest.raises(ValueError, match="source: expected one of"):
        build_probe("gradient-noise", source="test")
    with pytest.raises(TypeError, match="layers: expected a list of module names"):
        build_probe("activations", layers="hidden.0")
