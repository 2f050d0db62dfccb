"""Worker of `test_distributed.py`: the oracles and curvature of a distributed `Objective`, one rank's view.

Run by the test with `python -m torch.distributed.run --standalone --nproc_per_node 2 distributed_worker.py OUT`
(gloo, CPU, float64). Every rank builds the same model and the same 60 examples, keeps its own shard of unequal
size (rank 0 the first 35, rank 1 the other 25) and queries `Objective(..., distributed=True)`; rank 0 saves the
results of every variant to OUT with `torch.save`. The test computes the same quantities with one process and
the whole data set (`build(variant, None)` and `measure`, imported from here) and compares.
"""

from __future__ import annotations

import os
import sys

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tdlab import Objective
from tdlab.curvature import DifferenceHessianOperator, hessian_density, hessian_eigs, hessian_trace

NUM_EXAMPLES = 60
SHARDS = (slice(0, 35), slice(35, NUM_EXAMPLES))  # unequal on purpose: the weighting by example counts matters
VARIANTS = ("plain", "ddp_loader")


def dataset(variant: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole data set of a variant, the same on every rank (a fixed generator)."""
    g = torch.Generator().manual_seed(123)
    X = torch.randn(NUM_EXAMPLES, 4, generator=g, dtype=torch.float64)
    if variant == "plain":
        return X, torch.randn(NUM_EXAMPLES, 2, generator=g, dtype=torch.float64)
    return X, torch.randint(0, 3, (NUM_EXAMPLES,), generator=g)


def model(variant: str) -> nn.Module:
    """A small tanh MLP in float64, the same on every rank."""
    torch.manual_seed(7)
    outputs = 2 if variant == "plain" else 3
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, outputs)).double()


def build(variant: str, shard: int | None) -> Objective:
    """The objective of a variant on one shard (distributed), or on the whole data set (`shard=None`).

    'plain': a bare model, MSE, the shard as in-memory tensors in chunks of 10;
    'ddp_loader': the model wrapped in `DistributedDataParallel` (when distributed), cross-entropy, the shard
    through a `DataLoader(batch_size=8, shuffle=False)`.
    """
    X, y = dataset(variant)
    net = model(variant)
    if shard is not None:
        X, y = X[SHARDS[shard]], y[SHARDS[shard]]
    if variant == "plain":
        return Objective(net, nn.MSELoss(), (X, y), batch_size=10, distributed=shard is not None)
    if shard is not None:
        net = nn.parallel.DistributedDataParallel(net)
    loader = DataLoader(TensorDataset(X, y), batch_size=8, shuffle=False)
    return Objective(net, nn.CrossEntropyLoss(), loader, distributed=shard is not None)


def measure(obj: Objective) -> dict[str, object]:
    """Every quantity compared by the test, as tensors / numbers / arrays."""
    v = torch.linspace(-1.0, 1.0, obj.dim, dtype=torch.float64).sin()
    theta = {name: p + 0.1 for name, p in obj.params.items()}  # a second point, given as a dict
    value, gradient = obj.value_and_gradient()
    eigs = hessian_eigs(obj, k=3)
    trace = hessian_trace(obj, samples=20, generator=torch.Generator().manual_seed(1))
    blocks = hessian_trace(obj, samples=4, blocks="module")
    density = hessian_density(obj, num_probes=2, lanczos_steps=10)
    return {
        "num_examples": obj.num_examples,
        "value": obj.value(),
        "value_of_pair": value,
        "gradient": obj.gradient(),
        "gradient_of_pair": gradient,
        "hvp": obj.hvp(v),
        "difference_hvp": DifferenceHessianOperator(obj, step=1e-4) @ v,  # rounding / h stays below TOL
        "ggn_vp": obj.ggn_vp(v),
        "value_at_theta": obj.value(theta),
        "hvp_at_theta": obj.hvp(v, theta),
        "ggn_vp_at_theta": obj.ggn_vp(v, theta),
        "eigenvalues": eigs.eigenvalues,
        "eigs_converged": eigs.converged,
        "trace": trace.estimate,
        "trace_std_error": trace.std_error,
        "block_traces": {name: result.estimate for name, result in blocks.items()},
        "density_nodes": torch.from_numpy(density.nodes),
        "density_weights": torch.from_numpy(density.weights),
    }


def main(path: str) -> None:
    torch.distributed.init_process_group("gloo")
    rank = torch.distributed.get_rank()
    if torch.distributed.get_world_size() != len(SHARDS):
        raise SystemExit(f"expected {len(SHARDS)} processes, got {torch.distributed.get_world_size()}")
    results = {variant: measure(build(variant, rank)) for variant in VARIANTS}
    if rank == 0:
        torch.save(results, path)
    torch.distributed.barrier()  # no rank leaves while another still works or writes
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
    # Leave without the interpreter's teardown: now and then (about 1 run in 20 on a loaded 2-core machine) a
    # gloo worker exits during it with "terminate called without an active exception" (SIGABRT), after all its
    # work is done; the results are written and closed by now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
