"""Guides that work wherever a NumPyro ``AutoGuide`` does (SVI, Predictive, ...)."""

from numpyro_ext.amortization import (
    ConditionalFlowFamily,
    DiagonalNormalFamily,
    FullRankNormalFamily,
    as_encoder,
)
from numpyro_ext.guides.amortized import (
    AmortizedFlow,
    AmortizedGuide,
    AmortizedMultivariateNormal,
    AmortizedNormal,
)
from numpyro_ext.guides.flows import AutoFlow
from numpyro_ext.guides.implicit import AmortizedImplicit, ImplicitGuide
from numpyro_ext.guides.orthogonal import ODVGP, SOLVEGP
from numpyro_ext.guides.sparse_gp import SparseGP, SparseGPMarginal

__all__: list[str] = [
    "ODVGP",
    "SOLVEGP",
    "AmortizedFlow",
    "AmortizedGuide",
    "AmortizedImplicit",
    "AmortizedMultivariateNormal",
    "AmortizedNormal",
    "AutoFlow",
    "ConditionalFlowFamily",
    "DiagonalNormalFamily",
    "FullRankNormalFamily",
    "ImplicitGuide",
    "SparseGP",
    "SparseGPMarginal",
    "as_encoder",
]
