"""Training N models of one architecture at once on stacked parameters.

Each member is the model that `tdlab.train.build` makes from its own config, so it starts from exactly the weights
of the sequential run of that config; members may differ in `seed` (initialisation and data order),
`optimizer.lr`, `model.init_scale` and `name`, and must agree on everything else (the shapes). One step evaluates
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
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from tdlab.ensemble.probes import measure_together
from tdlab.ensemble.stacked import StackedModels, member_losses
from tdlab.ensemble.updates import StackedOptimizer, member_state, per_member, unsupported
from tdlab.store import Run, flatten_config
from tdlab.train.batches import batch_slot, epoch_order
from tdlab.train.builders import schedule_factor
from tdlab.train.config import TrainConfig
from tdlab.train.loop import Setup, build

VARYING = {"seed", "name", "optimizer.lr", "model.init_scale"}
_PENDING_STEPS = 256  # batch losses kept before they are handed to the runs (they are also at every event)


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


def _member_batches(setups: list[Setup]) -> Iterator[tuple[Tensor, Tensor]]:
    """Every step's mini-batches of all members, stacked (N, batch, *): member m's is the one that
    `tdlab.train.train` draws for its seed (the same examples in the same order)."""
    config = setups[0].config
    X, y = setups[0].dataset.train
    n, members = X.shape[0], len(setups)
    if config.batch_size is None or config.batch_size >= n:
        full = X.expand(members, *X.shape), y.expand(members, *y.shape)
        for _ in range(config.steps):
            yield full
        return
    current, orders = -1, torch.empty(0)
    for step in range(config.steps):
        epoch, rows = batch_slot(n, config.batch_size, step)
        if epoch != current:
            current = epoch
            orders = torch.stack([epoch_order(n, s.config.seed, epoch) for s in setups]).to(X.device)
        indices = orders[:, rows].reshape(-1)
        yield (
            X.index_select(0, indices).view(members, -1, *X.shape[1:]),
            y.index_select(0, indices).view(members, -1, *y.shape[1:]),
        )


def train_ensemble(
    configs: list[TrainConfig],
    out: str | Path = "runs",
    run_ids: list[str] | None = None,
    progress: Callable[[int, int], Any] | None = None,
    vmap: bool = False,
) -> list[Run]:
    """Train the members together; returns their runs (status done or diverged each). With `vmap`, the members
    are evaluated through `torch.func.vmap` even when their architecture has stacked layers (for comparison)."""
    check_compatible(configs)
    setups: list[Setup] = [build(config) for config in configs]
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in setups[0].model.modules()):
        raise ValueError("model.norm: the ensemble trainer does not support batchnorm (it updates buffers in place)")
    reference, config = setups[0], setups[0].config
    optimizer = StackedOptimizer(config.optimizer.name, config.optimizer.kwargs())
    runs = [
        Run.create(out, s.config.model_dump(mode="json"), kind="train", run_id=rid, seed=s.config.seed)
        for s, rid in zip(setups, run_ids or [None] * len(setups), strict=True)
    ]
    for setup, run in zip(setups, runs, strict=True):
        setup.probes.sink = run.log
    models = StackedModels.of([s.model for s in setups], vmap=vmap)
    params = models.params
    names, leaves = list(params), list(params.values())
    base_lrs = [s.config.optimizer.lr for s in setups]
    base_lr = torch.tensor(base_lrs, device=reference.device, dtype=next(iter(params.values())).dtype)
    factor = schedule_factor(config.schedule, config.steps)
    losses_of = member_losses(reference.loss_fn)

    def gradients(x: Tensor, y: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        # members share no parameter, so the gradient of the summed losses holds each member's own gradient
        with torch.enable_grad():
            losses = losses_of(models(x), y)
            grads = torch.autograd.grad(losses.sum(), leaves)
        return dict(zip(names, grads, strict=True)), losses.detach()

    alive = list(range(len(setups)))
    alive_mask = torch.ones(len(setups), dtype=torch.bool, device=reference.device)
    pending: list[tuple[int, Tensor]] = []  # (step, losses): rows not yet handed to the runs

    def hand_over() -> None:
        """Log the pending steps' batch losses and learning rates of the members alive over them."""
        if not pending:
            return
        steps = [step for step, _ in pending]
        losses = torch.stack([losses for _, losses in pending], dim=1).tolist()
        factors = [factor(step - 1) for step in steps]
        for i in alive:
            lrs = [base_lrs[i] * f for f in factors]
            runs[i].log_steps(steps, {"train/batch_loss": losses[i], "lr": lrs})
        pending.clear()

    def measure(step: int, batches: tuple[Tensor, Tensor] | None, previous: dict[str, Tensor] | None) -> None:
        """Every alive member's due probes: those with a stacked form at once, the others member by member."""
        due = reference.probes.due(step)
        together = measure_together(step, due, models, [s.probes for s in setups], losses_of, previous, alive)
        alone = any(p.name not in together[alive[0]] for p in due)
        for i in alive:
            if alone:
                _copy_into(setups[i].model, params, i)
            setups[i].probes.measure(
                step,
                batch=None if batches is None else (batches[0][i], batches[1][i]),
                previous_params=None if previous is None else {name: p[i] for name, p in previous.items()},
                given=together[i],
            )

    began = time.perf_counter()
    measure(0, None, None)
    for step, (xb, yb) in enumerate(_member_batches(setups)):
        due = reference.probes.due(step + 1)
        previous = None
        if any(probe.needs_previous_params for probe in due):
            previous = {name: p.detach().clone() for name, p in params.items()}
        grads, losses = gradients(xb, yb)
        lr = base_lr * factor(step)
        finite = torch.isfinite(losses)
        diverged = [] if bool(finite.all()) else [i for i in alive if not finite[i]]
        stepping = finite & alive_mask
        if not bool(stepping.all()):  # as the sequential loop, no step on a non-finite loss; none after divergence
            lr = torch.where(stepping, lr, 0.0)
            grads = {name: torch.where(per_member(stepping, g), g, 0.0) for name, g in grads.items()}
        optimizer.step(params, grads, lr)
        pending.append((step + 1, losses))
        checkpoint = (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps
        if due or checkpoint or diverged or len(pending) >= _PENDING_STEPS:
            hand_over()
        if due:
            measure(step + 1, (xb, yb), previous)
        for i in diverged:
            alive.remove(i)
            alive_mask[i] = False
            runs[i].flush()
            runs[i].set_status("diverged", diverged_step=step + 1, duration_s=time.perf_counter() - began)
        if checkpoint:
            for i in alive:
                _copy_into(setups[i].model, params, i)
                _checkpoint(setups[i], runs[i], optimizer, names, i, step + 1)
        if progress is not None:
            progress(step + 1, len(alive))
        if not alive:
            break
    for i in alive:
        runs[i].flush()
        runs[i].set_status("done", duration_s=time.perf_counter() - began)
    return runs


def _checkpoint(setup: Setup, run: Run, optimizer: StackedOptimizer, names: list[str], index: int, step: int) -> None:
    """The member's checkpoint in the sequential loop's format (torch optimiser state), so it resumes alone."""
    state = setup.optimizer.state_dict()
    state["state"] = member_state(optimizer, index, names)
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
