"""The CUDA path against the CPU: oracles, Lanczos, probes, `tdlab train` and the ensemble give the CPU's numbers
on a GPU (float64 where the comparison is tight). Skipped without CUDA; run on a GPU machine when one is lent."""

import pandas as pd
import pytest
import torch
from torch import nn

from tdlab import Objective
from tdlab.config import resolve_device
from tdlab.curvature import DifferenceHessianOperator, HessianOperator, hessian_eigs, hessian_trace
from tdlab.ensemble import train_ensemble
from tdlab.models.transformer import CausalTransformer
from tdlab.probes import ProbeSet, Sharpness
from tdlab.train import TrainConfig, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


class TokenLoss(nn.Module):
    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def problems(device: str) -> dict[str, Objective]:
    """A tanh MLP with BatchNorm (eval mode) and a causal transformer (fused attention on CUDA), float64."""
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, 3)).double().eval()
    X, y = torch.randn(64, 6, dtype=torch.float64), torch.randint(0, 3, (64,))
    torch.manual_seed(0)
    transformer = CausalTransformer(11, d_model=16, num_heads=2, num_layers=1, max_length=8).double()
    tokens = torch.randint(0, 11, (8, 9), generator=torch.Generator().manual_seed(0))
    return {
        "mlp": Objective(mlp.to(device), nn.CrossEntropyLoss(), (X, y)),
        "transformer": Objective(transformer.to(device), TokenLoss(), (tokens[:, :-1], tokens[:, 1:])),
    }


@pytest.mark.parametrize("name", ["mlp", "transformer"])
def test_oracles_and_lanczos_on_cuda_equal_the_cpu(name):
    cpu, gpu = problems("cpu")[name], problems("cuda")[name]
    v = torch.randn(cpu.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(gpu.gradient().cpu(), cpu.gradient(), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(gpu.hvp(v).cpu(), cpu.hvp(v), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(gpu.hvp_function()(v).cpu(), cpu.hvp(v), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(gpu.ggn_vp(v).cpu(), cpu.ggn_vp(v), rtol=1e-9, atol=1e-12)
    top_gpu = hessian_eigs(gpu, k=3, tol=1e-10, criterion="residual")
    top_cpu = hessian_eigs(cpu, k=3, tol=1e-10, criterion="residual")
    assert top_gpu.eigenvalues.device.type == "cuda"
    torch.testing.assert_close(top_gpu.eigenvalues.cpu(), top_cpu.eigenvalues, rtol=1e-8, atol=1e-10)
    trace_gpu = hessian_trace(gpu, samples=20, generator=torch.Generator().manual_seed(0))
    trace_cpu = hessian_trace(cpu, samples=20, generator=torch.Generator().manual_seed(0))
    assert float(trace_gpu.estimate) == pytest.approx(float(trace_cpu.estimate), rel=1e-8)


def test_probes_on_cuda_equal_the_cpu():
    values = {}
    for device in ("cpu", "cuda"):
        obj = problems(device)["mlp"]
        probes = ProbeSet([Sharpness(k=2, tol=1e-10, criterion="residual")], obj.model, obj.loss_fn, train=obj.data)
        values[device] = probes.measure(0)
    assert values["cuda"]["sharpness"] == pytest.approx(values["cpu"]["sharpness"], rel=1e-8)
    assert values["cuda"]["sharpness/2"] == pytest.approx(values["cpu"]["sharpness/2"], rel=1e-8)


def test_difference_products_run_through_fused_attention_on_cuda():
    """In float32 on CUDA the gradient passes of `DifferenceHessianOperator` use the fused (memory-efficient)
    attention kernel, which has no double backward; they agree with the exact products (math kernel)."""
    torch.manual_seed(0)
    model = CausalTransformer(32, d_model=64, num_heads=4, num_layers=2, max_length=16).cuda()
    tokens = torch.randint(0, 32, (64, 17), generator=torch.Generator().manual_seed(0)).cuda()
    obj = Objective(model, TokenLoss(), (tokens[:, :-1], tokens[:, 1:]))
    v = torch.randn(obj.dim, generator=torch.Generator().manual_seed(1)).cuda()
    exact = HessianOperator(obj) @ v
    approx = DifferenceHessianOperator(obj) @ v
    assert float((approx - exact).norm() / exact.norm()) < 1e-3


def config(device: str, seed: int = 0, lr: float = 0.05) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "seed": seed,
            "steps": 30,
            "batch_size": 32,
            "device": device,
            "dtype": "float64",
            "data": {"name": "synthetic-regression", "n_train": 128, "n_test": 64, "in_features": 5},
            "model": {"name": "mlp", "width": 16, "depth": 2, "activation": "tanh"},
            "optimizer": {"name": "sgd", "lr": lr, "momentum": 0.9},
            "probes": [{"name": "loss", "every": 10}, {"name": "sharpness", "every": 15, "tol": 1e-10}],
        }
    )


def test_train_with_device_auto_runs_on_cuda_and_equals_the_cpu(tmp_path):
    assert resolve_device("auto").type == "cuda"
    gpu = train(config("auto"), out=tmp_path, run_id="gpu")
    cpu = train(config("cpu"), out=tmp_path, run_id="cpu")
    got, expected = gpu.metrics(), cpu.metrics()
    assert got[["step", "name"]].equals(expected[["step", "name"]])
    pd.testing.assert_series_equal(got["value"], expected["value"], rtol=1e-7, atol=1e-9)


def test_ensemble_members_on_cuda_equal_their_lone_runs(tmp_path):
    configs = [config("cuda", seed, lr) for seed, lr in [(0, 0.05), (1, 0.02)]]
    runs = train_ensemble(configs, out=tmp_path / "e", run_ids=["a", "b"])
    for configured, run in zip(configs, runs, strict=True):
        lone = train(configured, out=tmp_path / "s", run_id=run.id).metrics()
        assert run.metrics()[["step", "name"]].equals(lone[["step", "name"]])
        pd.testing.assert_series_equal(run.metrics()["value"], lone["value"], rtol=1e-7, atol=1e-9)
