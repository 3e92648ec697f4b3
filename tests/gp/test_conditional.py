"""Tests for numpyro_ext.gp.conditional: the sparse conditional and the Gaussian KL."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro.distributions.kl import kl_divergence

from numpyro_ext.gp import InducingPoints, SquaredExponential, conditional, gaussian_kl, predict_f


def _q(M, seed):
    k1, k2 = jax.random.split(jax.random.key(seed))
    R = jnp.tril(0.3 * jax.random.normal(k1, (M, M))) + jnp.eye(M)
    return jax.random.normal(k2, (M,)), R


def test_gaussian_kl_matches_numpyro_mvn_kl(x64):
    q_mu, q_sqrt = _q(4, 0)
    P = SquaredExponential(1.0, 0.8)(jnp.linspace(0, 3, 4)) + 0.1 * jnp.eye(4)
    Lp = jnp.linalg.cholesky(P)
    q = dist.MultivariateNormal(q_mu, scale_tril=q_sqrt)
    p = dist.MultivariateNormal(jnp.zeros(4), scale_tril=Lp)
    np.testing.assert_allclose(gaussian_kl(q_mu, q_sqrt, Lp), kl_divergence(q, p), rtol=1e-10)
    std = dist.MultivariateNormal(jnp.zeros(4), jnp.eye(4))
    np.testing.assert_allclose(gaussian_kl(q_mu, q_sqrt), kl_divergence(q, std), rtol=1e-10)


def test_whitened_and_unwhitened_conditionals_agree_for_matching_q(x64):
    kernel = SquaredExponential(1.2, 0.7)
    Z, X = jnp.linspace(0, 3, 5), jnp.linspace(-0.5, 3.5, 9)
    feat = InducingPoints(Z)
    L = jnp.linalg.cholesky(feat.Kuu(kernel) + 1e-6 * jnp.eye(5))
    v_mu, v_sqrt = _q(5, 1)
    white = predict_f(feat, kernel, X, v_mu, v_sqrt, whiten=True, full_cov=True)
    plain = predict_f(feat, kernel, X, L @ v_mu, L @ v_sqrt, whiten=False, full_cov=True)
    np.testing.assert_allclose(white[0], plain[0], rtol=1e-8)
    np.testing.assert_allclose(white[1], plain[1], rtol=1e-7, atol=1e-10)
    marg = predict_f(feat, kernel, X, v_mu, v_sqrt, whiten=True)
    np.testing.assert_allclose(marg[1], jnp.diagonal(white[1]), rtol=1e-10)


def test_conditional_at_prior_q_recovers_the_prior(x64):
    kernel = SquaredExponential(1.5, 0.5)
    Z, X = jnp.linspace(0, 2, 4), jnp.linspace(0, 2, 6)
    feat = InducingPoints(Z)
    L = jnp.linalg.cholesky(feat.Kuu(kernel) + 1e-6 * jnp.eye(4))
    mean, cov = conditional(
        feat.Kuf(kernel, X), L, kernel(X), jnp.zeros(4), jnp.eye(4), True, True
    )
    np.testing.assert_allclose(mean, 0.0)
    np.testing.assert_allclose(cov, kernel(X), atol=1e-5)
