"""Guides that work wherever a NumPyro ``AutoGuide`` does (SVI, Predictive, ...)."""

from numpyro_ext.guides.amortized import (
    AmortizedFlow,
    AmortizedGuide,
    AmortizedMultivariateNormal,
    AmortizedNormal,
    ConditionalFlowFamily,
    DiagonalNormalFamily,
    FullRankNormalFamily,
    as_encoder,
)
from numpyro_ext.guides.flows import AutoFlow
from numpyro_ext.guides.polya_gamma_local import PolyaGammaLocalFit, polya_gamma_local_vi
from numpyro_ext.guides.posterior_estimation import AmortizedPosterior, PosteriorFit, coverage
from numpyro_ext.guides.sparse_gp import SparseGP, SparseGPMarginal

__all__: list[str] = [
    "AmortizedFlow",
    "AmortizedGuide",
    "AmortizedMultivariateNormal",
    "AmortizedNormal",
    "AmortizedPosterior",
    "AutoFlow",
    "ConditionalFlowFamily",
    "DiagonalNormalFamily",
    "FullRankNormalFamily",
    "PolyaGammaLocalFit",
    "PosteriorFit",
    "SparseGP",
    "SparseGPMarginal",
    "as_encoder",
    "coverage",
    "polya_gamma_local_vi",
]
