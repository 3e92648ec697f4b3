"""Guides that work wherever a NumPyro ``AutoGuide`` does (SVI, Predictive, ...)."""

from numpyro_ext.guides.flows import AutoFlow
from numpyro_ext.guides.polya_gamma_local import PolyaGammaLocalFit, polya_gamma_local_vi
from numpyro_ext.guides.sparse_gp import SparseGP, SparseGPMarginal

__all__: list[str] = [
    "AutoFlow",
    "PolyaGammaLocalFit",
    "SparseGP",
    "SparseGPMarginal",
    "polya_gamma_local_vi",
]
