"""Models: MLP (depth, width, activation, norm, residual, init), linear and random-features models, inits."""

from tdlab.models.activations import ACTIVATIONS, make_activation
from tdlab.models.init import SCHEMES, as_generator, fans, init_variance, initialise, random_like
from tdlab.models.mlp import MLP, NORMS, RESIDUALS, HiddenLayer
from tdlab.models.registry import MODELS, build_model
from tdlab.models.shallow import LinearModel, RandomFeatures

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "MODELS",
    "NORMS",
    "RESIDUALS",
    "SCHEMES",
    "HiddenLayer",
    "LinearModel",
    "RandomFeatures",
    "as_generator",
    "build_model",
    "fans",
    "init_variance",
    "initialise",
    "make_activation",
    "random_like",
]
