"""Probability distributions, as subclasses of ``numpyro.distributions.Distribution``."""

from numpyro_ext.distributions.gaussian_process import GaussianProcess
from numpyro_ext.distributions.polya_gamma import PolyaGamma
from numpyro_ext.distributions.polya_gamma_sampler import has_cpu_extension, sample_polya_gamma

__all__: list[str] = [
    "GaussianProcess",
    "PolyaGamma",
    "has_cpu_extension",
    "sample_polya_gamma",
]
