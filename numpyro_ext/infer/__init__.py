"""Inference algorithms NumPyro lacks: MCMC kernels, fitting procedures and objectives."""

from numpyro_ext.infer.checkpoint import load_checkpoint, restore_svi, save_checkpoint
from numpyro_ext.infer.collapsed_gibbs import (
    CollapsedPolyaGammaGibbs,
    CollapsedPolyaGammaGibbsState,
)
from numpyro_ext.infer.polya_gamma_gibbs import PolyaGammaGibbs, PolyaGammaGibbsState
from numpyro_ext.infer.polya_gamma_local import PolyaGammaLocalFit, polya_gamma_local_vi
from numpyro_ext.infer.posterior_estimation import AmortizedPosterior, PosteriorFit, coverage

__all__: list[str] = [
    "AmortizedPosterior",
    "CollapsedPolyaGammaGibbs",
    "CollapsedPolyaGammaGibbsState",
    "PolyaGammaGibbs",
    "PolyaGammaGibbsState",
    "PolyaGammaLocalFit",
    "PosteriorFit",
    "coverage",
    "load_checkpoint",
    "polya_gamma_local_vi",
    "restore_svi",
    "save_checkpoint",
]
