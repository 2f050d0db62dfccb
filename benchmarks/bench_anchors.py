"""tdlab against the peers: the cost of the top Hessian eigenvalues at equal accuracy.

For each model and question (the top eigenvalue, the top 10) and each accuracy (1e-2 and 1e-4 relative to a
reference), every tool is given a ladder of its own settings, from loose to tight, and the cheapest setting
(least wall time) whose answer reaches the accuracy is kept:

- tdlab: `hessian_eigs(Objective(model, loss, (X, y)), k)`, Lanczos with full reorthogonalisation; ladders of
  `tol` for its default stopping rule (`criterion="eigenvalue"`) and for `criterion="residual"`.
- tdlab central diff.: the same on `DifferenceHessianOperator(objective)` (products by central differences of
  gradients, through the model's own kernels; smooth losses only: on the ReLU ResNet it reaches neither accuracy).
- PyHessian 0.1: `hessian(model, criterion, data).eigenvalues(top_n=k, tol=..., maxIter=...)`, power iteration
  with deflation on a gradient graph built once; ladder of `tol`.
- curvlinops 3 + SciPy: `scipy.sparse.linalg.eigsh(HessianLinearOperator(...).to_scipy(), k, which="LA",
  tol=...)` (implicitly restarted Lanczos, ARPACK); ladder of `tol`.
- hessian-eigenthings 1.0: `lanczos(HessianOperator(model, [(X, y)], supervised_loss(criterion)), k=k,
  max_iter=..., which="LA", reorthogonalize=True)`; ladder of `max_iter` (its only stopping rule).

The error of an answer is max_i |lambda_i - lambda_i^ref| / |lambda_i^ref| over the k eigenvalues, against a
reference from tdlab on a float64 copy of the model (residual tolerance 1e-10). The models (float32, eval mode,
trained briefly so that the spectrum has its outliers) and data are generated here: a 40-256-256-10 tanh MLP
(78,858 parameters) on 1024 MNIST-1D examples; a ResNet with BatchNorm (stem + 2 residual blocks of 16 channels,
9,690 parameters) on 512 8x8 digits; a 2-layer causal transformer (d_model 64, 4 heads, vocabulary 32, 104,224
parameters) on 64 sequences of 32 tokens (cross-entropy over all positions).

On the transformer every peer fails at its defaults: the fused attention kernel that
`F.scaled_dot_product_attention` picks (flash on the CPU, memory-efficient on CUDA) has no double backward
(PyHessian, hessian-eigenthings) and no forward-mode derivative (curvlinops). tdlab's oracles select the math
kernel for their queries (`tdlab.oracles.objective.differentiable_kernels`); the peers are run inside that same
context here, so that their speed can be compared at all.

The kept settings are then timed again, the tools in alternation for `--rounds` rounds (the median is
reported), so that a change of load on the machine hits every tool alike. Also reported: Hessian-vector products
(counted at each tool's product function) and peak memory above the start (CPU: resident set size sampled every
millisecond; CUDA: `torch.cuda.max_memory_allocated`). Ratios are to tdlab (> 1: the peer is slower).

A second table gives the cost of one Hessian-vector product over a plain `loss.backward()` (forward and backward
pass) on each model: `Objective.hvp` (the gradient's graph built for each product), a product through a kept graph
(`Objective.hvp_function`, what Lanczos uses when the data is one batch in memory), and the two products by
differences of gradients (`DifferenceHessianOperator`: central, two gradient passes; forward, one pass once g(theta)
is known) with the relative error of the top eigenvalue they give (ReLU models: the differences count the jumps
of the gradient at the kinks, and the operator warns).

    python benchmarks/bench_anchors.py [--device auto] [--threads 2] [--models mlp,resnet,transformer] [--rounds 3]
                                       [--tools tdlab,PyHessian,...] [--skip-eigs]

Needs the benchmark extra: `pip install -c constraints.txt -e ".[bench]"`.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import psutil
import scipy.sparse.linalg
import torch
from rich.console import Console
from rich.table import Table
from torch import Tensor, nn
from torch.utils.benchmark import Timer

from tdlab import Objective
from tdlab.config import resolve_device
from tdlab.curvature import DifferenceHessianOperator, hessian_eigs
from tdlab.data import load_dataset, mnist1d
from tdlab.models.resnet import ResNet
from tdlab.models.transformer import CausalTransformer
from tdlab.oracles.objective import differentiable_kernels

ACCURACIES = (1e-2, 1e-4)
QUESTIONS = (1, 10)


# ------------------------------------------------------------------------------------------------- problems
class TokenLoss(nn.Module):
    """Cross-entropy over all positions of (B, T, V) logits and (B, T) targets."""

    reduction = "mean"  # read by curvlinops

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


@dataclass
class Problem:
    name: str
    model: nn.Module
    loss_fn: nn.Module
    X: Tensor
    y: Tensor
    reference: list[float] = field(default_factory=list)
    math_attention: bool = False  # run the peers inside `differentiable_kernels()` (see the module docstring)

    @property
    def size(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def _train(model: nn.Module, loss_fn: nn.Module, X: Tensor, y: Tensor, steps: int, lr: float) -> None:
    """Full-batch Adam for a few steps (train mode), then eval mode."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss_fn(model(X), y).backward()
        optimizer.step()
    model.eval()
    optimizer.zero_grad(set_to_none=True)


def mlp_problem(device: torch.device) -> Problem:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(40, 256), nn.Tanh(), nn.Linear(256, 256), nn.Tanh(), nn.Linear(256, 10))
    X, y = mnist1d(n_train=1024, n_test=10).train
    model, X, y = model.to(device), X.to(device), y.to(device)
    _train(model, nn.CrossEntropyLoss(), X, y, steps=100, lr=1e-3)
    return Problem("MLP 78k", model, nn.CrossEntropyLoss(), X, y)


def resnet_problem(device: torch.device) -> Problem:
    torch.manual_seed(0)
    X, y = load_dataset("digits").train
    X, y = X[:512].reshape(-1, 1, 8, 8), y[:512]
    model = ResNet(1, 10, width=16, num_blocks=2).to(device)
    X, y = X.to(device), y.to(device)
    _train(model, nn.CrossEntropyLoss(), X, y, steps=100, lr=1e-2)
    return Problem("ResNet+BN 10k", model, nn.CrossEntropyLoss(), X, y)


def transformer_problem(device: torch.device) -> Problem:
    torch.manual_seed(0)
    vocab, length, count = 32, 32, 64
    generator = torch.Generator().manual_seed(0)
    start = torch.randint(0, vocab, (count, 1), generator=generator)
    step = torch.randint(1, 4, (count, 1), generator=generator)
    tokens = (start + step * torch.arange(length + 1)) % vocab  # arithmetic sequences: learnable in context
    X, y = tokens[:, :-1].to(device), tokens[:, 1:].to(device)
    model = CausalTransformer(vocab, d_model=64, num_heads=4, num_layers=2, max_length=length).to(device)
    _train(model, TokenLoss(), X, y, steps=100, lr=3e-3)
    return Problem("Transformer 2L", model, TokenLoss(), X, y, math_attention=True)


PROBLEMS: dict[str, Callable[[torch.device], Problem]] = {
    "mlp": mlp_problem,
    "resnet": resnet_problem,
    "transformer": transformer_problem,
}


def reference_eigenvalues(problem: Problem, k: int) -> list[float]:
    """Top-k eigenvalues of the Hessian of a float64 copy of the model, Lanczos to residual 1e-10."""
    model = copy.deepcopy(problem.model).double()
    X = problem.X.double() if problem.X.is_floating_point() else problem.X
    obj = Objective(model, problem.loss_fn, (X, problem.y))
    result = hessian_eigs(obj, k=k, which="LA", tol=1e-10, max_iter=1000)
    if not result.converged:
        raise RuntimeError(f"{problem.name}: the reference did not converge")
    return result.eigenvalues.tolist()


# ------------------------------------------------------------------------------------------------- the tools
@dataclass
class Answer:
    eigenvalues: list[float]
    products: int


def run_tdlab(problem: Problem, k: int, setting: tuple[str, float]) -> Answer:
    criterion, tol = setting
    obj = Objective(problem.model, problem.loss_fn, (problem.X, problem.y))
    result = hessian_eigs(obj, k=k, which="LA", tol=tol, criterion=criterion, max_iter=1000)
    return Answer(result.eigenvalues.tolist(), result.num_matvecs)


def run_tdlab_central(problem: Problem, k: int, setting: tuple[str, float]) -> Answer:
    """tdlab's Lanczos on products by central differences of gradients (`DifferenceHessianOperator`)."""
    criterion, tol = setting
    op = DifferenceHessianOperator(Objective(problem.model, problem.loss_fn, (problem.X, problem.y)))
    result = hessian_eigs(op, k=k, which="LA", tol=tol, criterion=criterion, max_iter=1000)
    return Answer(result.eigenvalues.tolist(), result.num_matvecs)


def run_pyhessian(problem: Problem, k: int, tol: float) -> Answer:
    import pyhessian  # noqa: F401  (the package's __init__ shadows its module `hessian` with the class)

    ph = sys.modules["pyhessian.hessian"]

    count = [0]
    product = ph.hessian_vector_product

    def counted(*args: object) -> object:
        count[0] += 1
        return product(*args)

    ph.hessian_vector_product = counted
    try:
        torch.manual_seed(0)
        h = ph.hessian(problem.model, problem.loss_fn, data=(problem.X, problem.y), cuda=problem.X.is_cuda)
        values, _ = h.eigenvalues(maxIter=300, tol=tol, top_n=k)
    finally:
        ph.hessian_vector_product = product
        problem.model.zero_grad(set_to_none=True)  # PyHessian leaves .grad with its graph attached
    return Answer(sorted(values, reverse=True), count[0])


def run_curvlinops(problem: Problem, k: int, tol: float) -> Answer:
    from curvlinops import HessianLinearOperator

    params = [p for p in problem.model.parameters() if p.requires_grad]
    H = HessianLinearOperator(
        problem.model, problem.loss_fn, params, [(problem.X, problem.y)], check_deterministic=False
    ).to_scipy()
    count = [0]

    def matmat(V: np.ndarray) -> np.ndarray:
        count[0] += 1 if V.ndim == 1 else V.shape[1]
        return H @ V

    counted = scipy.sparse.linalg.LinearOperator(H.shape, matvec=matmat, matmat=matmat, dtype=H.dtype)
    v0 = np.random.default_rng(0).standard_normal(H.shape[0]).astype(H.dtype)
    values = scipy.sparse.linalg.eigsh(counted, k=k, which="LA", tol=tol, v0=v0, return_eigenvectors=False)
    return Answer(sorted(values.tolist(), reverse=True), count[0])


def run_eigenthings(problem: Problem, k: int, max_iter: int) -> Answer:
    from hessian_eigenthings import HessianOperator, lanczos, supervised_loss

    op = HessianOperator(problem.model, [(problem.X, problem.y)], supervised_loss(problem.loss_fn))
    count = [0]
    product = op.matvec

    def counted(v: Tensor) -> Tensor:
        count[0] += 1
        return product(v)

    op.matvec = counted
    result = lanczos(op, k=k, max_iter=max_iter, which="LA", reorthogonalize=True, seed=0)
    return Answer(sorted(result.eigenvalues.tolist(), reverse=True), count[0])


def peer(run: Callable[[Problem, int, object], Answer]) -> Callable[[Problem, int, object], Answer]:
    """A peer's run, inside `differentiable_kernels()` where the problem asks for it."""

    def wrapped(problem: Problem, k: int, setting: object) -> Answer:
        with differentiable_kernels() if problem.math_attention else contextlib.nullcontext():
            return run(problem, k, setting)

    return wrapped


@dataclass
class Tool:
    name: str
    run: Callable[[Problem, int, object], Answer]
    ladders: Callable[[int, int], list[list[object]]]  # (k, n) -> families of settings, each from loose to tight
    label: Callable[[object], str]


def _tdlab_ladders(k: int, n: int) -> list[list[tuple[str, float]]]:
    return [
        [("eigenvalue", t) for t in (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)],
        [("residual", t) for t in (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 1e-4, 1e-5, 1e-6)],
    ]


TOOLS = [
    Tool("tdlab", run_tdlab, _tdlab_ladders, lambda s: f"{s[0]} tol={s[1]:g}"),
    Tool("tdlab central diff.", run_tdlab_central, _tdlab_ladders, lambda s: f"{s[0]} tol={s[1]:g}"),
    Tool("PyHessian", peer(run_pyhessian), lambda k, n: [[1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6]], lambda s: f"tol={s:g}"),
    Tool(
        "curvlinops+eigsh",
        peer(run_curvlinops),
        lambda k, n: [[1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 0.0]],
        lambda s: f"tol={s:g}",
    ),
    Tool(
        "hessian-eigenthings",
        peer(run_eigenthings),
        lambda k, n: [sorted({min(n - 1, m) for m in (2 * k, 3 * k, 5 * k, 10 * k, 20, 40, 80, 160, 320) if m >= k})],
        lambda s: f"max_iter={s}",
    ),
]


# ------------------------------------------------------------------------------------------------- measuring
class PeakMemory:
    """Peak memory above the level at entry: CUDA allocator statistics, or the process's resident set sampled
    every millisecond by a thread."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.start = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            return self
        self.process = psutil.Process()
        self.start = self.process.memory_info().rss
        self.highest = self.start
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while self.running:
            self.highest = max(self.highest, self.process.memory_info().rss)
            time.sleep(1e-3)

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.start
            return
        self.running = False
        self.thread.join()
        self.peak = max(self.highest, self.process.memory_info().rss) - self.start


def timed(device: torch.device, fn: Callable[[], Answer]) -> tuple[Answer, float]:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    answer = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return answer, time.perf_counter() - start


def error(answer: Answer, reference: list[float], k: int) -> float:
    if len(answer.eigenvalues) < k or not all(math.isfinite(v) for v in answer.eigenvalues[:k]):
        return math.inf
    return max(abs(a - r) / abs(r) for a, r in zip(answer.eigenvalues[:k], reference[:k], strict=True))


@dataclass
class Choice:
    setting: object
    error: float
    products: int
    seconds: list[float] = field(default_factory=list)
    memory: int = 0


def cheapest_settings(
    tool: Tool, problem: Problem, k: int, device: torch.device, console: Console
) -> dict[float, Choice | None]:
    """Walk each of the tool's ladders from loose to tight; for each accuracy keep the fastest setting that
    reaches it. A ladder stops once the tightest accuracy is reached (tighter settings only cost more)."""
    best: dict[float, Choice | None] = dict.fromkeys(ACCURACIES)
    for ladder in tool.ladders(k, problem.size):
        for setting in ladder:
            try:
                answer, seconds = timed(device, lambda s=setting: tool.run(problem, k, s))
            except Exception as failure:  # a peer that cannot handle the model is a result, not a crash
                console.print(
                    f"  {tool.name} {tool.label(setting)}: failed ({type(failure).__name__}: {failure})"[:200]
                )
                continue
            err = error(answer, problem.reference, k)
            console.print(
                f"  {tool.name:>19} {tool.label(setting):>20}: {seconds:7.3f} s, {answer.products:5d} products, "
                f"error {err:.1e}"
            )
            for accuracy in ACCURACIES:
                chosen = best[accuracy]
                if err <= accuracy and (chosen is None or seconds < chosen.seconds[0]):
                    best[accuracy] = Choice(setting, err, answer.products, [seconds])
            if err <= min(ACCURACIES):
                break
    return best


def compare(problem: Problem, k: int, tools: list[Tool], device: torch.device, rounds: int, console: Console) -> dict:
    """Cheapest settings per tool and accuracy, then `rounds` alternating timings of them."""
    console.print(f"[bold]{problem.name}[/] ({problem.size:,} parameters), top {k}: ladders")
    choices = {tool.name: cheapest_settings(tool, problem, k, device, console) for tool in tools}
    for accuracy in ACCURACIES:
        for _ in range(rounds):
            for tool in tools:
                choice = choices[tool.name][accuracy]
                if choice is None:
                    continue
                with PeakMemory(device) as memory:
                    _, seconds = timed(device, lambda t=tool, c=choice: t.run(problem, k, c.setting))
                choice.seconds.append(seconds)
                choice.memory = max(choice.memory, memory.peak)
    return choices


def hvp_costs(problem: Problem, device: torch.device, rounds: int) -> dict[str, float]:
    """Median seconds of a plain `loss.backward()`, of `Objective.hvp` (each product builds the gradient's graph
    again), of a product through a kept graph (`Objective.hvp_function`) and of the products by central and
    forward differences of gradients (their steady cost: g(theta) is known after the warm-up), timed in
    alternation; and the relative error of the top eigenvalue by Lanczos on the difference products against the
    exact products' (residual tol 1e-6 both)."""
    model, loss_fn, X, y = problem.model, problem.loss_fn, problem.X, problem.y
    obj = Objective(model, loss_fn, (X, y))
    v = torch.randn(obj.dim, device=device, generator=torch.Generator(device).manual_seed(0))
    kept = obj.hvp_function()
    central, forward = DifferenceHessianOperator(obj), DifferenceHessianOperator(obj, scheme="forward")

    def backward() -> None:
        model.zero_grad(set_to_none=True)
        loss_fn(model(X), y).backward()

    timers = {
        "backward": Timer("backward()", globals={"backward": backward}),
        "hvp": Timer("obj.hvp(v)", globals={"obj": obj, "v": v}),
        "kept": Timer("kept(v)", globals={"kept": kept, "v": v}),
        "central": Timer("central @ v", globals={"central": central, "v": v}),
        "forward": Timer("forward @ v", globals={"forward": forward, "v": v}),
    }
    samples: dict[str, list[float]] = {name: [] for name in timers}
    for timer in timers.values():
        timer.timeit(3)
    for _ in range(rounds):
        for name, timer in timers.items():
            samples[name].append(timer.blocked_autorange(min_run_time=0.3).median)
    model.zero_grad(set_to_none=True)
    costs = {name: statistics.median(values) for name, values in samples.items()}
    top = float(hessian_eigs(obj, k=1, tol=1e-6, criterion="residual").eigenvalues[0])
    for name, op in (("central", central), ("forward", forward)):
        estimate = float(hessian_eigs(op, k=1, tol=1e-6, criterion="residual", max_iter=200).eigenvalues[0])
        costs[f"{name} error"] = abs(estimate - top) / abs(top)
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="'auto' (CUDA if available), 'cpu', 'cuda'")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--models", default="mlp,resnet,transformer", help=f"comma-separated of {list(PROBLEMS)}")
    parser.add_argument("--questions", default="1,10", help="k values: top-k eigenvalues")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds of the kept settings")
    parser.add_argument("--tools", default=",".join(t.name for t in TOOLS), help="comma-separated tools to run")
    parser.add_argument("--skip-eigs", action="store_true", help="only the table of HVP costs")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    # TF32 (cuDNN's default for float32 convolutions) limits every tool to about 1e-3 relative: off, so that
    # 1e-4 is reachable on CUDA.
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    console = Console(width=160)
    questions = [int(k) for k in args.questions.split(",")]
    tools = [tool for tool in TOOLS if tool.name in args.tools.split(",")]
    rows, costs = [], []
    for key in args.models.split(","):
        problem = PROBLEMS[key](device)
        costs.append((problem, hvp_costs(problem, device, args.rounds)))
        if args.skip_eigs:
            continue
        problem.reference = reference_eigenvalues(problem, max(questions))
        console.print(f"{problem.name}: reference top eigenvalues {[f'{v:.6g}' for v in problem.reference]}")
        for k in questions:
            rows.append((problem, k, compare(problem, k, tools, device, args.rounds, console)))

    table = Table(title=f"Cost of one Hessian-vector product, {device}; ratio to a plain loss.backward()")
    products = (
        ("hvp", "Objective.hvp"),
        ("kept", "kept graph"),
        ("central", "central diff."),
        ("forward", "forward diff."),
    )
    error = "top eig. error (central, forward)"
    for column in ("model", "backward ms", *(f"{title} ms (ratio)" for _, title in products), error):
        table.add_column(column, justify="right")
    for problem, cost in costs:
        base = cost["backward"]
        table.add_row(
            problem.name,
            f"{1e3 * base:.2f}",
            *(f"{1e3 * cost[key]:.2f} ({cost[key] / base:.2f}x)" for key, _ in products),
            f"{cost['central error']:.0e}, {cost['forward error']:.0e}",
        )
    console.print(table)
    if args.skip_eigs:
        return

    threads = torch.get_num_threads() if device.type == "cpu" else "-"
    table = Table(
        title=f"Top-k Hessian eigenvalues at equal accuracy, {device}, {threads} threads; ratio = time / tdlab's"
    )
    for column in ("model", "k", "accuracy", *(tool.name for tool in tools)):
        table.add_column(column, justify="right")
    for problem, k, choices in rows:
        for accuracy in ACCURACIES:
            base = choices["tdlab"][accuracy]
            base_time = statistics.median(base.seconds[1:] or base.seconds) if base else None
            cells = []
            for tool in tools:
                choice = choices[tool.name][accuracy]
                if choice is None:
                    cells.append("not reached")
                    continue
                seconds = statistics.median(choice.seconds[1:] or choice.seconds)
                ratio = f"{seconds / base_time:.2f}x" if base_time else "-"
                cells.append(
                    f"{ratio} {seconds:.2f} s\n{choice.products} HVPs, {choice.memory / 2**20:.0f} MiB\n"
                    f"{tool.label(choice.setting)} (err {choice.error:.0e})"
                )
            table.add_row(problem.name, str(k), f"{accuracy:g}", *cells)
    console.print(table)


if __name__ == "__main__":
    main()
