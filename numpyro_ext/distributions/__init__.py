"""Probability distributions, as subclasses of ``numpyro.distributions.Distribution``."""

from numpyro_ext.distributions.polya_gamma import PolyaGamma

__all__: list[str] = [
    "PolyaGamma",
]
