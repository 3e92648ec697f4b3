"""Gaussian-process building blocks: kernels, inducing variables, conditionals, collapsed bound.

- :mod:`numpyro_ext.gp.kernels` -- covariance functions as pytrees.
- :mod:`numpyro_ext.gp.inducing` -- inducing variables (what provides ``Kuu`` and ``Kuf``).
- :mod:`numpyro_ext.gp.conditional` -- the sparse conditional :math:`q(f)` and its KL term.
- :mod:`numpyro_ext.gp.orthogonal` -- a second, orthogonal inducing set (SOLVE-GP, ODVGP).
- :mod:`numpyro_ext.gp.spherical` -- arc-cosine kernels and spherical activation features.
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
from numpyro_ext.gp.inducing import InducingPoints, InducingVariables, cross_covariance
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
    valid_hyperparameters,
)
from numpyro_ext.gp.orthogonal import (
    conditional_covariances,
    odvgp_collapsed_elbo,
    odvgp_conditional,
    odvgp_gamma_kl,
    orthogonal_collapsed_bound,
    solvegp_collapsed_elbo,
    solvegp_conditional,
)
from numpyro_ext.gp.spherical import (
    ArcCosine,
    SphericalActivationFeatures,
    activation_coefficients,
    arccos_eigenvalues,
    default_truncation,
    network_weights,
    zonal,
)

__all__ = [
    "ArcCosine",
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
    "SphericalActivationFeatures",
    "SquaredExponential",
    "Stationary",
    "Sum",
    "activation_coefficients",
    "arccos_eigenvalues",
    "collapsed_elbo",
    "collapsed_factor",
    "collapsed_predict",
    "collapsed_q_u",
    "conditional",
    "conditional_covariances",
    "cross_covariance",
    "default_truncation",
    "gaussian_kl",
    "inducing_factor",
    "kmeans_inducing",
    "network_weights",
    "odvgp_collapsed_elbo",
    "odvgp_conditional",
    "odvgp_gamma_kl",
    "orthogonal_collapsed_bound",
    "predict_f",
    "random_subset_inducing",
    "solvegp_collapsed_elbo",
    "solvegp_conditional",
    "valid_hyperparameters",
    "zonal",
]
