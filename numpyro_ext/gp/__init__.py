"""Gaussian-process building blocks: kernels, inducing variables, conditionals, collapsed bound.

- :mod:`numpyro_ext.gp.kernels` -- covariance functions as pytrees.
- :mod:`numpyro_ext.gp.inducing` -- inducing variables (what provides ``Kuu`` and ``Kuf``).
- :mod:`numpyro_ext.gp.conditional` -- the sparse conditional :math:`q(f)` and its KL term.
- :mod:`numpyro_ext.gp.collapsed` -- Titsias' collapsed bound and its optimal :math:`q(u)`.
- :mod:`numpyro_ext.gp.init` -- k-means and random-subset inducing inputs.
"""

from numpyro_ext.gp.collapsed import (
    collapsed_elbo,
    collapsed_factor,
    collapsed_predict,
    collapsed_q_u,
)
from numpyro_ext.gp.conditional import conditional, gaussian_kl, inducing_factor, predict_f
from numpyro_ext.gp.inducing import InducingPoints, InducingVariables
from numpyro_ext.gp.init import kmeans_inducing, random_subset_inducing
from numpyro_ext.gp.kernels import (
    Kernel,
    Linear,
    Matern12,
    Matern32,
    Matern52,
    Periodic,
    Product,
    Scaled,
    SquaredExponential,
    Stationary,
    Sum,
)

__all__ = [
    "InducingPoints",
    "InducingVariables",
    "Kernel",
    "Linear",
    "Matern12",
    "Matern32",
    "Matern52",
    "Periodic",
    "Product",
    "Scaled",
    "SquaredExponential",
    "Stationary",
    "Sum",
    "collapsed_elbo",
    "collapsed_factor",
    "collapsed_predict",
    "collapsed_q_u",
    "conditional",
    "gaussian_kl",
    "inducing_factor",
    "kmeans_inducing",
    "predict_f",
    "random_subset_inducing",
]
