"""Curvature of the loss: Hessian and Gauss-Newton matrices as linear operators, their extreme eigenpairs
(Lanczos, power iteration), trace (Hutchinson, Hutch++), spectral density (stochastic Lanczos quadrature), and
dense matrices of small models as the test oracle; Hessian products by differences of gradients where
second derivatives are unavailable or too costly."""

from tdlab.curvature.density import SpectralDensity, hessian_density
from tdlab.curvature.difference import DIFFERENCE_SCHEMES, DifferenceHessianOperator, default_difference_step
from tdlab.curvature.exact import exact_ggn, exact_hessian
from tdlab.curvature.lanczos import STOPPING_CRITERIA, EigResult, eigs_steps, hessian_eigs, run_products
from tdlab.curvature.operators import (
    GGNOperator,
    HessianOperator,
    LinearOperator,
    MatrixOperator,
    as_operator,
)
from tdlab.curvature.power import power_iteration
from tdlab.curvature.preconditioned import PreconditionedOperator
from tdlab.curvature.trace import TraceResult, hessian_trace

__all__ = [
    "DIFFERENCE_SCHEMES",
    "STOPPING_CRITERIA",
    "DifferenceHessianOperator",
    "EigResult",
    "GGNOperator",
    "HessianOperator",
    "LinearOperator",
    "MatrixOperator",
    "PreconditionedOperator",
    "SpectralDensity",
    "TraceResult",
    "as_operator",
    "default_difference_step",
    "eigs_steps",
    "exact_ggn",
    "exact_hessian",
    "hessian_density",
    "hessian_eigs",
    "hessian_trace",
    "power_iteration",
    "run_products",
]
