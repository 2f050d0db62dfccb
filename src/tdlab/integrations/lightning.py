"""tdlab probes inside PyTorch Lightning: a `Callback` that measures any set of probes during `Trainer.fit` on the
trainer's own module, optimiser and data, and writes a tdlab run directory.

    from tdlab.integrations.lightning import ProbeCallback

    probes = ProbeCallback(["loss", "gradient-norm", "sharpness"], loss_fn=nn.CrossEntropyLoss(), every=50)
    trainer = L.Trainer(max_steps=2000, callbacks=[probes])
    trainer.fit(module, train_loader)
    probes.run.path        # tdlab show / tdlab query / tdlab report read it

Steps are optimiser steps (`trainer.global_step`): step t is measured after the t-th update, step 0 when training
starts. The probes see the module as a function `module(inputs) -> outputs` scored by `loss_fn(outputs, targets)`,
so the module needs a `forward` and the probe data batches of `(inputs, targets)`. Each step also records the
learning rate it was taken with ("lr") and the loss `training_step` returned ("train/batch_loss"), as
`tdlab train` does. A run ends `done`, `diverged` (a non-finite batch loss; the first such step goes to
meta.json) or `failed` (an exception, Ctrl-C: "interrupted"). With several processes only the global rank 0
measures and writes. Resuming from a Lightning checkpoint starts a new run directory.

Requires `lightning` (`pip install tdlab[lightning]`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset

from tdlab.integrations.recorder import ProbeRecorder, Recording, describe, forked_rng, optimizer_config, scalars
from tdlab.probes import Probe
from tdlab.probes.base import Task


def fixed_order(loader: object) -> object:
    """The trainer's train loader as probe data: a loader over the same dataset, batch size and `collate_fn` that
    visits the examples in order (the oracles need the same batches at every pass, see `tdlab.oracles.data`).

    A loader over an `IterableDataset`, or with a batch sampler of its own, is returned as it is: its order is its
    own, and `tdlab.oracles.as_batches` refuses it with the fix when it reshuffles.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> shuffled = DataLoader(TensorDataset(torch.arange(6.0), torch.arange(6)), batch_size=4, shuffle=True)
        >>> [y.tolist() for _, y in fixed_order(shuffled)]
        [[0, 1, 2, 3], [4, 5]]
    """
    if not isinstance(loader, DataLoader):
        raise TypeError(
            f"data: the trainer's train loader is a {type(loader).__name__}, not one DataLoader; "
            "pass the probe data as ProbeCallback(data=...)"
        )
    if isinstance(loader.dataset, IterableDataset) or loader.batch_size is None:
        return loader
    # Its own generator: iterating draws a base seed, which must not come from (and shift) the global stream.
    return DataLoader(
        loader.dataset, batch_size=loader.batch_size, collate_fn=loader.collate_fn, generator=torch.Generator()
    )


def _batch_loss(outputs: Tensor | Mapping[str, Any] | None) -> float | None:
    """The loss `training_step` returned (a tensor, or the "loss" of a dict), or None."""
    if isinstance(outputs, Mapping):
        outputs = outputs.get("loss")
    return float(outputs.detach()) if isinstance(outputs, Tensor) and outputs.numel() == 1 else None


def _pair(batch: object) -> object | None:
    """The training batch when it is `(inputs, targets)` (what a probe's mini-batch split takes), else None."""
    if isinstance(batch, tuple | list) and len(batch) == 2 and isinstance(batch[1], Tensor):
        return tuple(batch)
    return None


class ProbeCallback(pl.Callback, Recording):
    """Measure tdlab probes during `Trainer.fit` and write them into a tdlab run directory.

    Args:
        probes: `Probe` instances, or names of `tdlab.probes.PROBES` built with period `every`.
        loss_fn: the mean loss `loss_fn(module(inputs), targets)` that `training_step` minimises.
        data: the probe data of train-set probes, anything `tdlab.probes.ProbeSet` takes (tensors, a fixed-order
            DataLoader, ...); None: the trainer's train loader in a fixed order (`fixed_order`).
        test: the test split in any of the same forms, or None.
        every: the period of the probes given by name.
        out, run_id: the run is written to `<out>/<run_id>` (default id `train-<time>-<hash>`).
        config: fields added to the run's config.json (e.g. a sweep's values); the callback records the module's
            class and scalar `hparams`, the optimiser and its hyper-parameters, `max_steps`, the seed and the probes.
        task, eval_mode, batch_size: passed to `tdlab.probes.ProbeSet`.

    Attributes:
        run: the `tdlab.store.Run` (None before training starts and on ranks other than 0).
        probe_set: the `tdlab.probes.ProbeSet` (its `history` holds every measurement).
    """

    def __init__(
        self,
        probes: Sequence[Probe | str],
        loss_fn: Callable[[Any, Tensor], Tensor],
        data: object | None = None,
        test: object | None = None,
        every: int = 1,
        out: str | os.PathLike[str] = "runs",
        run_id: str | None = None,
        config: Mapping[str, Any] | None = None,
        task: Task | None = None,
        eval_mode: bool = True,
        batch_size: int | None = None,
    ):
        if not callable(loss_fn):
            raise TypeError(f"loss_fn: expected a callable loss_fn(outputs, targets), got {type(loss_fn).__name__}")
        self.recorder = ProbeRecorder(probes, every=every, out=out, run_id=run_id, config=config)
        self.loss_fn = loss_fn
        self.data = data
        self.test = test
        self.task = task
        self.eval_mode = eval_mode
        self.batch_size = batch_size
        self._batch: object | None = None
        self._diverged_at: int | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        if len(trainer.optimizers) != 1:
            raise ValueError(
                f"optimizers: ProbeCallback follows one optimiser, the module has {len(trainer.optimizers)}"
            )
        optimizer = trainer.optimizers[0]
        seed = os.environ.get("PL_GLOBAL_SEED")
        config = {
            "integration": "lightning",
            "model": {"name": type(pl_module).__name__, **scalars(pl_module.hparams)},
            "optimizer": optimizer_config(optimizer),
            "max_steps": trainer.max_steps,
            "max_epochs": trainer.max_epochs,
            "seed": None if seed is None else int(seed),
        }
        with forked_rng(pl_module):
            data = self.data if self.data is not None else fixed_order(trainer.train_dataloader)
        self.recorder.start(
            pl_module,
            self.loss_fn,
            data,
            test=self.test,
            task=self.task,
            eval_mode=self.eval_mode,
            batch_size=self.batch_size,
            config=config,
            seed=config["seed"],
            step=trainer.global_step,
        )

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._batch = _pair(batch)

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        self.recorder.before_step(trainer.global_step + 1, optimizer, batch=self._batch)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        loss = _batch_loss(outputs)
        if loss is not None and not math.isfinite(loss) and self._diverged_at is None:
            self._diverged_at = step
        self.recorder.after_step(step, None if loss is None else {"train/batch_loss": loss})

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._diverged_at is None:
            self.recorder.finish("done")
        else:
            self.recorder.finish("diverged", diverged_step=self._diverged_at)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.recorder.finish("failed", error=describe(exception))
