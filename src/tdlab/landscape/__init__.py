"""The loss landscape as a function of the parameters: straight paths and barriers, 2-D slices with filter
normalisation, the symmetries of networks and weight matching, and critical points classified by their index
(found directly, or followed from a penalised loss to the loss itself by continuation).

Everything works on flat parameter vectors through `tdlab.Objective` (pure functions, the model is never
modified), or on parameter dicts for the symmetries.
"""

from tdlab.landscape.continuation import Continuation, follow_critical_point
from tdlab.landscape.critical import CriticalPoint, find_critical_point, hessian_index
from tdlab.landscape.interpolation import (
    PathProfile,
    barrier_height,
    directional_curvature,
    interpolate,
    is_monotone_decreasing,
    largest_bump,
    path_profile,
    second_difference,
)
from tdlab.landscape.plane import (
    PlaneSlice,
    filter_normalize,
    filter_normalized_direction,
    filter_norms,
    hessian_directions,
    loss_plane,
    nonconvex_fraction,
    random_direction,
    rising_rays,
    slice_curvatures,
)
from tdlab.landscape.symmetries import (
    Chain,
    mlp_chain,
    permute_units,
    random_permutations,
    rescale_units,
    weight_matching,
)

__all__ = [
    "Chain",
    "Continuation",
    "CriticalPoint",
    "PathProfile",
    "PlaneSlice",
    "barrier_height",
    "directional_curvature",
    "filter_normalize",
    "filter_normalized_direction",
    "filter_norms",
    "find_critical_point",
    "follow_critical_point",
    "hessian_directions",
    "hessian_index",
    "interpolate",
    "is_monotone_decreasing",
    "largest_bump",
    "loss_plane",
    "mlp_chain",
    "nonconvex_fraction",
    "path_profile",
    "permute_units",
    "random_direction",
    "random_permutations",
    "rescale_units",
    "rising_rays",
    "second_difference",
    "slice_curvatures",
    "weight_matching",
]
