"""The one trainer (`fit`) and `tdlab train`: config -> data, model, optimiser -> steps -> probes -> a run directory."""

from tdlab.train.config import TrainConfig, load_config
from tdlab.train.loop import build, resume, train
from tdlab.train.trainer import Fit, fit

__all__ = ["Fit", "TrainConfig", "build", "fit", "load_config", "resume", "train"]
