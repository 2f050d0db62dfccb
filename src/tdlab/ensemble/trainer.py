"""Training N models of one architecture at once: stacked parameters and `torch.func.vmap`.

Each member is the model that `tdlab.train.build` makes from its own config, so it starts from exactly the weights
of the sequential run of that config; members may differ in `seed` (initialisation and data order),
`optimizer.lr`, `model.init_scale` and `name`, and must agree on everything else (the shapes). One step evaluates
all members' losses on their own mini-batches in one vmapped forward pass and their gradients in one backward
pass of the summed losses (members share no parameter, so each stacked slice receives its own member's gradient;
this is faster than vmapping `grad`), then updates the stacked parameters with the `torch.optim` formulas
(`tdlab.ensemble.updates`). Probes, metrics, checkpoints and statuses are per member, in one run directory each,
exactly as `tdlab.train.train` writes them: a member's checkpoint can be resumed on its own by
`tdlab.train.resume`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from tdlab.ensemble.updates import SUPPORTED, StackedOptimizer, member_state
from tdlab.store import Run, flatten_config
from tdlab.train.builders import schedule_factor
from tdlab.train.config import TrainConfig
from tdlab.train.loop import Setup, batch_indices, build

VARYING = {"seed", "name", "optimizer.lr", "model.init_scale"}


def _shape_fields(config: TrainConfig) -> dict[str, Any]:
    """The flattened config without the fields in which members may differ."""
    return {k: v for k, v in flatten_config(config.model_dump(mode="json")).items() if k not in VARYING}


def shape_key(config: dict[str, Any]) -> str | None:
    """A key equal for configs that can train together in one ensemble; None for a config the ensemble trainer
    cannot run: BatchNorm (it updates its buffers in place), an optimiser outside `updates.SUPPORTED`, AMSGrad.

    Example:
        >>> a = {"model": {"name": "mlp", "width": 8}, "optimizer": {"lr": 0.1}, "seed": 0}
        >>> shape_key(a) == shape_key({**a, "seed": 3, "optimizer": {"lr": 0.5}})
        True
        >>> shape_key({**a, "model": {"name": "mlp", "width": 16}}) == shape_key(a)
        False
    """
    validated = TrainConfig.model_validate(config)
    optimizer = validated.optimizer.kwargs()
    if (
        getattr(validated.model, "norm", None) == "batchnorm"
        or validated.optimizer.name not in SUPPORTED
        or optimizer.get("amsgrad")
    ):
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


def train_ensemble(
    configs: list[TrainConfig],
    out: str | Path = "runs",
    run_ids: list[str] | None = None,
    progress: Callable[[int, int], Any] | None = None,
) -> list[Run]:
    """Train the members together; returns their runs (status done or diverged each)."""
    check_compatible(configs)
    setups: list[Setup] = [build(config) for config in configs]
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in setups[0].model.modules()):
        raise ValueError("model.norm: the ensemble trainer does not support batchnorm (it updates buffers in place)")
    reference = setups[0]
    optimizer = StackedOptimizer(reference.config.optimizer.name, reference.config.optimizer.kwargs())
    runs = [
        Run.create(out, s.config.model_dump(mode="json"), kind="train", run_id=rid, seed=s.config.seed)
        for s, rid in zip(setups, run_ids or [None] * len(setups), strict=True)
    ]
    for setup, run in zip(setups, runs, strict=True):
        setup.probes.sink = run.log
    params, buffers = stack_module_state([s.model for s in setups])
    params = {k: v.detach() for k, v in params.items()}
    names = list(params)
    base_lr = torch.tensor(
        [s.config.optimizer.lr for s in setups], device=reference.device, dtype=next(iter(params.values())).dtype
    )
    factor = schedule_factor(reference.config.schedule, reference.config.steps)
    loss_fn = reference.loss_fn
    template = reference.model

    def member_loss(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        return loss_fn(functional_call(template, (p, b), (x,)), y)

    member_losses = vmap(member_loss)
    leaves = list(params.values())

    def step_fn(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor, y: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        # members are independent, so the gradient of the summed losses holds each member's own gradient
        with torch.enable_grad():
            for leaf in leaves:
                leaf.requires_grad_(True)
            losses = member_losses(p, b, x, y)
            grads = torch.autograd.grad(losses.sum(), leaves)
            for leaf in leaves:
                leaf.requires_grad_(False)
        return dict(zip(p, grads, strict=True)), losses.detach()

    X, y = reference.dataset.train
    config = reference.config
    alive = [True] * len(setups)
    began = time.perf_counter()
    for setup in setups:
        setup.probes.measure(0)
    for setup, run in zip(setups, runs, strict=True):
        _checkpoint(setup, run, optimizer, names, setups.index(setup), 0)
    for step in range(config.steps):
        indices = [batch_indices(X.shape[0], config.batch_size, s.config.seed, step) for s in setups]
        if indices[0] is None:
            xb, yb = X.expand(len(setups), *X.shape), y.expand(len(setups), *y.shape)
        else:
            stacked = torch.stack(indices).to(X.device)
            xb, yb = X[stacked], y[stacked]
        due = [i for i, s in enumerate(setups) if alive[i] and s.probes.due(step + 1)]
        previous = {i: {k: v[i].clone() for k, v in params.items()} for i in due}
        grads, losses = step_fn(params, buffers, xb, yb)
        lr = base_lr * factor(step)
        optimizer.step(params, grads, lr)
        values, lrs = losses.tolist(), lr.tolist()
        for i in range(len(setups)):
            if not alive[i]:
                continue
            if i in due:
                _copy_into(setups[i].model, params, i)
                batch = (xb[i], yb[i])
                setups[i].probes.measure(step + 1, batch=batch, previous_params=previous[i])
            runs[i].log(step + 1, {"train/batch_loss": values[i], "lr": lrs[i]})
            if not math.isfinite(values[i]):
                alive[i] = False
                runs[i].flush()
                runs[i].set_status("diverged", diverged_step=step + 1, duration_s=time.perf_counter() - began)
            elif (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
                _copy_into(setups[i].model, params, i)
                _checkpoint(setups[i], runs[i], optimizer, names, i, step + 1)
        if progress is not None:
            progress(step + 1, sum(alive))
        if not any(alive):
            break
    for i, run in enumerate(runs):
        if alive[i]:
            run.flush()
            run.set_status("done", duration_s=time.perf_counter() - began)
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
