"""Guides that work wherever a NumPyro ``AutoGuide`` does (SVI, Predictive, ...)."""

from numpyro_ext.guides.flows import AutoFlow
from numpyro_ext.guides.sparse_gp import SparseGP, SparseGPMarginal

__all__: list[str] = [
    "AutoFlow",
    "SparseGP",
    "SparseGPMarginal",
]
