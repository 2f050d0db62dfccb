"""TensorBoard as a tracker (`tdlab train --tensorboard`): a run's metrics and weight histograms, watched live.

Scalars: every row the run stores, under its own name (`train/loss`, `sharpness`, ...). Histograms: the weights
of every parameter tensor, each time the probes measure (not at the steps that log only the batch loss and the
learning rate). The event files go to `<run>/tensorboard/`; view them with `tensorboard --logdir runs`.

A resumed run logs again the steps after its checkpoint. The sink then starts a TensorBoard session that purges
the events from the first step the store no longer holds (`SummaryWriter(purge_step=...)`), so TensorBoard shows
each step once, as the store does. Needs the extra: pip install 'tdlab[tensorboard]'.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from tdlab.store import Run

_LOOP_ONLY = ("train/batch_loss", "lr")  # what the loop logs at every step; probes log everything else


class TensorBoardSink:
    """A `tdlab.store.sinks.Sink` writing the rows of `run` and histograms of `model`'s weights to TensorBoard.

    Args:
        run: the run being trained; events go to `<run>/tensorboard/`.
        model: the network whose parameters are drawn as histograms.
    """

    def __init__(self, run: Run, model: nn.Module) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ValueError("tensorboard: needs the tensorboard extra: pip install 'tdlab[tensorboard]'") from None
        folder = run.path / "tensorboard"
        purge_step = None
        if folder.is_dir():  # a resumed run: purge what it is about to log again
            steps = run.metrics()["step"]
            purge_step = int(steps.max()) + 1 if len(steps) else 0
        self.writer = SummaryWriter(log_dir=str(folder), purge_step=purge_step)
        self.model = model
        self._last_histogram_step = -1

    def __call__(self, step: int, metrics: Mapping[str, float]) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)
        if step != self._last_histogram_step and any(not name.startswith(_LOOP_ONLY) for name in metrics):
            for name, parameter in self.model.named_parameters():
                self.writer.add_histogram(f"weights/{name}", parameter.detach().cpu(), step)
            self._last_histogram_step = step
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
