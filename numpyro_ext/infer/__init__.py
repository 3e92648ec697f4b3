"""Inference algorithms NumPyro lacks: MCMC kernels and objectives."""

from numpyro_ext.infer.collapsed_gibbs import (
    CollapsedPolyaGammaGibbs,
    CollapsedPolyaGammaGibbsState,
)
from numpyro_ext.infer.polya_gamma_gibbs import PolyaGammaGibbs, PolyaGammaGibbsState

__all__: list[str] = [
    "CollapsedPolyaGammaGibbs",
    "CollapsedPolyaGammaGibbsState",
    "PolyaGammaGibbs",
    "PolyaGammaGibbsState",
]
