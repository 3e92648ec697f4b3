"""Agreement with GPJax (1.0) on the same data, kernel, inducing inputs and hyperparameters.

GPJax adds its jitter to predictive variances (and hence to the variances inside its SVGP
expected log-likelihood); the comparisons add the same jitter to ours.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

from numpyro_ext.gp import (
    InducingPoints,
    SquaredExponential,
    collapsed_elbo,
    collapsed_predict,
    gaussian_kl,
    inducing_factor,
    predict_f,
)

gpx = pytest.importorskip("gpjax", reason="the GPJax comparison needs the [bench] extra")

JITTER, NOISE_SD, VAR, ELL = 1e-6, 0.3, 1.3, 0.8


def _setup():
    X = jnp.asarray(np.linspace(0.0, 5.0, 50)[:, None])
    y = jnp.sin(2 * X[:, 0]) + 0.3 * jnp.asarray(np.random.default_rng(0).normal(size=50))
    Z, X_new = X[::6], jnp.asarray(np.linspace(-1.0, 6.0, 11)[:, None])
    prior = gpx.gps.Prior(
        mean_function=gpx.mean_functions.Zero(),
        kernel=gpx.kernels.RBF(lengthscale=ELL, variance=VAR),
        jitter=JITTER,
    )
    posterior = prior * gpx.likelihoods.Gaussian(obs_stddev=NOISE_SD)
    return X, y, Z, X_new, posterior, gpx.Dataset(X=X, y=y[:, None])


def test_collapsed_bound_and_predictions_agree_with_gpjax(x64):
    X, y, Z, X_new, posterior, data = _setup()
    q = gpx.variational_families.CollapsedVariationalGaussian(model=posterior, inducing_inputs=Z)
    kernel = SquaredExponential(VAR, ELL)
    ours = collapsed_elbo(kernel, X, y, Z, NOISE_SD**2, jitter=JITTER)
    np.testing.assert_allclose(ours, gpx.objectives.collapsed_elbo(q, data), rtol=1e-10)
    theirs = q.predict(X_new, train_data=data)
    mean, var = collapsed_predict(kernel, X, y, Z, NOISE_SD**2, X_new, jitter=JITTER)
    np.testing.assert_allclose(mean, theirs.mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(var + JITTER, theirs.variance, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("whiten", [True, False])
def test_svgp_elbo_and_predictions_agree_with_gpjax(x64, whiten):
    X, y, Z, X_new, posterior, data = _setup()
    M = Z.shape[0]
    k1, k2 = jax.random.split(jax.random.key(0))
    q_mu = 0.5 * jax.random.normal(k1, (M,))
    q_sqrt = jnp.tril(0.1 * jax.random.normal(k2, (M, M))) + 0.5 * jnp.eye(M)
    family = (
        gpx.variational_families.WhitenedVariationalGaussian
        if whiten
        else gpx.variational_families.VariationalGaussian
    )
    q = family(
        model=posterior,
        inducing_inputs=Z,
        variational_mean=q_mu[:, None],
        variational_root_covariance=q_sqrt,
    )
    kernel, feat = SquaredExponential(VAR, ELL), InducingPoints(Z)
    mean, var = predict_f(feat, kernel, X, q_mu, q_sqrt, whiten, jitter=JITTER)
    var = var + JITTER
    kl = gaussian_kl(q_mu, q_sqrt, None if whiten else inducing_factor(feat, kernel, JITTER))
    loglik = dist.Normal(mean, NOISE_SD).log_prob(y) - var / (2 * NOISE_SD**2)
    np.testing.assert_allclose(jnp.sum(loglik) - kl, gpx.objectives.elbo(q, data), rtol=1e-9)
    theirs = q.predict(X_new)
    mean, var = predict_f(feat, kernel, X_new, q_mu, q_sqrt, whiten, jitter=JITTER)
    np.testing.assert_allclose(mean, theirs.mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(var + JITTER, theirs.variance, rtol=1e-8, atol=1e-12)
