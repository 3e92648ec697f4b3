"""Tests of CollapsedPolyaGammaGibbs: the collapsed density, the slice update, the posterior.

The collapsed density is checked against the dense Gaussian integral in the original (not
whitened) coordinates; the slice update against a known target from exact draws; the kernel
against a long NUTS run on the hierarchical example (the reference is the session fixture of
``conftest.py``, the comparison helpers those of ``test_polya_gamma_examples.py``).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import NUTS

from numpyro_ext.demo.sections.hierarchical import hierarchical_data
from numpyro_ext.handlers import polya_gamma
from numpyro_ext.infer import CollapsedPolyaGammaGibbs
from numpyro_ext.infer.collapsed_gibbs import collapsed_log_likelihood, slice_sample
from numpyro_ext.infer.conjugate_terms import conjugate_terms
from numpyro_ext.infer.gaussian_block import block_layout
from tests.infer.conftest import SHARES_HIERARCHICAL_REFERENCE
from tests.infer.test_polya_gamma_examples import assert_same_posterior, run

RNG = np.random.default_rng(0)
X = RNG.normal(size=(12, 3))
Y = RNG.integers(0, 4, size=12).astype(float)
MASK = np.arange(12) != 4
COV = np.array([[1.0, 0.5, 0.0], [0.5, 2.0, 0.3], [0.0, 0.3, 1.5]])


def binomial_model(design_moves: bool):
    """Binomial(3) logits ``x (s beta) + 0.2`` (``design_moves``) or ``x beta + 0.2``, with
    ``beta ~ N(m, s^2 K)``: the prior scale, and the design if asked, depend on ``s``."""

    def model(x, y):
        s = numpyro.sample("s", dist.LogNormal(0.0, 0.5))
        m = jnp.array([0.3, -0.2, 0.1])
        beta = numpyro.sample("beta", dist.MultivariateNormal(m, s**2 * COV))
        coef = s * beta if design_moves else beta
        with numpyro.plate("n", x.shape[0]):
            numpyro.sample("y", dist.Binomial(3, logits=x @ coef + 0.2).mask(MASK), obs=y)

    return model


scaled_binomial = binomial_model(True)


def dense_log_integral(s, omega, design_moves=True):
    """``log int N(beta; m, s^2 K) prod_n exp(w_n (kappa_n psi_n - omega_n psi_n^2 / 2))``
    with explicit inverses and determinants in beta-space (float64)."""
    m, K = np.array([0.3, -0.2, 0.1]), s**2 * COV
    Xs, c, w = (s * X if design_moves else X), 0.2, MASK.astype(float)
    kappa = Y - 1.5
    S = np.linalg.inv(K)
    Q = Xs.T @ np.diag(w * omega) @ Xs
    h = Xs.T @ (w * (kappa - omega * c))
    Sigma = np.linalg.inv(S + Q)
    eta = S @ m + h
    return (
        np.sum(w * (kappa * c - 0.5 * omega * c**2))
        - 0.5 * np.linalg.slogdet(K)[1]
        - 0.5 * m @ S @ m
        + 0.5 * np.linalg.slogdet(Sigma)[1]
        + 0.5 * eta @ Sigma @ eta
    )


@pytest.mark.parametrize("s", [0.4, 1.7])
def test_collapsed_log_likelihood_equals_dense_gaussian_integral(x64, s):
    omega = RNG.gamma(2.0, 0.3, size=12)
    model = polya_gamma(numpyro.handlers.condition(scaled_binomial, {"s": s}))
    args = (jnp.asarray(X), jnp.asarray(Y))
    terms = conjugate_terms(model, args, {}, block_layout(model, args, {}, "test"), "test")
    got = collapsed_log_likelihood(terms, jnp.asarray(omega))
    np.testing.assert_allclose(got, dense_log_integral(s, omega), rtol=1e-10)


@pytest.mark.parametrize("design_moves", [True, False])
def test_kernel_target_adds_the_prior_and_jacobian_of_the_hyperparameter(x64, design_moves):
    """The kernel's target at unconstrained u = log s; a fixed design takes the Gram-matrix
    path, a moving one differentiates the logits at each evaluation."""
    args = (jnp.asarray(X), jnp.asarray(Y))
    kernel = CollapsedPolyaGammaGibbs(binomial_model(design_moves))
    state = kernel.init(jax.random.key(0), 0, None, args, {})
    assert kernel._fixed_design is not design_moves
    omega = RNG.gamma(2.0, 0.3, size=12)
    log_target = kernel._log_target(state.terms, jnp.asarray(omega), args, {})
    for u in (-0.7, 0.4):
        s = math.exp(u)
        # log LogNormal(s | 0, 0.5) + log |ds/du| = log N(u | 0, 0.5)
        expected = dense_log_integral(s, omega, design_moves) + dist.Normal(0.0, 0.5).log_prob(u)
        np.testing.assert_allclose(log_target(jnp.array([u])), expected, rtol=1e-10)
        _, _, theta = kernel._terms(jnp.array([u]), args, {})
        np.testing.assert_allclose(theta["s"], s, rtol=1e-12)


def test_slice_update_leaves_a_gamma_target_invariant():
    """Exact Gamma(3, 1) draws, three slice updates each, still Gamma(3, 1). The budgets are
    tiny (an interval ten times the target's sd, one step out, two proposals) so that the
    bounded loops run out often and the 'keep the current value' branch is exercised. With N
    independent chains the sample mean has standard error sqrt(3 / N) and the sample variance
    sqrt((mu_4 - 9) / N), mu_4 = 3k(k + 2) = 45; 4.5 of them (two-sided tail 7e-6). Returning
    the last rejected proposal instead of the current value fails it (mean off by 0.1)."""
    n, k = 20000, 3.0

    def log_f(x):
        return jnp.where(x > 0, (k - 1.0) * jnp.log(jnp.abs(x)) - x, -jnp.inf)

    def update(key, x):
        def step(x, key):
            r = slice_sample(key, x, log_f, log_f(x), jnp.array(17.0), 1, 2)
            return r.x, r.x == x

        return jax.lax.scan(step, x, jax.random.split(key, 3))

    keys = jax.random.split(jax.random.key(3), n)
    x0 = jax.random.gamma(jax.random.key(4), k, (n,))
    x, kept = jax.jit(jax.vmap(update))(keys, x0)
    x = np.asarray(x, float)
    assert np.mean(kept) > 0.05  # the shrink budget runs out in a good share of the updates
    assert abs(x.mean() - k) < 4.5 * math.sqrt(k / n)
    assert abs(x.var() - k) < 4.5 * math.sqrt((3 * k * (k + 2) - k**2) / n)
    assert np.mean(np.abs(x - np.asarray(x0)) > 0) > 0.5  # and most chains move


def run_collapsed(model, args, seed, num_samples=1500, burn_in=50):
    """Two vectorised chains with the default slice width and no warmup phase (MCMC would
    compile it separately); the first ``burn_in`` draws are dropped instead. The structure
    checks of ``init`` (a few seconds of compilation) are exercised by the other tests."""
    kernel = CollapsedPolyaGammaGibbs(model, check=False)
    samples = run(kernel, args, seed, 0, burn_in + num_samples, 2)
    return {k: v[:, burn_in:] for k, v in samples.items()}


@SHARES_HIERARCHICAL_REFERENCE
def test_hierarchical_example_collapsed_matches_nuts(hierarchical):
    model, args, reference = hierarchical
    samples = run_collapsed(model, args, 5)
    assert samples["tau"].shape == (2, 1500)
    assert_same_posterior(samples, reference, ["tau", "a", "b"])


def test_non_centred_hierarchical_model_matches_nuts():
    """``a = tau a_raw``: the logits are affine in (a_raw, b) given tau, with a design that moves
    with tau. Compared with NUTS on the same non-centred model."""
    args = hierarchical_data(seed=2, per_group=5)

    def model(group, x, y):
        tau = numpyro.sample("tau", dist.HalfNormal(1.0))
        a_raw = numpyro.sample("a_raw", dist.Normal(0.0, 1.0).expand([8]).to_event(1))
        b = numpyro.sample("b", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Bernoulli(logits=tau * a_raw[group] + b * x), obs=y)

    samples = run_collapsed(model, args, 6)
    reference = run(NUTS(model), args, 7, 300, 3000)
    assert_same_posterior(samples, reference, ["tau", "b"])


def test_a_hyperparameter_in_the_polya_gamma_shape_is_refused():
    def model(x, y):
        r = numpyro.sample("r", dist.Gamma(2.0, 1.0))
        beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
        with numpyro.plate("n", x.shape[0]):
            numpyro.sample("counts", dist.NegativeBinomialLogits(r, x @ beta), obs=y)

    kernel = CollapsedPolyaGammaGibbs(model)
    with pytest.raises(ValueError, match=r"shape b .* of site 'counts' depends on .*\['r'\]"):
        kernel.init(jax.random.key(0), 0, None, (jnp.asarray(X), jnp.asarray(Y)), {})


def test_unknown_or_discrete_hyperparameters_are_refused():
    args = (jnp.asarray(X), jnp.asarray(Y))
    with pytest.raises(ValueError, match=r"hyperparameters \['sigma'\] are not latent"):
        CollapsedPolyaGammaGibbs(scaled_binomial, hyperparameters=["sigma"]).init(
            jax.random.key(0), 0, None, args, {}
        )

    def discrete(x, y):
        k = numpyro.sample("k", dist.Poisson(2.0))
        beta = numpyro.sample("beta", dist.Normal(0.0, 1.0 + k).expand([3]).to_event(1))
        numpyro.sample("y", dist.Binomial(3, logits=x @ beta), obs=y)

    with pytest.raises(ValueError, match="site 'k' is discrete"):
        CollapsedPolyaGammaGibbs(discrete).init(jax.random.key(0), 0, None, args, {})
