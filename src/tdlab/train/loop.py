"""The training loop: config -> data, model, optimiser, probes -> steps -> a run directory.

Mini-batches are a pure function of (seed, step): epoch e visits the training set in the order of a permutation
seeded by (seed, e), so a resumed run sees exactly the batches the uninterrupted run would have seen. A loss that
becomes NaN or inf ends the run with status `diverged` (the step is recorded in meta.json). Checkpoints are
written every `checkpoint_every` steps. Ctrl-C leaves status `failed` with error "interrupted", a kill leaves
status `running`; both are continued by `resume`, which restarts from the last checkpoint and truncates the
metrics back to it, so that no row is lost or duplicated.
"""

from __future__ import annotations

import functools
import math
import re
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from tdlab.data import Dataset, load_dataset, loss_for
from tdlab.experiments.base import resolve_device
from tdlab.models import build_model
from tdlab.probes import ProbeSet, build_probe
from tdlab.store import Run
from tdlab.train.builders import build_optimizer, build_scheduler
from tdlab.train.config import TrainConfig
from tdlab.train.tensorboard import TensorBoardSink

ProgressFactory = Callable[[int, int], AbstractContextManager[Callable[[int, str], None]]]


@dataclass
class Setup:
    """Everything a run needs, built (and so validated) before anything is written to disk."""

    config: TrainConfig
    device: torch.device
    dataset: Dataset
    model: nn.Module
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    probes: ProbeSet


@contextmanager
def _section(path: str, registry: str) -> Iterator[None]:
    """Re-raise a builder's ValueError ("field: ...") with the field's path in the config ("model.field: ...");
    the registry's unknown-name error ("model: expected one of ...") is about the section's `name`."""
    try:
        yield
    except ValueError as error:
        message = str(error)
        field = re.match(r"([A-Za-z_][\w.\[\]]*):", message)
        if field is None:
            raise ValueError(f"{path}: {message}") from error
        name = "name" if field.group(1) == registry else field.group(1)
        raise ValueError(f"{path}.{name}{message[field.end(1) :]}") from error


def build(config: TrainConfig) -> Setup:
    """Build data, model, optimiser, schedule and probes; raises ValueError naming the config path of a bad field
    (`model.residual: ...`)."""
    device = resolve_device(config.device)
    dtype = getattr(torch, config.dtype)
    torch.manual_seed(config.seed)
    with _section("data", "dataset"):
        dataset = load_dataset(config.data.name, **config.data.kwargs()).to(device, dtype)
    with _section("model", "model"):
        model = build_model(config.model.name, dataset.in_features, dataset.out_features, **config.model.kwargs())
    model = model.to(device, dtype)
    loss_fn = loss_for(dataset.task)
    optimizer = build_optimizer(model.parameters(), config.optimizer)
    scheduler = build_scheduler(optimizer, config.schedule, config.steps)
    built = []
    for index, probe in enumerate(config.probes):
        with _section(f"probes[{index}]", "probe"):
            built.append(build_probe(probe.name, **probe.kwargs()))
    probes = ProbeSet(
        built,
        model,
        loss_fn,
        train=dataset.train,
        test=dataset.test,
        task=dataset.task,
    )
    if config.batch_size is not None and config.batch_size > dataset.X_train.shape[0]:
        raise ValueError(
            f"batch_size: at most the number of training examples ({dataset.X_train.shape[0]}), got {config.batch_size}"
        )
    return Setup(config, device, dataset, model, loss_fn, optimizer, scheduler, probes)


def batch_indices(num_examples: int, batch_size: int | None, seed: int, step: int) -> Tensor | None:
    """Indices of the mini-batch of optimiser step `step` (0-based); None for full batch."""
    if batch_size is None or batch_size >= num_examples:
        return None
    epoch, rows = batch_slot(num_examples, batch_size, step)
    return epoch_order(num_examples, seed, epoch)[rows]


def batch_slot(num_examples: int, batch_size: int, step: int) -> tuple[int, slice]:
    """The epoch of optimiser step `step` (0-based) and the slice of that epoch's order holding its mini-batch
    (the last `num_examples % batch_size` examples of an epoch's order are left out).

    Example:
        >>> batch_slot(10, 3, 4)
        (1, slice(3, 6, None))
    """
    epoch, position = divmod(step, num_examples // batch_size)
    return epoch, slice(position * batch_size, (position + 1) * batch_size)


@functools.lru_cache(maxsize=1024)
def epoch_order(num_examples: int, seed: int, epoch: int) -> Tensor:
    """The order in which epoch `epoch` visits the training set (cached: one permutation per epoch)."""
    return torch.randperm(num_examples, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def _batches(setup: Setup, start: int) -> Iterator[tuple[int, tuple[Tensor, Tensor]]]:
    X, y = setup.dataset.train
    for step in range(start, setup.config.steps):
        idx = batch_indices(X.shape[0], setup.config.batch_size, setup.config.seed, step)
        yield step, ((X, y) if idx is None else (X[idx.to(X.device)], y[idx.to(y.device)]))


def train(
    config: TrainConfig,
    out: str | Path = "runs",
    run_id: str | None = None,
    progress: ProgressFactory | None = None,
    tensorboard: bool = False,
) -> Run:
    """Train from scratch into a new run directory under `out`; returns the finished `Run`.

    With `tensorboard`, the probes and the loop's metrics are also streamed to `<run>/tensorboard/`.
    """
    setup = build(config)
    run = Run.create(out, config.model_dump(mode="json"), kind="train", run_id=run_id, seed=config.seed)
    return _loop(setup, run, start=0, progress=progress, tensorboard=tensorboard, fresh=True)


def resume(path: str | Path, progress: ProgressFactory | None = None, tensorboard: bool = False) -> Run:
    """Continue a killed or interrupted run from its last checkpoint (from scratch if it has none)."""
    run = Run.open(path)
    if run.status in ("done", "diverged"):
        raise ValueError(f"run: {run.id} is already {run.status}; nothing to resume")
    setup = build(TrainConfig.model_validate(run.config))
    state = run.load_checkpoint()
    start = 0
    if state is not None:
        setup.model.load_state_dict(state["model"])
        setup.optimizer.load_state_dict(state["optimizer"])
        setup.scheduler.load_state_dict(state["scheduler"])
        setup.probes.load_state_dict(state["probes"])
        torch.set_rng_state(state["rng"])
        start = state["step"]
    run.set_status("running")
    return _loop(setup, run, start=start, progress=progress, tensorboard=tensorboard, fresh=state is None)


def _checkpoint(setup: Setup, run: Run, step: int) -> None:
    run.save_checkpoint(
        {
            "step": step,
            "model": setup.model.state_dict(),
            "optimizer": setup.optimizer.state_dict(),
            "scheduler": setup.scheduler.state_dict(),
            "probes": setup.probes.state_dict(),
            "rng": torch.get_rng_state(),
        }
    )


def _loop(setup: Setup, run: Run, start: int, progress: ProgressFactory | None, tensorboard: bool, fresh: bool) -> Run:
    """Steps `start` .. `steps - 1`; a `fresh` run first measures step 0 (it has no checkpoint before the first
    periodic one: a run killed before then starts over, as resuming without a checkpoint does)."""
    config, model, optimizer = setup.config, setup.model, setup.optimizer
    sink = TensorBoardSink(run.path, model, run.log) if tensorboard else run.log
    setup.probes.sink = sink
    began = time.perf_counter()
    bar = progress(start, config.steps) if progress is not None else nullcontext(lambda step, text: None)
    try:
        with bar as advance:
            if fresh:
                setup.probes.measure(0)
            for step, (inputs, targets) in _batches(setup, start):
                model.train()
                lr = optimizer.param_groups[0]["lr"]
                with setup.probes.step(step + 1, batch=(inputs, targets), optimizer=optimizer):
                    optimizer.zero_grad(set_to_none=True)
                    loss = setup.loss_fn(model(inputs), targets)
                    value = loss.item()
                    if math.isfinite(value):
                        loss.backward()
                        optimizer.step()
                        setup.scheduler.step()
                sink(step + 1, {"train/batch_loss": value, "lr": lr})
                if not math.isfinite(value):
                    run.flush()
                    run.set_status("diverged", diverged_step=step + 1, duration_s=time.perf_counter() - began)
                    return run
                advance(step + 1, f"loss {value:.4g}")
                if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
                    _checkpoint(setup, run, step + 1)
    except KeyboardInterrupt:
        run.set_status("failed", error="interrupted")
        raise
    finally:
        if isinstance(sink, TensorBoardSink):
            sink.close()
    run.flush()
    run.set_status("done", duration_s=time.perf_counter() - began)
    return run
