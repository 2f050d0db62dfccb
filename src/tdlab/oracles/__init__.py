"""Oracles: a model's loss as a function of its parameters, with value, gradient, HVP and GGN-vector products."""

from tdlab.oracles.flat import Params, flatten, num_parameters, trainable_parameters, unflatten
from tdlab.oracles.objective import Objective

__all__ = ["Objective", "Params", "flatten", "num_parameters", "trainable_parameters", "unflatten"]
