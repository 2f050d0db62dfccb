"""The value / gradient / Hessian oracle of a model's training loss.

`Objective` turns (model, loss, data) into a pure function of the parameters,

    f(theta) = (1/N) sum_i loss(model(theta, x_i), y_i),

and answers the oracle queries of the optimisation lectures at any theta: f, grad f, the Hessian-vector product
H v = d/de grad f(theta + e v) at e = 0 (Pearlmutter 1994), and the generalised
Gauss-Newton-vector product G v = J^T H_L J v (Schraudolph 2002), where J is the Jacobian of the model outputs
and H_L the Hessian of the loss in the outputs. It is built on `torch.func.functional_call`, so the model's own
parameters are never read at a query point other than the default and never written.
"""

from __future__ import annotations

import contextlib
import fnmatch
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, overload

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vjp
from torch.nn.attention import SDPBackend, sdpa_kernel

from tdlab.oracles.data import Batches, Inputs, as_batches, call_args, to_device
from tdlab.oracles.flat import Params, flatten, unflatten
from tdlab.oracles.second_order import LeanDoubleBackward

LossFn = Callable[[Any, Tensor], Tensor]
ParamsLike = Tensor | Mapping[str, Tensor]
_VALUE = "\0value"  # key of the loss among the gradient entries of one pass
Selection = str | Sequence[str] | nn.Module | Callable[[str, Tensor], bool] | None
Blocks = str | Mapping[str, Selection]


@contextlib.contextmanager
def _batch_statistics_without_updates(norms: Sequence[nn.modules.batchnorm._BatchNorm]) -> Iterator[None]:
    """In train mode, let the BatchNorm layers `norms` normalise with batch statistics without updating running
    ones."""
    saved = [m.track_running_stats for m in norms]
    try:
        for m in norms:
            if m.training:
                m.track_running_stats = False
        yield
    finally:
        for m, flag in zip(norms, saved, strict=True):
            m.track_running_stats = flag


@contextlib.contextmanager
def differentiable_kernels() -> Iterator[None]:
    """Select kernels that have derivatives of every order, on CPU and CUDA, for the duration of a query.

    The fused attention kernels that `F.scaled_dot_product_attention` picks (flash, memory-efficient, cuDNN)
    and the fast paths of `nn.MultiheadAttention` / `nn.TransformerEncoderLayer` have no double backward, so a
    Hessian-vector product through them fails. Inside this context attention runs through the math backend
    (the same function, composed of differentiable operations) and the fast paths are off; both settings are
    restored on exit.

    Example:
        >>> q = torch.randn(1, 2, 4, 8)
        >>> with differentiable_kernels():
        ...     out = torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True)
        >>> out.shape
        torch.Size([1, 2, 4, 8])
    """
    fast_path = torch.backends.mha.get_fastpath_enabled()
    try:
        torch.backends.mha.set_fastpath_enabled(False)
        with sdpa_kernel([SDPBackend.MATH]):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fast_path)


def _derivatives(loss: Tensor, leaves: Params, create_graph: bool) -> list[Tensor]:
    """d loss / d leaf for each leaf (zeros for leaves the loss does not depend on), by `torch.autograd.grad`."""
    if not loss.requires_grad:
        return [torch.zeros_like(p) for p in leaves.values()]
    return list(
        torch.autograd.grad(
            loss, list(leaves.values()), create_graph=create_graph, allow_unused=True, materialize_grads=True
        )
    )


def _aliases(model: nn.Module) -> dict[str, list[str]]:
    """Every name under which each parameter of `model` is reachable, by its first name (as in
    `model.named_parameters()`): a tied parameter has several. Passing all of them to `functional_call` with
    `tie_weights=False` ties them as its default would, without searching the module tree at every call."""
    first: dict[int, str] = {}
    aliases: dict[str, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        aliases.setdefault(first.setdefault(id(p), name), []).append(name)
    return aliases


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a `DistributedDataParallel` or `DataParallel` wrapper (the model itself otherwise).

    Example:
        >>> net = nn.Linear(2, 1)
        >>> unwrap(nn.DataParallel(net)) is net
        True
    """
    while isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
        model = model.module
    return model


def select_parameters(model: nn.Module, params: Selection = None) -> Params:
    """The parameters that make up theta, by name, detached (sharing storage with the model).

    Args:
        model: the module.
        params: None for every trainable parameter (`requires_grad`); a sequence of parameter names (as in
            `model.named_parameters()`); a glob pattern over the names (`"encoder.*.self_attn.*"`, fnmatch); a
            submodule of `model` (its parameters); or a predicate `params(name, parameter) -> bool`. Tied
            parameters appear once, under their first name.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))
        >>> list(select_parameters(net, net[2]))
        ['2.weight', '2.bias']
        >>> list(select_parameters(net, lambda name, p: name.endswith("bias")))
        ['0.bias', '2.bias']
    """
    named = dict(model.named_parameters())
    if params is None:
        chosen = [name for name, p in named.items() if p.requires_grad]
    elif isinstance(params, nn.Module):
        if not any(m is params for m in model.modules()):
            raise ValueError(f"params: the module {type(params).__name__} is not a submodule of the model")
        own = {id(p) for p in params.parameters()}
        chosen = [name for name, p in named.items() if id(p) in own]
    elif isinstance(params, str):
        chosen = [name for name in named if fnmatch.fnmatchcase(name, params)]
    elif callable(params):
        chosen = [name for name, p in named.items() if params(name, p)]
    elif isinstance(params, Sequence) and not isinstance(params, str):
        unknown = [name for name in params if name not in named]
        if unknown:
            shown = ", ".join(list(named)[:8]) + (", ..." if len(named) > 8 else "")
            raise ValueError(f"params: no parameter named {unknown} in the model (names: {shown})")
        chosen = list(dict.fromkeys(params))
    else:
        raise TypeError(
            "params: expected None, a sequence of parameter names, a glob pattern, a submodule or a predicate "
            f"(name, parameter) -> bool, got {type(params).__name__}"
        )
    if not chosen:
        raise ValueError("params: selects no parameter (the model has no trainable parameters, or none matches)")
    return {name: named[name].detach() for name in chosen}


def parameter_blocks(model: nn.Module, blocks: Blocks) -> dict[str, Selection]:
    """Named blocks of parameters: `"module"` for one block per module that owns trainable parameters (named by
    its path, "" for the root), or a mapping from block names to selections (see `select_parameters`).

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))
        >>> parameter_blocks(net, "module")
        {'0': ['0.weight', '0.bias'], '2': ['2.weight', '2.bias']}
    """
    if isinstance(blocks, Mapping):
        if not blocks:
            raise ValueError("blocks: expected at least one block, got an empty mapping")
        return dict(blocks)
    if blocks != "module":
        raise ValueError(
            f"blocks: expected 'module' or a mapping from block names to parameter selections, got {blocks!r}"
        )
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    named = {id(p): name for name, p in model.named_parameters()}
    out: dict[str, Selection] = {}
    for path, module in model.named_modules():
        own = [named[id(p)] for p in module.parameters(recurse=False) if id(p) in trainable and id(p) in named]
        own = [name for name in own if name.rpartition(".")[0] == path]  # a tied parameter belongs to its first owner
        if own:
            out[path] = own
    return out


class Objective:
    """Loss of `model` on `data` as a function of the parameters, with first- and second-order oracles.

    Args:
        model: any `nn.Module` (a `DistributedDataParallel` or `DataParallel` wrapper is looked through).
        loss_fn: `loss_fn(outputs, targets)` returning the mean loss over the batch (e.g. `nn.MSELoss()`,
            `nn.CrossEntropyLoss()`); `outputs` is whatever the model returns (a tensor, or e.g. a Hugging Face
            output whose `.logits` the loss reads).
        data: a pair `(inputs, targets)` of tensors, a `TensorDataset`, a `DataLoader` with a fixed order, or any
            re-iterable of `(inputs, targets)` batches; inputs a tensor (`model(x)`), a tuple (`model(*x)`) or a
            dict (`model(**x)`). See `tdlab.oracles.data` (a reshuffling loader is refused, with the reason).
        batch_size: for in-memory tensors, the chunk size (None: one chunk); a loader's batches are its own.
        params: the parameters that make up theta: None (every trainable parameter), names, a submodule or a
            predicate (see `select_parameters`); the others stay at their current values.
        distributed: with `torch.distributed` initialised, each process holds its own shard of the data and
            every oracle sums over all processes (one all-reduce per query), so every process gets the answer
            of one process holding all the data; the query points and vectors must be the same on every process.

    Every oracle is the average over the examples of all batches, f(theta) = (1/N) sum_b n_b f_b(theta), where
    f_b is the mean loss of batch b with n_b examples (the first dimension of its targets). It equals the
    full-batch value to rounding whenever the model treats examples independently. Batches are streamed: one
    batch and its graph are in memory at a time, moved to the model's device as they come (floating-point
    tensors cast to the model's dtype). Second-order queries run with attention kernels that have double
    backward (`differentiable_kernels`); value and gradient queries keep the model's own (possibly fused) kernels.

    Queries take theta as a flat vector, a dict of named tensors, or `None` (the model's current parameters).
    Results come back as the query's type: a dict for a dict, a flat vector otherwise. They are detached values,
    not functions of theta for autograd or torch.func to differentiate further (`torch.func.jacrev` of
    `gradient` gives zeros): ask `hvp` or `ggn_vp` for second derivatives; `torch.func.vmap` over query points
    works.

    Train and eval mode: the objective evaluates the model in the mode it is in at the time of the query.
    In eval mode BatchNorm uses its running statistics and dropout is off, so f is a deterministic function of
    theta. In train mode BatchNorm normalises each batch with its own statistics (f then depends on the batch
    split; running statistics are not updated by a query), and dropout draws a fresh mask at each query,
    so f, its gradient and H v are stochastic; a single HVP query uses one mask for the gradient and its
    derivative. Call `model.eval()` for the deterministic loss landscape that curvature routines assume.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
        >>> X, y = torch.randn(16, 3), torch.randn(16, 1)
        >>> obj = Objective(model, nn.MSELoss(), (X, y))
        >>> g = obj.gradient()
        >>> obj.hvp(g).shape == g.shape == (obj.dim,)
        True
        >>> Objective(model, nn.MSELoss(), (X, y), params=model[2]).dim
        5
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        data: object,
        batch_size: int | None = None,
        params: Selection = None,
        distributed: bool = False,
    ):
        model = unwrap(model)
        self.model = model
        self.loss_fn = loss_fn
        self.params: Params = select_parameters(model, params)
        self._fixed: Params = {name: p.detach() for name, p in model.named_parameters() if name not in self.params}
        self._aliases = _aliases(model)
        self._norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        reference = next(iter(self.params.values()))
        self.device = reference.device
        self.dtype = reference.dtype
        self.data: Batches = as_batches(data, batch_size)
        if self.data.tensors is not None:  # in-memory data moves to the device once, not at every pass
            self.data = Batches(None, to_device(self.data.tensors, self.device, self.dtype), self.data.batch_size)
        self.dim = sum(p.numel() for p in self.params.values())
        if distributed and not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            raise ValueError("distributed: True needs torch.distributed initialised (init_process_group) first")
        self.distributed = distributed
        # Some forward-mode rules fail inside torch.func (batch_norm's and mse_loss's backward in torch 2.13);
        # on the first failure Jacobian-vector products switch to the double-vjp identity (same numbers).
        self.forward_mode = True

    def restricted(self, params: Selection, theta: ParamsLike | None = None) -> Objective:
        """The same loss as a function of the selected parameters only, the others held at their values in
        `theta` (default: the model's current values).

        Its Hessian is the diagonal block H[S, S] of the full Hessian at theta, S the selected coordinates.

        Example:
            >>> net = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))
            >>> obj = Objective(net, nn.MSELoss(), (torch.randn(8, 2), torch.randn(8, 1)))
            >>> obj.restricted("2.*").dim
            4
        """
        block = Objective(self.model, self.loss_fn, self.data, params=params, distributed=self.distributed)
        if theta is not None:
            point = self._params(theta)
            block._fixed.update({name: t for name, t in point.items() if name in block._fixed})
        return block

    # ----------------------------------------------------------------------------------------- plumbing
    @property
    def num_examples(self) -> int:
        """N, the number of examples (over all processes when distributed)."""
        count = torch.tensor(float(self.data.num_examples), device=self.device, dtype=torch.float64)
        return int(self._all_reduce([count])[0])

    def batches(self) -> Iterator[tuple[Inputs, Tensor]]:
        """The (inputs, targets) batches of this process, moved to the model's device and dtype, one at a time."""
        if self.data.tensors is not None:  # moved once, in __init__
            yield from self.data
            return
        for inputs, targets in self.data:
            yield to_device(inputs, self.device, self.dtype), to_device(targets, self.device, self.dtype)

    def _params(self, theta: ParamsLike | None) -> Params:
        if theta is None:
            return self.params
        if isinstance(theta, Tensor):
            return unflatten(theta.to(self.device, self.dtype), self.params)
        missing = set(self.params) - set(theta)
        if missing:
            raise ValueError(f"theta: missing parameters {sorted(missing)}")
        return {name: theta[name] for name in self.params}

    def outputs(self, theta: Params, inputs: Inputs) -> Any:
        """Model outputs at parameters `theta` (a dict), without touching the model's own parameters."""
        args, kwargs = call_args(inputs)
        state = {alias: t for name, t in {**self._fixed, **theta}.items() for alias in self._aliases[name]}
        return functional_call(self.model, state, args, kwargs, tie_weights=False)

    def _loss(self, theta: Params, inputs: Inputs, targets: Tensor) -> Tensor:
        return self.loss_fn(self.outputs(theta, inputs), targets)

    @staticmethod
    def _like(result: Params, query: ParamsLike | None) -> ParamsLike:
        return result if isinstance(query, Mapping) else flatten(result)

    def _vector(self, v: ParamsLike) -> Params:
        if isinstance(v, Tensor):
            return unflatten(v.to(self.device, self.dtype), self.params)
        return {name: v[name] for name in self.params}

    def _all_reduce(self, tensors: list[Tensor]) -> list[Tensor]:
        """Sums over all processes (one collective call), or the tensors themselves."""
        if not self.distributed:
            return tensors
        flat = torch.cat([t.reshape(-1) for t in tensors])
        torch.distributed.all_reduce(flat)
        return list(unflatten(flat, {str(i): t for i, t in enumerate(tensors)}).values())

    def _mean(self, per_batch: Callable[[Inputs, Tensor], Params], second_order: bool = True) -> Params:
        """(1/N) sum_b n_b per_batch(batch b), streamed over the batches and summed over processes; with
        `second_order`, under `differentiable_kernels` (first-order queries keep the fused kernels)."""
        kernels = differentiable_kernels() if second_order else contextlib.nullcontext()
        with _batch_statistics_without_updates(self._norms), kernels:
            return self._weighted_mean(
                (targets.shape[0], per_batch(inputs, targets)) for inputs, targets in self.batches()
            )

    def _weighted_mean(self, parts: Iterable[tuple[int, Params]]) -> Params:
        """(sum_b n_b part_b) / (sum_b n_b) over `(n_b, part_b)` pairs, summed over processes.

        The sums are kept in float32 for half-precision models (float16 overflows at 65504, bfloat16 counts
        exactly only to 256) and in the model's dtype otherwise; the mean is returned in the model's dtype."""
        parts = iter(parts)
        first = next(parts, None)
        if first is None:
            raise ValueError("data: gave no batch")
        second = next(parts, None)
        if second is None and not self.distributed:  # one batch: its mean is the answer
            return {k: t.detach().to(self.dtype) for k, t in first[1].items()}
        wide = torch.float32 if self.dtype in (torch.float16, torch.bfloat16) else self.dtype
        count, part = first
        total = {k: count * t.detach().to(wide) for k, t in part.items()}
        for n, part in itertools.chain([] if second is None else [second], parts):
            for k, t in part.items():
                total[k] += n * t.detach().to(wide)
            count += n
        names = list(total)
        *sums, examples = self._all_reduce(
            [*total.values(), torch.tensor(float(count), device=self.device, dtype=wide)]
        )
        return {name: (s / examples).to(self.dtype) for name, s in zip(names, sums, strict=True)}

    # ------------------------------------------------------------------------------------------ oracles
    def value(self, theta: ParamsLike | None = None) -> Tensor:
        """f(theta) as a 0-d tensor."""
        params = self._params(theta)
        with torch.no_grad():
            return self._mean(lambda x, y: {"value": self._loss(params, x, y)}, second_order=False)["value"]

    def average(self, metric: Callable[[Any, Tensor], Tensor | float], theta: ParamsLike | None = None) -> float:
        """(1/N) sum_b n_b metric(outputs_b, targets_b) at theta, streamed like the loss: e.g. the accuracy.

        Example:
            >>> from tdlab.data import accuracy
            >>> obj = Objective(nn.Linear(2, 3), nn.CrossEntropyLoss(), (torch.randn(8, 2), torch.randint(0, 3, (8,))))
            >>> 0.0 <= obj.average(accuracy) <= 1.0
            True
        """
        params = self._params(theta)

        def per_batch(inputs: Inputs, targets: Tensor) -> Params:
            value = metric(self.outputs(params, inputs), targets)
            return {"metric": torch.as_tensor(value, device=self.device, dtype=self.dtype)}

        with torch.no_grad():
            return float(self._mean(per_batch, second_order=False)["metric"])

    @overload
    def gradient(self, theta: Mapping[str, Tensor]) -> Params: ...
    @overload
    def gradient(self, theta: Tensor | None = None) -> Tensor: ...
    def gradient(self, theta: ParamsLike | None = None) -> ParamsLike:
        """grad f(theta)."""
        return self.value_and_gradient(theta)[1]

    def value_and_gradient(self, theta: ParamsLike | None = None) -> tuple[Tensor, ParamsLike]:
        """(f(theta), grad f(theta)) in one pass over the data: per batch, one forward and one backward pass
        (`torch.autograd` on detached copies of theta; torch.func's `grad` inside a torch.func transform), with the
        model's own (possibly fused) kernels."""
        params = self._params(theta)

        def loss_with_value(p: Params, inputs: Inputs, targets: Tensor) -> tuple[Tensor, Tensor]:
            loss = self._loss(p, inputs, targets)
            return loss, loss.detach()

        def per_batch(inputs: Inputs, targets: Tensor) -> Params:
            try:
                leaves = {name: p.detach().requires_grad_() for name, p in params.items()}
            except RuntimeError:  # inside a torch.func transform
                g, loss = grad(loss_with_value, has_aux=True)(params, inputs, targets)
                return {**g, _VALUE: loss}
            with torch.enable_grad():
                loss = self._loss(leaves, inputs, targets)
                gradient = _derivatives(loss, leaves, create_graph=False)
            return {**dict(zip(leaves, gradient, strict=True)), _VALUE: loss.detach()}

        grads = self._mean(per_batch, second_order=False)
        value = grads.pop(_VALUE)
        return value, self._like(grads, theta)

    def hvp(self, v: ParamsLike, theta: ParamsLike | None = None) -> ParamsLike:
        """Hessian-vector product H(theta) v.

        Computed as the vector-Jacobian product of the gradient, v^T d(grad f) = (H^T v)^T = H v since H is
        symmetric (reverse-over-reverse, Pearlmutter 1994): per batch, the gradient with its graph
        (`torch.autograd.grad` with `create_graph`), then one backward pass of v through that graph. On CPU it is
        as fast as forward-over-reverse, and it works for every layer and loss, where some forward-mode rules fail
        in torch.func (mse_loss, batch_norm).
        """
        return self.hvp_function(theta, keep_graphs=False)(v)

    def hvp_function(
        self, theta: ParamsLike | None = None, keep_graphs: bool | None = None
    ) -> Callable[[ParamsLike], ParamsLike]:
        """A function v -> H(theta) v, for many products at one point theta (as Lanczos and Hutchinson need).

        With `keep_graphs`, the gradient of each batch, grad f_b(theta), is computed once with its graph, and every
        product is then one backward pass through that graph: the vector-Jacobian product v^T d(grad f_b), which
        skips the forward and the first backward pass that `hvp` repeats. A product then costs about 1.7-2x a
        plain `loss.backward()` on a 78k-parameter tanh MLP with 1024 examples and on a ResNet with BatchNorm
        (CPU, one thread; `benchmarks/bench_anchors.py`), where `hvp` costs 3-4x; at least twice the convolutions
        of a backward pass are inherent. The price is memory: the graphs of all batches are held at once, for as
        long as the function lives. In train mode the dropout masks and batch statistics of the first pass then
        serve every product (the products are those of one fixed symmetric matrix, as Lanczos assumes).

        Args:
            theta: the point (default: the model's parameters now; with `keep_graphs` False, at each call).
            keep_graphs: keep each batch's graph (True), recompute it at each product as `hvp` does (False), or
                None: keep it when the data is one batch held in memory (no more memory than one `hvp` needs).

        Example:
            >>> net = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))
            >>> obj = Objective(net, nn.MSELoss(), (torch.randn(8, 2), torch.randn(8, 1)))
            >>> v = torch.randn(obj.dim)
            >>> torch.allclose(obj.hvp_function()(v), obj.hvp(v), atol=1e-6)
            True
        """
        if keep_graphs is None:
            keep_graphs = self.data.tensors is not None and (
                self.data.batch_size is None or self.data.batch_size >= self.data.num_examples
            )
        if not keep_graphs:
            return lambda v: self._hvp_recomputed(v, theta)
        params = self._params(theta)
        with _batch_statistics_without_updates(self._norms), differentiable_kernels():
            pullbacks = [
                (targets.shape[0], self._gradient_pullback(params, inputs, targets, keep=True))
                for inputs, targets in self.batches()
            ]

        def product(v: ParamsLike) -> ParamsLike:
            tangent = self._vector(v)
            return self._like(self._weighted_mean((n, pullback(tangent)) for n, pullback in pullbacks), v)

        return product

    def _hvp_recomputed(self, v: ParamsLike, theta: ParamsLike | None) -> ParamsLike:
        """H(theta) v with each batch's gradient graph built for this product alone."""
        params, tangent = self._params(theta), self._vector(v)

        def per_batch(inputs: Inputs, targets: Tensor) -> Params:
            return self._gradient_pullback(params, inputs, targets, keep=False)(tangent)

        return self._like(self._mean(per_batch), v)

    def _gradient_pullback(
        self, params: Params, inputs: Inputs, targets: Tensor, keep: bool
    ) -> Callable[[Params], Params]:
        """v -> v^T d(grad f_b)(theta) = H_b v for one batch: its gradient is computed now, with its graph, and each
        call is one backward pass of v through that graph (`keep`: the graph serves more than one call).

        The graph is built with plain `torch.autograd` (a torch.func `vjp` of `grad` would also record a graph of
        every product, for third derivatives nobody asks for) and under `LeanDoubleBackward` (cheaper products
        through BatchNorm, ReLU, GELU and convolutions). Inside a torch.func transform (`vmap` over the products of
        `HessianOperator @ V` without kept graphs), where autograd cannot mark leaves, it is torch.func's `vjp`.
        """
        try:
            leaves = {name: p.detach().requires_grad_() for name, p in params.items()}
        except RuntimeError:  # inside a torch.func transform
            with LeanDoubleBackward():
                _, pullback = vjp(grad(lambda p: self._loss(p, inputs, targets)), params)
            return lambda tangent: pullback(tangent)[0]
        with torch.enable_grad(), LeanDoubleBackward():
            loss = self._loss(leaves, inputs, targets)
            gradient = _derivatives(loss, leaves, create_graph=True)
        tracked = [name for name, g in zip(leaves, gradient, strict=True) if g.requires_grad]
        outputs = [g for g in gradient if g.requires_grad]

        def pullback(tangent: Params) -> Params:
            if not tracked:  # the gradient does not depend on theta
                return {name: torch.zeros_like(p) for name, p in leaves.items()}
            products = torch.autograd.grad(
                outputs,
                list(leaves.values()),
                [tangent[name] for name in tracked],
                retain_graph=keep,
                allow_unused=True,
                materialize_grads=True,
            )
            return dict(zip(leaves, products, strict=True))

        return pullback

    def ggn_vp(self, v: ParamsLike, theta: ParamsLike | None = None) -> ParamsLike:
        """Generalised Gauss-Newton-vector product G(theta) v = J^T H_L J v.

        G is positive semi-definite for convex losses (MSE, cross-entropy) and equals the Hessian of a linear model.
        """
        params, tangent = self._params(theta), self._vector(v)

        def per_batch(inputs: Inputs, targets: Tensor) -> Params:
            def model_outputs(p: Params) -> Any:
                return self.outputs(p, inputs)

            outputs = torch.utils._pytree.tree_map(torch.Tensor.detach, model_outputs(params))
            jv = self._jvp(model_outputs, params, tangent)
            hjv = self._jvp(grad(lambda o: self.loss_fn(o, targets)), outputs, jv)
            _, pullback = vjp(model_outputs, params)
            return pullback(hjv)[0]

        return self._like(self._mean(per_batch), v)

    def _jvp(self, fn: Callable, primal: object, tangent: object) -> object:
        """Jacobian-vector product of `fn` at `primal`: forward mode, or the double-vjp identity
        J v = d/du <J^T u, v> when forward mode is unavailable."""
        if self.forward_mode:
            try:
                return jvp(fn, (primal,), (tangent,))[1]
            except (RuntimeError, NotImplementedError):
                self.forward_mode = False
        out, pullback = vjp(fn, primal)
        dummy = torch.utils._pytree.tree_map(torch.zeros_like, out)
        _, double_pullback = vjp(pullback, dummy)
        return double_pullback((tangent,))[0]

    def flat_parameters(self) -> Tensor:
        """The model's current trainable parameters as one flat vector (a copy)."""
        return flatten(self.params).clone()
