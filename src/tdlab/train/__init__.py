"""Training with probes: config -> data, model, optimiser -> steps -> probes -> a run directory."""

from tdlab.train.config import TrainConfig, load_config
from tdlab.train.loop import build, resume, train

__all__ = ["TrainConfig", "build", "load_config", "resume", "train"]
