"""Models by name, for configs: `build_model("mlp", 40, 10, width=256)`."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from tdlab.models._checks import check_choice
from tdlab.models.mlp import MLP
from tdlab.models.shallow import LinearModel, RandomFeatures

MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "linear": LinearModel,
    "random-features": RandomFeatures,
}


def build_model(name: str, in_features: int, out_features: int, **kwargs: object) -> nn.Module:
    """The model `name` ("mlp", "linear" or "random-features") mapping in_features to out_features; `kwargs`
    go to its constructor (`MLP`, `LinearModel`, `RandomFeatures`).

    Example:
        >>> build_model("random-features", 10, 1, num_features=50, seed=0).feature_weight.shape
        torch.Size([50, 10])
    """
    check_choice("model", name, MODELS)
    if name == "random-features":
        return RandomFeatures(in_features, out_features=out_features, **kwargs)  # type: ignore[arg-type]
    return MODELS[name](in_features, out_features, **kwargs)
