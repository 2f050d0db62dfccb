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
from collections.abc import Callable, Iterator, Mapping
from typing import overload

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vjp

from tdlab.oracles.flat import Params, flatten, trainable_parameters, unflatten

LossFn = Callable[[Tensor, Tensor], Tensor]
ParamsLike = Tensor | Mapping[str, Tensor]


def _as_tensors(data: object) -> tuple[Tensor, Tensor]:
    if isinstance(data, torch.utils.data.TensorDataset) and len(data.tensors) == 2:
        return data.tensors[0], data.tensors[1]
    if isinstance(data, tuple | list) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        return data[0], data[1]
    raise TypeError(
        "data: expected a pair of tensors (inputs, targets) or a TensorDataset of two tensors, "
        f"got {type(data).__name__}"
    )


@contextlib.contextmanager
def _batch_statistics_without_updates(model: nn.Module) -> Iterator[None]:
    """In train mode, let BatchNorm layers normalise with batch statistics without updating running ones."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.track_running_stats for m in norms]
    try:
        for m in norms:
            if m.training:
                m.track_running_stats = False
        yield
    finally:
        for m, flag in zip(norms, saved, strict=True):
            m.track_running_stats = flag


class Objective:
    """Loss of `model` on `data` as a function of the parameters, with first- and second-order oracles.

    Args:
        model: any `nn.Module`; its trainable parameters define theta (in `named_parameters` order).
        loss_fn: `loss_fn(outputs, targets)` returning the mean loss over the batch (e.g. `nn.MSELoss()`,
            `nn.CrossEntropyLoss()`).
        data: a pair `(inputs, targets)` of tensors, or a `TensorDataset` of two tensors. Moved to the model's
            device.
        batch_size: `None` for full batch; otherwise every oracle is the average over consecutive mini-batches
            of this size (in data order), weighted by batch size so it equals the full-batch value whenever the
            model treats examples independently.

    Queries take theta as a flat vector, a dict of named tensors, or `None` (the model's current parameters).
    Results come back as the query's type: a dict for a dict, a flat vector otherwise.

    Train and eval mode: the objective evaluates the model in the mode it is in at the time of the query.
    In eval mode BatchNorm uses its running statistics and dropout is off, so f is a deterministic function of
    theta. In train mode BatchNorm normalises each mini-batch with its own statistics (f then depends on the
    batch split; running statistics are not updated by a query), and dropout draws a fresh mask at each query,
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
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, data: object, batch_size: int | None = None):
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer or None (full batch), got {batch_size}")
        self.model = model
        self.loss_fn = loss_fn
        self.params: Params = trainable_parameters(model)
        if not self.params:
            raise ValueError("model: has no trainable parameters")
        reference = next(iter(self.params.values()))
        self.device = reference.device
        self.dtype = reference.dtype
        inputs, targets = _as_tensors(data)
        if inputs.shape[0] != targets.shape[0]:
            raise ValueError(
                f"data: inputs and targets must have the same number of examples, "
                f"got {inputs.shape[0]} and {targets.shape[0]}"
            )
        if inputs.is_floating_point():
            inputs = inputs.to(self.dtype)
        if targets.is_floating_point():
            targets = targets.to(self.dtype)
        self.inputs = inputs.to(self.device)
        self.targets = targets.to(self.device)
        self.batch_size = batch_size
        self.dim = sum(p.numel() for p in self.params.values())
        # Some forward-mode rules fail inside torch.func (batch_norm's and mse_loss's backward in torch 2.13);
        # on the first failure Jacobian-vector products switch to the double-vjp identity (same numbers).
        self.forward_mode = True

    # ----------------------------------------------------------------------------------------- plumbing
    @property
    def num_examples(self) -> int:
        return self.inputs.shape[0]

    def batches(self) -> Iterator[tuple[Tensor, Tensor, float]]:
        """Yield (inputs, targets, weight) with weights n_b / N summing to 1."""
        n = self.num_examples
        size = n if self.batch_size is None else self.batch_size
        for start in range(0, n, size):
            stop = min(start + size, n)
            yield self.inputs[start:stop], self.targets[start:stop], (stop - start) / n

    def _params(self, theta: ParamsLike | None) -> Params:
        if theta is None:
            return self.params
        if isinstance(theta, Tensor):
            return unflatten(theta.to(self.device, self.dtype), self.params)
        missing = set(self.params) - set(theta)
        if missing:
            raise ValueError(f"theta: missing parameters {sorted(missing)}")
        return {name: theta[name] for name in self.params}

    def _buffers(self) -> Params:
        return dict(self.model.named_buffers())

    def outputs(self, theta: Params, inputs: Tensor) -> Tensor:
        """Model outputs at parameters `theta` (a dict), without touching the model's own parameters."""
        return functional_call(self.model, (theta, self._buffers()), (inputs,))

    def _loss(self, theta: Params, inputs: Tensor, targets: Tensor) -> Tensor:
        return self.loss_fn(self.outputs(theta, inputs), targets)

    @staticmethod
    def _like(result: Params, query: ParamsLike | None) -> ParamsLike:
        return result if isinstance(query, Mapping) else flatten(result)

    def _vector(self, v: ParamsLike) -> Params:
        if isinstance(v, Tensor):
            return unflatten(v.to(self.device, self.dtype), self.params)
        return {name: v[name] for name in self.params}

    def _accumulate(self, per_batch: Callable[[Tensor, Tensor], Params]) -> Params:
        total: Params | None = None
        with _batch_statistics_without_updates(self.model):
            for inputs, targets, weight in self.batches():
                part = per_batch(inputs, targets)
                if total is None:
                    total = {k: weight * t.detach() for k, t in part.items()}
                else:
                    for k, t in part.items():
                        total[k] += weight * t.detach()
        assert total is not None
        return total

    # ------------------------------------------------------------------------------------------ oracles
    def value(self, theta: ParamsLike | None = None) -> Tensor:
        """f(theta) as a 0-d tensor."""
        params = self._params(theta)
        with torch.no_grad(), _batch_statistics_without_updates(self.model):
            return sum(w * self._loss(params, x, y) for x, y, w in self.batches())  # type: ignore[return-value]

    @overload
    def gradient(self, theta: Mapping[str, Tensor]) -> Params: ...
    @overload
    def gradient(self, theta: Tensor | None = None) -> Tensor: ...
    def gradient(self, theta: ParamsLike | None = None) -> ParamsLike:
        """grad f(theta)."""
        return self.value_and_gradient(theta)[1]

    def value_and_gradient(self, theta: ParamsLike | None = None) -> tuple[Tensor, ParamsLike]:
        """(f(theta), grad f(theta)) in one pass over the data."""
        params = self._params(theta)
        value = torch.zeros((), device=self.device, dtype=self.dtype)

        def loss_with_value(p: Params, inputs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
            loss = self._loss(p, inputs, targets)
            return loss, loss.detach()

        def per_batch(inputs: Tensor, targets: Tensor) -> Params:
            nonlocal value
            g, loss = grad(loss_with_value, has_aux=True)(params, inputs, targets)
            value = value + loss * (inputs.shape[0] / self.num_examples)
            return g

        grads = self._accumulate(per_batch)
        return value, self._like(grads, theta)

    def hvp(self, v: ParamsLike, theta: ParamsLike | None = None) -> ParamsLike:
        """Hessian-vector product H(theta) v.

        Computed as the vector-Jacobian product of the gradient, v^T d(grad f) = (H^T v)^T = H v since H is
        symmetric (reverse-over-reverse). On CPU it is as fast as forward-over-reverse (Pearlmutter 1994), and it
        works for every layer and loss, where some forward-mode rules fail in torch.func (mse_loss, batch_norm).
        """
        params, tangent = self._params(theta), self._vector(v)

        def per_batch(inputs: Tensor, targets: Tensor) -> Params:
            _, pullback = vjp(grad(lambda p: self._loss(p, inputs, targets)), params)
            return pullback(tangent)[0]

        return self._like(self._accumulate(per_batch), v)

    def ggn_vp(self, v: ParamsLike, theta: ParamsLike | None = None) -> ParamsLike:
        """Generalised Gauss-Newton-vector product G(theta) v = J^T H_L J v.

        G is positive semi-definite for convex losses (MSE, cross-entropy) and equals the Hessian of a linear model.
        """
        params, tangent = self._params(theta), self._vector(v)

        def per_batch(inputs: Tensor, targets: Tensor) -> Params:
            def model_outputs(p: Params) -> Tensor:
                return self.outputs(p, inputs)

            outputs = model_outputs(params).detach()
            jv = self._jvp(model_outputs, params, tangent)
            hjv = self._jvp(grad(lambda o: self.loss_fn(o, targets)), outputs, jv)
            _, pullback = vjp(model_outputs, params)
            return pullback(hjv)[0]

        return self._like(self._accumulate(per_batch), v)

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
