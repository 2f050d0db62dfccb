"""Preconditioned sharpness: the top eigenvalue of P^{-1} H for an adaptive optimiser's diagonal preconditioner P.

An adaptive method steps along P^{-1} (gradient) with a diagonal P > 0 that it keeps in its state. For a frozen P
and the quadratic model of the loss its linear stability is a bound on lambda_1(P^{-1} H), H the Hessian of the
train loss, not on lambda_1(H) (Cohen et al. 2022, "Adaptive gradient methods at the edge of stability",
arXiv 2207.14484, sec. 2; thresholds in `tdlab.theory.adaptive_stability`). P is read from the state of the user's
own `torch.optim` optimiser, exactly as torch's update rules use it (torch 2.x, `_single_tensor_*`):

    Adam, AdamW   denom = sqrt(v) / sqrt(1 - beta2^t) + eps,   theta <- theta - lr / (1 - beta1^t) * m / denom
                  so P = (1 - beta1^t) (sqrt(v_t / (1 - beta2^t)) + eps) and the step is -lr P^{-1} m_t;
                  v = exp_avg_sq, or max_exp_avg_sq (the running maximum of the v's) with amsgrad=True.
    RMSprop       P = sqrt(square_avg) + eps; centered: P = sqrt(square_avg - grad_avg^2) + eps.
    Adagrad       P = sqrt(sum) + eps  (sum includes initial_accumulator_value).

t is the parameter's step count in the state: P is the preconditioner of the step just taken, and the Hessian is
taken at the parameters that step produced. (The preconditioner of the next step would also hold the gradient at
these parameters: the two differ by one update of the moving average, O(1 - beta2) with Adam.) Coupled weight decay
(torch's `weight_decay` of Adam, RMSprop, Adagrad) adds wd theta to the gradient, so the optimiser descends
f + wd/2 |theta|^2, whose Hessian is H + wd I: the probe measures lambda_1(P^{-1} (H + wd I)). AdamW's decoupled
decay leaves H alone and lowers the threshold by a factor 1 - lr wd/2 (used when all groups share wd).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from tdlab.curvature import (
    HessianOperator,
    PreconditionedOperator,
    run_products,
)
from tdlab.oracles import unwrap
from tdlab.probes.base import ProbeContext
from tdlab.probes.curvature import Sharpness, _train_objective
from tdlab.theory.adaptive_stability import (
    adagrad_stability_threshold,
    adam_stability_threshold,
    rmsprop_stability_threshold,
)

SUPPORTED_OPTIMIZERS = ("Adam", "AdamW", "RMSprop", "Adagrad")
"""The `torch.optim` classes (and their subclasses) whose preconditioner the probe reads."""
_KIND = {torch.optim.Adam: "Adam", torch.optim.RMSprop: "RMSprop", torch.optim.Adagrad: "Adagrad"}


class Preconditioner(NamedTuple):
    """The diagonal preconditioner of an adaptive optimiser, flat in the order of the given parameters.

    Attributes:
        diagonal: P, shape (n,), > 0.
        shift: the coupled weight decay of each entry (the optimiser descends f + sum_i shift_i theta_i^2 / 2),
            shape (n,); zeros without weight decay.
        threshold: the largest lambda_1(P^{-1} (H + diag(shift))) at which the optimiser is linearly stable at its
            current lr and momentum (`tdlab.theory.adaptive_stability`).
        optimizer: "Adam", "AdamW", "RMSprop" or "Adagrad".
    """

    diagonal: Tensor
    shift: Tensor
    threshold: float
    optimizer: str


def _kind(optimizer: object) -> str:
    if isinstance(optimizer, torch.optim.AdamW):
        return "AdamW"
    for cls, kind in _KIND.items():
        if isinstance(optimizer, cls):
            return kind
    allowed = ", ".join(f"torch.optim.{name}" for name in SUPPORTED_OPTIMIZERS)
    raise ValueError(f"optimizer: expected one of {allowed}, got {type(optimizer).__name__}")


def _shared(groups: list[Mapping[str, Any]], key: str) -> Any:
    """The value of `key` in all `groups`, or a ValueError when they differ (the threshold needs one value)."""
    values = [tuple(map(float, g[key])) if isinstance(g[key], tuple | list) else float(g[key]) for g in groups]
    if any(v != values[0] for v in values):
        raise ValueError(
            f"optimizer: param_groups differ in {key!r} ({sorted(set(values))}); the preconditioned sharpness has one "
            f"stability threshold only when the groups share lr and momentum (betas)"
        )
    return values[0]


def _adam(state: Mapping[str, Tensor], group: Mapping[str, Any]) -> Tensor:
    """P = (1 - beta1^t) (sqrt(v) / sqrt(1 - beta2^t) + eps), v = exp_avg_sq (max_exp_avg_sq with amsgrad)."""
    t = float(state["step"])
    beta1, beta2 = (float(b) for b in group["betas"])
    v = state["max_exp_avg_sq"] if group["amsgrad"] else state["exp_avg_sq"]
    return (1.0 - beta1**t) * (v.sqrt() / math.sqrt(1.0 - beta2**t) + float(group["eps"]))


def _rmsprop(state: Mapping[str, Tensor], group: Mapping[str, Any]) -> Tensor:
    """P = sqrt(square_avg) + eps; centered: sqrt(square_avg - grad_avg^2) + eps."""
    square_avg = state["square_avg"]
    if group["centered"]:
        square_avg = square_avg - state["grad_avg"] * state["grad_avg"]
    return square_avg.clamp_min(0.0).sqrt() + float(group["eps"])


def _adagrad(state: Mapping[str, Tensor], group: Mapping[str, Any]) -> Tensor:
    """P = sqrt(sum) + eps."""
    return state["sum"].sqrt() + float(group["eps"])


def _decoupled(kind: str, group: Mapping[str, Any]) -> bool:
    """Whether the group's weight decay is decoupled (AdamW, or Adam with decoupled_weight_decay=True)."""
    return kind in ("Adam", "AdamW") and bool(group.get("decoupled_weight_decay", kind == "AdamW"))


_DIAGONALS = {"Adam": _adam, "AdamW": _adam, "RMSprop": _rmsprop, "Adagrad": _adagrad}


def adaptive_preconditioner(
    optimizer: torch.optim.Optimizer, model: nn.Module, names: list[str] | None = None
) -> Preconditioner:
    """The diagonal preconditioner P of a torch Adam, AdamW, RMSprop or Adagrad optimiser, read from its state, flat
    in the order of `names` (default: the model's trainable parameters, the order of `tdlab.Objective.params`;
    names as in the model inside a DataParallel / DistributedDataParallel wrapper), with the coupled weight decay
    and the stability threshold at the optimiser's current lr and momentum.

    Formulas (module docstring): Adam/AdamW P = (1 - beta1^t) (sqrt(v_t / (1 - beta2^t)) + eps), RMSprop
    P = sqrt(square_avg) + eps (centered: sqrt(square_avg - grad_avg^2) + eps), Adagrad P = sqrt(sum) + eps;
    thresholds (2 + 2 beta1)/((1 - beta1) lr) (times 1 - lr wd/2 with AdamW's decoupled decay wd),
    (2 + 2 momentum)/lr, 2/lr_t with Adagrad's lr_t = lr / (1 + (t - 1) lr_decay). Source: Cohen et al. (2022),
    arXiv 2207.14484, sec. 2, and torch.optim's update rules.

    Parameters are matched to the optimiser's `param_groups` by identity. The groups holding them must share lr
    and betas (momentum); eps and weight decay may differ per group.

    Example:
        >>> model = nn.Linear(2, 1)
        >>> opt = torch.optim.Adagrad(model.parameters(), lr=0.5, eps=0.0)
        >>> model(torch.ones(1, 2)).sum().backward(); opt.step()   # gradient 1 everywhere: sum = 1
        >>> pre = adaptive_preconditioner(opt, model)
        >>> pre.diagonal.tolist(), pre.threshold, pre.optimizer
        ([1.0, 1.0, 1.0], 4.0, 'Adagrad')
    """
    if optimizer is None:
        raise ValueError(
            "optimizer: the preconditioned sharpness reads the optimiser's state; pass optimizer= to "
            "ProbeSet.step or ProbeSet.measure (got None)"
        )
    kind = _kind(optimizer)
    parameters = {name: p for name, p in unwrap(model).named_parameters() if p.requires_grad}
    names = list(parameters) if names is None else list(names)
    unknown = [name for name in names if name not in parameters]
    if unknown:
        raise ValueError(f"names: not trainable parameters of the model: {unknown}")
    group_of = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    diagonals, shifts, groups, steps = [], [], [], []
    for name in names:
        p = parameters[name]
        group = group_of.get(id(p))
        if group is None:
            raise ValueError(f"optimizer: parameter {name!r} of the model is not in the optimiser's param_groups")
        if group.get("maximize", False):
            raise ValueError("optimizer: maximize=True ascends the loss; expected maximize=False")
        state = optimizer.state.get(p, {})
        if not state or float(state["step"]) == 0:
            raise ValueError(
                f"optimizer: parameter {name!r} has no {type(optimizer).__name__} state yet (step 0); "
                f"measure after the first optimiser step"
            )
        diagonal = _DIAGONALS[kind](state, group)
        wd = 0.0 if _decoupled(kind, group) else float(group["weight_decay"])
        diagonals.append(diagonal.detach().reshape(-1))
        shifts.append(torch.full_like(diagonals[-1], wd))
        groups.append(group)
        steps.append(float(state["step"]))
    lr = _shared(groups, "lr")
    if kind in ("Adam", "AdamW"):
        beta1, _ = _shared(groups, "betas")
        decays = {float(g["weight_decay"]) if _decoupled(kind, g) else 0.0 for g in groups}
        decay = decays.pop() if len(decays) == 1 else 0.0
        threshold = adam_stability_threshold(lr, beta1, decoupled_weight_decay=decay)
    elif kind == "RMSprop":
        threshold = rmsprop_stability_threshold(lr, _shared(groups, "momentum"))
    else:
        decay = _shared(groups, "lr_decay")
        rates = {lr / (1.0 + (t - 1.0) * decay) for t in steps}
        if len(rates) > 1:
            raise ValueError(
                f"optimizer: Adagrad's step lr / (1 + (t - 1) lr_decay) differs between parameters (steps "
                f"{sorted(set(steps))}); the preconditioned sharpness then has no single threshold"
            )
        threshold = adagrad_stability_threshold(rates.pop())
    return Preconditioner(torch.cat(diagonals), torch.cat(shifts), float(threshold), kind)


class PreconditionedSharpness(Sharpness):
    """Preconditioned sharpness: the top-k eigenvalues of P^{-1} H, H the Hessian of the train loss and P the
    diagonal preconditioner of the training optimiser (Adam, AdamW, RMSprop, Adagrad from `torch.optim`).

    P is read from `ctx.optimizer`'s state (`adaptive_preconditioner`; formulas in the module docstring); with
    coupled weight decay wd, H + wd I replaces H. The eigenvalues of P^{-1} H are those of the symmetric
    P^{-1/2} H P^{-1/2} (`tdlab.curvature.PreconditionedOperator`), computed by Lanczos (`hessian_eigs`),
    warm-started from the previous measurement's eigenvectors (kept in the state), like `Sharpness`. For a frozen
    P the optimiser is linearly stable iff lambda_1(P^{-1} H) is below the threshold of
    `tdlab.theory.adaptive_stability` (Adam: (2 + 2 beta1)/((1 - beta1) lr) = 38/lr at beta1 = 0.9; RMSprop:
    (2 + 2 momentum)/lr; Adagrad: 2/lr); full-batch adaptive methods train at that edge (Cohen et al. 2022,
    "Adaptive gradient methods at the edge of stability", arXiv 2207.14484).

    Metrics: "preconditioned-sharpness" (lambda_1), "preconditioned-sharpness/2" .. "/k",
    "preconditioned-sharpness/threshold" (at the optimiser's current lr and momentum),
    "preconditioned-sharpness/matvecs".

    Cost: "preconditioned-sharpness/matvecs" Hessian-vector products over the train split (or `subset` points),
    as for `Sharpness`; reading P is free. Measure only after the optimiser's first step (there is no P before):
    the probe is not due at step 0, so `ProbeSet.measure(0)` and the trainer's initial measurement skip it.
    A P that is not finite and > 0 (a diverged optimiser) gives NaN eigenvalues, as a diverged Hessian does.

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
        >>> X, y = torch.randn(32, 3), torch.randn(32, 1)
        >>> opt = torch.optim.Adam(model.parameters(), lr=0.01)
        >>> nn.functional.mse_loss(model(X), y).backward(); opt.step()
        >>> ctx = ProbeContext(1, model, nn.MSELoss(), train=(X, y), optimizer=opt)
        >>> metrics = PreconditionedSharpness().measure(ctx)
        >>> round(metrics["preconditioned-sharpness/threshold"], 6)   # 38 / lr
        3800.0
    """

    name = "preconditioned-sharpness"

    def __init__(
        self,
        every: int = 1,
        k: int = 1,
        tol: float = 1e-4,
        max_iter: int | None = None,
        subset: int | None = None,
        seed: int = 0,
        criterion: str = "eigenvalue",
    ):
        super().__init__(every, k, tol, max_iter, subset, seed, criterion)

    def is_due(self, step: int) -> bool:
        """Whether the probe measures at `step`: step % every == 0 and step > 0 (before the first optimiser step
        there is no preconditioner, so a loop's initial measurement skips this probe)."""
        return step > 0 and super().is_due(step)

    def measure(self, ctx: ProbeContext) -> dict[str, float]:
        objective = _train_objective(ctx, self.subset, self.seed)
        pre = adaptive_preconditioner(ctx.optimizer, ctx.model, list(objective.params))
        if not bool(torch.isfinite(pre.diagonal).all()) or not bool((pre.diagonal > 0).all()):
            # a diverged optimiser (inf or NaN second moments; with eps = 0 a zero one): no finite spectrum
            metrics = self._values([math.nan] * self.k)
            metrics[f"{self.name}/matvecs"] = 0.0
        else:
            op = PreconditionedOperator(HessianOperator(objective), pre.diagonal, shift=pre.shift)
            metrics = self.record(run_products(self.eigenpairs(op, ctx.step), op.matvec))
        metrics[f"{self.name}/threshold"] = pre.threshold
        return metrics
