"""Ensembles: N models of one architecture trained at once through `torch.func.vmap` over stacked parameters."""

from tdlab.ensemble.stacked import StackedModels, member_losses, stacked_module
from tdlab.ensemble.trainer import VARYING, check_compatible, shape_key, train_ensemble
from tdlab.ensemble.updates import StackedOptimizer

__all__ = [
    "VARYING",
    "StackedModels",
    "StackedOptimizer",
    "check_compatible",
    "member_losses",
    "shape_key",
    "stacked_module",
    "train_ensemble",
]
