"""tdlab probes inside the Hugging Face `Trainer`: a `TrainerCallback` that measures any set of probes during
`Trainer.train` on the trainer's own model, optimiser and data, and writes a tdlab run directory.

    from tdlab.integrations.huggingface import ProbeCallback

    probes = ProbeCallback(["loss", "gradient-norm", "sharpness"], every=50, data=train_dataset.select(range(256)))
    trainer = Trainer(model, args, train_dataset=train_dataset, callbacks=[probes])
    trainer.train()
    probes.run.path        # tdlab show / tdlab query / tdlab report read it

The loss the probes differentiate is the model's own: a probe batch is the trainer's collated dict (input_ids,
attention_mask, labels, ...), passed as `model(**batch)`, and `loss_fn(outputs, labels)` defaults to
`outputs.loss`, the loss the Trainer minimises (its shift of causal-LM labels, its ignore index -100). A batch
weighs by its number of examples (`tdlab.oracles.Objective`). Accuracy is not measured: how predictions compare
with labels depends on the head (a causal LM shifts them), so "loss" gives train/loss (and test/loss) only.

Probe data: `data` (and `test`) are datasets of examples like the Trainer's `train_dataset`, collated with the
trainer's own collator in batches of `batch_size` (default `per_device_train_batch_size`), in order, once, when
training starts: the batches are held in memory and stay the same at every query (a masking collator draws its
masks once), so pass a subset for a large corpus. `data=None` takes the whole train dataset.

Steps are optimiser steps (`state.global_step`): step t is measured after the t-th update (in `on_step_end`),
step 0 when training starts; each step also records the learning rate it was taken with ("lr"). The Trainer
does not show callbacks its batches, so probes of the current mini-batch (split "batch") are unavailable.
Only the main process measures and writes. The run ends `done` in `on_train_end`; a crash leaves it `running`
(the Trainer has no exception event). Resuming from a Trainer checkpoint starts a new run directory.

Requires `transformers` with its torch extra (`pip install tdlab[huggingface]`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.utils import find_labels

from tdlab.integrations.recorder import ProbeRecorder, Recording, forked_rng, optimizer_config
from tdlab.probes import Probe


def model_loss(outputs: Any, targets: Tensor) -> Tensor:
    """The loss a Hugging Face model computed from the labels inside its inputs (`outputs.loss`).

    Example:
        >>> from transformers.modeling_outputs import CausalLMOutput
        >>> float(model_loss(CausalLMOutput(loss=torch.tensor(2.5)), torch.zeros(1)))
        2.5
    """
    loss = outputs.get("loss") if isinstance(outputs, Mapping) else getattr(outputs, "loss", None)
    if loss is None:
        raise ValueError("outputs: the model returned no loss; its batches must hold the labels (or pass loss_fn=...)")
    return loss


def collated_batches(dataset: object, collate_fn: Callable | None, batch_size: int, label: str) -> list[tuple]:
    """The examples of `dataset` collated in order into `(batch, batch[label])` pairs: the whole batch dict is the
    model's keyword inputs (labels included, so the model computes its loss), the labels count the examples.

    Example:
        >>> examples = [{"input_ids": torch.tensor([i, i]), "labels": torch.tensor([i, i])} for i in range(3)]
        >>> [labels.tolist() for _, labels in collated_batches(examples, None, 2, "labels")]
        [[[0, 0], [1, 1]], [[2, 2]]]
    """
    if not hasattr(dataset, "__len__"):
        raise ValueError(
            f"data: a {type(dataset).__name__} has no length (an iterable dataset); pass a map-style dataset of "
            "examples (e.g. the first few hundred) as ProbeCallback(data=...)"
        )
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_fn, generator=torch.Generator())
    batches = []
    for batch in loader:
        if not isinstance(batch, Mapping) or label not in batch:
            keys = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
            raise ValueError(f"data: expected collated batches holding {label!r} (the labels), got {keys}")
        batches.append((dict(batch), batch[label]))
    if not batches:
        raise ValueError("data: expected at least one example, got none")
    return batches


class ProbeCallback(TrainerCallback, Recording):
    """Measure tdlab probes during `Trainer.train` and write them into a tdlab run directory.

    Args:
        probes: `Probe` instances, or names of `tdlab.probes.PROBES` built with period `every`.
        data: a dataset of examples (like `train_dataset`) for train-set probes; None: the train dataset.
        test: a dataset of examples for the test split of the probes (e.g. `eval_dataset`), or None.
        every: the period of the probes given by name.
        out, run_id: the run is written to `<out>/<run_id>` (default id `train-<time>-<hash>`).
        config: fields added to the run's config.json (e.g. a sweep's values); the callback records the model's
            class and type, the optimiser and its hyper-parameters, the schedule, `max_steps`, the batch size,
            the seed and the probes.
        batch_size: examples per probe batch; default the trainer's `per_device_train_batch_size`.
        loss_fn: `loss_fn(outputs, labels)`; default `model_loss` (the model's own loss).
        eval_mode: measure with the model in eval mode (dropout off), restored after.

    Attributes:
        run: the `tdlab.store.Run` (None before training starts and on processes other than the main one).
        probe_set: the `tdlab.probes.ProbeSet` (its `history` holds every measurement).
    """

    def __init__(
        self,
        probes: Sequence[Probe | str],
        data: object | None = None,
        test: object | None = None,
        every: int = 1,
        out: str | os.PathLike[str] = "runs",
        run_id: str | None = None,
        config: Mapping[str, Any] | None = None,
        batch_size: int | None = None,
        loss_fn: Callable[[Any, Tensor], Tensor] = model_loss,
        eval_mode: bool = True,
    ):
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise ValueError(f"batch_size: expected a positive integer or None, got {batch_size!r}")
        self.recorder = ProbeRecorder(probes, every=every, out=out, run_id=run_id, config=config)
        self.data = data
        self.test = test
        self.batch_size = batch_size
        self.loss_fn = loss_fn
        self.eval_mode = eval_mode

    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: torch.nn.Module | None = None,
        optimizer: Any = None,
        train_dataloader: DataLoader | None = None,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero:
            return
        label = (args.label_names or find_labels(type(model)) or ["labels"])[0]
        collate_fn = getattr(train_dataloader, "collate_fn", None)
        size = self.batch_size or args.per_device_train_batch_size
        with forked_rng(model):
            dataset = self.data if self.data is not None else getattr(train_dataloader, "dataset", None)
            if dataset is None:
                raise ValueError(
                    "data: the trainer has no train dataset; pass the probe data as ProbeCallback(data=...)"
                )
            train = collated_batches(dataset, collate_fn, size, label)
            test = None if self.test is None else collated_batches(self.test, collate_fn, size, label)
        schedule = args.lr_scheduler_type
        config = {
            "integration": "huggingface",
            "model": {
                "name": type(model).__name__,
                "model_type": getattr(getattr(model, "config", None), "model_type", None),
            },
            "optimizer": {**optimizer_config(optimizer), "schedule": str(getattr(schedule, "value", schedule))},
            "max_steps": state.max_steps,
            "batch_size": args.per_device_train_batch_size,
            "gradient_accumulation_steps": args.gradient_accumulation_steps,
            "seed": args.seed,
        }
        # task "regression": no accuracy (see the module docstring); the loss is the model's own either way.
        self.recorder.start(
            model,
            self.loss_fn,
            train,
            test=test,
            task="regression",
            eval_mode=self.eval_mode,
            config=config,
            seed=args.seed,
            step=state.global_step,
        )

    def on_pre_optimizer_step(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        optimizer: Any = None,
        **kwargs: Any,
    ) -> None:
        self.recorder.before_step(state.global_step + 1, optimizer)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.recorder.after_step(state.global_step)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.recorder.finish("done")
