"""Peak memory of a Hessian-vector product when the data streams from a DataLoader, against one full batch.

A causal transformer language model (`tdlab.models.CausalTransformer`, 2 layers, width 64, vocabulary 256) on
N sequences of 64 tokens, float32, CPU. Each configuration runs in a fresh process, which builds the data and the
model, records its resident memory, then takes one `Objective.hvp` and records its peak resident memory
(`ru_maxrss`); the difference is what the product itself needed. With a loader of batch size b the graph of
one batch is alive at a time, so the extra memory should follow b, not N.

    python benchmarks/bench_streaming_memory.py [--examples 256 1024] [--batch 16 64]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

import torch
from rich.console import Console
from rich.table import Table


def measure(examples: int, batch: int | None) -> dict[str, float]:
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from tdlab import Objective
    from tdlab.models import CausalTransformer

    torch.manual_seed(0)
    torch.set_num_threads(2)
    tokens = torch.randint(0, 256, (examples, 65))
    dataset = TensorDataset(tokens[:, :-1], tokens[:, 1:])
    model = CausalTransformer(256, d_model=64, num_heads=4, num_layers=2, max_length=64).eval()

    def loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())

    data = dataset.tensors if batch is None else DataLoader(dataset, batch_size=batch, shuffle=False)
    obj = Objective(model, loss, data)
    v = torch.randn(obj.dim)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    obj.hvp(v)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"before": before, "peak": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--batch", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        examples, batch = int(args.child[0]), None if args.child[1] == "full" else int(args.child[1])
        print(json.dumps(measure(examples, batch)))
        return
    table = Table(title="Peak memory of one Hessian-vector product (MiB above the process before it)")
    for column in ("examples N", "data", "extra MiB", "extra MiB per example"):
        table.add_column(column, justify="right")
    for examples in args.examples:
        for batch in [*args.batch, "full"]:
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(examples), str(batch)],
                capture_output=True,
                text=True,
                check=True,
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            extra = result["peak"] - result["before"]
            label = "one batch of N" if batch == "full" else f"DataLoader, batch {batch}"
            table.add_row(str(examples), label, f"{extra:.0f}", f"{extra / examples:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
