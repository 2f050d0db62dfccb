"""The probe protocol: what an instrument sees (`ProbeContext`), what it is (`Probe`), and how a loop calls a
set of them (`ProbeSet`).

A probe is a small object with a name, a period `every` and a method `measure(ctx) -> dict[str, float]` that
reads the model, the data and the optimiser through a `ProbeContext` and returns named scalars. The
`ProbeSet` decides which probes are due at a step, snapshots the parameters before the step when a due probe
needs them, switches the model to eval mode while measuring, and keeps the history. Measuring never changes
the model: parameters are only read, buffers (BatchNorm running statistics) are restored, train/eval flags are
restored module by module, and the global random number generators are forked so that training with probes
follows the same trajectory as training without them (after Cockpit, Schneider et al., NeurIPS 2021).

Example:
    >>> import torch
    >>> from torch import nn
    >>> from tdlab.probes import LossProbe, ProbeSet
    >>> model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> X, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> probes = ProbeSet([LossProbe(every=2)], model, nn.CrossEntropyLoss(), train=(X, y))
    >>> for step in range(1, 5):
    ...     opt.zero_grad()
    ...     nn.functional.cross_entropy(model(X), y).backward()
    ...     with probes.step(step, batch=(X, y), optimizer=opt):
    ...         opt.step()
    >>> [s for s, _ in probes.history]
    [2, 4]
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd
import torch
from torch import Tensor, nn

from tdlab.oracles import Objective, Params, trainable_parameters
from tdlab.oracles.data import Batches, as_batches, to_device

Task = Literal["classification", "regression"]
Sink = Callable[[int, dict[str, float]], Any]
_TASKS = ("classification", "regression")
_SPLITS = ("train", "test", "batch")


def infer_task(data: Batches | Tensor) -> Task:
    """'regression' for floating-point targets, 'classification' for integer (class index) targets (of the
    first batch when `data` is a `Batches`).

    Example:
        >>> infer_task(torch.tensor([0, 2, 1]))
        'classification'
    """
    targets = data if isinstance(data, Tensor) else next(iter(data))[1]
    return "regression" if targets.is_floating_point() else "classification"


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of a model's first parameter (the tensors a probe feeds it must follow).

    Example:
        >>> model_device_dtype(nn.Linear(2, 1).double())
        (device(type='cpu'), torch.float64)
    """
    reference = next(model.parameters(), None)
    if reference is None:
        raise ValueError("model: has no parameters")
    return reference.device, reference.dtype


def to_model(inputs: Any, model: nn.Module) -> Any:
    """Move data (a tensor, or a tuple or dict of them) to the model's device; floating-point tensors also take
    the model's dtype.

    Example:
        >>> to_model(torch.zeros(2, 3), nn.Linear(3, 1).double()).dtype
        torch.float64
    """
    device, dtype = model_device_dtype(model)
    return to_device(inputs, device, dtype)


@dataclass
class ProbeContext:
    """Everything a probe may read at one measurement.

    Attributes:
        step: optimiser steps taken so far.
        model: the model being trained (read only).
        loss_fn: `loss_fn(outputs, targets)`, the mean loss over a batch.
        train: the data on which train-set probes measure (the training set or a fixed subset of it), as
            `Batches`; anything `tdlab.oracles.as_batches` takes is converted.
        test: the test split as `Batches`, or None.
        batch: the mini-batch of this step as `Batches` (one batch), or None.
        previous_params: the trainable parameters before this step (detached copies), or None.
        optimizer: the optimiser, or None.
        task: "classification" or "regression".
        batch_size: chunk size of the objectives built by `objective()` (None: one chunk), to bound memory.
    """

    step: int
    model: nn.Module
    loss_fn: Callable[[Tensor, Tensor], Tensor]
    train: Batches
    test: Batches | None = None
    batch: Batches | None = None
    previous_params: Params | None = None
    optimizer: torch.optim.Optimizer | None = None
    task: Task = "classification"
    batch_size: int | None = None
    _objectives: dict[str, Objective] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.train = as_batches(self.train, argument="train")
        self.test = None if self.test is None else as_batches(self.test, argument="test")
        self.batch = None if self.batch is None else as_batches(self.batch, argument="batch")

    def data(self, split: str = "train") -> Batches:
        """The data of `split` ('train', 'test' or 'batch')."""
        if split not in _SPLITS:
            raise ValueError(f"split: expected one of {', '.join(map(repr, _SPLITS))}, got {split!r}")
        data = {"train": self.train, "test": self.test, "batch": self.batch}[split]
        if data is None:
            raise ValueError(f"split: {split!r} has no data in this context (it was not given)")
        return data

    def objective(self, split: str = "train") -> Objective:
        """The `Objective` of the loss on `split`, built once per context and shared by its probes.

        Example:
            >>> model = nn.Linear(3, 1)
            >>> ctx = ProbeContext(0, model, nn.MSELoss(), train=(torch.randn(8, 3), torch.randn(8, 1)))
            >>> ctx.objective("train") is ctx.objective("train")
            True
        """
        if split not in self._objectives:
            self._objectives[split] = Objective(self.model, self.loss_fn, self.data(split), batch_size=self.batch_size)
        return self._objectives[split]


class Probe:
    """An instrument measured every `every` optimiser steps: `measure(ctx)` returns named scalars.

    Subclasses set `name`, write their formula and cost in the class docstring, override `measure`, and set
    `needs_previous_params = True` when they compare the parameters before and after a step, or
    `needs_grad = True` when they differentiate with `torch.autograd` (measurements otherwise run under
    `torch.no_grad`; `torch.func` transforms differentiate either way). State that must survive a resume goes
    through `state_dict` / `load_state_dict`.

    Example:
        >>> class Width(Probe):
        ...     name = "width"
        ...
        ...     def measure(self, ctx):
        ...         return {"width": float(ctx.model.out_features)}
        >>> Width(every=10).is_due(20)
        True
    """

    name: str = "probe"
    needs_previous_params: bool = False
    needs_grad: bool = False

    def __init__(self, every: int = 1):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every: expected a positive integer, got {every!r}")
        self.every = every

    def is_due(self, step: int) -> bool:
        """Whether the probe measures at `step` (step % every == 0)."""
        return step % self.every == 0

    def measure(self, ctx: ProbeContext) -> dict[str, float]:
        """The probe's metrics at `ctx.step`, by name."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """What must survive a resume (tensors and plain values); empty by default."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        if state:
            raise ValueError(f"state: probe {self.name!r} keeps no state, got keys {sorted(state)}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(every={self.every})"


@contextlib.contextmanager
def _measuring(model: nn.Module, eval_mode: bool) -> Iterator[None]:
    """Eval mode (if asked), forked RNGs; on exit restore every module's mode and every buffer's value."""
    modes = [(module, module.training) for module in model.modules()]
    buffers = [(b, b.clone()) for b in model.buffers()]
    device, _ = model_device_dtype(model)
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            if eval_mode:
                model.eval()
            yield
    finally:
        for module, training in modes:
            module.training = training
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)


class ProbeSet:
    """A set of probes attached to a model and its data, called from a training loop in two lines.

        probes = ProbeSet([LossProbe(), Sharpness(every=10)], model, loss_fn, train=(X, y), test=(Xt, yt))
        probes.measure(0)                      # the initial state, if wanted
        for step in range(1, num_steps + 1):
            ...
            with probes.step(step, batch=(xb, yb), optimizer=opt):
                opt.step()

    `step` is always the number of optimiser steps taken at the time of the measurement: in `step(step, ...)`
    the number taken once the block has run (the block performs optimiser step number `step`, counting
    from 1), in `measure(step)` the number taken so far. A probe measures when `step % probe.every == 0`.

    Args:
        probes: the probes; their names and their metric names must be unique.
        model, loss_fn: the model and its mean-reduced loss `loss_fn(outputs, targets)`.
        train: the data of train-set probes (the training set or a fixed subset of it): a pair of tensors, a
            `TensorDataset`, a `DataLoader` with a fixed order or any re-iterable of (inputs, targets) batches,
            inputs a tensor, tuple or dict (see `tdlab.oracles.data`).
        test: the test split, in any of the same forms, or None.
        task: "classification" or "regression"; None infers it from the dtype of the train targets.
        eval_mode: measure with the model in eval mode (deterministic BatchNorm and dropout), restored after.
        sink: called as `sink(step, metrics)` after every measurement (e.g. a run's `log`).
        batch_size: chunk size of the objectives the probes build (None: whole split at once).

    Attributes:
        history: list of (step, metrics) in measurement order.
    """

    def __init__(
        self,
        probes: Sequence[Probe],
        model: nn.Module,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        train: object,
        test: object | None = None,
        task: Task | None = None,
        eval_mode: bool = True,
        sink: Sink | None = None,
        batch_size: int | None = None,
    ):
        for probe in probes:
            if not isinstance(probe, Probe):
                raise TypeError(f"probes: expected Probe instances, got {type(probe).__name__}")
        names = [probe.name for probe in probes]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"probes: names must be unique, got {duplicates} more than once")
        self.train = as_batches(train, argument="train")
        self.test = None if test is None else as_batches(test, argument="test")
        if task is None:
            task = infer_task(self.train)
        if task not in _TASKS:
            raise ValueError(f"task: expected one of 'classification', 'regression' or None, got {task!r}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer or None, got {batch_size}")
        self.probes = list(probes)
        self.model = model
        self.loss_fn = loss_fn
        self.task: Task = task
        self.eval_mode = eval_mode
        self.sink = sink
        self.batch_size = batch_size
        self.history: list[tuple[int, dict[str, float]]] = []

    def due(self, step: int) -> list[Probe]:
        """The probes that measure at `step`."""
        return [probe for probe in self.probes if probe.is_due(step)]

    @contextlib.contextmanager
    def step(
        self, step: int, batch: object | None = None, optimizer: torch.optim.Optimizer | None = None
    ) -> Iterator[dict[str, float]]:
        """Wrap optimiser step number `step` (from 1); on exit measure the probes due at `step`.

        The parameters are copied on entry only when a due probe needs them. The yielded dict is filled with
        the measurement on exit (it stays empty when no probe is due or the block raised).
        """
        previous = None
        if any(p.needs_previous_params for p in self.due(step)):
            previous = {k: v.clone() for k, v in trainable_parameters(self.model).items()}
        metrics: dict[str, float] = {}
        yield metrics
        metrics.update(self.measure(step, batch=batch, optimizer=optimizer, previous_params=previous))

    def measure(
        self,
        step: int,
        batch: object | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        previous_params: Params | None = None,
        given: Mapping[str, Mapping[str, float]] | None = None,
    ) -> dict[str, float]:
        """Measure the probes due at `step` on the model as it is; record, send to the sink and return.

        Probes that need the previous parameters are skipped when `previous_params` is None (no step to
        compare with, e.g. at initialisation). `given` holds the metrics of due probes already measured
        elsewhere, by probe name (an ensemble measures some probes for all its members at once): those probes
        are not called, their metrics are recorded as if they had been.
        """
        given = given or {}
        due = [p for p in self.due(step) if previous_params is not None or not p.needs_previous_params]
        if not due:
            return {}
        ctx = ProbeContext(
            step=step,
            model=self.model,
            loss_fn=self.loss_fn,
            train=self.train,
            test=self.test,
            batch=batch,
            previous_params=previous_params,
            optimizer=optimizer,
            task=self.task,
            batch_size=self.batch_size,
        )
        metrics: dict[str, float] = {}
        owner: dict[str, str] = {}
        measuring = any(probe.name not in given for probe in due)
        with _measuring(self.model, self.eval_mode) if measuring else contextlib.nullcontext():
            for probe in due:
                if probe.name in given:
                    values = given[probe.name]
                else:
                    with torch.set_grad_enabled(probe.needs_grad):
                        values = probe.measure(ctx)
                for key, value in values.items():
                    if key in owner:
                        raise ValueError(
                            f"probes: metric {key!r} is returned by both {owner[key]!r} and {probe.name!r}"
                        )
                    owner[key] = probe.name
                    metrics[key] = float(value)
        self.history.append((step, metrics))
        if self.sink is not None:
            self.sink(step, metrics)
        return metrics

    def to_frame(self) -> pd.DataFrame:
        """The history as a long table with columns step, name, value."""
        rows = [(step, name, value) for step, metrics in self.history for name, value in metrics.items()]
        return pd.DataFrame(rows, columns=["step", "name", "value"])

    def state_dict(self) -> dict[str, dict[str, Any]]:
        """The state of every probe, by probe name."""
        return {probe.name: probe.state_dict() for probe in self.probes}

    def load_state_dict(self, state: Mapping[str, Mapping[str, Any]]) -> None:
        by_name = {probe.name: probe for probe in self.probes}
        unknown = sorted(set(state) - set(by_name))
        if unknown:
            raise ValueError(f"state: no probe named {unknown} in this set (probes: {sorted(by_name)})")
        for name, probe_state in state.items():
            by_name[name].load_state_dict(probe_state)
