"""Instruments on the models people train: a causal transformer with fused attention, a ResNet with BatchNorm
(train and eval), dict inputs, tied and frozen parameters, data through a DataLoader; checked against exact
Hessians computed here with plain autograd, independently of `Objective`."""

from __future__ import annotations

import weakref

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.data import DataLoader, TensorDataset

from tdlab import Objective
from tdlab.curvature import exact_ggn, exact_hessian, hessian_eigs, hessian_trace
from tdlab.models import CausalTransformer, ResNet
from tdlab.oracles import as_batches, parameter_blocks
from tdlab.probes import HessianTrace, ProbeContext, ProbeSet, Sharpness, build_probe

VOCAB = 7


def lm_loss(logits: Tensor, targets: Tensor) -> Tensor:
    return nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())


def transformer(dtype: torch.dtype = torch.float64, tie: bool = True) -> nn.Module:
    torch.manual_seed(0)
    model = CausalTransformer(
        VOCAB, d_model=8, num_heads=2, num_layers=1, max_length=6, dim_feedforward=8, tie_weights=tie
    )
    return model.to(dtype).eval()


def token_data(n: int = 6, length: int = 5, seed: int = 1) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, VOCAB, (n, length + 1), generator=g)
    return tokens[:, :-1], tokens[:, 1:]


class DictModel(nn.Module):
    """Hugging Face style: model(input_ids=..., attention_mask=...) -> logits, a masked mean of embeddings."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 4)
        self.hidden = nn.Linear(4, 5)
        self.out = nn.Linear(5, 3)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        mask = attention_mask.unsqueeze(-1).to(self.embed.weight.dtype)
        pooled = (self.embed(input_ids) * mask).sum(1) / mask.sum(1)
        return self.out(torch.tanh(self.hidden(pooled)))


def dict_data(n: int = 10) -> tuple[dict[str, Tensor], Tensor]:
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(0, VOCAB, (n, 4), generator=g)
    mask = (torch.rand(n, 4, generator=g) > 0.3).long()
    mask[:, 0] = 1
    return {"input_ids": ids, "attention_mask": mask}, torch.randint(0, 3, (n,), generator=g)


def resnet(train: bool) -> nn.Module:
    torch.manual_seed(3)
    model = ResNet(1, 3, width=3, num_blocks=1).double()
    return model.train(train)


def image_data(n: int = 8) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(4)
    return torch.randn(n, 1, 5, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def reference_hessian(model: nn.Module, loss_fn, inputs, targets, names: list[str] | None = None) -> Tensor:
    """The Hessian of loss_fn(model(inputs), targets) in the named parameters, by plain double backward through
    the model's own forward on the whole batch (math attention), row by row, the model restored afterwards."""
    named = dict(model.named_parameters())
    names = names or [n for n, p in named.items() if p.requires_grad]
    params = [named[n] for n in names]
    saved_buffers = [b.clone() for b in model.buffers()]
    saved_flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    try:
        with sdpa_kernel([SDPBackend.MATH]):
            torch.backends.mha.set_fastpath_enabled(False)
            out = model(**inputs) if isinstance(inputs, dict) else model(inputs)
            loss = loss_fn(out, targets)
            grads = torch.autograd.grad(loss, params, create_graph=True)
            g = torch.cat([t.reshape(-1) for t in grads])
            rows = [
                torch.cat([r.reshape(-1) for r in torch.autograd.grad(g[i], params, retain_graph=True)])
                for i in range(g.numel())
            ]
    finally:
        torch.backends.mha.set_fastpath_enabled(True)
        for p, flag in zip(model.parameters(), saved_flags, strict=True):
            p.requires_grad_(flag)
        with torch.no_grad():
            for b, saved in zip(model.buffers(), saved_buffers, strict=True):
                b.copy_(saved)
    return torch.stack(rows)


def relative(a: Tensor, b: Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


# ------------------------------------------------------------------------------------------ exact Hessians
def test_causal_transformer_hessian_equals_exact_through_fused_attention():
    model = transformer()
    X, y = token_data()
    with pytest.raises(RuntimeError, match="derivative|not implemented"):  # what users hit without tdlab
        params = dict(model.named_parameters())
        loss = lm_loss(torch.func.functional_call(model, params, (X,)), y)
        g = torch.autograd.grad(loss, list(params.values()), create_graph=True)
        torch.autograd.grad(sum(t.sum() for t in g), list(params.values()))
    obj = Objective(model, lm_loss, (X, y))
    H = reference_hessian(model, lm_loss, X, y)
    assert H.shape == (obj.dim, obj.dim)
    assert relative(exact_hessian(obj), H) < 1e-8
    top = hessian_eigs(obj, k=2, tol=1e-10)
    assert torch.allclose(top.eigenvalues, torch.linalg.eigvalsh(H).flip(0)[:2], rtol=1e-8, atol=1e-10)


def test_tied_weights_appear_once_and_the_hessian_counts_both_uses():
    model = transformer(tie=True)
    obj = Objective(model, lm_loss, token_data())
    assert "head.weight" not in obj.params and "tokens.weight" in obj.params
    untied = transformer(tie=False)
    assert obj.dim == Objective(untied, lm_loss, token_data()).dim - VOCAB * 8


def test_causal_transformer_in_train_mode_and_sharpness_probe_in_a_training_loop():
    model = transformer(torch.float32).train()
    X, y = token_data(8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    probes = ProbeSet(
        [build_probe("sharpness", every=2, tol=1e-3, criterion="ritz"), build_probe("loss")],
        model,
        lm_loss,
        train=(X, y),
        eval_mode=False,
    )
    for step in range(1, 5):
        with probes.step(step, batch=(X, y), optimizer=opt):
            opt.zero_grad()
            lm_loss(model(X), y).backward()
            opt.step()
    sharpness = [m["sharpness"] for _, m in probes.history if "sharpness" in m]
    assert len(sharpness) == 2 and all(np.isfinite(sharpness)) and min(sharpness) > 0


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_resnet_with_batchnorm_hessian_equals_exact(train):
    model = resnet(train)
    X, y = image_data()
    before = [b.clone() for b in model.buffers()]
    obj = Objective(model, nn.CrossEntropyLoss(), (X, y))
    H = reference_hessian(model, nn.CrossEntropyLoss(), X, y)
    assert relative(exact_hessian(obj), H) < 1e-8
    assert all(torch.equal(a, b) for a, b in zip(before, model.buffers(), strict=True))  # no running-stat update


def test_dict_inputs_hessian_and_ggn_equal_exact():
    model = DictModel().double().eval()
    inputs, y = dict_data()
    obj = Objective(model, nn.CrossEntropyLoss(), (inputs, y))
    H = reference_hessian(model, nn.CrossEntropyLoss(), inputs, y)
    assert relative(exact_hessian(obj), H) < 1e-8
    ggn = exact_ggn(obj)
    assert torch.allclose(ggn, ggn.T, atol=1e-12) and torch.linalg.eigvalsh(ggn).min() > -1e-10


def test_dropout_in_eval_mode_is_exact_and_in_train_mode_runs():
    torch.manual_seed(0)
    model = CausalTransformer(
        VOCAB, d_model=8, num_heads=2, num_layers=1, max_length=6, dim_feedforward=8, dropout=0.2
    ).double()
    X, y = token_data()
    model.eval()
    obj = Objective(model, lm_loss, (X, y))
    assert relative(exact_hessian(obj), reference_hessian(model, lm_loss, X, y)) < 1e-8
    model.train()
    v = torch.randn(obj.dim, dtype=torch.float64)
    assert torch.isfinite(Objective(model, lm_loss, (X, y)).hvp(v)).all()


def test_frozen_parameters_and_parameter_selection_give_the_sub_hessian():
    model = transformer()
    X, y = token_data()
    names = [n for n, _ in model.named_parameters()]
    H = reference_hessian(model, lm_loss, X, y)
    sizes = {n: p.numel() for n, p in model.named_parameters()}
    offsets = np.cumsum([0] + [sizes[n] for n in names])
    chosen = [n for n in names if n.startswith("encoder.layers.0.self_attn")]
    index = torch.cat([torch.arange(offsets[names.index(n)], offsets[names.index(n) + 1]) for n in chosen])
    expected = H[index][:, index]
    by_names = Objective(model, lm_loss, (X, y), params=chosen)
    by_module = Objective(model, lm_loss, (X, y), params=model.encoder.layers[0].self_attn)
    by_glob = Objective(model, lm_loss, (X, y), params="encoder.layers.0.self_attn.*")
    for obj in (by_names, by_module, by_glob):
        assert list(obj.params) == chosen
        assert relative(exact_hessian(obj), expected) < 1e-8
    for name, p in model.named_parameters():
        p.requires_grad_(name in chosen)
    assert relative(exact_hessian(Objective(model, lm_loss, (X, y))), expected) < 1e-8


@pytest.mark.parametrize("dtype, bound", [(torch.float32, 1e-4), (torch.bfloat16, 5e-2)])
def test_low_precision_products_are_close_to_the_float64_hessian(dtype, bound):
    X, y = token_data()
    H = reference_hessian(transformer(), lm_loss, X, y)
    obj = Objective(transformer(dtype), lm_loss, (X, y))
    v = torch.randn(obj.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    Hv = obj.hvp(v.to(dtype))
    assert Hv.dtype == dtype
    assert relative(Hv.double(), H @ v) < bound


# ------------------------------------------------------------------------------------------ data
def test_dataloader_and_iterables_stream_to_the_full_batch_answer():
    model = DictModel().double().eval()
    inputs, y = dict_data(10)
    full = Objective(model, nn.CrossEntropyLoss(), (inputs, y))
    batches = [({k: t[i : i + 4] for k, t in inputs.items()}, y[i : i + 4]) for i in range(0, 10, 4)]
    listed = Objective(model, nn.CrossEntropyLoss(), batches)
    v = torch.randn(full.dim, dtype=torch.float64)
    for obj in (listed, Objective(model, nn.CrossEntropyLoss(), (inputs, y), batch_size=3)):
        assert float(obj.value()) == pytest.approx(float(full.value()), rel=1e-13)
        assert relative(obj.gradient(), full.gradient()) < 1e-12
        assert relative(obj.hvp(v), full.hvp(v)) < 1e-12
        assert relative(obj.ggn_vp(v), full.ggn_vp(v)) < 1e-12
    model = transformer()
    X, y = token_data(7)
    loader = DataLoader(TensorDataset(X, y), batch_size=3, shuffle=False)
    streamed = Objective(model, lm_loss, loader)
    assert streamed.num_examples == 7
    assert relative(exact_hessian(streamed), reference_hessian(model, lm_loss, X, y)) < 1e-8


def test_streaming_holds_one_batch_at_a_time():
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    X, y = torch.randn(40, 3, dtype=torch.float64), torch.randn(40, 1, dtype=torch.float64)

    class Watched:
        """A re-iterable that records, at every batch it hands out, how many of its earlier batches are alive."""

        def __init__(self) -> None:
            self.alive_at_yield: list[int] = []

        def __iter__(self):
            refs: list[weakref.ref] = []
            for i in range(0, 40, 8):
                self.alive_at_yield.append(sum(r() is not None for r in refs))
                batch = (X[i : i + 8].clone(), y[i : i + 8].clone())
                refs.append(weakref.ref(batch[0]))
                yield batch

    data = Watched()
    obj = Objective(model, nn.MSELoss(), data)
    data.alive_at_yield.clear()
    obj.hvp(torch.ones(obj.dim, dtype=torch.float64))
    assert len(data.alive_at_yield) == 5 and max(data.alive_at_yield) <= 1


def test_bad_data_gets_a_clear_error():
    X, y = torch.randn(6, 2), torch.randn(6, 1)
    model = nn.Linear(2, 1)
    with pytest.raises(ValueError, match="reshuffles.*shuffle=False"):
        Objective(model, nn.MSELoss(), DataLoader(TensorDataset(X, y), batch_size=2, shuffle=True))
    with pytest.raises(TypeError, match="one-shot iterator"):
        Objective(model, nn.MSELoss(), ((X[i : i + 2], y[i : i + 2]) for i in range(0, 6, 2)))
    with pytest.raises(TypeError, match="targets must be a tensor"):
        Objective(model, nn.MSELoss(), [({"x": X}, {"y": y})])
    with pytest.raises(ValueError, match="batch_size: only for in-memory"):
        Objective(model, nn.MSELoss(), DataLoader(TensorDataset(X, y), batch_size=2), batch_size=3)
    with pytest.raises(ValueError, match="params: no parameter named"):
        Objective(model, nn.MSELoss(), (X, y), params=["nope"])

    class Growing:
        def __init__(self) -> None:
            self.passes = 0

        def __iter__(self):
            self.passes += 1
            yield from [(X[:2], y[:2])] * self.passes

    obj = Objective(model, nn.MSELoss(), Growing())
    obj.value()
    with pytest.raises(ValueError, match="the same at every pass"):
        obj.value()


def test_probe_set_takes_a_dataloader_and_dict_batches():
    model = DictModel().double()
    inputs, y = dict_data(12)
    loader = DataLoader([({k: t[i] for k, t in inputs.items()}, y[i]) for i in range(12)], batch_size=5)
    probes = ProbeSet(
        [
            build_probe("loss"),
            build_probe("gradient-norm"),
            build_probe("sharpness", k=2, criterion="residual", tol=1e-6),
            build_probe("activations", num_inputs=4, layers=["hidden"]),
            build_probe("gradient-noise", num_examples=6),
        ],
        model,
        nn.CrossEntropyLoss(),
        train=loader,
        test=(inputs, y),
    )
    metrics = probes.measure(0)
    assert metrics["train/loss"] == pytest.approx(metrics["test/loss"], rel=1e-12)
    full = Objective(model.eval(), nn.CrossEntropyLoss(), (inputs, y))
    assert metrics["sharpness"] == pytest.approx(float(torch.linalg.eigvalsh(exact_hessian(full))[-1]), rel=1e-8)


# ------------------------------------------------------------------------------------------ blocks
def test_block_eigenvalues_and_traces_equal_the_exact_sub_hessians():
    model = resnet(train=False)
    X, y = image_data()
    obj = Objective(model, nn.CrossEntropyLoss(), (X, y))
    H = reference_hessian(model, nn.CrossEntropyLoss(), X, y)
    names = list(obj.params)
    sizes = [obj.params[n].numel() for n in names]
    offsets = dict(zip(names, np.cumsum([0, *sizes[:-1]]), strict=True))
    blocks = parameter_blocks(model, "module")
    assert sum(len(v) for v in blocks.values()) == len(names)  # a partition of the parameters
    eigs = hessian_eigs(obj, k=1, tol=1e-10, blocks="module")
    traces = hessian_trace(obj, samples=6, blocks={"head": "head.*", "rest": lambda n, p: not n.startswith("head")})
    for block, selection in blocks.items():
        index = torch.cat([torch.arange(offsets[n], offsets[n] + obj.params[n].numel()) for n in selection])
        sub = H[index][:, index]
        assert eigs[block].eigenvalues[0].item() == pytest.approx(
            torch.linalg.eigvalsh(sub)[-1].item(), rel=1e-8, abs=1e-10
        )
    head = [i for n in names if n.startswith("head") for i in range(offsets[n], offsets[n] + obj.params[n].numel())]
    exact_head = exact_hessian(obj.restricted("head.*"))
    assert torch.trace(exact_head).item() == pytest.approx(H.diagonal()[head].sum().item(), rel=1e-10)
    assert traces["head"].num_matvecs == 6 and set(traces) == {"head", "rest"}


def test_sharpness_probe_blocks_and_mini_batch_error_bars_against_exact():
    model = DictModel().double().eval()
    inputs, y = dict_data(16)
    ctx = ProbeContext(0, model, nn.CrossEntropyLoss(), train=(inputs, y))
    probe = Sharpness(blocks={"out": "out.*"}, batches=4, batch_size=4, seed=3, tol=1e-10)
    metrics = probe.measure(ctx)
    order = torch.randperm(16, generator=torch.Generator().manual_seed(3))
    tops, outs = [], []
    for b in range(4):
        rows = order[4 * b : 4 * b + 4]
        part = ({k: t[rows] for k, t in inputs.items()}, y[rows])
        H = reference_hessian(model, nn.CrossEntropyLoss(), *part)
        tops.append(torch.linalg.eigvalsh(H)[-1].item())
        outs.append(torch.linalg.eigvalsh(H[-18:, -18:])[-1].item())  # out.weight (15) and out.bias (3) come last
    assert metrics["sharpness"] == pytest.approx(np.mean(tops), rel=1e-8)
    assert metrics["sharpness/se"] == pytest.approx(np.std(tops, ddof=1) / 2, rel=1e-6)
    assert metrics["sharpness/block/out"] == pytest.approx(np.mean(outs), rel=1e-8)
    full = Sharpness(tol=1e-10).measure(ctx)["sharpness"]
    assert metrics["sharpness"] >= full  # Jensen: the mean of the batch maxima is at least the full maximum
    state = probe.state_dict()
    assert set(state) == {"v0", "v0/out"}
    fresh = Sharpness(blocks={"out": "out.*"}, batches=4, batch_size=4, seed=3)
    fresh.load_state_dict(state)


def test_trace_probe_mini_batch_error_bar_covers_both_noises():
    model = DictModel().double().eval()
    inputs, y = dict_data(16)
    ctx = ProbeContext(0, model, nn.CrossEntropyLoss(), train=(inputs, y))
    metrics = HessianTrace(samples=400, batches=4, batch_size=4, seed=1).measure(ctx)
    order = torch.randperm(16, generator=torch.Generator().manual_seed(1))
    exact = [
        torch.trace(
            reference_hessian(
                model,
                nn.CrossEntropyLoss(),
                {k: t[order[4 * b : 4 * b + 4]] for k, t in inputs.items()},
                y[order[4 * b : 4 * b + 4]],
            )
        ).item()
        for b in range(4)
    ]
    # 400 Rademacher probes per batch: the mean is within a few of its standard errors of the exact mean
    assert abs(metrics["hessian/trace"] - np.mean(exact)) < 4 * metrics["hessian/trace_se"] + 1e-3 * abs(np.mean(exact))
    assert metrics["hessian/trace_se"] == pytest.approx(np.std(exact, ddof=1) / 2, rel=0.2)


def test_mini_batches_of_streamed_data_are_its_own_first_batches():
    X, y = torch.randn(12, 2), torch.randn(12, 1)
    data = as_batches(DataLoader(TensorDataset(X, y), batch_size=5))
    sizes = [b.num_examples for b in data.minibatches(2, None, seed=0)]
    assert sizes == [5, 5]
    with pytest.raises(ValueError, match="expected 4 batches, the data has 3"):
        list(data.minibatches(4, None, seed=0))
