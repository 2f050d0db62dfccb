"""Cost of the curvature oracles and solvers, measured side by side in one run.

(a) Time of one Hessian-vector product (`Objective.hvp`, reverse-over-reverse: the vjp of the gradient) over
    the time of one gradient, on a 40-256-256-128-10 ReLU MLP (110,474 parameters) with a batch of 512 MNIST-1D
    examples, for cross-entropy and MSE; beside it, torch.func's forward-over-reverse product jvp(grad f)(v) as
    the alternative. The target is <= 2.5. In matrix-product flops alone (c_l = in_l * out_l), a gradient costs
    B (2 sum_l c_l + sum_{l>=2} c_l) (forward; backward to weights and, past the first layer, to inputs) and a
    forward-over-reverse HVP B (4 sum_l c_l + 5 sum_{l>=2} c_l) (the tangents of each of those products): a
    ratio of 2.94 for this MLP, printed beside the measurements. Medians of interleaved `torch.utils.benchmark`
    measurements after warm-up, so that a change of load on the machine hits all sides alike.
(b) Hessian-vector products needed for the top eigenvalue to reach 1e-4 (and 1e-6) relative error, against a
    reference converged to tol 1e-10: Lanczos (`hessian_eigs`) against power iteration (`power_iteration`),
    both from the same random start, on the same MLP (float64, cross-entropy) at initialisation and after a
    short full-batch training. Each solver runs once through a recording operator, which gives the error
    after every product: for power iteration the Rayleigh quotient of the current iterate, for Lanczos the top
    Ritz value of the Krylov space spanned so far. The target is 3x fewer products for Lanczos at 1e-4. Also
    shown: the products each solver spends with its default stopping rule (tol 1e-6), and its error then.

    python benchmarks/bench_curvature.py [--device auto] [--dtype float32] [--train-steps 200] [--threads 0]
"""

from __future__ import annotations

import argparse
import statistics

import torch
from rich.console import Console
from rich.table import Table
from torch import Tensor, nn
from torch.func import grad, jvp
from torch.utils.benchmark import Timer

from tdlab import Objective
from tdlab.config import resolve_device
from tdlab.curvature import HessianOperator, LinearOperator, hessian_eigs, power_iteration
from tdlab.data import mnist1d
from tdlab.oracles import unflatten

WIDTHS = (40, 256, 256, 128, 10)
ERRORS = (1e-4, 1e-6)  # relative errors of the top eigenvalue at which products are counted in (b)


def mlp(device: torch.device, dtype: torch.dtype, seed: int = 0) -> nn.Sequential:
    """40-256-256-128-10 ReLU MLP, 110,474 parameters."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(WIDTHS[:-1], WIDTHS[1:], strict=True)):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(WIDTHS) - 2 else [])
    return nn.Sequential(*layers).to(device, dtype)


def batch(device: torch.device, dtype: torch.dtype, loss: str) -> tuple[Tensor, Tensor]:
    """512 MNIST-1D training examples; one-hot targets for MSE."""
    X, y = mnist1d(n_train=512, n_test=10).train
    X, y = X.to(device, dtype), y.to(device)
    if loss == "mse":
        y = nn.functional.one_hot(y, 10).to(dtype)
    return X, y


def loss_fn(loss: str) -> nn.Module:
    return nn.CrossEntropyLoss() if loss == "ce" else nn.MSELoss()


# ------------------------------------------------------------------------------------------- (a) HVP / grad
def matmul_bound(widths: tuple[int, ...] = WIDTHS) -> float:
    """Ratio of matrix-product flops of a forward-over-reverse HVP to a gradient (see the module docstring)."""
    c = [a * b for a, b in zip(widths[:-1], widths[1:], strict=True)]
    return (4 * sum(c) + 5 * sum(c[1:])) / (2 * sum(c) + sum(c[1:]))


def hvp_over_gradient(device: torch.device, dtype: torch.dtype, loss: str, rounds: int) -> dict[str, float]:
    model = mlp(device, dtype)
    obj = Objective(model, loss_fn(loss), batch(device, dtype, loss))
    v = torch.randn(obj.dim, device=device, dtype=dtype)
    v_dict = unflatten(v, obj.params)
    inputs, targets = next(obj.batches())
    gradient = grad(lambda p: obj.loss_fn(obj.outputs(p, inputs), targets))
    timers = {
        "grad": Timer("obj.gradient()", globals={"obj": obj}),
        "hvp": Timer("obj.hvp(v)", globals={"obj": obj, "v": v}),
    }
    try:  # forward-over-reverse has no rule for mse_loss's double backward in torch.func (a ZeroTensor error)
        jvp(gradient, (obj.params,), (v_dict,))
        timers["fr"] = Timer(
            "jvp(gradient, (params,), (v,))[1]",
            globals={"jvp": jvp, "gradient": gradient, "params": obj.params, "v": v_dict},
        )
    except RuntimeError:
        pass
    for timer in timers.values():  # warm-up
        timer.timeit(3)
    samples: dict[str, list[float]] = {name: [] for name in timers}
    for _ in range(rounds):
        for name, timer in timers.items():
            samples[name].append(timer.blocked_autorange(min_run_time=0.2).median)
    times = {name: statistics.median(values) for name, values in samples.items()}
    return times


# --------------------------------------------------------------------------------- (b) Lanczos vs power
class Recording(LinearOperator):
    """Passes products through to `op` and records, after each, the current top eigenvalue estimate."""

    def __init__(self, op: LinearOperator, krylov: bool):
        super().__init__(op.shape, op.dtype, op.device)
        self.op, self.krylov = op, krylov
        self.inputs: list[Tensor] = []
        self.projected = torch.zeros(0, 0, dtype=torch.float64)  # V^T A V over the recorded inputs
        self.estimates: list[float] = []

    def _matvec(self, v: Tensor) -> Tensor:
        w = self.op @ v
        if not self.krylov:  # power iteration: Rayleigh quotient of the (unit) iterate
            self.estimates.append(torch.dot(v, w).item())
            return w
        # Lanczos: Rayleigh-Ritz on span of the inputs so far (orthonormal by construction)
        self.inputs.append(v)
        column = (torch.stack(self.inputs) @ w).double().cpu()
        m = len(self.inputs)
        grown = torch.zeros(m, m, dtype=torch.float64)
        grown[: m - 1, : m - 1] = self.projected
        grown[:, -1], grown[-1, :] = column, column
        self.projected = grown
        ritz = torch.linalg.eigvalsh(grown)
        self.estimates.append(ritz[ritz.abs().argmax()].item())
        return w


def products_to_accuracy(estimates: list[float], reference: float, error: float) -> int | None:
    """First product count after which the estimate is within `error` (relative) of the reference."""
    for i, value in enumerate(estimates):
        if abs(value - reference) <= error * abs(reference):
            return i + 1
    return None


def train(obj: Objective, steps: int, lr: float) -> None:
    """Full-batch gradient descent on the objective's model, in place."""
    for _ in range(steps):
        grads = obj.gradient(obj.params)
        for name, p in obj.params.items():  # views of the model's parameters
            p.sub_(lr * grads[name])


def lanczos_vs_power(device: torch.device, train_steps: int, max_power: int) -> dict:
    """Products to reach each error of ERRORS, and what the solvers' own stopping rules (defaults) spend."""
    model = mlp(device, torch.float64)
    obj = Objective(model, loss_fn("ce"), batch(device, torch.float64, "ce"))
    train(obj, train_steps, lr=0.1)
    op = HessianOperator(obj)
    reference = hessian_eigs(op, k=1, which="LM", tol=1e-10, max_iter=1000)
    if not reference.converged:
        raise RuntimeError("reference eigenvalue did not converge; raise max_iter")
    top = reference.eigenvalues.item()
    start = torch.randn(op.shape[0], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    lanczos, power = Recording(op, krylov=True), Recording(op, krylov=False)
    hessian_eigs(lanczos, k=1, which="LM", tol=1e-9, max_iter=300, v0=start)
    power_iteration(power, tol=1e-10, max_iter=max_power, v0=start)
    counts = {
        error: (products_to_accuracy(lanczos.estimates, top, error), products_to_accuracy(power.estimates, top, error))
        for error in ERRORS
    }
    defaults = {
        "Lanczos": hessian_eigs(op, k=1, which="LM", v0=start),
        "power": power_iteration(op, v0=start),
    }
    stops = {name: (r.num_matvecs, abs(r.eigenvalues.item() - top) / abs(top)) for name, r in defaults.items()}
    return {"loss": obj.value().item(), "top": top, "counts": counts, "stops": stops}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="'auto' (CUDA if available), 'cpu', 'cuda', ...")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="for part (a)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds in part (a)")
    parser.add_argument("--train-steps", type=int, default=200, help="full-batch GD steps (lr 0.1) in (b)")
    parser.add_argument("--max-power", type=int, default=1000, help="most power-iteration products in (b)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    console = Console(width=150)

    table = Table(title=f"(a) time per product, 110k-parameter MLP, batch 512, {args.dtype}, {device}")
    for column in ("loss", "gradient ms", "HVP ms", "HVP / grad", "jvp(grad) / grad"):
        table.add_column(column, justify="right")
    for loss in ("ce", "mse"):
        r = hvp_over_gradient(device, getattr(torch, args.dtype), loss, args.rounds)
        reference = f"{r['fr'] / r['grad']:.2f}" if "fr" in r else "unavailable"
        table.add_row(loss, f"{1e3 * r['grad']:.2f}", f"{1e3 * r['hvp']:.2f}", f"{r['hvp'] / r['grad']:.2f}", reference)
    console.print(table)
    console.print(
        f"target HVP / grad <= 2.5; matrix-product flop ratio of forward-over-reverse: {matmul_bound():.2f}\n"
    )

    table = Table(
        title=f"(b) Hessian-vector products for the top eigenvalue, same MLP, cross-entropy, float64, {device}"
    )
    columns = ["model", "loss", "lambda_max"]
    columns += [f"{name} {e:g}" for e in ERRORS for name in ("Lanczos", "power", "ratio")]
    columns += ["Lanczos default (error)", "power default (error)"]
    for column in columns:
        table.add_column(column, justify="right")
    for steps in (0, args.train_steps):
        r = lanczos_vs_power(device, steps, args.max_power)
        cells = []
        for lanczos, power in r["counts"].values():
            ratio = f"{power / lanczos:.1f}x" if lanczos and power else "n/a"
            cells += [str(lanczos), str(power) if power else f">{args.max_power}", ratio]
        cells += [f"{count} ({error:.1e})" for count, error in r["stops"].values()]
        name = "init" if steps == 0 else f"GD x{steps}"
        table.add_row(name, f"{r['loss']:.3f}", f"{r['top']:.5g}", *cells)
    console.print(table)
    console.print("target: power / Lanczos >= 3 at 1e-4; default stops: tol=1e-6 (Lanczos residual, power change)")


if __name__ == "__main__":
    main()
