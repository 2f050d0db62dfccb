"""Metric sinks: where the rows of a run go besides its own metric files.

A sink receives every measurement as `sink(step, metrics)` and is closed once when the run ends. The run's
`Run.log` is the first sink; experiment trackers (TensorBoard, Weights & Biases, see `tdlab.integrations`) are
others. `Tee` fans one stream out to the run and to the trackers, so that each tracker receives exactly the rows
the run stores: only rows the run accepted, with every value converted by `float` as the run converts it.

The protocol lives here, in the lowest layer that writes rows, so that the trainer can take trackers without
knowing them: the trainer depends on this module, the trackers implement it, and the command line wires them in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from torch import nn

    from tdlab.store.run import Run


class Sink(Protocol):
    """Receives metric rows, one call per measurement, steps never decreasing; closed once at the end."""

    def __call__(self, step: int, metrics: Mapping[str, float]) -> None:
        """Record the values `metrics` (name -> number) measured at `step`."""

    def close(self) -> None:
        """Write out whatever is buffered and release the sink's resources."""


Tracker = Callable[["Run", "nn.Module"], Sink]
"""Opens a tracker's sink for a run about to be trained, given the run and its model (`TensorBoardSink`, ...)."""


class Tee:
    """Send each row to `log` (the run's `Run.log`), then to every tracker; `close()` closes the trackers.

    `log` sees the row first, so a row it refuses (a name or value that is not a metric) reaches no tracker,
    and the trackers receive the values as the run stores them (`float(value)`).

    Args:
        log: the run's log (`run.log`), which validates and stores the rows.
        trackers: further sinks that receive the same rows.

    Example:
        >>> class Recorder:
        ...     def __init__(self):
        ...         self.rows, self.closed = [], False
        ...     def __call__(self, step, metrics):
        ...         self.rows.extend((step, name, value) for name, value in metrics.items())
        ...     def close(self):
        ...         self.closed = True
        >>> import numpy as np
        >>> stored, tracker = Recorder(), Recorder()
        >>> tee = Tee(stored, [tracker])
        >>> tee(3, {"loss": np.float32(0.5)}); tee.close()
        >>> tracker.rows, type(tracker.rows[0][2]).__name__, tracker.closed
        ([(3, 'loss', 0.5)], 'float', True)
    """

    def __init__(self, log: Callable[[int, Mapping[str, float]], None], trackers: Sequence[Sink] = ()) -> None:
        self.log = log
        self.trackers = list(trackers)

    def __call__(self, step: int, metrics: Mapping[str, float]) -> None:
        self.log(step, metrics)
        if self.trackers:
            row = {name: float(value) for name, value in metrics.items()}
            for tracker in self.trackers:
                tracker(step, row)

    def close(self) -> None:
        """Close every tracker, even when one fails; the first failure is raised after all were tried."""
        failure = None
        for tracker in self.trackers:
            try:
                tracker.close()
            except Exception as err:  # close the others first, then report it
                failure = failure or err
        if failure is not None:
            raise failure
