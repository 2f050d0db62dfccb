r"""adam-properties: Adam is invariant to the scale of the gradient (up to its epsilon), has a wider range of good
learning rates than SGD with momentum, and keeps two buffers the size of the parameters (3x the parameters in all).

**1. Scale invariance, and where epsilon breaks it.** Adam (Kingma & Ba 2015, Algorithm 1) steps

.. math:: w_t = w_{t-1} - \eta\, \hat m_t / (\sigma_t + \epsilon), \qquad \sigma_t = \sqrt{\hat v_t},

with m, v the moving averages of g and g^2. Training on c L (c > 0) multiplies every gradient by c, m by c and
sigma by c, so its step is eta m_hat / (sigma + eps/c): **Adam on c L is Adam on L with epsilon eps/c** (exactly,
in floating point when c is a power of 2; a test checks it bit for bit). The iterates after T steps therefore
differ from those at c = 1 only through epsilon. To first order in epsilon,

.. math:: w_T(c) - w_T(1) = J \epsilon (1/c - 1) + O(\epsilon^2/(c\sigma)^2), \qquad J = d w_T / d\epsilon,

with J the response of the whole trajectory to epsilon (`adam_eps_response`: tangent recursions for dm, dv, dw,
the gradient's through Hessian-vector products; no finite differences). So |w_T(c) - w_T(1)| / |w_T(1) - w_0|
is ~|J| eps / path for c >> 1 (here ~1e-6: invariance) and grows like 1/c below c = 1. It stays small while
eps/c << sigma, and invariance breaks where the scaled gradient reaches epsilon, c sigma ~ eps: there each
coordinate's step shrinks by sigma / (sigma + eps/c). Along the c = 1 path (the *frozen-path* estimate, exact at
c -> 0 and to first order at c -> infinity)

.. math:: D(c) \approx \Big|\sum_t \eta\, \hat m_t \Big(\frac{1}{\sigma_t + \epsilon/c} -
    \frac{1}{\sigma_t + \epsilon}\Big)\Big| \Big/ |w_T(1) - w_0|,

whose crossing of 1/2 predicts the breakdown scale c_half. SGD's step is c eta g: its displacement after T steps
is proportional to c for small c (a line of slope 1 in log-log) and it diverges once c eta exceeds 2/lambda_max.

*Diagonal rescalings.* Adam is invariant to g -> D g for a positive diagonal D (coordinate i: eps -> eps/d_i, the
same first-order theory with direction eps (1/d - 1)), but **not** to rescaling the parameters, w = D u: the
gradient in u is D g (which Adam ignores), so Adam's step in u has the size it would have had in w, and in w it
is D times that: Adam on u is Adam on w with per-coordinate learning rate eta d_i (a test checks the identity).
The experiment measures both on the network. (`optimizer-zoo` checks g -> D g on 2-D test functions.)

**2. Range of good learning rates.** On each problem (a teacher-student regression with isotropic inputs, the same
inputs with features scaled over `feature_spread`, and scikit-learn's digits with raw pixels), `seeds`
initialisations x a log grid of learning rates x {Adam, SGD with momentum} train at once as stacked members
(`tdlab.ensemble.members`, each member its own learning rate and the optimisers' multi-tensor forms, mini-batches
through `tdlab.train.fit`). A learning rate is good when its final training loss is within `good_factor` of the
best on that problem and seed (over both optimisers and all learning rates); the width of the good range is the
number of good grid points times the grid step, in decades. The claim is tested by a paired one-sided Wilcoxon
signed-rank test of width(Adam) - width(SGD) over problems x seeds at `alpha`. (Measuring each optimiser against
its own best instead would reward an optimiser that barely trains: its flat, poor plateau is "within 2x" over many
learning rates.) The result depends on the problem, and the check's detail says so: on the teacher regressions
Adam's range is wider (1-2 decades against 0-1), on digits SGD with momentum at its edge of stability reaches a
loss ~10x below Adam's best, so almost no learning rate of Adam is good there.

**3. Memory.** Adam keeps m and v, each the size of the parameters: parameters + state = 3x the parameters,
against 2x for SGD with momentum and 1x for SGD. Measured as the summed storage of the parameters and of the
optimiser's state tensors (bytes per parameter byte) for torch's Adam, the lectures' `lecture-adam`, SGD with
momentum and SGD, and the peak of live tensor storage over one training step (zero_grad, forward, backward,
step), tracked by a `TorchDispatchMode` that sums the storage of every live tensor (`LiveStorage`; no
`torch.cuda` needed). During the update the parameters, gradients and state are live, plus the update's
temporaries: torch's multi-tensor (foreach) Adam allocates sqrt(v) once (peak 5x), SGD none (3x, 2x).

Checks (each can fail):

1. Adam (torch's and the lectures'), loss scale c >= `linear_margin` x c_half: |w_T(c) - w_T(1)| against the
   first-order epsilon theory J eps |1/c - 1|, within 5%: an optimiser that is not scale invariant (difference of
   order 1), epsilon inside the square root (eps -> eps/c^2: the difference grows like 1/c^2) or a different
   epsilon fails it;
2. Adam: the scale c_half at which the relative difference reaches 1/2 against the frozen-path prediction,
   within 0.4 decades. The estimate ignores that the slowed run keeps larger gradients, so invariance really breaks
   at a smaller c: over 10 seeds in development the estimate was 0.02-0.27 decades high (mean 0.18, sd 0.07).
   Epsilon inside the root moves c_half by ~3 decades, no epsilon never breaks (nan);
3. SGD: the slope of log |w_T(c) - w_0| against log c for c <= `sgd_linear_below` is 1 (its step scales with
   c), within 0.01: Adam (slope 0) or any normalised step fails it;
4. Adam, g -> D g: the change against the first-order theory with direction eps (1/d - 1), within 5%;
5. Adam, w = D u (parameters rescaled): the path changes by at least 10% of its length (not invariant): an
   optimiser invariant to reparameterisation (Newton's) fails it;
6. Adam's good range is wider than SGD's: one-sided Wilcoxon p <= alpha over all problems and seeds (equal ranges
   give p ~ 0.5; in the quick preset, 12 units, p was 0.003-0.017 over 6 config seeds in development); the detail
   gives each problem's own p-value (digits goes the other way);
7. the grid brackets every good range (neither end of the grid is good), else the widths are censored;
8. parameters + optimiser state = 3x (Adam, torch's and the lectures'), 2x (SGD with momentum), 1x (SGD),
   within 1e-3 (the step counters): AMSGrad (4x), a float64 state of float32 parameters or a missing buffer
   fails it;
9. peak over a training step = parameters + gradients + state + the update's temporaries: 5x (foreach Adam),
   3x, 2x, within 0.02 (activations): a tracker that misses storage or a different update fails it. (The
   lectures' Adam, a pure function that returns new m and v, peaks higher: reported.)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from pydantic import Field, model_validator
from scipy import stats
from torch import Tensor, nn
from torch.func import functional_call
from torch.multiprocessing.reductions import StorageWeakRef
from torch.nn.utils import parametrize
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from tdlab.config.threads import one_thread
from tdlab.data.loaders import classification_sample
from tdlab.data.synthetic import synthetic_regression
from tdlab.ensemble.members import Members
from tdlab.ensemble.stacked import StackedModels, member_losses
from tdlab.ensemble.updates import StackedOptimizer
from tdlab.experiments.base import Check, Context, Experiment, ExperimentConfig
from tdlab.experiments.tidy import rows, select, table
from tdlab.models import MLP
from tdlab.optim.registry import build_optimizer
from tdlab.train.trainer import fit

Problem = Literal["teacher", "teacher-scaled", "digits"]
ADAMS = ("adam", "lecture-adam")  # torch's and the lectures'
RANGE_OPTIMISERS = ("adam", "sgd-momentum")
LABELS = {"adam": "Adam", "lecture-adam": "Adam (lectures')", "sgd": "SGD", "sgd-momentum": "SGD + momentum"}
LINEAR_TOLERANCE = 0.05  # relative, measured change against the first-order epsilon theory
BREAKDOWN_TOLERANCE = 0.4  # decades, c_half against the frozen-path prediction (module docstring, check 2)
SLOPE_TOLERANCE = 0.01  # SGD's log-log slope of displacement against c
NOT_INVARIANT = 0.1  # relative path change that counts as "not invariant"
PERSISTENT_TOLERANCE = 1e-3  # parameters + state, in parameter sizes (step counters)
PEAK_TOLERANCE = 0.02  # peak of a step, in parameter sizes (activations)
MEMORY_OPTIMISERS: dict[str, tuple[str, dict[str, Any], int, int | None]] = {
    # name: (registry name, hyperparameters, state buffers, temporaries of the foreach update or None: not checked)
    "adam": ("adam", {"foreach": True}, 2, 1),
    "lecture-adam": ("lecture-adam", {}, 2, None),
    "sgd-momentum": ("sgd", {"momentum": 0.9, "foreach": True}, 1, 0),
    "sgd": ("sgd", {"foreach": True}, 0, 0),
}


class AdamPropertiesConfig(ExperimentConfig):
    """The invariance network and its loss scales, the learning-rate sweep, and the memory model."""

    # 1. invariance
    examples: int = Field(64, ge=4, description="training examples of the invariance network (teacher regression)")
    features: int = Field(4, ge=1, description="inputs of the invariance network")
    width: int = Field(16, ge=1, description="hidden width of the invariance network (tanh, float64)")
    steps: int = Field(200, ge=10, description="full-batch steps T of the invariance runs")
    adam_lr: float = Field(1e-2, gt=0.0, description="Adam's learning rate in the invariance runs")
    sgd_lr: float = Field(0.05, gt=0.0, description="SGD's learning rate in the invariance runs")
    eps: float = Field(1e-8, gt=0.0, description="Adam's epsilon")
    betas: tuple[float, float] = Field((0.9, 0.999), description="Adam's betas")
    scale_range: tuple[float, float] = Field((1e-12, 1e3), description="smallest and largest loss scale c")
    scales_per_decade: int = Field(2, ge=1, description="loss scales per decade (c = 1 is always one of them)")
    linear_margin: float = Field(1e3, gt=1.0, description="check 1 uses c >= linear_margin x predicted c_half")
    sgd_linear_below: float = Field(1e-3, gt=0.0, description="check 3 uses c <= this")
    diagonal_spread: float = Field(100.0, gt=1.0, description="d_i log-uniform in [spread^-1/2, spread^1/2]")
    # 2. learning-rate ranges
    problems: tuple[Problem, ...] = Field(("teacher", "teacher-scaled", "digits"), min_length=1)
    train_examples: int = Field(256, ge=16, description="training examples per problem")
    feature_spread: float = Field(100.0, gt=1.0, description="teacher-scaled: feature scales over this ratio")
    range_width: int = Field(32, ge=1, description="hidden width of the ReLU networks of the sweep")
    range_steps: int = Field(300, ge=10, description="mini-batch steps of every run of the sweep")
    batch_size: int = Field(32, ge=1, description="mini-batch size of the sweep")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD's momentum")
    seeds: int = Field(4, ge=1, description="initialisations per problem (the paired units: problems x seeds)")
    lr_range: tuple[float, float] = Field((10**-3.5, 10**0.5), description="smallest and largest learning rate")
    lrs_per_decade: int = Field(4, ge=1, description="learning rates per decade")
    good_factor: float = Field(2.0, gt=1.0, description="good: final loss <= good_factor x best")
    alpha: float = Field(0.05, gt=0.0, lt=0.5, description="significance level of the Wilcoxon tests")
    # 3. memory
    memory_width: int = Field(512, ge=8, description="width of the two-layer net whose memory is measured")
    memory_batch: int = Field(2, ge=1, description="its batch (activations small against the parameters)")

    @model_validator(mode="after")
    def _consistent(self) -> AdamPropertiesConfig:
        low, high = self.scale_range
        if not 0 < low < 1 < high:
            raise ValueError(f"scale_range: expected 0 < low < 1 < high, got {self.scale_range}")
        if not 0 < self.lr_range[0] < self.lr_range[1]:
            raise ValueError(f"lr_range: expected 0 < low < high, got {self.lr_range}")
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas: expected two numbers in [0, 1), got {self.betas}")
        if len(set(self.problems)) != len(self.problems):
            raise ValueError(f"problems: expected distinct names, got {self.problems}")
        if self.batch_size > self.train_examples:
            raise ValueError(f"batch_size: expected at most train_examples = {self.train_examples}")
        return self


def log_grid(low: float, high: float, per_decade: int) -> np.ndarray:
    """Powers of 10 with exponents k / per_decade (integers k) in [low, high], a little slack at both ends.

    Example:
        >>> log_grid(1e-2, 1.0, 2).round(4).tolist()
        [0.01, 0.0316, 0.1, 0.3162, 1.0]
    """
    first, last = math.ceil(math.log10(low) * per_decade - 1e-9), math.floor(math.log10(high) * per_decade + 1e-9)
    return 10.0 ** (np.arange(first, last + 1) / per_decade)


# ------------------------------------------------------------------------------------------------ theory
def adam_eps_response(
    loss: Callable[[Tensor], Tensor],
    w0: Tensor,
    steps: int,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    directions: Sequence[Tensor],
) -> tuple[Tensor, list[Tensor], Tensor, Tensor]:
    r"""Adam's iterate w_T from w0 on `loss` (full batch, the lectures' rule) and its first-order responses
    J e = d w_T / dh to a per-coordinate epsilon eps + h e, for each direction e in `directions`.

    The tangents follow the recursions (H the Hessian at w_{t-1}, through Hessian-vector products; s = sigma_t):

    .. math::
        \dot g = H \dot w, \ \dot m = \beta_1 \dot m + (1 - \beta_1) \dot g, \ \dot v = \beta_2 \dot v +
        2 (1 - \beta_2) g \dot g, \ \dot s = \frac{\dot v}{2 s (1 - \beta_2^t)}, \
        \dot w \mathrel{-}= \eta \Big(\frac{\dot{\hat m}}{s + \epsilon} -
        \hat m \frac{\dot s + e}{(s + \epsilon)^2}\Big)

    Returns w_T, the responses, and the bias-corrected m_hat_t and sigma_t = sqrt(v_hat_t) of every step (T, P).

    Example (one coordinate, L = w^2 / 2 from w = 1: the first step is eta g / (|g| + eps), d/d eps = -eta g / g^2):
        >>> one = torch.ones(1, dtype=torch.float64)
        >>> w, (response,), _, _ = adam_eps_response(lambda w: 0.5 * w.square().sum(), one, 1, 0.1, (0.9, 0.999),
        ...                                           0.0, [one])
        >>> round(w.item(), 12), round(response.item(), 12)
        (0.9, 0.1)
    """
    beta1, beta2 = betas
    w, m, v = w0.detach().clone(), torch.zeros_like(w0), torch.zeros_like(w0)
    tangents = [(torch.zeros_like(w0), torch.zeros_like(w0), torch.zeros_like(w0)) for _ in directions]  # dw, dm, dv
    m_hats, sigmas = [], []
    for t in range(1, steps + 1):
        leaf = w.requires_grad_(True)
        (g,) = torch.autograd.grad(loss(leaf), leaf, create_graph=True)
        products = [
            torch.autograd.grad(g, leaf, grad_outputs=dw, retain_graph=k < len(directions) - 1)[0]
            for k, (dw, _, _) in enumerate(tangents)
        ]
        g, w = g.detach(), w.detach()
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        bias1, bias2 = 1 - beta1**t, 1 - beta2**t
        m_hat, sigma = m / bias1, (v / bias2).sqrt()
        denominator = sigma + eps
        for k, ((dw, dm, dv), dg, e) in enumerate(zip(tangents, products, directions, strict=True)):
            dm = beta1 * dm + (1 - beta1) * dg
            dv = beta2 * dv + 2 * (1 - beta2) * g * dg
            d_sigma = torch.where(sigma > 0, dv / (2 * bias2 * sigma.clamp_min(1e-300)), 0.0)
            dw = dw - lr * (dm / bias1 / denominator - m_hat * (d_sigma + e) / denominator**2)
            tangents[k] = (dw, dm, dv)
        w = w - lr * m_hat / denominator
        m_hats.append(m_hat)
        sigmas.append(sigma)
    return w, [dw for dw, _, _ in tangents], torch.stack(m_hats), torch.stack(sigmas)


def frozen_path_change(m_hats: Tensor, sigmas: Tensor, lr: float, eps: float, scales: np.ndarray) -> np.ndarray:
    """|sum_t eta m_hat_t (1/(sigma_t + eps/c) - 1/(sigma_t + eps))| for each scale c: how far Adam on c L would
    move from the c = 1 path if every step kept that path's m_hat and sigma (module docstring).

    Example (one step of size eta = 1 with sigma = |m_hat| = 1: at c = eps the step halves):
        >>> frozen_path_change(torch.ones(1, 1), torch.ones(1, 1), 1.0, 1e-8, np.array([1e-8, 1.0])).round(6).tolist()
        [0.5, 0.0]
    """
    c = torch.as_tensor(scales, dtype=sigmas.dtype, device=sigmas.device).view(-1, 1, 1)
    change = lr * m_hats * (1 / (sigmas + eps / c) - 1 / (sigmas + eps))
    return change.sum(dim=1).norm(dim=1).cpu().numpy()


def half_crossing(scales: np.ndarray, changes: np.ndarray) -> float:
    """The scale c at which the relative change first falls through 1/2 coming from small c (log-linear
    interpolation between the grid points around it), or nan if it never does.

    Example:
        >>> round(half_crossing(np.array([1e-3, 1e-2, 1e-1]), np.array([0.9, 0.7, 0.3])), 6)
        0.031623
    """
    below = np.flatnonzero(changes < 0.5)
    if len(below) == 0 or below[0] == 0:
        return float("nan")
    k = below[0]
    x0, x1, y0, y1 = math.log10(scales[k - 1]), math.log10(scales[k]), changes[k - 1], changes[k]
    return float(10 ** (x0 + (0.5 - y0) * (x1 - x0) / (y1 - y0)))


def good_width(losses: np.ndarray, best: np.ndarray, factor: float, per_decade: int) -> np.ndarray:
    """Decades of learning rates whose final loss is within `factor` of `best`: the number of good grid points
    over `per_decade`, per row of `losses` (units x learning rates); non-finite losses are bad.

    Example:
        >>> good_width(np.array([[4.0, 1.0, 1.5, np.inf]]), np.array([1.0]), 2.0, 4).tolist()
        [0.5]
    """
    good = np.isfinite(losses) & (losses <= factor * best[:, None])
    return good.sum(axis=1) / per_decade


# ------------------------------------------------------------------------------------------------ measure
class MemberRates(torch.optim.Optimizer):
    """Registry optimisers on the stacked parameters of `Members`, in consecutive blocks of members, each member at
    its own learning rate: `blocks` = [(registry name, hyperparameters, learning rates (block size,))].

    Each block runs its entry's multi-tensor form (`tdlab.ensemble.StackedOptimizer`: torch.optim's formulas) on
    its slice of every stacked tensor, so every member takes exactly the steps of its own run.
    """

    def __init__(self, params: Iterable[Tensor], blocks: Sequence[tuple[str, dict[str, Any], Tensor]]):
        super().__init__(list(params), {"lr": 1.0})
        self.blocks, start = [], 0
        for name, hyper, lrs in blocks:
            self.blocks.append((slice(start, start + len(lrs)), StackedOptimizer(name, hyper), lrs))
            start += len(lrs)

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        params = self.param_groups[0]["params"]
        for members, stacked, lrs in self.blocks:
            stacked.step(
                {str(i): p[members] for i, p in enumerate(params)},
                {str(i): p.grad[members] for i, p in enumerate(params)},
                lrs,
            )


def member_sum(loss_fn: nn.Module, weights: Tensor | None = None) -> Callable[[Tensor, Tensor], Tensor]:
    """sum_m weights_m L_m over the members whose loss is finite (a diverged member drops out instead of stopping
    the others), for `Members` outputs (N, n, *) and targets (n, N, *).

    Example:
        >>> member_sum(nn.MSELoss(), torch.tensor([1.0, 3.0]))(torch.zeros(2, 3, 1), torch.ones(3, 2, 1)).item()
        4.0
    """
    each = member_losses(loss_fn)

    def loss(outputs: Tensor, targets: Tensor) -> Tensor:
        losses = each(outputs, targets.movedim(1, 0))
        losses = losses if weights is None else losses * weights
        return torch.where(torch.isfinite(losses), losses, 0.0).sum()

    return loss


def _flat(tensors: Iterable[Tensor]) -> Tensor:
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def _stacked_flat(members: Members) -> Tensor:
    """Every member's parameters as one row (N, P), in the models' parameter order."""
    return torch.cat([p.detach().flatten(1) for p in members.models.params.values()], dim=1)


def invariance_network(config: AdamPropertiesConfig, device: torch.device) -> tuple[MLP, Tensor, Tensor]:
    """The tanh network (float64) and the teacher regression (X, y) of the invariance runs."""
    data = synthetic_regression(
        n_train=config.examples, n_test=1, in_features=config.features, teacher="mlp", seed=config.seed
    )
    model = MLP(config.features, 1, width=config.width, depth=1, activation="tanh", seed=config.seed)
    X, y = (t.to(device=device, dtype=torch.float64) for t in (data.X_train, data.y_train))
    return model.to(device=device, dtype=torch.float64), X, y


def _train_scaled(
    config: AdamPropertiesConfig, optimiser: str, scales: np.ndarray, model: MLP, X: Tensor, y: Tensor
) -> tuple[Tensor, Tensor]:
    """(w_0, w_T) of `model` trained on c L for every c in `scales` at once (stacked copies, member m on
    scales[m] L), by `optimiser` ("adam", "lecture-adam" or "sgd")."""
    members = Members(StackedModels.of([model] * len(scales)))
    start = _stacked_flat(members).clone()
    if optimiser == "sgd":
        optimizer = build_optimizer("sgd", members.parameters(), config.sgd_lr)
    else:
        optimizer = build_optimizer(optimiser, members.parameters(), config.adam_lr, betas=config.betas, eps=config.eps)
    weights = torch.as_tensor(scales, dtype=X.dtype, device=X.device)
    targets = y[:, None].expand(-1, len(scales), -1)
    fit(members, member_sum(nn.MSELoss(), weights), (X, targets), optimizer, config.steps, measure_start=False)
    return start, _stacked_flat(members)


def _diagonal(config: AdamPropertiesConfig, P: int, device: torch.device) -> Tensor:
    """d_i log-uniform in [spread^-1/2, spread^1/2], one per parameter coordinate (float64)."""
    generator = torch.Generator().manual_seed(config.seed + 1)
    exponents = torch.rand(P, generator=generator, dtype=torch.float64) - 0.5
    return (config.diagonal_spread**exponents).to(device)


class _Scaled(nn.Module):
    """The parametrisation w = d * u (elementwise), started at u = w / d."""

    def __init__(self, d: Tensor):
        super().__init__()
        self.register_buffer("d", d)

    def forward(self, u: Tensor) -> Tensor:
        return self.d * u

    def right_inverse(self, w: Tensor) -> Tensor:
        return w / self.d


def train_rescaled(
    config: AdamPropertiesConfig, model: MLP, X: Tensor, y: Tensor, d: Tensor, where: Literal["gradient", "parameters"]
) -> Tensor:
    """w_T of Adam on a copy of `model` with the gradient rescaled g -> d * g (a hook on every parameter) or the
    parameters rescaled w = d * u (Adam trains u; `torch.nn.utils.parametrize`)."""
    net = copy.deepcopy(model)
    places = [name.rsplit(".", 1) for name, _ in net.named_parameters()]
    pieces = torch.split(d, [p.numel() for p in net.parameters()])
    for (module, attribute), p, piece in zip(places, list(net.parameters()), pieces, strict=True):
        scale = piece.view(p.shape)
        if where == "gradient":
            p.register_hook(lambda g, scale=scale: g * scale)
        else:
            parametrize.register_parametrization(net.get_submodule(module), attribute, _Scaled(scale))
    optimizer = torch.optim.Adam(net.parameters(), lr=config.adam_lr, betas=config.betas, eps=config.eps)
    fit(net, nn.MSELoss(), (X, y), optimizer, config.steps, measure_start=False)
    with torch.no_grad():
        return _flat(getattr(net.get_submodule(module), attribute) for module, attribute in places)


def _measure_invariance(config: AdamPropertiesConfig, device: torch.device) -> list[pd.DataFrame]:
    """Rows of part 1: per optimiser and scale, "distance" |w_T(c) - w_T(1)| and "displacement" |w_T(c) - w_0|;
    the theory's "linear_change" (|J eps|1/c - 1||) and "frozen_change" per scale; "sigma" quantiles; the diagonal
    runs' "diagonal_distance" (where: gradient, parameters) and "diagonal_linear_change"."""
    model, X, y = invariance_network(config, device)
    scales = log_grid(*config.scale_range, config.scales_per_decade)
    one = int(np.argmin(np.abs(np.log10(scales))))
    frames = []
    for optimiser in ("adam", "lecture-adam", "sgd"):
        start, end = _train_scaled(config, optimiser, scales, model, X, y)
        distance = (end - end[one]).norm(dim=1).cpu().numpy()
        displacement = (end - start).norm(dim=1).cpu().numpy()
        frames += [
            rows("distance", distance, scale=scales).assign(optimiser=optimiser),
            rows("displacement", displacement, scale=scales).assign(optimiser=optimiser),
        ]
    names = [name for name, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    w0 = _flat(model.parameters())

    def loss(w: Tensor) -> Tensor:
        pieces = torch.split(w, [math.prod(s) for s in shapes])
        params = {name: piece.view(shape) for name, piece, shape in zip(names, pieces, shapes, strict=True)}
        return (functional_call(model, params, (X,)) - y).square().mean()

    d = _diagonal(config, w0.numel(), device)
    ones = torch.ones_like(w0)
    w_T, (response, diagonal_response), m_hats, sigmas = adam_eps_response(
        loss, w0, config.steps, config.adam_lr, config.betas, config.eps, [ones * config.eps, config.eps * (1 / d - 1)]
    )
    linear = float(response.norm()) * np.abs(1 / scales - 1)
    frozen = frozen_path_change(m_hats, sigmas, config.adam_lr, config.eps, scales)
    typical = sigmas.median(dim=0).values.cpu().numpy()  # per coordinate, over the steps
    frames += [
        rows("path_length", float((w_T - w0).norm())),
        rows("linear_change", linear, scale=scales),
        rows("frozen_change", frozen, scale=scales),
        rows("sigma_quantile", np.quantile(typical, [0.1, 0.5, 0.9]), quantile=[0.1, 0.5, 0.9]),
        rows("diagonal_linear_change", float(diagonal_response.norm())),
    ]
    for where in ("gradient", "parameters"):
        w = train_rescaled(config, model, X, y, d, where)
        frames.append(rows("diagonal_distance", float((w - w_T).norm()), where=where))
    return frames


def range_problem(name: Problem, config: AdamPropertiesConfig, device: torch.device) -> tuple[Tensor, Tensor, str]:
    """(X, targets, loss) of a problem of the learning-rate sweep: "teacher" (a random tanh teacher on 8 Gaussian
    inputs, noise 0.1), "teacher-scaled" (the same, feature j multiplied by spread^(j/7 - 1/2)), "digits" (raw
    pixels in [0, 1], 10 classes)."""
    if name == "digits":
        data = classification_sample("digits", config.train_examples, seed=config.seed)
        return data.X_train.to(device), data.y_train.to(device), "cross-entropy"
    data = synthetic_regression(
        n_train=config.train_examples, n_test=1, in_features=8, teacher="mlp", noise=0.1, seed=config.seed
    )
    X = data.X_train
    if name == "teacher-scaled":
        X = X * config.feature_spread ** torch.linspace(-0.5, 0.5, X.shape[1])
    return X.to(device), data.y_train.to(device), "squared"


def _measure_ranges(config: AdamPropertiesConfig, context: Context) -> list[pd.DataFrame]:
    """Rows "final_loss" (problem, optimiser, seed, lr): every member's full training loss after the sweep."""
    lrs = log_grid(*config.lr_range, config.lrs_per_decade)
    S, L = config.seeds, len(lrs)
    frames = []
    for problem in context.track(config.problems, "learning-rate sweep"):
        X, y, kind = range_problem(problem, config, context.device)
        loss_fn = nn.CrossEntropyLoss() if kind == "cross-entropy" else nn.MSELoss()
        outputs = 10 if kind == "cross-entropy" else y.shape[1]
        models = [
            MLP(X.shape[1], outputs, width=config.range_width, depth=1, seed=config.seed * 1000 + s).to(X)
            for _ in RANGE_OPTIMISERS
            for s in range(S)
            for _ in range(L)
        ]
        members = Members(StackedModels.of(models))
        rates = torch.as_tensor(np.tile(lrs, S), dtype=X.dtype, device=X.device)
        optimizer = MemberRates(
            members.parameters(),
            [("adam", {}, rates), ("sgd", {"momentum": config.momentum}, rates)],
        )
        targets = y[:, None].expand(-1, len(models), *y.shape[1:])
        fit(
            members,
            member_sum(loss_fn),
            (X, targets),
            optimizer,
            config.range_steps,
            batch_size=config.batch_size,
            seed=config.seed,
            measure_start=False,
        )
        with torch.no_grad():
            final = member_losses(loss_fn)(members(X), targets.movedim(1, 0))
        final = torch.nan_to_num(final, nan=math.inf).cpu().numpy().reshape(len(RANGE_OPTIMISERS), S, L)
        for k, optimiser in enumerate(RANGE_OPTIMISERS):
            frames.append(
                rows("final_loss", final[k], seed=np.arange(S)[:, None], lr=lrs).assign(
                    problem=problem, optimiser=optimiser
                )
            )
    return frames


class LiveStorage(TorchDispatchMode):
    """The bytes of tensor storage alive while it is active, and their peak: every tensor an operation returns is
    tracked by a weak reference to its storage (a storage counts once however many views share it), so the sum
    covers everything torch allocates, autograd's saved tensors and the optimiser's temporaries included.
    `tensors` that exist before (parameters, state) are tracked from the start.

    Example:
        >>> x = torch.zeros(256)  # 1 KiB
        >>> with LiveStorage([x]) as live:
        ...     y = (x + 1) * 2  # x + 1 is a temporary, alive while the product is computed
        >>> live.peak, live.live()
        (3072, 2048)
    """

    def __init__(self, tensors: Iterable[Tensor] = ()):
        super().__init__()
        self.storages: dict[int, tuple[StorageWeakRef, int]] = {}
        for tensor in tensors:
            self._track(tensor)
        self.peak = self.live()

    def _track(self, tensor: Tensor) -> None:
        storage = tensor.untyped_storage()
        reference = StorageWeakRef(storage)
        self.storages.setdefault(reference.cdata, (reference, storage.nbytes()))

    def live(self) -> int:
        """Bytes of the tracked storages still alive."""
        for key in [key for key, (reference, _) in self.storages.items() if reference.expired()]:
            del self.storages[key]
        return sum(size for _, size in self.storages.values())

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, Tensor):
                self._track(tensor)
        self.peak = max(self.peak, self.live())
        return out


def _measure_memory(config: AdamPropertiesConfig) -> list[pd.DataFrame]:
    """Rows "persistent" (parameters + optimiser state) and "step_peak" (peak over one training step), in bytes
    per parameter byte, per optimiser; CPU, float32."""
    frames = []
    for key, (name, hyper, _, _) in MEMORY_OPTIMISERS.items():
        generator = torch.Generator().manual_seed(config.seed)
        n = config.memory_width
        model = MLP(n, n, width=n, depth=1, activation="tanh", seed=config.seed)
        X, Y = torch.randn(2, config.memory_batch, n, generator=generator)
        optimizer = build_optimizer(name, model.parameters(), 1e-3, **hyper)

        def step(
            model: MLP = model, optimizer: torch.optim.Optimizer = optimizer, X: Tensor = X, Y: Tensor = Y
        ) -> None:
            optimizer.zero_grad(set_to_none=True)
            nn.functional.mse_loss(model(X), Y).backward()
            optimizer.step()

        step()  # the state exists after the first step
        parameters = sum(p.numel() * p.element_size() for p in model.parameters())
        state = [v for s in optimizer.state.values() for v in s.values() if isinstance(v, Tensor)]
        persistent = parameters + sum(v.untyped_storage().nbytes() for v in state)
        optimizer.zero_grad(set_to_none=True)
        with LiveStorage([*model.parameters(), *state]) as live:
            del state  # only the tracker's weak references: the old state may be freed during the step
            step()
        frames += [
            rows("persistent", persistent / parameters, optimiser=key),
            rows("step_peak", live.peak / parameters, optimiser=key),
        ]
    return frames


def measure(config: AdamPropertiesConfig, context: Context) -> pd.DataFrame:
    """The invariance runs and their theory, the learning-rate sweep, and the memory (module docstring)."""
    with one_thread():
        frames = _measure_invariance(config, context.device)
        frames += _measure_ranges(config, context)
        frames += _measure_memory(config)
    return pd.concat(frames, ignore_index=True)


# ------------------------------------------------------------------------------------------------ checks
def invariance_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per scale c (index): each optimiser's relative change |w_T(c) - w_T(1)| / |w_T(1) - w_0| (columns named by
    optimiser), "distance/<optimiser>" |w_T(c) - w_T(1)| and "displacement/<optimiser>" |w_T(c) - w_0|; the
    theory's absolute first-order and frozen-path changes ("linear_change", "frozen_change") and relative ones
    ("linear", "frozen", over the path length of the c = 1 run)."""
    out = {}
    for optimiser in ("adam", "lecture-adam", "sgd"):
        distance = select(metrics, "distance", optimiser=optimiser).set_index("scale")["value"].sort_index()
        displacement = select(metrics, "displacement", optimiser=optimiser).set_index("scale")["value"].sort_index()
        one = displacement.index[np.argmin(np.abs(np.log10(displacement.index.to_numpy(dtype=float))))]
        out[optimiser] = distance / displacement[one]
        out[f"distance/{optimiser}"] = distance
        out[f"displacement/{optimiser}"] = displacement
    for name in ("linear_change", "frozen_change"):
        out[name] = select(metrics, name).set_index("scale")["value"].sort_index()
    frame = pd.DataFrame(out)
    path = _path_length(metrics)
    frame["linear"], frame["frozen"] = frame["linear_change"] / path, frame["frozen_change"] / path
    return frame


def _path_length(metrics: pd.DataFrame) -> float:
    return float(select(metrics, "path_length")["value"].iloc[0])


def final_losses(metrics: pd.DataFrame, problem: str) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """(learning rates, {optimiser: final losses, seed x learning rate (non-finite: inf)}, the best per seed over
    both optimisers) of one problem of the sweep."""
    losses = {
        optimiser: table(metrics, "final_loss", "seed", "lr", problem=problem, optimiser=optimiser)
        for optimiser in RANGE_OPTIMISERS
    }
    lrs = losses["adam"].columns.to_numpy(dtype=float)
    values = {k: np.nan_to_num(v.to_numpy(), nan=np.inf, posinf=np.inf) for k, v in losses.items()}
    return lrs, values, np.minimum(*(v.min(axis=1) for v in values.values()))


def range_widths(metrics: pd.DataFrame, config: AdamPropertiesConfig) -> pd.DataFrame:
    """Width of the good range in decades (final loss within `good_factor` of the best over both optimisers on the
    problem and seed), per (problem, seed) (index) and optimiser (columns)."""
    out = []
    for problem in config.problems:
        _, losses, best = final_losses(metrics, problem)
        widths = {k: good_width(v, best, config.good_factor, config.lrs_per_decade) for k, v in losses.items()}
        index = pd.MultiIndex.from_product([[problem], range(len(best))], names=["problem", "seed"])
        out.append(pd.DataFrame(widths, index=index))
    return pd.concat(out)


def _edges(metrics: pd.DataFrame, config: AdamPropertiesConfig) -> int:
    """The number of (problem, seed, optimiser) whose good set holds the grid's smallest or largest learning rate."""
    count = 0
    for problem in config.problems:
        _, losses, best = final_losses(metrics, problem)
        for values in losses.values():
            count += int(np.sum((values[:, [0, -1]] <= config.good_factor * best[:, None]).any(axis=1)))
    return count


def _wilcoxon(differences: np.ndarray) -> float:
    """One-sided Wilcoxon signed-rank p-value of median(differences) > 0 (1 when every difference is 0): zeros
    dropped, the exact null distribution of the statistic up to 50 pairs (tied ranks make the statistic a
    half-integer: scipy rounds it down), the normal approximation beyond. (scipy's default for tied samples of up
    to 13 pairs, a full permutation test, takes ~0.7 s and agrees within 0.003 here.)

    Example:
        >>> round(_wilcoxon(np.array([1.0, 2.0, 3.0, 4.0, 5.0])), 4), _wilcoxon(np.zeros(4))
        (0.0312, 1.0)
    """
    if not np.any(differences != 0):
        return 1.0
    method = "exact" if len(differences) <= 50 else "asymptotic"
    return float(stats.wilcoxon(differences, alternative="greater", method=method).pvalue)


def _width_summary(widths: pd.DataFrame) -> str:
    """Per problem: the mean widths, in how many seeds Adam's range is wider and narrower than SGD's, and the
    problem's own one-sided Wilcoxon p-value."""
    out = []
    for problem, group in widths.groupby(level="problem", sort=False):
        difference = (group["adam"] - group["sgd-momentum"]).to_numpy()
        out.append(
            f"{problem}: Adam {group['adam'].mean():.2f}, SGD+momentum {group['sgd-momentum'].mean():.2f} (Adam "
            f"wider in {int((difference > 0).sum())}, narrower in {int((difference < 0).sum())} of {len(difference)}, "
            f"one-sided p {_wilcoxon(difference):.2g})"
        )
    return "; ".join(out)


def checks(metrics: pd.DataFrame, config: AdamPropertiesConfig) -> list[Check]:
    """The invariance against its epsilon theory, the breakdown scale, SGD's linear response, the diagonal
    rescalings, the learning-rate ranges (Wilcoxon) and the memory ratios (module docstring)."""
    frame = invariance_table(metrics)
    scales = frame.index.to_numpy(dtype=float)
    predicted = half_crossing(scales, frame["frozen"].to_numpy())
    regime = (scales >= config.linear_margin * predicted) & (np.abs(np.log10(scales)) > 1e-9)
    ratios = {a: (frame[f"distance/{a}"] / frame["linear_change"]).to_numpy()[regime] for a in ADAMS}
    deviation = max((float(np.max(np.abs(r - 1))) if len(r) else math.nan) for r in ratios.values())
    shown = [scales[np.argmin(np.abs(np.log10(scales / c)))] for c in (1e-3, 1e3)]
    examples = "; ".join(
        f"c = {c:g}: Adam {frame.loc[c, 'adam']:.3g}, lectures' {frame.loc[c, 'lecture-adam']:.3g}, theory "
        f"{frame.loc[c, 'linear']:.3g}, SGD "
        + (f"{frame.loc[c, 'sgd']:.3g}" if frame.loc[c, "sgd"] < 1e3 else "diverged")
        for c in shown
    )
    measured_half = {a: half_crossing(scales, frame[a].to_numpy()) for a in ADAMS}
    miss = max(abs(math.log10(c / predicted)) for c in measured_half.values())
    small = scales <= config.sgd_linear_below
    sgd_slope = float(np.polyfit(np.log(scales[small]), np.log(frame["displacement/sgd"].to_numpy()[small]), 1)[0])
    adam_slope = float(np.polyfit(np.log(scales[regime]), np.log(frame["displacement/adam"].to_numpy()[regime]), 1)[0])
    path = _path_length(metrics)
    diagonal = select(metrics, "diagonal_distance").set_index("where")["value"]
    diagonal_theory = float(select(metrics, "diagonal_linear_change")["value"].iloc[0])
    sigma = select(metrics, "sigma_quantile").set_index("quantile")["value"]
    widths = range_widths(metrics, config)
    p_value = _wilcoxon((widths["adam"] - widths["sgd-momentum"]).to_numpy())
    units = f"{len(widths)} units ({len(config.problems)} problems x {config.seeds} seeds)"
    grid = log_grid(*config.lr_range, config.lrs_per_decade)
    persistent = select(metrics, "persistent").set_index("optimiser")["value"]
    peak = select(metrics, "step_peak").set_index("optimiser")["value"]
    persistent_theory = {k: 1 + buffers for k, (_, _, buffers, _) in MEMORY_OPTIMISERS.items()}
    peak_theory = {k: 2 + b + t for k, (_, _, b, t) in MEMORY_OPTIMISERS.items() if t is not None}
    low, high = config.diagonal_spread**-0.5, config.diagonal_spread**0.5
    return [
        Check.at_most(
            f"Adam (torch's and the lectures'): |w_T(c) - w_T(1)| against the first-order epsilon theory "
            f"|J eps (1/c - 1)|, c >= {config.linear_margin:g} c_half: max |measured / theory - 1|",
            deviation,
            LINEAR_TOLERANCE,
            detail=f"{int(regime.sum())} scales from {scales[regime].min():.3g} (J = dw_T/d eps by tangent "
            f"recursions); relative changes {examples}; Adam's displacement against c has slope {adam_slope:.1g} "
            "there (SGD's: 1). Fails for an optimiser that is not scale invariant (changes of order 1), for "
            "epsilon inside the root (the change grows like 1/c^2) or a different epsilon",
        ),
        Check.at_most(
            "Adam: invariance breaks where c sigma ~ eps: |log10(c_half / frozen-path prediction)| (decades)",
            miss,
            BREAKDOWN_TOLERANCE,
            detail=f"c_half (relative change 1/2) measured {measured_half['adam']:.3g} (torch), "
            f"{measured_half['lecture-adam']:.3g} (lectures'), predicted {predicted:.3g} (the estimate is high by "
            "0.02-0.27 decades over 10 seeds in development: the slowed run keeps larger gradients); eps / sigma "
            f"over the coordinates (10%, 50%, 90% of their median sigma_t): {config.eps / sigma[0.9]:.2g}, "
            f"{config.eps / sigma[0.5]:.2g}, {config.eps / sigma[0.1]:.2g}. "
            "Epsilon inside the root breaks at c ~ sqrt(eps)/sigma (3 decades higher); without epsilon nothing breaks",
        ),
        Check.absolute(
            f"SGD: slope of log |w_T(c) - w_0| vs log c for c <= {config.sgd_linear_below:g} (its step scales with c)",
            sgd_slope,
            1.0,
            SLOPE_TOLERANCE,
            detail=f"{int(small.sum())} scales, {config.steps} steps at lr {config.sgd_lr:g} (the O(c eta T lambda) "
            "curvature term is below 1% there); Adam (slope ~0) or any normalised step fails it",
        ),
        Check.relative(
            f"Adam, gradient rescaled g -> D g (d_i in [{low:.3g}, {high:.3g}]): |w_T^D - w_T| against the "
            "first-order epsilon theory (eps_i -> eps/d_i)",
            float(diagonal["gradient"]),
            diagonal_theory,
            LINEAR_TOLERANCE,
            detail=f"relative to the path length {path:.3g}: measured {diagonal['gradient'] / path:.3g}, theory "
            f"{diagonal_theory / path:.3g} (J along eps (1/d - 1)). A step that is not normalised per coordinate "
            "changes the path at order 1",
        ),
        Check.at_least(
            f"Adam, parameters rescaled w = D u (d_i in [{low:.3g}, {high:.3g}]): |w_T^D - w_T| / |w_T - w_0| "
            "(not invariant)",
            float(diagonal["parameters"] / path),
            NOT_INVARIANT,
            detail="Adam on u = w/d is Adam on w with per-coordinate learning rate eta d_i (a test checks it): "
            "invariant to the gradient's scale, not to the parameters'. An optimiser invariant to diagonal "
            "reparameterisations (Newton's) fails it",
        ),
        Check.at_most(
            f"Adam's good learning-rate range is wider than SGD+momentum's (good: final loss <= "
            f"{config.good_factor:g} x the best on the problem): one-sided Wilcoxon p (alpha = {config.alpha:g})",
            p_value,
            config.alpha,
            detail=f"paired over {units}; widths in decades: {_width_summary(widths)}; grid {grid[0]:.2g}.."
            f"{grid[-1]:.2g}, {config.lrs_per_decade} per decade, {config.range_steps} steps of batch "
            f"{config.batch_size}, momentum {config.momentum:g}. Equal ranges give p ~ 0.5",
        ),
        Check.at_most(
            "the learning-rate grid brackets every good range: runs good at an end of the grid",
            float(_edges(metrics, config)),
            0.0,
            detail=f"grid {grid[0]:.2g}..{grid[-1]:.2g}; a good range touching an end is cut off and its width "
            "underestimated (widen lr_range)",
        ),
        Check.at_most(
            "parameters + optimiser state in parameter sizes: Adam 3 (torch's and the lectures'), SGD+momentum 2, "
            "SGD 1: max |measured - theory|",
            float(max(abs(persistent[k] - v) for k, v in persistent_theory.items())),
            PERSISTENT_TOLERANCE,
            detail="summed storage of the parameters and the state tensors after a step: "
            + ", ".join(f"{LABELS[k]} {persistent[k]:.5f} (theory {v})" for k, v in persistent_theory.items())
            + "; the step counters add a few bytes. AMSGrad (4x) or a float64 state fails it",
        ),
        Check.at_most(
            "peak of a training step in parameter sizes = parameters + gradients + state + the update's "
            "temporaries: Adam 5, SGD+momentum 3, SGD 2 (torch, foreach): max |measured - theory|",
            float(max(abs(peak[k] - v) for k, v in peak_theory.items())),
            PEAK_TOLERANCE,
            detail="live tensor storage tracked through every operation of zero_grad, forward, backward, step: "
            + ", ".join(f"{LABELS[k]} {peak[k]:.3f}" for k in MEMORY_OPTIMISERS)
            + " (the lectures' Adam is a pure function: new m and v and its temporaries live beside the old ones); "
            f"activations add < {PEAK_TOLERANCE:g}; a tracker that misses storage or a different update fails it",
        ),
    ]


# ------------------------------------------------------------------------------------------------ figures
def figures(metrics: pd.DataFrame, config: AdamPropertiesConfig) -> dict[str, Figure]:
    """Final loss against the learning rate with the good ranges; the invariance and its breakdown; memory."""
    return {
        "learning_rates": _range_figure(metrics, config),
        "invariance": _invariance_figure(metrics, config),
        "memory": _memory_figure(metrics),
    }


def _range_figure(metrics: pd.DataFrame, config: AdamPropertiesConfig) -> Figure:
    P = len(config.problems)
    fig = Figure(figsize=(4.6 * (P + 1), 4.4), layout="constrained")
    axes = fig.subplots(1, P + 1)
    colours = {"adam": "C3", "sgd-momentum": "C0"}
    half_step = 10 ** (0.5 / config.lrs_per_decade)
    for ax, problem in zip(axes, config.problems, strict=False):
        lrs, curves, best = final_losses(metrics, problem)
        threshold = config.good_factor * np.median(best)
        for optimiser, values in curves.items():
            for row in values:
                ax.loglog(lrs, np.where(row < 1e6, row, np.nan), "-", color=colours[optimiser], lw=0.6, alpha=0.35)
            median = np.median(values, axis=0)
            label = f"{LABELS[optimiser]} (median over {len(values)} seeds)"
            ax.loglog(lrs, np.where(median < 1e6, median, np.nan), "o-", color=colours[optimiser], ms=3, label=label)
            good = median <= threshold
            if good.any():
                ax.axvspan(
                    lrs[good].min() / half_step, lrs[good].max() * half_step, color=colours[optimiser], alpha=0.12
                )
        ax.axhline(threshold, color="k", ls="--", lw=0.8, label=f"{config.good_factor:g} x best (median over seeds)")
        ax.set(xlabel="learning rate", ylabel="final training loss", title=f"{problem}: good ranges shaded")
        ax.legend(fontsize=7)
    widths = range_widths(metrics, config)
    ax = axes[-1]
    for k, (problem, group) in enumerate(widths.groupby(level="problem", sort=False)):
        jitter = 0.02 * (np.arange(len(group)) - (len(group) - 1) / 2)
        marker = "os^"[k % 3]
        ax.plot(
            group["sgd-momentum"] + jitter, group["adam"] - jitter, marker, mfc="none", color=f"C{k + 2}", label=problem
        )
    top = widths.to_numpy().max() + 0.5
    ax.plot([0, top], [0, top], "k:", lw=0.8, label="equal widths")
    p_value = _wilcoxon((widths["adam"] - widths["sgd-momentum"]).to_numpy())
    ax.set(
        xlabel="SGD+momentum: good range (decades)",
        ylabel="Adam: good range (decades)",
        title=f"Good-range width per seed (Wilcoxon p = {p_value:.2g})",
    )
    ax.legend(fontsize=7)
    fig.suptitle(
        f"Final training loss after {config.range_steps} steps (batch {config.batch_size}) against the learning "
        f"rate; good: within {config.good_factor:g}x of the best on the problem (either optimiser)"
    )
    return fig


def _invariance_figure(metrics: pd.DataFrame, config: AdamPropertiesConfig) -> Figure:
    frame = invariance_table(metrics)
    scales = frame.index.to_numpy(dtype=float)
    keep = np.abs(np.log10(scales)) > 1e-9
    fig = Figure(figsize=(15.0, 4.8), layout="constrained")
    left, middle, right = fig.subplots(1, 3)
    predicted = half_crossing(scales, frame["frozen"].to_numpy())
    sigma = select(metrics, "sigma_quantile").set_index("quantile")["value"]
    for ax in (left, middle):
        ax.axvspan(config.eps / sigma[0.9], config.eps / sigma[0.1], color="0.85", label="c sigma = eps (10-90%)")
    for optimiser, marker in (("adam", "o"), ("lecture-adam", "x"), ("sgd", "s")):
        values = frame[optimiser].to_numpy()
        shown = keep & np.isfinite(values) & (values < 1e3)
        left.loglog(scales[shown], values[shown], marker, mfc="none", label=f"{LABELS[optimiser]}: measured")
    linear = frame["linear"].to_numpy()
    left.loglog(
        scales[keep & (linear < 3)],
        linear[keep & (linear < 3)],
        "-",
        color="k",
        lw=1,
        label=r"first-order theory $|J\epsilon(1/c - 1)|$",
    )
    left.loglog(scales[keep], frame["frozen"].to_numpy()[keep], "--", color="C4", lw=1, label="frozen-path estimate")
    left.axvline(predicted, color="C4", ls=":", label=f"predicted breakdown c = {predicted:.2g}")
    left.axhline(0.5, color="0.5", lw=0.6)
    left.set(
        xlabel="loss scale c",
        ylabel=r"$|w_T(c) - w_T(1)|\ /\ |w_T(1) - w_0|$",
        title="Adam on c L: unchanged up to eps, until c |g| ~ eps",
    )
    left.legend(fontsize=7)
    for optimiser, marker in (("adam", "o"), ("sgd", "s")):
        values = frame[f"displacement/{optimiser}"].to_numpy()
        shown = np.isfinite(values) & (values < 1e3)
        middle.loglog(scales[shown], values[shown], marker, mfc="none", label=LABELS[optimiser])
        if optimiser == "sgd" and not shown.all():
            middle.axvline(scales[~shown].min(), color="C1", ls="--", lw=0.8, label="SGD diverges from here")
    anchor = frame["displacement/sgd"].iloc[0] / scales[0]
    middle.loglog(scales, anchor * scales, "k-", lw=0.8, label=r"$\propto c$ (SGD's step is $c \eta g$)")
    middle.set_ylim(top=1e2)
    middle.set(xlabel="loss scale c", ylabel=r"$|w_T(c) - w_0|$", title=f"Distance travelled in {config.steps} steps")
    middle.legend(fontsize=7)
    path = _path_length(metrics)
    diagonal = select(metrics, "diagonal_distance").set_index("where")["value"] / path
    theory = float(select(metrics, "diagonal_linear_change")["value"].iloc[0]) / path
    bars = right.bar([0, 1], [diagonal["gradient"], diagonal["parameters"]], color=["C2", "C1"], log=True)
    right.plot([-0.4, 0.4], [theory, theory], "k-", lw=2, label="first-order epsilon theory")
    right.axhline(NOT_INVARIANT, color="C1", ls="--", lw=0.8, label="'not invariant' threshold")
    right.set_xticks([0, 1], [r"gradient $g \to Dg$", r"parameters $w = Du$"])
    right.bar_label(bars, fmt="%.2g")
    low, high = config.diagonal_spread**-0.5, config.diagonal_spread**0.5
    right.set(ylabel="relative change of Adam's w_T", title=f"Diagonal rescaling, d_i in [{low:.2g}, {high:.2g}]")
    right.legend(fontsize=7)
    fig.suptitle(
        f"Scale invariance: tanh net, {config.steps} full-batch steps, Adam lr {config.adam_lr:g} eps {config.eps:g}, "
        f"SGD lr {config.sgd_lr:g}"
    )
    return fig


def _memory_figure(metrics: pd.DataFrame) -> Figure:
    fig = Figure(figsize=(8.0, 4.6), layout="constrained")
    ax = fig.subplots()
    keys = list(MEMORY_OPTIMISERS)
    x = np.arange(len(keys))
    persistent = select(metrics, "persistent").set_index("optimiser")["value"].reindex(keys)
    peak = select(metrics, "step_peak").set_index("optimiser")["value"].reindex(keys)
    ax.bar_label(ax.bar(x - 0.2, persistent, 0.4, color="C0", label="parameters + state"), fmt="%.2f")
    ax.bar_label(ax.bar(x + 0.2, peak, 0.4, color="C1", label="peak over a training step"), fmt="%.2f")
    for i, key in enumerate(keys):
        _, _, buffers, temporaries = MEMORY_OPTIMISERS[key]
        label = "theory (peak: torch's foreach update; the lectures' pure rule is not modelled)" if i == 0 else None
        ax.plot([i - 0.4, i], [1 + buffers] * 2, "k-", lw=2, label=label)
        if temporaries is not None:
            ax.plot([i, i + 0.4], [2 + buffers + temporaries] * 2, "k-", lw=2)
    ax.set_xticks(x, [LABELS[k] for k in keys])
    ax.set(ylabel="bytes per parameter byte", title="Memory: Adam keeps m and v (3x the parameters with them)")
    ax.legend(fontsize=8)
    return fig


EXPERIMENT = Experiment(
    name="adam-properties",
    claim="Adam is invariant to the scale of the gradient (multiplying the loss by c > 0 leaves its iterates "
    "unchanged up to epsilon, while SGD's step scales by c), has a wider range of good learning rates than SGD with "
    "momentum, and keeps two buffers the size of the parameters (3x the parameters with them).",
    config=AdamPropertiesConfig,
    measure=measure,
    checks=checks,
    figures=figures,
    presets={"full": {"seeds": 10, "lr_range": (10**-4.5, 10**0.5), "lrs_per_decade": 8, "scales_per_decade": 4}},
    references=(
        "Kingma & Ba (2015), Adam: a method for stochastic optimization, ICLR",
        "Wilson, Roelofs, Stern, Srebro & Recht (2017), The marginal value of adaptive gradient methods in machine "
        "learning, NeurIPS",
        "Schmidt, Schneider & Hennig (2021), Descending through a crowded valley: benchmarking deep learning "
        "optimizers, ICML",
    ),
    part="optimisation",
)
