"""`tdlab train`: config -> data, model, optimiser, probes -> `tdlab.train.trainer.fit` -> a run directory.

Mini-batches are a pure function of (seed, step) (`tdlab.train.batches`), so a resumed run sees exactly the
batches the uninterrupted run would have seen. A loss that
becomes NaN or inf ends the run with status `diverged` (the step is recorded in meta.json). Checkpoints are
written every `checkpoint_every` steps. Ctrl-C leaves status `failed` with error "interrupted", a kill leaves
status `running`, a full disk status `failed` with error "no space left"; all are continued by `resume`, which
restarts from the last checkpoint and truncates the metrics back to it, so that no row is lost or duplicated. A
run has one writer (`tdlab.store.lock`): `resume` of a run that another live process is writing raises
`RunBusyError` naming that process, before anything is touched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import torch
from torch import nn

from tdlab.config import resolve_device
from tdlab.data import Dataset, loss_for
from tdlab.probes import ProbeSet, build_probe
from tdlab.store import Run
from tdlab.store.sinks import Tee, Tracker
from tdlab.train.builders import build_data, build_network, build_optimizer, build_scheduler, config_section
from tdlab.train.config import TrainConfig
from tdlab.train.trainer import fit

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


def build(config: TrainConfig) -> Setup:
    """Build data, model, optimiser, schedule and probes; raises ValueError naming the config path of a bad field
    (`model.residual: ...`)."""
    device = resolve_device(config.device)
    dtype = getattr(torch, config.dtype)
    torch.manual_seed(config.seed)
    dataset = build_data(config.data, device, dtype)
    model = build_network(config.model, dataset)
    loss_fn = loss_for(dataset.task)
    optimizer = build_optimizer(model.parameters(), config.optimizer)
    scheduler = build_scheduler(optimizer, config.schedule, config.steps)
    built = []
    for index, probe in enumerate(config.probes):
        with config_section(f"probes[{index}]", "probe"):
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


def train(
    config: TrainConfig,
    out: str | Path = "runs",
    run_id: str | None = None,
    progress: ProgressFactory | None = None,
    trackers: Sequence[Tracker] = (),
) -> Run:
    """Train from scratch into a new run directory under `out`; returns the finished `Run`.

    `trackers` (e.g. `tdlab.integrations.tensorboard.TensorBoardSink`, `tdlab.integrations.wandb.WandbSink`) are
    opened on the run and its model and receive the same rows as the run's metrics (`tdlab.store.sinks.Tee`).
    """
    setup = build(config)
    run = Run.create(out, config.model_dump(mode="json"), kind="train", run_id=run_id, seed=config.seed)
    return _loop(setup, run, start=0, progress=progress, trackers=trackers, fresh=True)


def resume(path: str | Path | Run, progress: ProgressFactory | None = None, trackers: Sequence[Tracker] = ()) -> Run:
    """Continue a killed or interrupted run (a path, or a `Run`) from its last checkpoint (from scratch if it has
    none). The run is owned first, its status read after: RunBusyError while another live process writes it."""
    run = (path if isinstance(path, Run) else Run.open(path)).own()
    if run.status in ("done", "diverged"):
        run.release()
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
    return _loop(setup, run, start=start, progress=progress, trackers=trackers, fresh=state is None)


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _record_disk_full(run: Run, error: OSError) -> NoReturn:
    """Mark the run `failed` (error "no space left") and raise one ValueError line saying how to continue it.

    The status is written on a best-effort basis: on a disk too full even for it the run stays `running`, which
    `resume` continues just the same (it restarts from the last checkpoint, which a failed write never replaces).
    """
    with contextlib.suppress(OSError):
        run.set_status("failed", error=f"no space left ({os.strerror(error.errno)})")
    where = f" writing {error.filename}" if error.filename else ""
    raise ValueError(
        f"disk: no space left on device{where}; run {run.id} is failed, `tdlab train --resume {run.path}` "
        "continues it from its last checkpoint once space is freed"
    ) from None


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


def _loop(
    setup: Setup, run: Run, start: int, progress: ProgressFactory | None, trackers: Sequence[Tracker], fresh: bool
) -> Run:
    """Steps `start + 1` .. `steps` through `tdlab.train.trainer.fit`; a `fresh` run first measures step 0 (it
    has no checkpoint before the first periodic one: a run killed before then starts over, as resuming without a
    checkpoint does)."""
    config = setup.config
    sink = Tee(run.log, [open_tracker(run, setup.model) for open_tracker in trackers])
    began = time.perf_counter()
    bar = progress(start, config.steps) if progress is not None else nullcontext(lambda step, text: None)

    def checkpoint(step: int, loss: float) -> None:
        if step % config.checkpoint_every == 0 or step == config.steps:
            _checkpoint(setup, run, step)

    try:
        with bar as advance:
            result = fit(
                setup.model,
                setup.loss_fn,
                setup.dataset.train,
                setup.optimizer,
                config.steps,
                batch_size=config.batch_size,
                batch_order=config.batch_order,
                seed=config.seed,
                scheduler=setup.scheduler,
                probes=setup.probes,
                callbacks=[lambda step, loss: advance(step, f"loss {loss:.4g}"), checkpoint],
                start=start,
                measure_start=fresh,
                sink=sink,
            )
        run.flush()
        if result.diverged:
            run.set_status("diverged", diverged_step=result.diverged_at, duration_s=time.perf_counter() - began)
        else:
            run.set_status("done", duration_s=time.perf_counter() - began)
    except KeyboardInterrupt:
        run.set_status("failed", error="interrupted")
        raise
    except OSError as error:
        if error.errno not in _DISK_FULL:
            raise
        _record_disk_full(run, error)
    finally:
        sink.close()
    return run
