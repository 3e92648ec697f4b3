"""Inputs of the Pólya-gamma kernels and local VI: valid ones accepted, invalid ones refused.

Invalid observations are refused at trace time with an error naming the site, as the
likelihood's own validation (NUTS) would; integer priors and binomial rows with no trials
are valid and must work. Large Pólya-gamma shapes are drawn exactly by default, with a warning
when a sweep is costly; ``approximate_above`` draws them at a cost independent of b.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC
from scipy import stats

from numpyro_ext.distributions import PolyaGamma
from numpyro_ext.infer import CollapsedPolyaGammaGibbs, PolyaGammaGibbs, polya_gamma_local_vi
from numpyro_ext.infer.polya_gamma_sweep import LARGE_SHAPE, sample_omega

X = jnp.array([[1.0, -1.0], [1.0, 0.5], [1.0, 2.0], [1.0, -0.3], [1.0, 1.1]])
Y = jnp.array([0.0, 1.0, 1.0, 0.0, 1.0])


def bernoulli(x, y):
    beta = numpyro.sample("beta", dist.Normal(0, 1).expand([2]).to_event(1))  # integer loc
    numpyro.sample("y", dist.Bernoulli(logits=x @ beta), obs=y)


def binomial(x, y, n):
    beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    numpyro.sample("y", dist.Binomial(n, logits=x @ beta), obs=y)


def hierarchical(x, y):
    tau = numpyro.sample("tau", dist.HalfNormal(1))
    beta = numpyro.sample("beta", dist.Normal(0, tau).expand([2]).to_event(1))
    numpyro.sample("y", dist.Bernoulli(logits=x @ beta), obs=y)


def _log_cosh(x):
    return x + np.log1p(np.exp(-2 * x)) - np.log(2.0)


def run(kernel, *args, draws=20):
    mcmc = MCMC(kernel, num_warmup=10, num_samples=draws, progress_bar=False)
    mcmc.run(jax.random.key(0), *args)
    return mcmc.get_samples()


def test_an_integer_prior_location_is_accepted():
    for check in (True, False):
        beta = run(PolyaGammaGibbs(bernoulli, check=check), X, Y)["beta"]
        assert beta.shape == (20, 2) and bool(jnp.all(jnp.isfinite(beta)))
    fit = polya_gamma_local_vi(bernoulli, X, Y, num_steps=5)
    assert bool(jnp.all(jnp.isfinite(fit.loc)))
    s = run(CollapsedPolyaGammaGibbs(hierarchical), X, Y)
    assert bool(jnp.all(jnp.isfinite(s["beta"]))) and bool(jnp.all(s["tau"] > 0))


def test_binomial_rows_with_no_trials_contribute_nothing(x64):
    n = jnp.array([3.0, 0.0, 2.0, 0.0, 4.0])
    y = jnp.array([1.0, 0.0, 2.0, 0.0, 3.0])
    keep = np.asarray(n) > 0
    with_zeros = polya_gamma_local_vi(binomial, X, y, n, num_steps=30)
    without = polya_gamma_local_vi(binomial, X[keep], y[keep], n[keep], num_steps=30)
    np.testing.assert_allclose(with_zeros.loc, without.loc, rtol=1e-10)
    np.testing.assert_allclose(with_zeros.scale_tril, without.scale_tril, rtol=1e-10)
    beta = run(PolyaGammaGibbs(binomial), X, y, n)["beta"]
    assert bool(jnp.all(jnp.isfinite(beta)))


@pytest.mark.parametrize(
    "y, n, expected",
    [
        (2.0 * Y - 1.0, None, "must be 0 or 1"),  # labels coded -1/+1
        (Y.at[0].set(2.0), None, "must be 0 or 1"),
        (Y.at[0].set(0.25), None, "must be 0 or 1"),
        (jnp.array([1.0, 4.0, 0.0, 1.0, 1.0]), 3.0, "must not exceed total_count"),
        (jnp.array([1.0, -1.0, 0.0, 1.0, 1.0]), 3.0, "whole number >= 0"),
        (jnp.array([1.0, 1.0, 0.0, 1.0, 1.0]), 2.5, "total_count"),
    ],
)
def test_observations_outside_the_support_are_refused_naming_the_site(y, n, expected):
    model, args = (bernoulli, (X, y)) if n is None else (binomial, (X, y, n))
    for fit in (
        lambda: run(PolyaGammaGibbs(model), *args, draws=1),
        lambda: polya_gamma_local_vi(model, *args, num_steps=2),
    ):
        # with NumPyro's validation on, BinomialLogits refuses n = 2.5 itself first
        pattern = expected if expected == "total_count" else f"site 'y'.*{expected}"
        with pytest.raises(ValueError, match=pattern):
            fit()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_inputs_are_refused_naming_the_site(bad):
    x = X.at[2, 1].set(bad)
    for fit in (
        lambda: run(PolyaGammaGibbs(bernoulli), x, Y, draws=1),
        lambda: run(PolyaGammaGibbs(bernoulli, check=False), x, Y, draws=1),
        lambda: polya_gamma_local_vi(bernoulli, x, Y, num_steps=2),
        lambda: run(CollapsedPolyaGammaGibbs(hierarchical), x, Y, draws=1),
    ):
        # NumPyro's BernoulliLogits refuses non-finite logits itself when it checks its
        # arguments; otherwise the kernels' own check names the site
        with pytest.raises(ValueError, match=r"logits of site 'y' are not finite|invalid logits"):
            fit()


def test_masked_observations_are_not_validated():
    def model(x, y, keep):
        beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        numpyro.sample("y", dist.Bernoulli(logits=x @ beta).mask(keep), obs=y)

    keep = jnp.array([True, True, False, True, True])
    beta = run(PolyaGammaGibbs(model), X, Y.at[2].set(-1.0), keep)["beta"]
    assert bool(jnp.all(jnp.isfinite(beta)))


@pytest.mark.parametrize("b", [1.5 * LARGE_SHAPE, 1e6])
def test_large_shapes_match_the_polya_gamma_laplace_transform(x64, b):
    """Approximate draws of PG(b, c) above the threshold: mean, variance and the Laplace
    transform at a scale of t ~ 1 / sd, each within 5 Monte Carlo standard errors (4000 draws)."""
    c = jnp.array([0.0, 1.5, 20.0])
    num = 4000
    keys = jax.random.split(jax.random.key(1), num)
    draws = jax.vmap(lambda k: sample_omega(k, jnp.full(3, b), c, approximate_above=LARGE_SHAPE))(
        keys
    )
    exact = PolyaGamma(b, c)
    mean, sd = np.asarray(exact.mean), np.sqrt(np.asarray(exact.variance))
    d = np.asarray(draws)
    assert np.all(np.abs(d.mean(0) - mean) < 5 * sd / np.sqrt(num))
    assert np.all(np.abs(d.std(0) / sd - 1) < 5 / np.sqrt(2 * num))
    t = 1.0 / sd
    lt = np.exp(-t * (d - mean)).mean(0)
    # E exp(-t w) = cosh(c/2)^b / cosh(sqrt((c^2/2 + t)/2))^b, in logs (it underflows at large b)
    c2 = np.asarray(c) ** 2
    log_lt = b * (_log_cosh(np.sqrt(c2 / 4)) - _log_cosh(np.sqrt((c2 / 2 + t) / 2)))
    exact_lt = np.exp(log_lt + t * mean)
    se = np.exp(-t * (d - mean)).std(0) / np.sqrt(num)
    assert np.all(np.abs(lt - exact_lt) < 5 * se)


@pytest.mark.parametrize("c", [0.0, 1.5, 20.0, 300.0])
def test_large_shape_approximation_passes_a_ks_test_against_exact_draws(x64, c):
    """Just above the threshold (b = 201) the approximate and the exact sampler agree by a
    two-sample KS test (20000 draws each, p > 1e-3); the same test tells the exact sampler at
    b = 203 (1 % more) apart from it (p < 1e-3): it can fail."""
    b, num = LARGE_SHAPE + 1, 20_000
    bs = jnp.full(num, b)
    cs = jnp.full(num, c)
    approx = sample_omega(jax.random.key(2), bs, cs, approximate_above=LARGE_SHAPE)
    exact = PolyaGamma(bs, cs).sample(jax.random.key(3))
    assert stats.ks_2samp(np.asarray(approx), np.asarray(exact)).pvalue > 1e-3
    shifted = PolyaGamma(bs + 2.0, cs).sample(jax.random.key(4))
    assert stats.ks_2samp(np.asarray(approx), np.asarray(shifted)).pvalue < 1e-3


def test_default_draws_are_exact_at_every_shape():
    """Without approximate_above a shape above the threshold takes the exact sampler's draw."""
    b = jnp.array([0.0, 3.0, 2.5 * LARGE_SHAPE])
    c = jnp.array([0.5, -1.0, 2.0])
    key = jax.random.key(5)
    exact = PolyaGamma(jnp.where(b > 0, b, 1.0), c).sample(jax.random.split(key)[0])
    np.testing.assert_array_equal(sample_omega(key, b, c), jnp.where(b > 0, exact, 0.0))
    approx = sample_omega(key, b, c, approximate_above=LARGE_SHAPE)
    np.testing.assert_array_equal(approx[:2], jnp.where(b > 0, exact, 0.0)[:2])
    assert approx[2] != exact[2]


def _negbin(x, y):
    beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    numpyro.sample("y", dist.NegativeBinomialLogits(5.0, x @ beta + 12.0), obs=y)


MILLION_COUNTS = jnp.array([9.1e5, 1.2e6, 8.0e5, 1.0e6, 9.9e5]).round()


@pytest.mark.parametrize("kernel", [PolyaGammaGibbs, CollapsedPolyaGammaGibbs])
def test_exact_draws_of_shapes_near_a_million_are_not_a_silent_cost(kernel):
    """Exact sweeps at counts near 1e6 sum ~2.4e6 series pieces: init says so."""
    with pytest.warns(UserWarning, match=r"ceil\(b / 2\) series pieces each, 2.45e\+06 per sweep"):
        kernel(_negbin).init(jax.random.key(0), 0, None, (X, MILLION_COUNTS), {})


@pytest.mark.parametrize("approximate_above", [None, LARGE_SHAPE])
def test_shapes_above_the_sampler_range_are_refused_naming_b(approximate_above):
    kernel = PolyaGammaGibbs(_negbin, approximate_above=approximate_above)
    with pytest.raises(ValueError, match=r"argument 'b' must be in the supported range"):
        kernel.init(jax.random.key(0), 0, None, (X, MILLION_COUNTS * 20), {})


@pytest.mark.parametrize("value", [100.0, -1.0, float("nan"), float("inf"), "fast", True])
def test_approximate_above_refuses_thresholds_below_the_checked_range(value):
    for kernel in (PolyaGammaGibbs, CollapsedPolyaGammaGibbs):
        with pytest.raises(ValueError, match="'approximate_above' must be None"):
            kernel(_negbin, approximate_above=value)


def test_negative_binomial_counts_near_a_million_sweep_quickly_when_approximated():
    """Exact sweeps sum ~5e5 series-method pieces per row (seconds each); the approximation
    draws them at the cost of any other shape, without the cost warning."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        kernel = PolyaGammaGibbs(_negbin, approximate_above=LARGE_SHAPE)
        beta = run(kernel, X, MILLION_COUNTS, draws=5)["beta"]
    assert bool(jnp.all(jnp.isfinite(beta)))
