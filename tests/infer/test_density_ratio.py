"""Density-ratio estimation: the logistic critic's optimum and the KL estimate (float64)."""

import jax
import jax.numpy as jnp
import optax
import pytest
from jax.scipy.stats import norm

from numpyro_ext.infer import check_log_ratio, fit_density_ratio, kl_estimate, logistic_ratio_loss

KL_ANCHOR = 0.44314718  # KL(N(1, 1) || N(0, 2^2)) = log 2 + (1 + 1) / 8 - 1/2


# float64 so the optimum and the anchor agree to more digits than the MC error
pytestmark = pytest.mark.usefixtures("x64")


def true_log_ratio(z):
    return norm.logpdf(z[:, 0], 1.0, 1.0) - norm.logpdf(z[:, 0], 0.0, 2.0)


def quadratic(params, z):
    return params[0] + params[1] * z[:, 0] + params[2] * z[:, 0] ** 2


def sample_p(key, n):
    return 1.0 + jax.random.normal(key, (n, 1))


def sample_q(key, n):
    return 2.0 * jax.random.normal(key, (n, 1))


def test_anchor_closed_form():
    closed = jnp.log(2.0) + (1.0 + 1.0) / 8.0 - 0.5
    assert abs(closed - KL_ANCHOR) < 1e-8
    est = kl_estimate(true_log_ratio, sample_p(jax.random.key(0), 200_000))
    # the plug-in estimator with the true ratio is unbiased: 4 standard errors
    assert abs(est.kl - KL_ANCHOR) < 4 * est.stderr


def test_logistic_optimum_recovers_gaussian_log_ratio():
    # The quadratic family contains log p/q, so the logistic optimum is the true ratio; a
    # large batch and a decaying step make the fitted critic's error small next to the MC error
    # of the KL estimate (n = 20000 draws, stderr ~ 0.004).
    opt = optax.adam(optax.exponential_decay(0.05, 800, 0.05))
    fit = fit_density_ratio(
        jax.random.key(1),
        quadratic,
        jnp.zeros(3),
        sample_p,
        sample_q,
        num_steps=1500,
        batch_size=2048,
        optimizer=opt,
    )
    truth = jnp.array([jnp.log(2.0) - 0.5, 1.0, -0.375])  # log N(1,1) - log N(0,4) coefficients
    assert jnp.allclose(fit.params, truth, atol=0.05), fit.params
    z = sample_p(jax.random.key(2), 20_000)
    est = kl_estimate(fit.log_ratio, z)
    check = check_log_ratio(fit.log_ratio, true_log_ratio, z)
    assert abs(est.kl - KL_ANCHOR) < 4 * est.stderr, (est, check)
    assert check.correlation > 0.999 and abs(check.bias) < 2 * est.stderr
    # negative control: the same estimate with a critic off by 0.1 is detected
    shifted = kl_estimate(lambda z: fit.log_ratio(z) + 0.1, z)
    assert abs(shifted.kl - KL_ANCHOR) > 4 * shifted.stderr


def test_loss_minimised_by_true_ratio():
    kp, kq = jax.random.split(jax.random.key(3))
    zp, zq = sample_p(kp, 20_000), sample_q(kq, 20_000)
    best = logistic_ratio_loss(true_log_ratio(zp), true_log_ratio(zq))
    for delta in (0.3, -0.3):
        other = logistic_ratio_loss(true_log_ratio(zp) + delta, true_log_ratio(zq) + delta)
        assert other > best
    assert jnp.isclose(logistic_ratio_loss(jnp.zeros(2), jnp.zeros(2)), jnp.log(2.0))
