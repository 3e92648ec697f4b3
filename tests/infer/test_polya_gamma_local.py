"""Tests of the local-variational Pólya-gamma fit: a true, monotone, comparable lower bound."""

import importlib.util
from pathlib import Path

import arviz_stats
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC, NUTS, Trace_ELBO
from scipy.optimize import minimize
from scipy.special import logsumexp

from numpyro_ext.infer import polya_gamma_local_vi

RNG = np.random.default_rng(0)
X = np.stack([np.ones(40), RNG.normal(size=40)], -1)
Y = (RNG.uniform(size=40) < 1 / (1 + np.exp(-(0.3 + 1.2 * X[:, 1])))).astype(float)
COUNTS = RNG.binomial(4, 1 / (1 + np.exp(-(0.3 + 0.8 * X[:, 1])))).astype(float)
PRIOR_COV = np.array([[1.0, 0.6], [0.6, 2.0]])
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def binomial_or_bernoulli(n):
    def model(x, y):
        beta = numpyro.sample("beta", dist.MultivariateNormal(jnp.zeros(2), PRIOR_COV))
        with numpyro.plate("n", x.shape[0]):
            if n == 1:
                numpyro.sample("y", dist.Bernoulli(logits=x @ beta), obs=y)
            else:
                numpyro.sample("y", dist.Binomial(n, logits=x @ beta), obs=y)

    return model


def log_evidence(n, y):
    """``log p(y)`` by quadrature on a fine grid (the posterior lies well inside it)."""
    grid = np.linspace(-4.0, 4.0, 401)
    b0, b1 = np.meshgrid(grid, grid, indexing="ij")
    beta = np.stack([b0.ravel(), b1.ravel()], -1)
    psi = beta @ X.T
    log_choose = 0.0
    if n > 1:
        from scipy.special import gammaln

        log_choose = (gammaln(n + 1) - gammaln(y + 1) - gammaln(n - y + 1)).sum()
    loglik = (y * psi - n * np.logaddexp(0.0, psi)).sum(-1) + log_choose
    logprior = -0.5 * np.einsum("ij,jk,ik->i", beta, np.linalg.inv(PRIOR_COV), beta)
    logprior = logprior - np.log(2 * np.pi) - 0.5 * np.log(np.linalg.det(PRIOR_COV))
    return logsumexp(loglik + logprior) + 2 * np.log(grid[1] - grid[0])


@pytest.mark.parametrize("n", [1, 4])
def test_elbo_is_a_monotone_lower_bound_of_the_evidence_and_of_trace_elbo(x64, n):
    y = Y if n == 1 else COUNTS
    model = binomial_or_bernoulli(n)
    args = (jnp.asarray(X), jnp.asarray(y))
    fit = polya_gamma_local_vi(model, *args, num_steps=30)
    elbo = np.asarray(fit.elbo)
    assert np.all(np.diff(elbo) > -1e-9)  # coordinate ascent never decreases the bound
    assert elbo[-1] - elbo[-2] < 1e-6  # and has converged in 30 steps
    evidence = log_evidence(n, y)
    assert elbo[-1] < evidence
    # Trace_ELBO on the same q(z): 20 independent estimates of 200 particles each, in one jitted
    # call; the bounds hold up to 4 standard errors of their mean
    loss = Trace_ELBO(num_particles=200).loss
    keys = jax.random.split(jax.random.key(0), 20)
    estimates = -np.asarray(
        jax.jit(jax.vmap(lambda k: loss(k, {}, model, fit.guide, *args)))(keys)
    )
    se = estimates.std(ddof=1) / np.sqrt(len(estimates))
    assert elbo[-1] < estimates.mean() + 4 * se
    assert estimates.mean() < evidence + 4 * se


def jaakkola_jordan_optimum(x, y, prior_cov):
    """Maximise the Jaakkola-Jordan bound over a full Gaussian ``q`` directly (BFGS on the
    mean and a Cholesky factor, with the optimal ``xi_n^2 = E_q[psi_n^2]`` plugged in)."""
    precision = np.linalg.inv(prior_cov)
    d = x.shape[1]
    rows, cols = np.tril_indices(d)

    def unpack(p):
        L = np.zeros((d, d))
        L[rows, cols] = p[d:]
        L[np.diag_indices(d)] = np.exp(np.diag(L))
        return p[:d], L @ L.T

    def negative_bound(p):
        mu, S = unpack(p)
        m = x @ mu
        second = m**2 + np.einsum("ni,ij,nj->n", x, S, x)
        xi = np.sqrt(second)
        lik = (y - 0.5) * m - np.logaddexp(0.0, xi) + xi / 2  # at xi^2 = E psi^2
        kl = 0.5 * (np.trace(precision @ S) + mu @ precision @ mu - d)
        kl += 0.5 * (np.linalg.slogdet(prior_cov)[1] - np.linalg.slogdet(S)[1])
        return -(lik.sum() - kl)

    res = minimize(negative_bound, np.zeros(d + len(rows)), method="BFGS",
                   options={"gtol": 1e-9})  # fmt: skip
    mu, S = unpack(res.x)
    return mu, S, -res.fun


def test_coordinate_ascent_reaches_the_jaakkola_jordan_optimum(x64):
    # the Pólya-gamma mean-field fixed point is the maximiser of the Jaakkola-Jordan bound
    # (Durante & Rigon 2019); an independent optimiser must find the same q and bound
    fit = polya_gamma_local_vi(binomial_or_bernoulli(1), jnp.asarray(X), jnp.asarray(Y))
    mu, S, bound = jaakkola_jordan_optimum(X, Y, PRIOR_COV)
    np.testing.assert_allclose(fit.loc, mu, atol=1e-5)
    np.testing.assert_allclose(fit.scale_tril @ fit.scale_tril.T, S, atol=1e-5)
    np.testing.assert_allclose(fit.elbo[-1], bound, atol=1e-7)
    draws = fit.sample_posterior(jax.random.key(0), 10)
    assert draws["beta"].shape == (10, 2)


def test_means_are_within_a_tenth_of_a_posterior_sd_on_the_logistic_example():
    # the logistic example (400 points, 4 coefficients): the bound's optimum is not the
    # posterior, but on a well-determined problem its mean is close to it. The reference is a
    # long NUTS run; its MCSE (arviz-stats, ESS-based) widens the 0.1 sd tolerance by 4 MCSE.
    spec = importlib.util.spec_from_file_location("example", EXAMPLES / "polya_gamma_logistic.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    X_ex, y_ex, _ = example.make_data(jax.random.key(0))
    fit = polya_gamma_local_vi(example.model, X_ex, y_ex)
    mcmc = MCMC(NUTS(example.model), num_warmup=300, num_samples=8000, progress_bar=False)
    mcmc.run(jax.random.key(1), X_ex, y_ex)
    beta = np.asarray(mcmc.get_samples(group_by_chain=True)["beta"])
    mean, sd = beta.mean((0, 1)), beta.std((0, 1))
    mcse = np.asarray(arviz_stats.mcse(beta))
    error = np.abs(np.asarray(fit.loc) - mean)
    assert np.all(error < 0.1 * sd + 4 * mcse), (error / sd, mcse / sd)
