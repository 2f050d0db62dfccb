"""The trackers a user asks for on the command line (`--tensorboard`, `--wandb`), checked before a run exists."""

from __future__ import annotations

import importlib.util

from tdlab.integrations.tensorboard import TensorBoardSink
from tdlab.integrations.wandb import WandbSink
from tdlab.store.sinks import Tracker


def trackers(tensorboard: bool = False, wandb: bool = False) -> list[Tracker]:
    """The chosen trackers, for `tdlab.train.train(..., trackers=...)`.

    A tracker whose package is missing raises ValueError naming the extra to install now, before training starts
    and before anything is written.

    Example:
        >>> trackers()
        []
    """
    chosen: list[Tracker] = []
    for wanted, package, tracker in ((tensorboard, "tensorboard", TensorBoardSink), (wandb, "wandb", WandbSink)):
        if wanted:
            if importlib.util.find_spec(package) is None:
                raise ValueError(f"{package}: needs the {package} extra: pip install 'tdlab[{package}]'")
            chosen.append(tracker)
    return chosen
