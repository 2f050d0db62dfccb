"""Ensembles: N models of one architecture evaluated and trained at once on stacked parameters (stacked layers where
the architecture has them, `torch.func.vmap` otherwise)."""

from tdlab.ensemble.members import MemberLosses, Members, pad_to
from tdlab.ensemble.stacked import StackedModels, member_losses, stacked_module
from tdlab.ensemble.trainer import VARYING, check_compatible, shape_key, train_ensemble
from tdlab.ensemble.updates import StackedOptimizer

__all__ = [
    "VARYING",
    "MemberLosses",
    "Members",
    "StackedModels",
    "StackedOptimizer",
    "check_compatible",
    "member_losses",
    "pad_to",
    "shape_key",
    "stacked_module",
    "train_ensemble",
]
