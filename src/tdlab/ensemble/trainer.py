"""Training N models of one architecture at once on stacked parameters.

Each member is the model that `tdlab.train.build` makes from its own config, so it starts from exactly the weights
of the sequential run of that config; members may differ in `seed` (initialisation and data order),
`optimizer.lr`, `model.init_scale` and `name`, and must agree on everything else (the shapes). The members train
through the one trainer, `tdlab.train.fit`, as one module of stacked parameters. One step evaluates
all members' losses on their own mini-batches in one forward pass of the stacked models
(`tdlab.ensemble.StackedModels`: stacked layers, or vmap) and their gradients in one backward pass of the summed
losses (members share no parameter, so each stacked slice receives its own member's gradient; this is faster than
vmapping `grad`), then updates the stacked parameters with the `torch.optim` formulas (`tdlab.ensemble.updates`).
Probes, metrics, checkpoints and statuses are per member, in one run directory each, exactly as
`tdlab.train.train` writes them: a member's checkpoint can be resumed on its own by `tdlab.train.resume`. The
loss, norm and sharpness probes are measured for all members at once (`tdlab.ensemble.probes`), the other probes
member by member; the batch losses are handed to the runs every few hundred steps and before every probe,
checkpoint or divergence. As in the sequential loop, a member whose loss is not finite takes no step (and none
after: it is diverged).
The members' runs are owned by the training process (`tdlab.store.lock`) from their creation; Ctrl-C records
`failed: interrupted` in the members still running, and any error frees them for a resume. Each member's run is
created, checkpointed and closed on a few threads at once (`_each`): every write is fsynced (`tdlab.store.atomic`),
about 15 fsyncs of a few milliseconds per run, and the members' files are their own, so their waits overlap.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from tdlab.ensemble.probes import measure_together
from tdlab.ensemble.stacked import StackedModels, member_losses
from tdlab.ensemble.updates import StackedOptimizer, member_state, per_member, unsupported
from tdlab.store import Run, flatten_config
from tdlab.train.batches import batch_indices
from tdlab.train.builders import schedule_factor
from tdlab.train.config import TrainConfig
from tdlab.train.loop import Setup, build
from tdlab.train.trainer import fit

VARYING = {"seed", "name", "optimizer.lr", "model.init_scale"}
_PENDING_STEPS = 256  # batch losses kept before they are handed to the runs (they are also at every event)
_IO_THREADS = 8  # members whose run files are written at once


def _each(work: Callable[[int], Any], members: Sequence[int]) -> list[Any]:
    """work(i) for every member i, on up to `_IO_THREADS` threads (for the members' file writes, whose fsyncs
    overlap); the results in order. Every call finishes before the first error, if any, is raised."""
    if not members:
        return []
    with ThreadPoolExecutor(max_workers=min(_IO_THREADS, len(members))) as pool:
        futures = [pool.submit(work, i) for i in members]
    return [future.result() for future in futures]


def _shape_fields(config: TrainConfig) -> dict[str, Any]:
    """The flattened config without the fields in which members may differ."""
    return {k: v for k, v in flatten_config(config.model_dump(mode="json")).items() if k not in VARYING}


def shape_key(config: dict[str, Any]) -> str | None:
    """A key equal for configs that can train together in one ensemble; None for a config the ensemble trainer
    cannot run: BatchNorm (it updates its buffers in place), an optimiser (or an option of one, AMSGrad) without a
    multi-tensor form in the registry (`tdlab.ensemble.updates.unsupported`).

    Example:
        >>> a = {"model": {"name": "mlp", "width": 8}, "optimizer": {"lr": 0.1}, "seed": 0}
        >>> shape_key(a) == shape_key({**a, "seed": 3, "optimizer": {"lr": 0.5}})
        True
        >>> shape_key({**a, "model": {"name": "mlp", "width": 16}}) == shape_key(a)
        False
    """
    validated = TrainConfig.model_validate(config)
    optimizer = validated.optimizer
    if getattr(validated.model, "norm", None) == "batchnorm" or unsupported(optimizer.name, optimizer.kwargs()):
        return None
    return json.dumps(_shape_fields(validated), sort_keys=True)


def check_compatible(configs: list[TrainConfig]) -> None:
    """Raise ValueError naming the first field, outside `VARYING`, on which two members differ."""
    if not configs:
        raise ValueError("configs: expected at least one member")
    reference = _shape_fields(configs[0])
    for config in configs[1:]:
        flat = _shape_fields(config)
        for key in sorted(set(reference) | set(flat)):
            if reference.get(key) != flat.get(key):
                raise ValueError(
                    f"{key}: ensemble members may differ only in {', '.join(sorted(VARYING))}; "
                    f"got {reference.get(key)!r} and {flat.get(key)!r}"
                )


def _copy_into(model: nn.Module, params: dict[str, Tensor], index: int) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(params[name][index])


class _MemberBatches:
    """Every step's mini-batches of all members, stacked (N, batch, *): member m's is the one that
    `tdlab.train.train` draws for its seed (`tdlab.train.batches`: the same examples in the same order)."""

    def __init__(self, setups: list[Setup]):
        self.setups = setups

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        config = self.setups[0].config
        X, y = self.setups[0].dataset.train
        n, members = X.shape[0], len(self.setups)
        for step in range(config.steps):
            rows = [batch_indices(n, config.batch_size, s.config.seed, step, config.batch_order) for s in self.setups]
            if rows[0] is None:
                yield X.expand(members, *X.shape), y.expand(members, *y.shape)
                continue
            indices = torch.cat(rows).to(X.device)
            yield (
                X.index_select(0, indices).view(members, -1, *X.shape[1:]),
                y.index_select(0, indices).view(members, -1, *y.shape[1:]),
            )


class _Module(nn.Module):
    """The stacked members as one module for `fit`: forward(x) = every member's outputs on its own inputs
    x (N, batch, *); its parameters are the stacked tensors."""

    def __init__(self, models: StackedModels):
        super().__init__()
        self.models = models
        self.leaves = nn.ParameterList()
        for name, p in models.params.items():
            p.requires_grad_(True)
            self.leaves.append(p if isinstance(p, nn.Parameter) else nn.Parameter(p))
            models.params[name] = self.leaves[-1]
        if models.stacked is not None:
            for name, leaf in zip(models.params, self.leaves, strict=True):
                _set(models.stacked, name, leaf)

    def forward(self, x: Tensor) -> Tensor:
        return self.models(x)


def _set(module: nn.Module, name: str, value: nn.Parameter) -> None:
    *path, last = name.split(".")
    for part in path:
        module = getattr(module, part)
    setattr(module, last, value)


class _Ensemble(torch.optim.Optimizer):
    """The members' bookkeeping around `fit`: the loss (the sum of the live members' finite losses), the optimiser
    (`StackedOptimizer` with one learning rate per member and the schedule), the probes (together where they can
    be, else member by member), the sink (each member's batch losses to its run) and the callbacks (divergence,
    checkpoints)."""

    def __init__(self, setups: list[Setup], runs: list[Run], models: StackedModels, module: _Module):
        config = setups[0].config
        super().__init__(module.parameters(), {"lr": config.optimizer.lr})
        self.setups, self.runs, self.models, self.config = setups, runs, models, config
        self.stacked = StackedOptimizer(config.optimizer.name, config.optimizer.kwargs())
        self.base_lrs = [s.config.optimizer.lr for s in setups]
        leaf = next(iter(models.params.values()))
        self.base_lr = torch.tensor(self.base_lrs, device=leaf.device, dtype=leaf.dtype)
        self.factor = schedule_factor(config.schedule, config.steps)
        self.losses_of = member_losses(setups[0].loss_fn)
        self.alive = list(range(len(setups)))
        self.alive_mask = torch.ones(len(setups), dtype=torch.bool, device=leaf.device)
        self.losses = torch.zeros(len(setups))
        self.pending: list[tuple[int, Tensor]] = []  # (step, losses): rows not yet handed to the runs
        self.previous: dict[str, Tensor] | None = None
        self.sink = None  # set by `fit`; the members' rows go to their runs instead
        self.began = time.perf_counter()

    # the loss and the optimiser
    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        losses = self.losses_of(outputs, targets)
        self.losses = losses.detach()
        return torch.where(torch.isfinite(losses) & self.alive_mask, losses, 0.0).sum()

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        """As the sequential loop: no step on a non-finite loss; none after divergence."""
        stepping = torch.isfinite(self.losses) & self.alive_mask
        lr = self.base_lr * self.factor(self.stacked.steps)
        grads = {name: p.grad for name, p in self.models.params.items()}
        if not bool(stepping.all()):
            lr = torch.where(stepping, lr, 0.0)
            grads = {name: torch.where(per_member(stepping, g), g, 0.0) for name, g in grads.items()}
        self.stacked.step(self.models.params, grads, lr)

    # the probes
    def measure(self, step: int, batch: tuple[Tensor, Tensor] | None = None) -> None:
        """Every alive member's due probes: those with a stacked form at once, the others member by member."""
        reference = self.setups[0].probes
        due = reference.due(step)
        if not due:
            return
        previous = self.previous
        together = measure_together(
            step, due, self.models, [s.probes for s in self.setups], self.losses_of, previous, self.alive
        )
        alone = any(p.name not in together[self.alive[0]] for p in due)
        for i in self.alive:
            if alone:
                _copy_into(self.setups[i].model, self.models.params, i)
            self.setups[i].probes.measure(
                step,
                batch=None if batch is None else (batch[0][i], batch[1][i]),
                previous_params=None if previous is None else {name: p[i] for name, p in previous.items()},
                given=together[i],
            )

    @contextmanager
    def probing(self, step: int, batch: tuple[Tensor, Tensor], optimizer: object = None) -> Iterator[None]:
        due = self.setups[0].probes.due(step)
        self.previous = None
        if any(probe.needs_previous_params for probe in due):
            self.previous = {name: p.detach().clone() for name, p in self.models.params.items()}
        yield
        self.pending.append((step, self.losses))
        if due:
            self.hand_over()
            self.measure(step, batch)

    def hand_over(self) -> None:
        """Log the pending steps' batch losses and learning rates of the members alive over them."""
        if not self.pending:
            return
        steps = [step for step, _ in self.pending]
        losses = torch.stack([losses for _, losses in self.pending], dim=1).tolist()
        factors = [self.factor(step - 1) for step in steps]
        for i in self.alive:
            lrs = [self.base_lrs[i] * f for f in factors]
            self.runs[i].log_steps(steps, {"train/batch_loss": losses[i], "lr": lrs})
        self.pending.clear()

    # the callbacks
    def after_step(self, step: int, loss: float) -> bool:
        """Divergence and checkpoints; True (stop) once no member is alive."""
        finite = torch.isfinite(self.losses)
        diverged = [] if bool((finite | ~self.alive_mask).all()) else [i for i in self.alive if not finite[i]]
        checkpoint = step % self.config.checkpoint_every == 0 or step == self.config.steps
        if checkpoint or diverged or len(self.pending) >= _PENDING_STEPS:
            self.hand_over()
        for i in diverged:
            self.alive.remove(i)
            self.alive_mask[i] = False
            self.runs[i].flush()
            self.runs[i].set_status("diverged", diverged_step=step, duration_s=time.perf_counter() - self.began)
        if checkpoint:
            _each(lambda i: _checkpoint(self.setups[i], self.runs[i], self.models, self.stacked, i, step), self.alive)
        return not self.alive


class _Probes:
    """The `ProbeSet` face `fit` calls: measurements at step 0 and around every step go to `_Ensemble`."""

    def __init__(self, ensemble: _Ensemble):
        self.ensemble = ensemble
        self.sink = None

    def measure(self, step: int) -> None:
        self.ensemble.measure(step)

    def step(self, step: int, batch: tuple[Tensor, Tensor], optimizer: object = None) -> Any:
        return self.ensemble.probing(step, batch)


def train_ensemble(
    configs: list[TrainConfig],
    out: str | Path = "runs",
    run_ids: list[str] | None = None,
    progress: Callable[[int, int], Any] | None = None,
    vmap: bool = False,
) -> list[Run]:
    """Train the members together through `tdlab.train.fit`; returns their runs (status done or diverged each).
    With `vmap`, the members are evaluated through `torch.func.vmap` even when their architecture has stacked
    layers (for comparison)."""
    check_compatible(configs)
    setups: list[Setup] = [build(config) for config in configs]
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in setups[0].model.modules()):
        raise ValueError("model.norm: the ensemble trainer does not support batchnorm (it updates buffers in place)")
    ids = run_ids or [None] * len(setups)
    if len(ids) != len(setups):
        raise ValueError(f"run_ids: expected one per config ({len(setups)}), got {len(ids)}")
    created: dict[int, Run] = {}

    def create(i: int) -> None:
        config = setups[i].config
        created[i] = Run.create(out, config.model_dump(mode="json"), kind="train", run_id=ids[i], seed=config.seed)

    try:
        _each(create, range(len(setups)))
        return _train(setups, [created[i] for i in range(len(setups))], progress, vmap)
    except BaseException as error:  # the members' writer ends here: record an interruption, free the runs
        for run in created.values():
            if isinstance(error, KeyboardInterrupt):
                with contextlib.suppress(Exception):  # never mask the interruption
                    if run.status == "running":
                        run.set_status("failed", error="interrupted")
            run.release()
        raise


def _train(setups: list[Setup], runs: list[Run], progress: Callable[[int, int], Any] | None, vmap: bool) -> list[Run]:
    """`train_ensemble` once the members' runs exist."""
    config = setups[0].config
    for setup, run in zip(setups, runs, strict=True):
        setup.probes.sink = run.log
    models = StackedModels.of([s.model for s in setups], vmap=vmap)
    module = _Module(models)
    ensemble = _Ensemble(setups, runs, models, module)
    callbacks = [ensemble.after_step]
    if progress is not None:
        callbacks.append(lambda step, loss: progress(step, len(ensemble.alive)))
    fit(
        module,
        ensemble.loss,
        _MemberBatches(setups),
        ensemble,
        config.steps,
        probes=_Probes(ensemble),  # type: ignore[arg-type]
        callbacks=callbacks,
        sink=lambda step, metrics: None,
    )
    duration = time.perf_counter() - ensemble.began
    _each(lambda i: (runs[i].flush(), runs[i].set_status("done", duration_s=duration)), ensemble.alive)
    return runs


def _checkpoint(
    setup: Setup, run: Run, models: StackedModels, optimizer: StackedOptimizer, index: int, step: int
) -> None:
    """Member `index`'s checkpoint in the sequential loop's format (its model's weights, torch optimiser state), so
    it resumes alone."""
    _copy_into(setup.model, models.params, index)
    state = setup.optimizer.state_dict()
    state["state"] = member_state(optimizer, index, list(models.params))
    lr = setup.config.optimizer.lr * schedule_factor(setup.config.schedule, setup.config.steps)(step)
    setup.scheduler.last_epoch = step
    setup.scheduler._step_count = step + 1
    setup.scheduler._last_lr = [lr]
    setup.optimizer.param_groups[0]["lr"] = lr
    run.save_checkpoint(
        {
            "step": step,
            "model": setup.model.state_dict(),
            "optimizer": {**state, "param_groups": setup.optimizer.state_dict()["param_groups"]},
            "scheduler": setup.scheduler.state_dict(),
            "probes": setup.probes.state_dict(),
            "rng": torch.get_rng_state(),
        }
    )
