"""Weights & Biases as a tracker (`tdlab train --wandb`): a run's metrics, logged to a W&B run as they are stored.

Each call `sink(step, metrics)` becomes `wandb_run.log(metrics, step=step)`; W&B gathers the calls of one step
into one history row (the loop's batch loss and learning rate, and the probes measured at that step). The W&B run
is named after the tdlab run, carries its config and kind (`job_type`), and has an id derived from the run's name
and creation time, so a resumed tdlab run continues the same W&B run (`resume="allow"`); W&B ignores a step below
the latest one it holds, so the steps logged again after a resume are not doubled there.

W&B's own settings apply: `WANDB_MODE=offline` writes the W&B run to disk only (`wandb sync` uploads it later),
`WANDB_PROJECT` names the project (default "tdlab"), and `WANDB_DIR` the folder W&B writes into (default: the run
directory, so the W&B files sit in `<run>/wandb/` beside the run's own). Console capture is off (the progress bar
stays on the terminal only). Needs the extra: pip install 'tdlab[wandb]'.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from typing import Any

from torch import nn

from tdlab.store import Run


def wandb_id(run: Run) -> str:
    """A W&B run id for `run`: its name (characters W&B refuses replaced by '-') and a hash of name and creation
    time, so that runs of the same name in different folders of a store get different W&B runs.

    Example:
        >>> import tempfile
        >>> run = Run.create(tempfile.mkdtemp(), {}, kind="train", run_id="lr=0.1,seed=2")
        >>> wandb_id(run)[:15], len(wandb_id(run))
        ('lr-0-1-seed-2--', 23)
    """
    digest = hashlib.sha256(f"{run.id}|{run.meta.get('created')}".encode()).hexdigest()[:8]
    return f"{re.sub(r'[^A-Za-z0-9_-]', '-', run.id)[:64]}--{digest}"


class WandbSink:
    """A `tdlab.store.sinks.Sink` logging the rows of `run` to a W&B run (see the module docstring).

    Args:
        run: the run being trained.
        model: unused (the signature of a `tdlab.store.sinks.Tracker`).
        project: the W&B project; default `WANDB_PROJECT`, else "tdlab".

    Raises:
        ValueError: wandb is not installed, or W&B refused to start the run (e.g. online without a login).
    """

    def __init__(self, run: Run, model: nn.Module | None = None, project: str | None = None) -> None:
        try:
            import wandb
        except ImportError:
            raise ValueError("wandb: needs the wandb extra: pip install 'tdlab[wandb]'") from None
        try:
            self.wandb_run: Any = wandb.init(
                project=project or os.environ.get("WANDB_PROJECT") or "tdlab",
                id=wandb_id(run),
                name=run.id,
                job_type=run.meta.get("kind"),
                config=run.config,
                dir=None if os.environ.get("WANDB_DIR") else str(run.path),
                resume="allow",
                reinit="create_new",
                settings=wandb.Settings(console="off"),
            )
        except wandb.Error as err:
            message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(f"wandb: {message} (WANDB_MODE=offline logs to disk only)") from None

    def __call__(self, step: int, metrics: Mapping[str, float]) -> None:
        self.wandb_run.log(dict(metrics), step=step)

    def close(self) -> None:
        self.wandb_run.finish()
