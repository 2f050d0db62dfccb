"""Ensembles: N models of one architecture trained at once through `torch.func.vmap` over stacked parameters."""

from tdlab.ensemble.trainer import VARYING, check_compatible, shape_key, train_ensemble
from tdlab.ensemble.updates import StackedOptimizer

__all__ = ["VARYING", "StackedOptimizer", "check_compatible", "shape_key", "train_ensemble"]
