"""What the Lightning and Hugging Face callbacks share: a `ProbeSet` that writes into a tdlab `Run`, driven by a
trainer's events instead of a hand-written loop.

A callback turns its trainer's events into four calls:

    recorder.start(model, loss_fn, train, ..., step=0)   # training begins: create the run, measure step 0
    recorder.before_step(step, optimizer, batch)           # gradients ready, parameters not yet updated
    recorder.after_step(step, {"train/batch_loss": ...})   # update and schedule done: measure the due probes
    recorder.finish("done")                                 # or "failed", "diverged"

`before_step` / `after_step` enter and leave `ProbeSet.step`, so a probe sees exactly what it sees in a
hand-written loop (the parameters before the step are copied only when a due probe needs them, measuring never
changes the model or the random streams). The run is a `tdlab.store.Run` of kind "train", so `tdlab show`,
`tdlab runs`, `tdlab query` and `tdlab report` read it like a run of `tdlab train`.

Example:
    >>> import tempfile, torch
    >>> from torch import nn
    >>> model = nn.Linear(2, 1)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> X, y = torch.randn(8, 2), torch.randn(8, 1)
    >>> recorder = ProbeRecorder(["loss"], every=2, out=tempfile.mkdtemp(), run_id="demo")
    >>> recorder.start(model, nn.MSELoss(), (X, y), config={"optimizer": optimizer_config(opt)}, seed=0, step=0)
    >>> for step in (1, 2):
    ...     opt.zero_grad(); nn.functional.mse_loss(model(X), y).backward()
    ...     recorder.before_step(step, opt)
    ...     opt.step()
    ...     recorder.after_step(step)
    >>> recorder.finish("done")
    >>> sorted(set(recorder.run.metrics().query("name == 'train/loss'").step))
    [0, 2]
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from tdlab.probes import Probe, ProbeSet, build_probe
from tdlab.probes.base import Task, model_device_dtype
from tdlab.store import Run

_SCALARS = (str, int, float, bool, type(None))


def build_probes(probes: Sequence[Probe | str], every: int = 1) -> list[Probe]:
    """Probe instances as given; names of `tdlab.probes.PROBES` built with period `every`.

    Example:
        >>> build_probes(["loss", "sharpness"], every=5)
        [LossProbe(every=5), Sharpness(every=5)]
    """
    if isinstance(probes, str | Probe) or not isinstance(probes, Sequence) or not probes:
        raise ValueError(f"probes: expected a non-empty list of probes or probe names, got {probes!r}")
    built = []
    for probe in probes:
        if isinstance(probe, str):
            built.append(build_probe(probe, every=every))
        elif isinstance(probe, Probe):
            built.append(probe)
        else:
            raise TypeError(f"probes: expected Probe instances or probe names, got {type(probe).__name__}")
    return built


def scalars(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of `mapping` whose values are JSON scalars (str, int, float, bool, None), keys as strings.

    Example:
        >>> scalars({"lr": 0.1, "params": [1, 2], "nesterov": False})
        {'lr': 0.1, 'nesterov': False}
    """
    return {str(key): value for key, value in mapping.items() if isinstance(value, _SCALARS)}


def unwrap_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    """The torch optimiser inside a trainer's wrapper (Lightning's `LightningOptimizer`, Accelerate's
    `AcceleratedOptimizer`, itself a torch optimiser, keep it as `.optimizer`), or `optimizer` itself.

    Example:
        >>> sgd = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=0.1)
        >>> class Wrapper:
        ...     optimizer = sgd
        >>> unwrap_optimizer(Wrapper()) is unwrap_optimizer(sgd) is sgd
        True
    """
    while isinstance(getattr(optimizer, "optimizer", None), torch.optim.Optimizer):
        optimizer = optimizer.optimizer
    return optimizer


def optimizer_config(optimizer: Any) -> dict[str, Any]:
    """The optimiser's class name and the scalar hyper-parameters of its first parameter group; `lr` is the base
    rate a scheduler started from (`initial_lr`) when there is one, so a warm-up does not record lr = 0.

    Example:
        >>> optimizer_config(torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=0.1, momentum=0.9))["momentum"]
        0.9
    """
    optimizer = unwrap_optimizer(optimizer)
    group = dict(optimizer.param_groups[0])
    group["lr"] = group.pop("initial_lr", group["lr"])
    if isinstance(group["lr"], Tensor):
        group["lr"] = float(group["lr"])
    return {"name": type(optimizer).__name__, **scalars(group)}


@contextlib.contextmanager
def forked_rng(model: nn.Module) -> Iterator[None]:
    """Run the block with the global random streams (CPU, and the model's CUDA device) restored afterwards, so
    that reading probe data (a loader draws a seed, a collator may draw masks) leaves training's draws as they
    would have been without the probes."""
    device, _ = model_device_dtype(model)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        yield


def describe(error: BaseException) -> str:
    """The `error` field of a failed run: "interrupted" for Ctrl-C, else "<type>: <message>"."""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class Recording:
    """What both callbacks show of their `recorder`: the run and the probe set (None before training starts and on
    processes other than the main one)."""

    recorder: ProbeRecorder

    @property
    def run(self) -> Run | None:
        return self.recorder.run

    @property
    def probe_set(self) -> ProbeSet | None:
        return self.recorder.probe_set


class ProbeRecorder:
    """Probes measured during someone else's training loop, written into a tdlab run directory.

    Args:
        probes: `Probe` instances, or names of `tdlab.probes.PROBES` (built with period `every`).
        every: the period of the probes given by name.
        out: the store folder; the run is `<out>/<run_id>`.
        run_id: the run's directory name; default `<kind>-<time>-<hash>` (see `tdlab.store.run.default_run_id`).
        config: fields added to the run's config.json over those the callback records (e.g. the swept values of a
            sweep, so that `tdlab runs --where` and `tdlab report` see them).

    Attributes:
        probes: the built probes.
        probe_set: the `ProbeSet` (after `start`).
        run: the `Run` (after `start`).
    """

    def __init__(
        self,
        probes: Sequence[Probe | str],
        every: int = 1,
        out: str | os.PathLike[str] = "runs",
        run_id: str | None = None,
        config: Mapping[str, Any] | None = None,
    ):
        if config is not None and not isinstance(config, Mapping):
            raise TypeError(f"config: expected a mapping (dict) or None, got {type(config).__name__}")
        self.probes = build_probes(probes, every)
        self.out = out
        self.run_id = run_id
        self.config = dict(config or {})
        self.probe_set: ProbeSet | None = None
        self.run: Run | None = None
        self._open: contextlib.AbstractContextManager[dict[str, float]] | None = None
        self._open_step: int | None = None

    @property
    def started(self) -> bool:
        return self.run is not None

    def start(
        self,
        model: nn.Module,
        loss_fn: Callable[[Any, Tensor], Tensor],
        train: object,
        *,
        test: object | None = None,
        task: Task | None = None,
        eval_mode: bool = True,
        batch_size: int | None = None,
        config: Mapping[str, Any] | None = None,
        seed: int | None = None,
        step: int = 0,
    ) -> None:
        """Build the `ProbeSet` (which checks the data), then create the run with `config` (the callback's own
        record, overridden by the user's `config`) and measure the probes due at `step`, the steps already taken.

        Nothing is written when the probe set cannot be built.
        """
        with forked_rng(model):
            probe_set = ProbeSet(
                self.probes,
                model,
                loss_fn,
                train=train,
                test=test,
                task=task,
                eval_mode=eval_mode,
                batch_size=batch_size,
            )
        record = {
            **dict(config or {}),
            "probes": [{"name": probe.name, "every": probe.every} for probe in self.probes],
            **self.config,
        }
        self.run = Run.create(self.out, record, kind="train", run_id=self.run_id, seed=seed)
        probe_set.sink = self.run.log
        self.probe_set = probe_set
        probe_set.measure(step)

    def before_step(self, step: int, optimizer: Any, batch: object | None = None) -> None:
        """Optimiser step number `step` (from 1) is about to update the parameters: record its learning rate
        ("lr") and enter `ProbeSet.step` (which copies the parameters when a due probe compares them)."""
        if self.probe_set is None or self.run is None:
            return
        if self._open is not None:  # two updates in one batch (manual optimisation): the first one is done
            self.after_step(self._open_step)
        optimizer = unwrap_optimizer(optimizer)
        self.run.log(step, {"lr": float(optimizer.param_groups[0]["lr"])})
        self._open = self.probe_set.step(step, batch=batch, optimizer=optimizer)
        self._open.__enter__()
        self._open_step = step

    def after_step(self, step: int, metrics: Mapping[str, float] | None = None) -> None:
        """Optimiser step `step` is done (the parameters updated, the schedule stepped): measure the probes due at
        `step` and log `metrics` (e.g. the batch loss) with them."""
        if self._open is None or self.run is None:
            return
        if step != self._open_step:
            raise RuntimeError(f"step: optimiser step {self._open_step} began but step {step} ended")
        opened, self._open, self._open_step = self._open, None, None
        opened.__exit__(None, None, None)
        if metrics:
            self.run.log(step, metrics)

    def finish(self, status: str, **meta: Any) -> None:
        """Write the buffered rows and set the run's final status (`meta` goes to meta.json, e.g. `error`)."""
        if self.run is None:
            return
        self._open, self._open_step = None, None
        self.run.flush()
        self.run.set_status(status, **meta)
