"""Probability distributions, as subclasses of ``numpyro.distributions.Distribution``."""

__all__: list[str] = []
