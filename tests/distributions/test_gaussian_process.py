"""Tests for numpyro_ext.distributions.GaussianProcess: the GP prior as a NumPyro site."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC, NUTS

from numpyro_ext.distributions import GaussianProcess
from numpyro_ext.gp import Matern52, SquaredExponential

X = np.linspace(0.0, 3.0, 6)  # numpy, so the x64 fixture decides the precision


def test_log_prob_equals_multivariate_normal_with_mean_function(x64):
    k = Matern52(1.4, 0.6)
    gp = GaussianProcess(k, X, mean_fn=lambda X: 0.5 * X[:, 0], jitter=1e-4)
    mvn = dist.MultivariateNormal(0.5 * X, k(X) + 1e-4 * jnp.eye(6))
    v = jax.random.normal(jax.random.key(0), (3, 6))
    np.testing.assert_allclose(gp.log_prob(v), mvn.log_prob(v), rtol=1e-10)
    np.testing.assert_allclose(gp.mean, 0.5 * X)
    np.testing.assert_allclose(gp.variance, 1.4)


def test_samples_have_the_kernel_covariance(x64):
    # 20000 draws: the sample covariance's standard error is below sqrt(2/20000) ~ 0.01
    k = SquaredExponential(1.0, 0.8)
    s = GaussianProcess(k, X).sample(jax.random.key(1), (20000,))
    np.testing.assert_allclose(jnp.cov(s.T), k(X), atol=5 * np.sqrt(2 / 20000))


def test_gp_site_works_with_hmc_and_latent_hyperparameters(x64):
    y = jnp.array([0, 0, 1, 1, 1, 0])

    def model():
        ell = numpyro.sample("ell", dist.LogNormal(0.0, 0.5))
        f = numpyro.sample("f", GaussianProcess(SquaredExponential(1.0, ell), X))
        numpyro.sample("y", dist.Bernoulli(logits=f), obs=y)

    mcmc = MCMC(NUTS(model), num_warmup=100, num_samples=100, progress_bar=False)
    mcmc.run(jax.random.key(0))
    f = mcmc.get_samples()["f"]
    assert f.shape == (100, 6) and bool(jnp.all(jnp.isfinite(f)))
    assert f[:, 3].mean() > f[:, 0].mean()


def test_distribution_is_a_pytree_under_jit(x64):
    gp = GaussianProcess(SquaredExponential(), X)
    np.testing.assert_allclose(jax.jit(lambda d: d.log_prob(d.mean))(gp), gp.log_prob(gp.mean))


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match=r"kernel must be a numpyro_ext\.gp\.Kernel"):
        GaussianProcess(lambda a, b: a, X)
    with pytest.raises(ValueError, match=r"mean_fn\(X\) must have shape \(6,\)"):
        GaussianProcess(SquaredExponential(), X, mean_fn=lambda X: jnp.zeros(5))


def test_integer_inputs_are_promoted_and_sample():
    gp = GaussianProcess(SquaredExponential(), jnp.arange(20))
    draw = gp.sample(jax.random.key(0))
    assert draw.shape == (20,) and draw.dtype == jnp.float32
    np.testing.assert_allclose(
        gp.log_prob(draw), GaussianProcess(SquaredExponential(), jnp.arange(20.0)).log_prob(draw)
    )
    gp = GaussianProcess(SquaredExponential(), jnp.arange(3), mean_fn=lambda X: jnp.ones(3, int))
    assert gp.mean.dtype == jnp.float32


def test_non_finite_inputs_and_bad_jitter_are_refused():
    with pytest.raises(ValueError, match="X must be finite; it holds 1 NaN"):
        GaussianProcess(SquaredExponential(), np.array([0.0, np.nan, 1.0]))
    with pytest.raises(ValueError, match="jitter must be a finite float >= 0"):
        GaussianProcess(SquaredExponential(), X, jitter=-1.0)
