"""Inference algorithms NumPyro lacks: MCMC kernels and objectives."""

from numpyro_ext.infer.polya_gamma_gibbs import PolyaGammaGibbs, PolyaGammaGibbsState

__all__: list[str] = [
    "PolyaGammaGibbs",
    "PolyaGammaGibbsState",
]
