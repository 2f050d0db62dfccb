"""Streaming a run's probes to TensorBoard, for users who watch training live (`tdlab train --tensorboard`).

Scalars: every metric the probes and the loop log, under its own name (`train/loss`, `sharpness`, ...).
Histograms: the weights of every parameter tensor, each time the probes measure. The event files go to
`<run>/tensorboard/`; view them with `tensorboard --logdir runs`. Needs the extra: pip install 'tdlab[tensorboard]'.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from torch import nn


class TensorBoardSink:
    """A metrics sink (`sink(step, metrics)`) that also writes parameter histograms of `model`."""

    def __init__(self, run_path: str | Path, model: nn.Module, forward: Callable[[int, Mapping[str, float]], None]):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ValueError("tensorboard: needs the tensorboard extra: pip install 'tdlab[tensorboard]'") from None
        self.writer = SummaryWriter(log_dir=str(Path(run_path) / "tensorboard"))
        self.model = model
        self.forward = forward
        self._last_histogram_step = -1

    def __call__(self, step: int, metrics: Mapping[str, float]) -> None:
        self.forward(step, metrics)
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)
        if step != self._last_histogram_step and any(
            not name.startswith(("train/batch_loss", "lr")) for name in metrics
        ):
            for name, parameter in self.model.named_parameters():
                self.writer.add_histogram(f"weights/{name}", parameter.detach().cpu(), step)
            self._last_histogram_step = step
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
