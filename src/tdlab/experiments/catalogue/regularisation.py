"""regularisation: L2 (weight decay), L1 (sparsity), dropout as a method, and L2 penalty vs decoupled weight decay.

Four measurements, each against its theory:

1. weight decay is ridge: full-batch `torch.optim.SGD(weight_decay=lambda)` on 1/(2n) ||X w - y||^2 converges to
   (X^T X / n + lambda I)^{-1} X^T y / n (`tdlab.theory.least_squares.ridge_primal`);
2. L1 gives sparsity: proximal gradient descent (ISTA, `tdlab.optim.ProximalGD`) along a path of penalties reaches
   the lasso solution (its optimality conditions, `lasso_optimality_violation`) with coefficients exactly 0,
   where ridge shrinks every coefficient but zeroes none;
3. dropout as a method: on `gap_seeds` independent over-parameterised random-features regressions (own data,
   features and masks; the readout trained by full-batch GD through `tdlab.train.fit`, `nn.Dropout` on the
   features), dropout lowers the test error against the same training without it, by a paired one-sided Wilcoxon
   test at level `significance`; and it trains the readout to the marginalised-dropout ridge solution
   (`tdlab.theory.regularisation.dropout_ridge_solution`; Srivastava et al. 2014 Sec. 9.1, Wager et al. 2013):
   the expected dropout gradient is that ridge's gradient, so the iterates averaged over the second half of
   training predict what the closed form predicts;
4. L2 penalty vs decoupled weight decay (Loshchilov & Hutter 2019). With heavy-ball momentum beta the two differ
   in where they converge: SGD on f + lambda'/2 ||w||^2 reaches ridge(lambda'), `tdlab.optim.SGDW` (decay
   (1 - eta lambda') w outside the buffer) reaches the fixed point g + lambda' (1 - beta) w = 0, ridge(lambda'
   (1 - beta)). With Adam the claimed advantage is that decoupled decay makes the decay's effect independent of
   the learning rate. It is measured on the layer where the claim matters, a scale-invariant one (batch
   normalisation after it): there the weight norm settles where decay balances the update's growth, and the
   angular update per step settles at sqrt(2 lambda (1 - beta1) / (1 + beta1)) for a decay lambda per step (L&H's
   form: torch's AdamW with weight_decay = lambda / lr), whatever the learning rate; with the L2 penalty in Adam,
   rescaling the weights by c maps (lr, lambda') to (c lr, lambda' / c^2), so only lr^2 lambda' matters and the
   best lambda' moves as 1 / lr^2. The closed form neglects the radial part of Adam's per-coordinate scaling;
   with batch normalisation (every row of W scale invariant) it held within 3% on seeds 0-3, with a layer norm
   (only W as a whole) the angle was 4-21% above it, the lr-independence unchanged. Adam runs with beta2 = 0.99:
   with torch's 0.999 the second moment remembers 1000 steps, longer than the quick run, and lags the weight norm
   it should track (the L2 runs then spread by 4-12%).

How a wrong implementation or a false claim fails the checks:

- GD with weight decay not ridge (decay applied twice, or after the step): its limit leaves the closed form by far
  more than 1e-6; ISTA with a wrong threshold violates the lasso conditions; a "lasso" without exact zeros fails
  the zero count;
- dropout that does not regularise here (no rescaling at test time, masks also at evaluation, or a setting where
  it does not help) gives no significant paired improvement: p > alpha; non-inverted dropout predicts 1 / (1 - p)
  times too much at test time and a drop rate off by 0.1 moves the closed form's predictions by more than the
  tolerance 0.05 (the distance is measured and printed in the check's detail);
- SGDW that folds the decay into the momentum buffer converges to ridge(lambda') instead of ridge(lambda' (1 -
  beta)) (they are 30-50% apart here), SGD + L2 that did not would miss ridge(lambda');
- a decay coupled to the learning rate (torch's AdamW at a fixed weight_decay) would make the equilibrium angular
  update grow as sqrt(lr), a factor sqrt(10) over the decade of learning rates; an L2 penalty that was not
  divided by sqrt(v) would change the invariant lr^2 lambda' and spread the Adam + L2 runs by factors; both fail
  the 10% ratio checks, and the closed form sqrt(2 lambda (1 - beta1)/(1 + beta1)) fails if the momentum's
  centrifugal term is left out (a factor 4.4) or the decay is not applied once per step.

The closed forms that need the sampled data (ridge, lasso conditions, marginalised dropout) are evaluated in
`measure` beside the measurements; the checks compare rows.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from pydantic import Field, model_validator
from scipy.stats import wilcoxon
from torch import Tensor, nn

from tdlab.config.threads import one_thread
from tdlab.data import half_squared_error
from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.tidy import rows, select, series, table, value
from tdlab.models import LinearModel, RandomFeatures
from tdlab.optim import SGDW, ProximalGD
from tdlab.theory.least_squares import ridge_primal
from tdlab.theory.regularisation import dropout_ridge_solution, lasso_optimality_violation
from tdlab.train.trainer import fit

MOMENTUM_FORMS = ("SGD + L2", "SGDW")
MOMENTUM_TARGETS = ("ridge(lambda')", "ridge(lambda' (1 - beta))")  # lambda' and lambda' (1 - beta)
ADAM_FORMS = ("AdamW", "Adam + L2")  # decay lambda per step; L2 penalty lambda' (lr_min / lr)^2
BETA1 = 0.9  # Adam's first-moment factor (torch's default), in the equilibrium's closed form
BETA2 = 0.99  # a memory of 100 steps, so that sqrt(v) follows ||W|| within the run (0.999: 1000 steps)
ADAM_INPUTS, ADAM_LABEL_NOISE = 20, 0.5
ADAM_INIT = 0.3  # ||W_0|| ~ 0.3 sqrt(units): between the equilibrium norms of the lrs, a short transient


class RegularisationConfig(ExperimentConfig):
    """The shared regression problem and the settings of the four measurements."""

    n: int = Field(100, ge=4, description="training examples of the linear problems")
    d: int = Field(30, ge=2, description="features of the linear problems")
    sparsity: int = Field(5, ge=1, description="nonzero coefficients of the true beta")
    noise: float = Field(0.5, gt=0.0, description="label noise standard deviation")
    ridge_lams: tuple[Annotated[float, Field(gt=0.0)], ...] = Field(
        (0.01, 0.1, 1.0), min_length=1, description="weight decays lambda > 0"
    )
    ridge_steps: int = Field(300, ge=10, description="full-batch GD steps with weight decay")
    lasso_points: int = Field(12, ge=2, description="penalties on the lasso path, lambda_max down to lambda_max/100")
    lasso_steps: int = Field(120, ge=10, description="ISTA steps per penalty (warm started)")
    dropout: float = Field(0.5, gt=0.0, lt=1.0, description="drop probability p")
    gap_seeds: int = Field(8, ge=5, description="independent random-features problems (data, features, masks)")
    gap_n: int = Field(40, ge=2, description="training examples of each random-features regression")
    gap_features: int = Field(100, ge=2, description="random ReLU features (over-parameterised: > gap_n)")
    gap_inputs: int = Field(10, ge=1, description="input dimension of the random-features regression")
    gap_steps: int = Field(600, ge=10, description="full-batch GD steps of the readouts")
    gap_test: int = Field(2000, ge=10, description="test examples of each random-features regression")
    significance: float = Field(0.05, gt=0.0, lt=1.0, description="level alpha of the paired test over problems")
    decay: float = Field(0.5, gt=0.0, description="L2 coefficient lambda' = SGDW's weight_decay, momentum part")
    momentum: float = Field(0.9, gt=0.0, lt=1.0, description="heavy-ball momentum beta of SGD + L2 and SGDW")
    momentum_steps: int = Field(400, ge=10, description="full-batch steps of SGD + L2 and SGDW with momentum")
    adam_lrs: tuple[Annotated[float, Field(gt=0.0)], ...] = Field(
        (3e-3, 1e-2, 3e-2), min_length=2, description="Adam learning rates, increasing (span a decade)"
    )
    adamw_decay: float = Field(
        0.02, gt=0.0, lt=1.0, description="AdamW's decay lambda per step (torch weight_decay = lambda / lr)"
    )
    adam_l2: float = Field(1.0, gt=0.0, description="Adam's L2 coefficient lambda' at the smallest lr")
    adam_steps: int = Field(500, ge=20, description="mini-batch steps of the scale-invariant nets")
    adam_batch: int = Field(32, ge=2, description="mini-batch size of the scale-invariant nets")
    adam_examples: int = Field(512, ge=4, description="training examples of the scale-invariant nets")
    adam_units: int = Field(16, ge=1, description="hidden units of the scale-invariant nets")

    @model_validator(mode="after")
    def _consistent(self) -> RegularisationConfig:
        if self.sparsity > self.d:
            raise ValueError(f"sparsity: expected at most d = {self.d}, got {self.sparsity}")
        if any(b <= a for a, b in zip(self.adam_lrs, self.adam_lrs[1:], strict=False)):
            raise ValueError(f"adam_lrs: expected strictly increasing learning rates, got {self.adam_lrs}")
        if self.adam_batch > self.adam_examples:
            raise ValueError(
                f"adam_batch: expected at most adam_examples = {self.adam_examples}, got {self.adam_batch}"
            )
        return self


def _path(model: nn.Module, optimizer: torch.optim.Optimizer, data: tuple, steps: int) -> np.ndarray:
    """The iterates (steps + 1, d) of the single weight row of `model`, trained by `optimizer` through `fit` on
    1/(2n) ||X w - y||^2 (full batch)."""
    weight = next(model.parameters())
    path = [weight.detach()[0].cpu().numpy().copy()]
    record = lambda *_: path.append(weight.detach()[0].cpu().numpy().copy())  # noqa: E731
    fit(model, half_squared_error, data, optimizer, steps, callbacks=[record])
    return np.array(path)


class _Readouts(nn.Module):
    """Independent linear readouts of S problems' features phi (n, S, F) through one dropout layer: outputs (n, S).

    With `half_squared_error` (summed over the S columns) the loss is the sum of the problems' losses, so SGD takes
    every problem's own full-batch step; the masks are drawn independently for every (example, problem, feature).
    """

    def __init__(self, problems: int, features: int, p: float, dtype: torch.dtype):
        super().__init__()
        self.dropout = nn.Dropout(p)
        self.weight = nn.Parameter(torch.zeros(problems, features, dtype=dtype))

    def forward(self, phi: Tensor) -> Tensor:
        return (self.dropout(phi) * self.weight).sum(dim=-1)


class _ScaleInvariantNets(nn.Module):
    """m copies of x -> BatchNorm(W x) -> ReLU -> fixed readout a, from the same W_0: outputs (batch, m).

    Batch normalisation (training mode, no affine: each hidden unit standardised over the batch) makes every row of
    W, and so W, scale invariant: f(c W) = f(W), the gradient is orthogonal to W and scales as 1/||W||. Only the
    W's are trained. The normalisation is written out (nn.BatchNorm1d's formula) on tensors small enough for torch
    to keep on one thread: its kernel forks threads for any size, which costs milliseconds a step on a busy machine.
    """

    def __init__(self, copies: int, inputs: int, units: int, generator: torch.Generator, scale: float = 1.0):
        super().__init__()
        first = scale * torch.randn(units, inputs, generator=generator) / np.sqrt(inputs)
        self.weights = nn.ParameterList(nn.Parameter(first.clone()) for _ in range(copies))
        self.register_buffer("readout", torch.randn(units, generator=generator) / np.sqrt(units))

    def forward(self, x: Tensor) -> Tensor:
        hidden = nn.functional.linear(x, torch.cat(list(self.weights)))  # (batch, copies * units)
        hidden = (hidden - hidden.mean(dim=0)) / torch.sqrt(hidden.var(dim=0, unbiased=False) + 1e-5)
        return torch.relu(hidden.unflatten(1, (len(self.weights), -1))) @ self.readout


def _logistic(outputs: Tensor, labels: Tensor) -> Tensor:
    """The sum over the copies of each one's mean logistic loss log(1 + exp(-y f)), labels y = +-1."""
    return nn.functional.softplus(-outputs * labels[:, None]).mean(dim=0).sum()


def _neighbour(p: float) -> float:
    """A drop rate 0.1 away from p, inside (0, 1)."""
    return p + 0.1 if p + 0.1 < 1.0 else p - 0.1


def _l2_coefficients(config: RegularisationConfig) -> np.ndarray:
    """Adam's L2 coefficient at each lr: lambda' (lr_min / lr)^2, on the curve lr^2 lambda' = const."""
    lrs = np.asarray(config.adam_lrs)
    return config.adam_l2 * (lrs[0] / lrs) ** 2


def _angular_update(decay: float, beta1: float = BETA1) -> float:
    """The steady-state angle per step of a scale-invariant weight under decoupled decay `decay` per step with
    momentum `beta1`, to leading order in decay: sqrt(2 decay (1 - beta1) / (1 + beta1)).

    The norm settles where the decay's shrinkage 2 decay ||w||^2 balances the growth by the update u (orthogonal to
    w up to its momentum): |u|^2 + 2 w.u, and the momentum's centrifugal term w.u = |u|^2 beta1 / (1 - beta1) (a
    persistent direction) or the same ratio for noise, so |u|^2 / ||w||^2 = 2 decay (1 - beta1) / (1 + beta1); the
    learning rate only sets ||w||.

    Example:
        >>> round(_angular_update(0.02, 0.0), 12)  # no momentum: sqrt(2 lambda)
        0.2
    """
    return float(np.sqrt(2.0 * decay * (1.0 - beta1) / (1.0 + beta1)))


def measure(config: RegularisationConfig, context: Context) -> pd.DataFrame:
    """Rows (see the module docstring): "weight_decay/weights" and "ridge/weights" (lam, index), "ridge/path" on a
    fine grid of lam; "lasso/weights" and "lasso_optimality_violation" along the lasso path; "beta" (index);
    "dropout/train_mse", "dropout/test_mse" (model: plain, dropout, marginalised; problem),
    "dropout/prediction_distance" and "dropout/rate_sensitivity" (problem); "momentum/distance" (optimizer, target,
    step); "adam/angle" and "adam/norm" (form, lr, step). On one CPU thread (`tdlab.config.threads.one_thread`): every
    tensor here is small, and a second thread only waits (Adam's part: 10 s on 2 busy threads, 1.7 s on one)."""
    with one_thread():
        return _measure(config, context.device)


def _measure(config: RegularisationConfig, device: torch.device) -> pd.DataFrame:
    dtype = torch.float64
    generator = torch.Generator().manual_seed(config.seed)
    n, d = config.n, config.d
    X = torch.randn(n, d, generator=generator, dtype=dtype)
    beta = torch.zeros(d, dtype=dtype)
    support = torch.randperm(d, generator=generator)[: config.sparsity]
    beta[support] = torch.randn(config.sparsity, generator=generator, dtype=dtype)
    y = X @ beta + config.noise * torch.randn(n, generator=generator, dtype=dtype)
    Xs, ys = (X / np.sqrt(n)).numpy(), (y / np.sqrt(n)).numpy()  # 1/(2n)||Xw - y||^2 = 1/2 ||Xs w - ys||^2
    X, data = X.to(device), (X.to(device), y[:, None].to(device))
    s2_max = float(np.linalg.eigvalsh(Xs.T @ Xs).max())
    index = np.arange(d)
    frames = [rows("beta", beta.numpy(), index=index)]

    # 1. weight decay = ridge, on a fine grid for the figure
    eta = 1.0 / (s2_max + max(config.ridge_lams))
    fine = np.geomspace(min(config.ridge_lams) / 10, max(config.ridge_lams) * 100, 120)
    frames.append(rows("weight_decay/lr", eta))
    for lam in config.ridge_lams:
        model = LinearModel(d, 1, bias=False).to(X)
        w = _path(model, torch.optim.SGD(model.parameters(), eta, weight_decay=lam), data, config.ridge_steps)[-1]
        frames += [
            rows("weight_decay/weights", w, lam=lam, index=index),
            rows("ridge/weights", ridge_primal(Xs, ys, lam), lam=lam, index=index),
        ]
    frames += [rows("ridge/path", ridge_primal(Xs, ys, lam), lam=lam, index=index) for lam in fine]

    # 2. L1: ISTA along the lasso path (warm starts)
    lam_max = float(np.abs(Xs.T @ ys).max())
    model = LinearModel(d, 1, bias=False).to(X)
    ista = ProximalGD(model.parameters(), lr=1.0 / s2_max, l1=lam_max)
    for lam in lam_max * np.geomspace(1.0, 0.01, config.lasso_points):
        ista.param_groups[0]["l1"] = float(lam)
        w = _path(model, ista, data, config.lasso_steps)[-1]
        frames += [
            rows("lasso/weights", w, lam=lam, index=index),
            rows("lasso_optimality_violation", lasso_optimality_violation(Xs, ys, w, float(lam)), lam=lam),
        ]

    # 3. dropout as a method, on independent problems; 4. L2 penalty vs decoupled decay
    frames += [
        _dropout(config, device, generator),
        _momentum(config, data, Xs, ys, s2_max),
        _adam(config, device, generator),
    ]
    return pd.concat(frames, ignore_index=True)


def _dropout(config: RegularisationConfig, device: torch.device, generator: torch.Generator) -> pd.DataFrame:
    """`gap_seeds` random-features regressions (own inputs, teacher, noise and features), their readouts trained
    with and without dropout by full-batch GD (the same steps); train and test MSE of the last iterates and of the
    marginalised-dropout ridge solution, the relative distance of the test predictions of the dropout iterates
    averaged over the second half from the closed form's, and that of the closed form at a drop rate 0.1 away."""
    dtype, S, n, k = torch.float64, config.gap_seeds, config.gap_n, config.gap_inputs
    train, test = [], []  # per problem: (features, targets)
    for _ in range(S):
        inputs = [torch.randn(m, k, generator=generator, dtype=dtype) for m in (n, config.gap_test)]
        teacher = torch.randn(k, generator=generator, dtype=dtype) / np.sqrt(k)
        features = RandomFeatures(k, config.gap_features, 1, seed=generator).to(dtype=dtype)
        for split, x in zip((train, test), inputs, strict=True):
            noise = config.noise * torch.randn(len(x), generator=generator, dtype=dtype)
            split.append((features.features(x), x @ teacher + noise))
    phi, y = (torch.stack(column, dim=1).to(device) for column in zip(*train, strict=True))  # (n, S, F), (n, S)
    phi_test, y_test = (torch.stack(column, dim=1).to(device) for column in zip(*test, strict=True))
    lr = 1.0 / max(float(torch.linalg.eigvalsh(phi[:, s].T @ phi[:, s] / n).max()) for s in range(S))
    weights, averaged = {}, torch.zeros(S, config.gap_features, dtype=dtype, device=device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)  # nn.Dropout draws its masks from the global generator
        for label, p in (("plain", 0.0), ("dropout", config.dropout)):
            model = _Readouts(S, config.gap_features, p, dtype).to(device)

            def average(step: int, _: float, model: nn.Module = model, p: float = p) -> None:
                if p > 0 and step > config.gap_steps // 2:
                    averaged.add_(model.weight.detach(), alpha=1.0 / (config.gap_steps - config.gap_steps // 2))

            fit(
                model,
                half_squared_error,
                (phi, y),
                torch.optim.SGD(model.parameters(), lr),
                config.gap_steps,
                callbacks=[average],
            )
            weights[label] = model.weight.detach()

    def marginalised(p: float) -> Tensor:
        scale = np.sqrt(n)
        solutions = [
            dropout_ridge_solution((phi[:, s] / scale).cpu().numpy(), (y[:, s] / scale).cpu().numpy(), p)
            for s in range(S)
        ]
        return torch.tensor(np.stack(solutions), dtype=dtype, device=device)

    weights["marginalised"] = marginalised(config.dropout)

    def predict(features: Tensor, w: Tensor) -> Tensor:
        return torch.einsum("nsf,sf->ns", features, w)

    def distance(w: Tensor) -> np.ndarray:
        reference = predict(phi_test, weights["marginalised"])
        gap = torch.linalg.vector_norm(predict(phi_test, w) - reference, dim=0)
        return (gap / torch.linalg.vector_norm(reference, dim=0)).cpu().numpy()

    problems, frames = np.arange(S), []
    for label, w in weights.items():
        for split, (features, target) in (("train", (phi, y)), ("test", (phi_test, y_test))):
            mse = ((predict(features, w) - target) ** 2).mean(dim=0).cpu().numpy()
            frames.append(rows(f"dropout/{split}_mse", mse, model=label, problem=problems))
    frames += [
        rows("dropout/lr", lr),
        rows("dropout/prediction_distance", distance(averaged), problem=problems),
        rows("dropout/rate_sensitivity", distance(marginalised(_neighbour(config.dropout))), problem=problems),
    ]
    return pd.concat(frames)


def _momentum(config: RegularisationConfig, data: tuple, Xs: np.ndarray, ys: np.ndarray, s2_max: float) -> pd.DataFrame:
    """Full-batch SGD with momentum and an L2 penalty, and SGDW, from 0 with lr 1/(s_max^2 + lambda'): the
    relative distance of every iterate to ridge(lambda') and to ridge(lambda' (1 - beta))."""
    lam, beta, lr = config.decay, config.momentum, 1.0 / (s2_max + config.decay)
    targets = dict(
        zip(MOMENTUM_TARGETS, (ridge_primal(Xs, ys, lam), ridge_primal(Xs, ys, lam * (1 - beta))), strict=True)
    )
    steps, frames = np.arange(config.momentum_steps + 1), []
    for form, cls in zip(MOMENTUM_FORMS, (torch.optim.SGD, SGDW), strict=True):
        model = LinearModel(Xs.shape[1], 1, bias=False).to(data[0])
        path = _path(
            model, cls(model.parameters(), lr=lr, momentum=beta, weight_decay=lam), data, config.momentum_steps
        )
        for target, w in targets.items():
            distance = np.linalg.norm(path - w, axis=1) / np.linalg.norm(w)
            frames.append(rows("momentum/distance", distance, optimizer=form, target=target, step=steps))
    return pd.concat(frames)


def _adam(config: RegularisationConfig, device: torch.device, generator: torch.Generator) -> pd.DataFrame:
    """Scale-invariant nets trained by Adam on noisy teacher labels (the same mini-batches), one per (form, lr):
    decoupled decay lambda per step (torch's `decoupled_weight_decay`, i.e. AdamW, with weight_decay = lambda / lr)
    and an L2 penalty lambda' (lr_min / lr)^2 (`weight_decay` of plain Adam); the angle between consecutive W
    ("adam/angle", steps 1..T) and ||W|| ("adam/norm", steps 0..T)."""
    x = torch.randn(config.adam_examples, ADAM_INPUTS, generator=generator)
    teacher = torch.randn(ADAM_INPUTS, generator=generator)
    labels = torch.sign(
        x @ teacher + ADAM_LABEL_NOISE * np.sqrt(ADAM_INPUTS) * torch.randn(len(x), generator=generator)
    )
    lrs, runs = config.adam_lrs, len(config.adam_lrs)
    model = _ScaleInvariantNets(2 * runs, ADAM_INPUTS, config.adam_units, generator, ADAM_INIT).to(device)
    decoupled = [
        {"params": [w], "lr": lr, "weight_decay": config.adamw_decay / lr, "decoupled_weight_decay": True}
        for w, lr in zip(model.weights[:runs], lrs, strict=True)
    ]
    coupled = [
        {"params": [w], "lr": lr, "weight_decay": float(l2)}
        for w, lr, l2 in zip(model.weights[runs:], lrs, _l2_coefficients(config), strict=True)
    ]
    optimizer = torch.optim.Adam(decoupled + coupled, betas=(BETA1, BETA2))
    path = [torch.stack([w.detach().flatten() for w in model.weights])]
    record = lambda *_: path.append(torch.stack([w.detach().flatten() for w in model.weights]))  # noqa: E731
    fit(
        model,
        _logistic,
        (x.to(device), labels.to(device)),
        optimizer,
        config.adam_steps,
        batch_size=config.adam_batch,
        batch_order="replacement",
        seed=config.seed,
        callbacks=[record],
    )
    W = torch.stack(path).double()  # (steps + 1, copies, parameters)
    norms = torch.linalg.vector_norm(W, dim=-1)
    cosine = (W[1:] * W[:-1]).sum(-1) / (norms[1:] * norms[:-1])
    angles = torch.arccos(cosine.clamp(-1.0, 1.0)).cpu().numpy()
    form = np.repeat(ADAM_FORMS, runs)
    lr = np.tile(lrs, 2)
    steps = np.arange(config.adam_steps + 1)
    return pd.concat(
        [
            rows("adam/angle", angles, form=form, lr=lr, step=steps[1:, None]),
            rows("adam/norm", norms.cpu().numpy(), form=form, lr=lr, step=steps[:, None]),
        ]
    )


def _mse(metrics: pd.DataFrame) -> pd.DataFrame:
    """Train and test MSE per problem (rows) and "{split}_{model}" (columns)."""
    columns = {
        f"{split}_{model}": series(metrics, f"dropout/{split}_mse", "problem", model=model)[1]
        for split in ("train", "test")
        for model in ("plain", "dropout", "marginalised")
    }
    return pd.DataFrame(columns)


def _equilibrium(metrics: pd.DataFrame, config: RegularisationConfig, form: str) -> np.ndarray:
    """The mean angle per step over the second half of training, one per learning rate (increasing)."""
    angles = select(metrics, "adam/angle", form=form)
    late = angles[angles["step"] > config.adam_steps // 2]
    return late.groupby("lr")["value"].mean().sort_index().to_numpy()


def _spread(values: np.ndarray) -> float:
    return float(values.max() / values.min())


def checks(metrics: pd.DataFrame, config: RegularisationConfig) -> list[Check]:
    """Ten checks (module docstring): ridge, lasso and exact zeros; dropout over problems; the momentum limits; the
    scale-invariant equilibria under Adam."""
    gd, ridge = table(metrics, "weight_decay/weights", "lam"), table(metrics, "ridge/weights", "lam")
    distances = np.linalg.norm(gd - ridge, axis=1) / np.linalg.norm(ridge, axis=1)
    eta = value(metrics, "weight_decay/lr")
    lasso = table(metrics, "lasso/weights", "lam").iloc[::-1]  # lambda_max first
    violations = select(metrics, "lasso_optimality_violation")["value"]
    middle = len(lasso) // 2
    lasso_zeros, ridge_zeros = int((lasso.iloc[middle] == 0).sum()), int((gd.to_numpy() == 0).sum())
    n, d = config.n, config.d
    return [
        Check.at_most(
            "GD with weight decay lambda vs ridge (X^T X/n + lambda I)^-1 X^T y/n, worst relative distance",
            float(distances.max()),
            1e-6,
            detail=f"torch.optim.SGD(lr = {eta:.3g}, weight_decay = lambda) full batch, {config.ridge_steps} steps, "
            f"lambda in {list(config.ridge_lams)}, n = {n}, d = {d}; tolerance 1e-6 from the issue",
        ),
        Check.at_most(
            "ISTA limit vs the lasso optimality conditions (|grad_j| <= lambda at 0, = lambda otherwise), worst",
            float(violations.max()),
            1e-6,
            detail=f"tdlab.optim.ProximalGD(lr = 1/s_max^2), {config.lasso_steps} steps per lambda, "
            f"{config.lasso_points} lambdas from lambda_max = {lasso.index[0]:.3g} down to lambda_max/100 (warm "
            "starts); gradient of 1/(2n)||Xw - y||^2; tolerance 1e-6 as for the ridge check",
        ),
        Check.holds(
            "L1 sets coefficients exactly to zero, L2 does not",
            lasso_zeros > 0 and ridge_zeros == 0,
            detail=f"lasso at lambda = {lasso.index[middle]:.3g}: {lasso_zeros} of {d} coefficients exactly 0 (true "
            f"support {config.sparsity}); GD with weight decay: {ridge_zeros} zeros over {len(config.ridge_lams)} "
            "lambdas",
            measured=float(lasso_zeros),
        ),
        *_dropout_checks(metrics, config),
        *_decay_checks(metrics, config),
    ]


def _dropout_checks(metrics: pd.DataFrame, config: RegularisationConfig) -> list[Check]:
    mse, alpha, S = _mse(metrics), config.significance, config.gap_seeds
    p_value = float(wilcoxon(mse["test_dropout"], mse["test_plain"], alternative="less", method="exact").pvalue)
    better = int((mse["test_dropout"] < mse["test_plain"]).sum())
    distance = float(np.median(series(metrics, "dropout/prediction_distance", "problem")[1]))
    sensitivity = float(np.median(series(metrics, "dropout/rate_sensitivity", "problem")[1]))
    gap = {m: float((mse[f"test_{m}"] - mse[f"train_{m}"]).mean()) for m in ("plain", "dropout")}
    return [
        Check.at_most(
            f"dropout lowers the test error: paired one-sided Wilcoxon p-value over {S} problems (alpha = {alpha:g})",
            p_value,
            alpha,
            detail=f"test MSE with nn.Dropout(p = {config.dropout:g}) on the features {mse['test_dropout'].mean():.3g} "
            f"against {mse['test_plain'].mean():.3g} without (mean over problems; dropout better on {better} of {S}; "
            f"train/test gap {gap['dropout']:.3g} against {gap['plain']:.3g}); each problem: n = {config.gap_n}, "
            f"{config.gap_features} random ReLU features, noise {config.noise:g}, {config.gap_steps} full-batch GD "
            "steps from 0 for both; exact Wilcoxon signed-rank test; fails when dropout does not help on most problems",
        ),
        Check.at_most(
            "dropout GD vs the marginalised-dropout ridge closed form: median relative distance of test predictions",
            distance,
            0.05,
            detail="iterates averaged over the second half (the expected dropout gradient is the gradient of ridge "
            f"with penalty p/(1-p) diag(Phi^T Phi / n)); the closed form at a drop rate "
            f"{_neighbour(config.dropout):g} instead of {config.dropout:g} is {sensitivity:.3f} away, non-inverted "
            f"dropout would predict 1/(1-p) = {1 / (1 - config.dropout):.3g} times too much: tolerance 0.05",
        ),
    ]


def _decay_checks(metrics: pd.DataFrame, config: RegularisationConfig) -> list[Check]:
    def final(optimizer: str, target: str) -> float:
        return float(series(metrics, "momentum/distance", optimizer=optimizer, target=target)[1][-1])

    lam, beta = config.decay, config.momentum
    plain, shifted = MOMENTUM_TARGETS
    decoupled, coupled = (_equilibrium(metrics, config, form) for form in ADAM_FORMS)
    theory = _angular_update(config.adamw_decay)
    ratios = decoupled / theory
    worst = float(ratios[np.argmax(np.abs(ratios - 1.0))])
    lrs = ", ".join(f"{lr:g}" for lr in config.adam_lrs)
    l2s = ", ".join(f"{c:.3g}" for c in _l2_coefficients(config))
    return [
        Check.at_most(
            f"SGD + momentum {beta:g} with an L2 penalty lambda' converges to ridge(lambda'), relative distance",
            final("SGD + L2", plain),
            1e-6,
            detail=f"lambda' = {lam:g}, full batch, {config.momentum_steps} steps; the L2 gradient enters the buffer, "
            f"so the fixed point is grad f + lambda' w = 0; its distance to ridge(lambda' (1 - beta)): "
            f"{final('SGD + L2', shifted):.3g}",
        ),
        Check.at_most(
            f"SGDW (momentum {beta:g}, decay lambda') converges to ridge(lambda' (1 - beta)), relative distance",
            final("SGDW", shifted),
            1e-6,
            detail=f"fixed point of b = beta b + g, w = (1 - eta lambda') w - eta b: g = -lambda' (1 - beta) w "
            f"(Loshchilov & Hutter's Prop. 1 equivalence lambda = eta lambda' holds without momentum only); its "
            f"distance to ridge(lambda'): {final('SGDW', plain):.3g}; a decay folded into the buffer "
            "would converge there",
        ),
        Check.relative(
            "AdamW on a scale-invariant layer: equilibrium angular update / sqrt(2 lambda (1 - beta1)/(1 + beta1)), "
            "worst over the lrs",
            worst,
            1.0,
            0.1,
            detail=f"decay lambda = {config.adamw_decay:g} per step (torch weight_decay = lambda / lr), beta1 = "
            f"{BETA1:g}, lrs {lrs}: mean angle between consecutive W over the second half of {config.adam_steps} "
            f"steps {', '.join(f'{a:.4f}' for a in decoupled)} against {theory:.4f}; leading order in lambda, "
            "tolerance 0.1 (without the momentum term the theory would be 4.4 times larger)",
        ),
        Check.relative(
            "AdamW: the equilibrium angular update does not depend on the lr, max/min over the lrs",
            _spread(decoupled),
            1.0,
            0.1,
            detail=f"lrs {lrs} at one decay per step (Loshchilov & Hutter: decoupling the decay from the lr); a "
            f"decay coupled to the lr (torch's AdamW at a fixed weight_decay) would spread it as sqrt(lr), "
            f"{np.sqrt(config.adam_lrs[-1] / config.adam_lrs[0]):.2f}",
        ),
        Check.relative(
            "Adam + L2 on the same layer: equilibrium angular update constant along lr^2 lambda' = const, max/min",
            _spread(coupled),
            1.0,
            0.1,
            detail=f"lambda' = {l2s} at lrs {lrs}: angles {', '.join(f'{a:.4f}' for a in coupled)}; W -> c W maps "
            "(lr, lambda') to (c lr, lambda'/c^2), so the L2 coefficient that keeps the dynamics moves as 1/lr^2 "
            "(at a fixed lambda' the angle grows as (lr^2 lambda')^(1/3)): the coupling AdamW removes",
        ),
    ]


def figures(metrics: pd.DataFrame, config: RegularisationConfig) -> dict[str, Figure]:
    """Ridge and lasso paths; dropout over problems; the momentum limits and the scale-invariant equilibria."""
    return {
        "l2_and_l1": _paths_figure(metrics, config),
        "dropout": _dropout_figure(metrics, config),
        "weight_decay_forms": _decay_figure(metrics, config),
    }


def _paths_figure(metrics: pd.DataFrame, config: RegularisationConfig) -> Figure:
    fig = Figure(figsize=(12.0, 4.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    exact, lasso, gd = (table(metrics, k, "lam") for k in ("ridge/path", "lasso/weights", "weight_decay/weights"))
    true = list(select(metrics, "beta").query("value != 0")["index"])
    for j in exact.columns:
        color = f"C{true.index(j)}" if j in true else "0.75"
        left.semilogx(exact.index, exact[j], "-", color=color, lw=1.0)
        right.semilogx(lasso.index, lasso[j], ".-", color=color, lw=1.0, ms=4)
    for k, (lam, w) in enumerate(gd.iterrows()):
        label = "GD with weight decay" if k == 0 else None
        left.semilogx(np.full(len(w), lam), w, "o", color="k", ms=4, mfc="none", label=label)
    left.plot([], [], "-", color="0.3", label="ridge closed form")
    left.set(xlabel=r"$\lambda$", ylabel="coefficient", title="L2: every coefficient shrinks smoothly, none is 0")
    left.legend(fontsize=8)
    twin = right.twinx()
    twin.semilogx(lasso.index, (lasso == 0).sum(axis=1), "s--", color="C3", ms=4, mfc="none", lw=0.8)
    twin.set_ylabel("coefficients exactly 0", color="C3")
    right.plot([], [], "-", color="C0", label="true support (colours)")
    right.plot([], [], "-", color="0.75", label="other coefficients")
    right.plot([], [], "s--", color="C3", mfc="none", label="number of exact zeros")
    right.set(xlabel=r"$\lambda$ (ISTA, warm started)", ylabel="coefficient", title="L1: coefficients hit exactly 0")
    right.legend(fontsize=8, loc="lower right")
    fig.suptitle(
        f"Regularisation paths on a sparse problem (n = {config.n}, d = {config.d}, {config.sparsity} true nonzeros)"
    )
    return fig


def _dropout_figure(metrics: pd.DataFrame, config: RegularisationConfig) -> Figure:
    fig = Figure(figsize=(12.0, 4.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    mse, keys = _mse(metrics), ("plain", "dropout", "marginalised")
    for k, (_, problem) in enumerate(mse.iterrows()):
        left.plot(
            [0, 1],
            [problem["test_plain"], problem["test_dropout"]],
            "o-",
            color="0.6",
            lw=0.8,
            ms=4,
            label="one problem: without / with dropout" if k == 0 else None,
        )
        left.plot(
            [1.15],
            [problem["test_marginalised"]],
            "x",
            color="C2",
            ms=5,
            label="marginalised-dropout ridge" if k == 0 else None,
        )
    left.axhline(config.noise**2, color="0.5", ls=":", label=r"noise $\sigma^2$")
    left.set_xticks([0, 1], ["no dropout", f"dropout p = {config.dropout:g}"])
    left.set_xlim(-0.3, 1.4)
    left.set_ylabel("test MSE")
    p_value = _dropout_checks(metrics, config)[0].measured
    left.set_title(f"{config.gap_seeds} independent problems: paired Wilcoxon p = {p_value:.2g}")
    left.legend(fontsize=8)
    x = np.arange(3)
    train, test = ([mse[f"{split}_{k}"].mean() for k in keys] for split in ("train", "test"))
    right.bar(x - 0.2, train, width=0.4, color="C0", label="train MSE")
    right.bar(x + 0.2, test, width=0.4, color="C1", label="test MSE")
    for k in range(3):
        right.annotate(
            "", xy=(k + 0.2, test[k]), xytext=(k + 0.2, train[k]), arrowprops={"arrowstyle": "<->", "lw": 0.8}
        )
        right.text(
            k + 0.25,
            (train[k] + test[k]) / 2,
            f"gap {test[k] - train[k]:.2f}",
            fontsize=8,
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.0},
        )
    right.axhline(config.noise**2, color="0.5", ls=":", label=r"noise $\sigma^2$")
    right.set_xticks(x, ["no dropout", f"dropout p = {config.dropout:g}", "marginalised\n(ridge closed form)"])
    right.set_ylabel("mean squared error (mean over problems)")
    right.set_title(f"n = {config.gap_n}, {config.gap_features} random features: dropout shrinks the gap", fontsize=10)
    right.legend(fontsize=8)
    return fig


def _decay_figure(metrics: pd.DataFrame, config: RegularisationConfig) -> Figure:
    fig = Figure(figsize=(16.0, 4.6), layout="constrained")
    left, middle, right = fig.subplots(1, 3)
    for form, color in zip(MOMENTUM_FORMS, ("C0", "C3"), strict=True):
        for target, ls in zip(MOMENTUM_TARGETS, ("-", "--"), strict=True):
            steps, distance = series(metrics, "momentum/distance", optimizer=form, target=target)
            left.semilogy(steps, np.maximum(distance, 1e-17), ls, color=color, label=f"{form} to {target}")
    left.axhline(1e-6, color="0.4", ls=":", label="tolerance 1e-6")
    left.set(
        xlabel="step", ylabel="relative distance", title=f"momentum {config.momentum:g}: each form has its own limit"
    )
    left.legend(fontsize=7)
    window = max(1, config.adam_steps // 25)
    for form, ls in zip(ADAM_FORMS, ("-", "--"), strict=True):
        for k, lr in enumerate(config.adam_lrs):
            steps, angle = series(metrics, "adam/angle", form=form, lr=lr)
            smooth = np.convolve(angle, np.ones(window) / window, mode="valid")
            middle.plot(steps[window - 1 :], smooth, ls, color=f"C{k}", lw=1.0, label=f"{form}, lr {lr:g}")
            steps, norm = series(metrics, "adam/norm", form=form, lr=lr)
            right.semilogy(steps, norm, ls, color=f"C{k}", lw=1.0, label=f"{form}, lr {lr:g}")
    middle.axhline(
        _angular_update(config.adamw_decay), color="k", ls=":", label=r"$\sqrt{2\lambda(1-\beta_1)/(1+\beta_1)}$"
    )
    middle.axvline(config.adam_steps // 2, color="0.7", lw=0.8)
    middle.set(xlabel="step", ylabel=f"angle between consecutive W (mean over {window} steps)")
    middle.set_title(f"AdamW: lambda = {config.adamw_decay:g} per step; Adam + L2: lr^2 lambda' fixed", fontsize=10)
    middle.legend(fontsize=7)
    right.set(xlabel="step", ylabel="||W||", title="the lr sets only the norm (AdamW: ||W|| ~ lr)")
    fig.suptitle("An L2 penalty and decoupled weight decay (Loshchilov & Hutter 2019)")
    return fig


EXPERIMENT = Experiment(
    name="regularisation",
    claim="Weight decay on a linear model is ridge regression; an L1 penalty sets coefficients exactly to zero; "
    "dropout lowers the test error of an over-parameterised regression and acts as a data-dependent ridge; with "
    "momentum an L2 penalty and decoupled weight decay converge to different ridge solutions, and with Adam "
    "decoupled decay makes the steady state of a scale-invariant layer independent of the learning rate where an "
    "L2 penalty couples them.",
    config=RegularisationConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={
        "full": {
            "n": 400,
            "d": 100,
            "sparsity": 10,
            "ridge_steps": 2000,
            "lasso_points": 30,
            "lasso_steps": 1000,
            "gap_seeds": 16,
            "gap_n": 200,
            "gap_features": 800,
            "gap_steps": 2000,
            "momentum_steps": 2000,
            "adam_lrs": (1e-3, 3e-3, 1e-2, 3e-2),
            "adamw_decay": 0.005,
            "adam_l2": 1.0,
            "adam_steps": 4000,
        }
    },
    references=(
        "Hoerl & Kennard (1970), Ridge regression, Technometrics",
        "Tibshirani (1996), Regression shrinkage and selection via the lasso, JRSS B",
        "Beck & Teboulle (2009), A fast iterative shrinkage-thresholding algorithm, SIAM J. Imaging Sci.",
        "Srivastava, Hinton, Krizhevsky, Sutskever & Salakhutdinov (2014), Dropout, JMLR 15",
        "Wager, Wang & Liang (2013), Dropout training as adaptive regularization, NeurIPS",
        "Loshchilov & Hutter (2019), Decoupled weight decay regularization, ICLR",
        "van Laarhoven (2017), L2 regularization versus batch and weight normalization, arXiv:1706.05350",
        "Wan, Zhu, Zhang & Sun (2021), Spherical motion dynamics: learning dynamics of normalized neural network "
        "using SGD and weight decay, NeurIPS",
    ),
    part="linear models",
)
