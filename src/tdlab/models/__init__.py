"""Models: MLP (depth, width, activation, norm, residual, init), linear and random-features models, inits; a small
causal transformer and a ResNet with BatchNorm, for the instruments on the models people train."""

from tdlab.models.activations import ACTIVATIONS, make_activation
from tdlab.models.init import SCHEMES, as_generator, fans, init_variance, initialise, random_like
from tdlab.models.mlp import MLP, NORMS, RESIDUALS, HiddenLayer
from tdlab.models.registry import MODELS, build_model
from tdlab.models.resnet import ResNet
from tdlab.models.shallow import LinearModel, RandomFeatures
from tdlab.models.transformer import CausalTransformer

__all__ = [
    "ACTIVATIONS",
    "CausalTransformer",
    "MLP",
    "MODELS",
    "NORMS",
    "RESIDUALS",
    "SCHEMES",
    "HiddenLayer",
    "LinearModel",
    "RandomFeatures",
    "ResNet",
    "as_generator",
    "build_model",
    "fans",
    "init_variance",
    "initialise",
    "make_activation",
    "random_like",
]
