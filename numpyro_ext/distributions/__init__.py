"""Probability distributions, as subclasses of ``numpyro.distributions.Distribution``."""

from numpyro_ext.distributions.gaussian_process import GaussianProcess
from numpyro_ext.distributions.polya_gamma import PolyaGamma

__all__: list[str] = [
    "GaussianProcess",
    "PolyaGamma",
]
