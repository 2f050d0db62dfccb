"""tdlab: a laboratory for the training dynamics of deep networks."""

from tdlab.oracles import Objective

__all__ = ["Objective"]
__version__ = "0.1.0"
