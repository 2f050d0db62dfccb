"""tdlab: a laboratory for the training dynamics of deep networks."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tdlab.oracles import Objective

__all__ = ["Objective"]
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # Imported on first use, so that `tdlab.cli` can set OpenMP's environment before torch is loaded.
    if name == "Objective":
        from tdlab.oracles import Objective

        return Objective
    raise AttributeError(f"module 'tdlab' has no attribute {name!r}")
