"""Tests of PolyaGammaGibbs: exact posterior against quadrature, conjugate terms, errors.

The examples' models against NUTS, and the Gibbs / HMCGibbs compositions, are in
``test_polya_gamma_examples.py``.
"""

import arviz_stats
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC

from numpyro_ext.distributions import GaussianProcess
from numpyro_ext.gp import SquaredExponential
from numpyro_ext.handlers import polya_gamma
from numpyro_ext.infer import PolyaGammaGibbs
from numpyro_ext.infer.conjugate_terms import check_conjugate
from numpyro_ext.infer.gaussian_block import block_layout

RNG = np.random.default_rng(0)
X = np.stack([np.ones(40), RNG.normal(size=40)], -1)
PRIOR_COV = np.array([[1.0, 0.6], [0.6, 2.0]])
Y_BERNOULLI = (RNG.uniform(size=40) < 1 / (1 + np.exp(-(0.3 + 1.2 * X[:, 1])))).astype(float)
Y_COUNTS = RNG.poisson(np.exp(0.5 + 0.4 * X[:, 1])).astype(float)
TOTAL_COUNT = 2.0


def regression(kind):
    def model(x, y):
        beta = numpyro.sample("beta", dist.MultivariateNormal(jnp.zeros(2), PRIOR_COV))
        numpyro.deterministic("slope", beta[1])
        with numpyro.plate("n", x.shape[0]):
            if kind == "bernoulli":
                numpyro.sample("y", dist.Bernoulli(logits=x @ beta), obs=y)
            else:
                numpyro.sample("y", dist.NegativeBinomialLogits(TOTAL_COUNT, x @ beta), obs=y)

    return model


def quadrature_moments(kind, y):
    """Posterior mean and sd of the two coefficients on a fine grid (an exact oracle)."""
    grid = np.linspace(-4.0, 4.0, 401)
    b0, b1 = np.meshgrid(grid, grid, indexing="ij")
    beta = np.stack([b0.ravel(), b1.ravel()], -1)
    psi = beta @ X.T
    if kind == "bernoulli":
        loglik = (y * psi - np.logaddexp(0.0, psi)).sum(-1)
    else:
        loglik = (y * psi - (y + TOTAL_COUNT) * np.logaddexp(0.0, psi)).sum(-1)
    logprior = -0.5 * np.einsum("ij,jk,ik->i", beta, np.linalg.inv(PRIOR_COV), beta)
    w = np.exp(loglik + logprior - (loglik + logprior).max())
    w /= w.sum()
    mean = w @ beta
    sd = np.sqrt(w @ (beta - mean) ** 2)
    return mean, sd


def assert_within_mc_error(draws, mean, sd, reference_se=0.0, k=4.0):
    """Compare with the reference: the standard error of the sample mean is sd / sqrt(ESS) and
    that of the sample sd is about sd / sqrt(2 ESS) (Gaussian approximation); ``k`` of them."""
    draws = np.asarray(draws)  # (chain, draw, param)
    for j in range(draws.shape[-1]):
        ess = float(arviz_stats.ess(draws[..., j]))
        est_mean, est_sd = draws[..., j].mean(), draws[..., j].std()
        se_mean = np.hypot(sd[j] / np.sqrt(ess), np.atleast_1d(reference_se)[0])
        assert abs(est_mean - mean[j]) < k * se_mean, (j, est_mean, mean[j], se_mean, ess)
        assert abs(est_sd - sd[j]) < k * sd[j] / np.sqrt(2 * ess), (j, est_sd, sd[j], ess)


# negative-binomial sites are checked against NUTS in test_polya_gamma_examples.py
@pytest.mark.parametrize("kind", ["bernoulli"])
def test_posterior_matches_quadrature(kind):
    y = Y_BERNOULLI if kind == "bernoulli" else Y_COUNTS
    kernel = PolyaGammaGibbs(regression(kind), auxiliaries=True)
    # no warmup phase (MCMC would compile it separately): the first 50 draws are dropped instead
    mcmc = MCMC(
        kernel,
        num_warmup=0,
        num_samples=1550,
        num_chains=2,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(1), jnp.asarray(X), jnp.asarray(y))
    samples = {k: v[:, 50:] for k, v in mcmc.get_samples(group_by_chain=True).items()}
    assert samples["y_pg_omega"].shape == (2, 1500, 40)
    np.testing.assert_allclose(samples["slope"], samples["beta"][..., 1])
    mean, sd = quadrature_moments(kind, y)
    assert_within_mc_error(samples["beta"], mean, sd)


def hierarchical(x, y):
    tau = numpyro.sample("tau", dist.HalfNormal(1.0))
    beta = numpyro.sample("beta", dist.Normal(0.0, tau).expand([2]).to_event(1))
    with numpyro.plate("n", x.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=x @ beta), obs=y)


def test_conjugate_terms_read_the_design_offset_and_prior_exactly(x64):
    def model(x, y):
        beta = numpyro.sample("beta", dist.Normal(jnp.array([1.0, -1.0]), 2.0).to_event(1))
        alpha = numpyro.sample("alpha", dist.Normal(0.5, 3.0))
        numpyro.sample("y", dist.Binomial(5, logits=x @ beta + alpha + 0.25), obs=y)

    x, y = jnp.asarray(X[:5]), jnp.array([0.0, 1.0, 5.0, 2.0, 3.0])
    aug = polya_gamma(model)
    layout = block_layout(aug, (x, y), {}, "test")
    terms = check_conjugate(aug, (x, y), {}, layout, "test")
    assert layout.names == ("beta", "alpha")
    np.testing.assert_allclose(terms.design, np.concatenate([X[:5], np.ones((5, 1))], 1))
    np.testing.assert_allclose(terms.offset, np.full(5, 0.25))
    np.testing.assert_allclose(terms.loc, [1.0, -1.0, 0.5])
    np.testing.assert_allclose(terms.scale_tril, np.diag([2.0, 2.0, 3.0]))
    np.testing.assert_allclose(terms.b, np.full(5, 5.0))
    np.testing.assert_allclose(terms.kappa, y - 2.5)


def test_gaussian_process_prior_over_function_values_is_a_block():
    def model(x, y):
        f = numpyro.sample("f", GaussianProcess(SquaredExponential(1.0, 0.5), x))
        numpyro.sample("y", dist.Bernoulli(logits=f).mask(jnp.arange(6) < 5), obs=y)

    x, y = jnp.linspace(0.0, 1.0, 6), jnp.array([0.0, 1.0, 1.0, 0.0, 1.0, 1.0])
    aug = polya_gamma(model)
    layout = block_layout(aug, (x, y), {}, "test")
    terms = check_conjugate(aug, (x, y), {}, layout, "test")
    np.testing.assert_allclose(terms.design, np.eye(6), atol=1e-6)
    np.testing.assert_allclose(terms.weight, [1, 1, 1, 1, 1, 0])  # the mask becomes a weight


def test_non_affine_logits_are_refused():
    def model(x, y):
        beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        numpyro.sample("y", dist.Bernoulli(logits=jnp.tanh(x @ beta)), obs=y)

    kernel = PolyaGammaGibbs(model)
    with pytest.raises(ValueError, match="logits are not affine in the Gaussian latents"):
        kernel.init(jax.random.key(0), 0, None, (jnp.asarray(X), jnp.asarray(Y_BERNOULLI)), {})


def test_non_gaussian_latents_are_refused_with_the_composite_hint():
    kernel = PolyaGammaGibbs(hierarchical)
    with pytest.raises(ValueError, match=r"site 'tau' has a HalfNormal prior.*Gibbs\(\["):
        kernel.init(jax.random.key(0), 0, None, (jnp.asarray(X), jnp.asarray(Y_BERNOULLI)), {})


def test_other_factors_on_the_block_are_refused():
    def model(x, y):
        beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        numpyro.sample("y", dist.Bernoulli(logits=x @ beta), obs=y)
        numpyro.sample("extra", dist.Normal(beta.sum(), 1.0), obs=0.3)

    kernel = PolyaGammaGibbs(model)
    with pytest.raises(ValueError, match="the density of the other sites depends"):
        kernel.init(jax.random.key(0), 0, None, (jnp.asarray(X), jnp.asarray(Y_BERNOULLI)), {})


def test_a_model_without_logit_likelihood_is_refused():
    def model():
        beta = numpyro.sample("beta", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Poisson(jnp.exp(beta)), obs=2.0)

    with pytest.raises(ValueError, match="no observed Bernoulli, Binomial or NegativeBin"):
        PolyaGammaGibbs(model).init(jax.random.key(0), 0, None, (), {})


def _products_at_full_precision(jaxpr) -> tuple[int, int]:
    text = str(jaxpr)
    highest = "precision=(Precision.HIGHEST, Precision.HIGHEST)"
    return text.count("dot_general["), text.count(highest)


def test_init_and_sweeps_use_full_precision_products():
    """No reduced-precision float32 products: TF32 on a GPU broke the check and exactness."""
    kernel = PolyaGammaGibbs(regression("bernoulli"))
    args = (jnp.asarray(X), jnp.asarray(Y_BERNOULLI))
    init = jax.make_jaxpr(lambda key: kernel.init(key, 0, None, args, {}).terms)
    state = kernel.init(jax.random.key(0), 0, None, args, {})
    sweep = jax.make_jaxpr(lambda s: kernel.sample(s, args, {}))(state)
    for jaxpr in (init(jax.random.key(0)), sweep):
        products, full = _products_at_full_precision(jaxpr)
        assert products > 0 and full == products


@pytest.mark.parametrize("n, d", [(3, 5), (6, 2)])
def test_gaussian_block_draws_have_the_exact_conditional_moments(x64, n, d):
    """Both paths (the n x n system for n < d, the d x d one otherwise), with a masked row and a
    b = 0 row: mean P^-1 r and covariance P^-1 (z = m + L v) within 5 Monte Carlo standard
    errors of 40 000 draws (standard error of a mean sd / sqrt(N); of a covariance entry
    sqrt((S_ii S_jj + S_ij^2) / N) for Gaussian draws)."""
    from numpyro_ext.infer.conjugate_terms import ConjugateTerms
    from numpyro_ext.infer.polya_gamma_sweep import sample_gaussian_block

    rng = np.random.default_rng(3)
    X = jnp.asarray(rng.normal(size=(n, d)))
    L = jnp.asarray(np.linalg.cholesky(np.eye(d) + 0.5))
    loc, offset = jnp.asarray(rng.normal(size=d)), jnp.asarray(rng.normal(size=n))
    b = jnp.ones(n).at[1].set(0.0)
    kappa = jnp.asarray(rng.uniform(-0.5, 0.5, size=n)).at[1].set(0.0)
    weight = jnp.ones(n).at[0].set(0.0)
    omega = jnp.asarray(rng.uniform(0.1, 0.5, size=n)).at[1].set(0.0)
    terms = ConjugateTerms(loc, L, X, offset, b, kappa, weight, jnp.zeros(n), X @ L,
                           X @ loc + offset)  # fmt: skip
    A = np.asarray(X @ L)
    P = np.eye(d) + A.T @ (np.asarray(weight * omega)[:, None] * A)
    r = A.T @ np.asarray(weight * (kappa - omega * terms.whitened_offset))
    mean = np.asarray(loc) + np.asarray(L) @ np.linalg.solve(P, r)
    cov = np.asarray(L) @ np.linalg.inv(P) @ np.asarray(L).T
    num = 40_000
    keys = jax.random.split(jax.random.key(0), num)
    z = np.asarray(jax.vmap(lambda k: sample_gaussian_block(k, terms, omega))(keys))
    sd = np.sqrt(np.diag(cov))
    assert np.all(np.abs(z.mean(0) - mean) < 5 * sd / np.sqrt(num))
    se_cov = np.sqrt((np.outer(sd**2, sd**2) + cov**2) / num)
    assert np.all(np.abs(np.cov(z.T) - cov) < 5 * se_cov)


def _random_terms(n, d, seed=4):
    from numpyro_ext.infer.conjugate_terms import ConjugateTerms

    rng = np.random.default_rng(seed)
    X = jnp.asarray(rng.normal(size=(n, d)))
    L = jnp.asarray(np.linalg.cholesky(np.eye(d) + 0.5))
    loc, offset = jnp.asarray(rng.normal(size=d)), jnp.asarray(rng.normal(size=n))
    kappa = jnp.asarray(rng.uniform(-0.5, 0.5, size=n))
    weight = jnp.asarray(rng.uniform(0.5, 1.5, size=n))
    terms = ConjugateTerms(loc, L, X, offset, jnp.ones(n), kappa, weight, jnp.zeros(n), X @ L,
                           X @ loc + offset)  # fmt: skip
    return terms, jnp.asarray(rng.uniform(0.1, 0.5, size=n))


def test_whitened_conditional_factors_the_precision_and_forms_the_rhs(x64):
    """``L_P L_P^T = I + A^T W Omega A`` and ``r = A^T W (kappa - Omega psi_0)`` to rounding,
    from the lower triangle alone; the same comparison at another omega fails (the check is not
    vacuous)."""
    terms, omega = _random_terms(7, 4)
    A, w = np.asarray(terms.whitened), np.asarray(terms.weight)

    def dense(om):
        P = np.eye(4) + A.T @ ((w * om)[:, None] * A)
        r = A.T @ (w * (np.asarray(terms.kappa) - om * np.asarray(terms.whitened_offset)))
        return P, r

    chol, rhs = (np.asarray(x) for x in terms.whitened_conditional(omega))
    P, r = dense(np.asarray(omega))
    np.testing.assert_allclose(np.triu(chol, 1), 0.0)
    np.testing.assert_allclose(chol @ chol.T, P, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rhs, r, rtol=1e-12, atol=1e-12)
    P_other, r_other = dense(np.asarray(omega) * 1.01)
    assert not np.allclose(chol @ chol.T, P_other, rtol=1e-6, atol=1e-6)
    assert not np.allclose(rhs, r_other, rtol=1e-6, atol=1e-6)


def _transposes(jaxpr) -> int:
    return sum(eqn.primitive.name == "transpose" for eqn in jaxpr.eqns)


def test_the_rhs_contracts_the_design_in_place():
    """``r = u^T A`` reads the ``n x d`` matrix as stored: ``A^T u`` written literally transposes
    it first, which XLA:CPU compiled to a copy of ``A`` at every sweep (counted as the control)."""
    terms, omega = _random_terms(64, 8)
    rhs = jax.make_jaxpr(terms.whitened_rhs)(omega)
    assert _transposes(rhs.jaxpr) == 0
    u = terms.weight * (terms.kappa - omega * terms.whitened_offset)
    literal = jax.make_jaxpr(lambda u: terms.whitened.T @ u)(u)
    assert _transposes(literal.jaxpr) == 1
    np.testing.assert_allclose(jax.jit(terms.whitened_rhs)(omega), terms.whitened.T @ u,
                               rtol=1e-5, atol=1e-5)  # fmt: skip
