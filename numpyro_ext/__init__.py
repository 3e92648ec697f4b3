"""numpyro-ext: guides, augmentation handlers, bijectors and an ArviZ bridge for NumPyro.

The subpackages mirror NumPyro's own layout:

- :mod:`numpyro_ext.distributions` -- new ``Distribution`` subclasses.
- :mod:`numpyro_ext.transforms` -- Bijector-style transforms and flows.
- :mod:`numpyro_ext.handlers` -- effect handlers.
- :mod:`numpyro_ext.infer` -- MCMC kernels and objectives.
- :mod:`numpyro_ext.guides` -- guides usable wherever an ``AutoGuide`` is.
- :mod:`numpyro_ext.gp` -- Gaussian-process kernels and inducing features.
- :mod:`numpyro_ext.linalg` -- numerically careful linear algebra.
- :mod:`numpyro_ext.arviz` -- ``from_svi`` / ``from_mcmc`` bridges to ArviZ.
"""

__version__ = "0.1.0"
