"""PolyaGamma: exactness of the sampler against closed forms, density accuracy, KL, robustness.

Every statistical tolerance below is a multiple of the Monte Carlo standard error of the
quantity tested (mean: sqrt(Var / n); variance: sqrt((mu_4 - sigma^4) / n) with mu_4 from the
cumulants of the Laplace transform; Laplace transform: sqrt((L(2t) - L(t)^2) / n)), with fixed
seeds. ``Z_BOUND = 4.5`` keeps the family-wise false-alarm rate below 1e-3 over all checks.
"""

from functools import partial

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpyro.distributions import kl_divergence

from numpyro_ext.distributions import PolyaGamma

Z_BOUND = 4.5


@partial(jax.jit, static_argnums=3)
def draw(key, b, c, n):
    """``n`` draws of PG(b, c); jitted once per shape and dtype and shared by the tests."""
    return PolyaGamma(b, c).sample(key, (n,))


@jax.jit
def log_prob(w, b, c):
    return PolyaGamma(b, c).log_prob(w)


GRID_B = [0.3, 1.0, 2.5, 3.5, 7.3]
GRID_C = [0.0, 1.0, 4.0, 50.0]


@jax.jit
def _cumulants(b, c):
    def neg_log_laplace(t):
        return -jnp.log(PolyaGamma(b, c).laplace_transform(t))

    derivs, f = [], neg_log_laplace
    for n in range(1, 5):
        f = jax.grad(f)
        derivs.append(f(0.0) * (-1) ** (n + 1))
    return jnp.stack(derivs)


def closed_form_cumulants(b, c):
    """First four cumulants of PG(b, c): derivatives of -log E[exp(-t w)] at t = 0 (float64)."""
    return [float(k) for k in _cumulants(jnp.asarray(b, float), jnp.asarray(c, float))]


def z_scores(draws, b, c):
    """Mean and variance z-scores of ``draws`` (1-d) against the closed forms."""
    k1, k2, _, k4 = closed_form_cumulants(b, c)
    n = draws.shape[0]
    mu4 = k4 + 3 * k2**2
    z_mean = (draws.mean() - k1) / np.sqrt(k2 / n)
    z_var = (draws.var(ddof=1) - k2) / np.sqrt((mu4 - k2**2) / n)
    return z_mean, z_var


@pytest.mark.usefixtures("x64")
def test_closed_form_moments_match_laplace_transform_derivatives():
    for b in (0.3, 7.3):
        for c in (0.0, 1e-4, 0.7, 30.0):
            k1, k2, _, _ = closed_form_cumulants(b, c)
            d = PolyaGamma(b, c)
            np.testing.assert_allclose(float(d.mean), k1, rtol=1e-12)
            np.testing.assert_allclose(float(d.variance), k2, rtol=1e-9)


@pytest.mark.usefixtures("x64")
def test_mean_and_variance_z_scores_over_grid_of_b_and_c():
    b, c = np.meshgrid(GRID_B, GRID_C, indexing="ij")
    d = PolyaGamma(jnp.asarray(b.ravel()), jnp.asarray(c.ravel()))
    draws = np.asarray(d.sample(jax.random.key(0), (15_000,)))
    for i, (bi, ci) in enumerate(zip(b.ravel(), c.ravel(), strict=True)):
        z_mean, z_var = z_scores(draws[:, i], bi, ci)
        assert abs(z_mean) < Z_BOUND, (bi, ci, z_mean)
        assert abs(z_var) < Z_BOUND, (bi, ci, z_var)


@pytest.mark.usefixtures("x64")
def test_large_b_mean_and_variance_z_scores():
    d = PolyaGamma(jnp.array([200.0, 200.0]), jnp.array([0.0, 3.0]))
    draws = np.asarray(d.sample(jax.random.key(1), (8_000,)))
    for i, c in enumerate((0.0, 3.0)):
        z_mean, z_var = z_scores(draws[:, i], 200.0, c)
        assert abs(z_mean) < Z_BOUND and abs(z_var) < Z_BOUND, (c, z_mean, z_var)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("b, c", [(3.5, 1.0), (2.5, 0.0), (1.0, 0.3), (0.3, 2.0)])
def test_empirical_laplace_transform_matches_closed_form(b, c):
    """Where the reference package's alternate sampler is biased (1 < b <= 8, small c) too."""
    d = PolyaGamma(b, c)
    n = 40_000
    draws = draw(jax.random.key(2), b, c, n)
    for t in (0.5, 2.0, 8.0):
        empirical = float(jnp.mean(jnp.exp(-t * draws)))
        exact = float(d.laplace_transform(t))
        se = np.sqrt((float(d.laplace_transform(2 * t)) - exact**2) / n)
        assert abs(empirical - exact) < Z_BOUND * se, (t, empirical, exact, se)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize(
    "b, c", [(0.3, 0.0), (1.0, 2.0), (3.5, 1.0), (7.3, 0.5), (20.0, 4.0), (60.0, 2.0)]
)
def test_log_prob_integrates_to_one(b, c):
    d = PolyaGamma(b, c)
    mean, sd = float(d.mean), float(d.variance) ** 0.5

    # Trapezoid rule in u = log w: the integrand w p(w) is smooth and decays double-exponentially
    # to the left and exponentially to the right, so the rule converges geometrically.
    u = jnp.linspace(np.log(mean) - 12.0, np.log(mean + 80 * sd), 20_001)
    w = jnp.exp(u)
    integrand = jnp.exp(log_prob(w, b, c)) * w
    total = float(jnp.sum((integrand[1:] + integrand[:-1]) * jnp.diff(u)) / 2)
    assert abs(total - 1.0) < 1e-9


def mpmath_log_density(w, b, c):
    mpmath.mp.dps = 60
    w, b, c = mpmath.mpf(w), mpmath.mpf(b), mpmath.mpf(c)

    def term(n):
        return (
            (-1) ** n
            * mpmath.exp(mpmath.loggamma(n + b) - mpmath.loggamma(n + 1))
            * (2 * n + b)
            / mpmath.sqrt(2 * mpmath.pi * w**3)
            * mpmath.exp(-((2 * n + b) ** 2) / (8 * w))
        )

    series = mpmath.nsum(term, [0, mpmath.inf])
    log_pg0 = mpmath.log(2 ** (b - 1) / mpmath.gamma(b) * series)
    return float(log_pg0 + b * mpmath.log(mpmath.cosh(c / 2)) - c * c * w / 2)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("b", [0.3, 1.0, 2.5, 7.3, 20.0, 50.0, 200.0])
def test_log_prob_matches_mpmath_over_the_bulk(b):
    c = 1.5
    d = PolyaGamma(b, c)
    mean, sd = float(d.mean), float(d.variance) ** 0.5
    points = [max(mean + k * sd, mean / 10) for k in (-2.0, -1.0, 0.0, 1.0, 3.0, 6.0)]
    ours = np.asarray(log_prob(jnp.asarray(points), b, c))
    exact = np.array([mpmath_log_density(w, b, c) for w in points])
    np.testing.assert_allclose(np.exp(ours - exact), 1.0, rtol=1e-6)


def test_log_prob_is_finite_in_the_tails(dtype):
    w = jnp.geomspace(1e-3, 1e3, 50, dtype=dtype)
    for b, c in ((0.3, 0.0), (1.0, 10.0), (3.5, 1.0), (7.3, 0.0)):
        assert jnp.all(jnp.isfinite(PolyaGamma(b, c).log_prob(w))), (b, c)
    assert PolyaGamma(1.0, 0.0).log_prob(-1.0) == -jnp.inf


@pytest.mark.usefixtures("x64")
def test_kl_divergence_matches_monte_carlo_estimate():
    p, q = PolyaGamma(2.5, 1.0), PolyaGamma(2.5, 3.0)
    draws = draw(jax.random.key(3), 2.5, 1.0, 40_000)
    log_ratio = np.asarray(log_prob(draws, 2.5, 1.0) - log_prob(draws, 2.5, 3.0))
    se = log_ratio.std() / np.sqrt(log_ratio.size)
    kl = float(kl_divergence(p, q))
    assert abs(log_ratio.mean() - kl) < Z_BOUND * se
    assert kl > 0
    assert float(kl_divergence(p, p)) == 0.0


def test_kl_divergence_requires_equal_b():
    with pytest.raises(ValueError, match="same 'b'"):
        kl_divergence(PolyaGamma(1.0, 0.0), PolyaGamma(2.0, 0.0))


@pytest.mark.parametrize(
    "b, c, name",
    [(0.0, 0.0, "'b'"), (-1.0, 0.0, "'b'"), (1.0, np.nan, "'c'"), (np.inf, 1.0, "'b'")],
)
def test_invalid_arguments_raise_value_error_naming_the_argument(b, c, name):
    with pytest.raises(ValueError, match=name):
        PolyaGamma(b, c)


def test_sample_shape_and_dtype_under_jit(dtype):
    d = PolyaGamma(jnp.array([0.5, 2.0, 3.5], dtype), jnp.array([[0.0], [1.0]], dtype))
    assert d.batch_shape == (2, 3)
    draws = jax.jit(lambda k: d.sample(k, (4,)))(jax.random.key(0))
    assert draws.shape == (4, 2, 3) and draws.dtype == dtype
    assert bool(jnp.all(draws > 0))


def test_sample_under_vmap_over_c_and_keys():
    def one(c, key):
        return PolyaGamma(1.5, c).sample(key, (8,))

    keys = jax.random.split(jax.random.key(1), 5)
    out = jax.vmap(one)(jnp.linspace(0.0, 4.0, 5), keys)
    assert out.shape == (5, 8) and bool(jnp.all(jnp.isfinite(out) & (out > 0)))


def test_float32_mean_matches_closed_form(dtype):
    d = PolyaGamma(jnp.asarray(3.5, dtype), jnp.asarray(1.0, dtype))
    n = 40_000
    draws = np.asarray(draw(jax.random.key(4), d.b, d.c, n), dtype=np.float64)
    se = np.sqrt(float(d.variance) / n)
    assert abs(draws.mean() - float(d.mean)) < Z_BOUND * se


@given(
    b=st.floats(1e-2, 1e4),
    c=st.floats(-1e3, 1e3),
    precision=st.sampled_from(["float32", "float64"]),
)
def test_samples_are_positive_and_finite_over_the_whole_range(b, c, precision):
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", precision == "float64")
    try:
        dtype = jnp.dtype(precision)
        b, c = jnp.asarray(b, dtype), jnp.asarray(c, dtype)
        draws = draw(jax.random.key(5), b, c, 16)
        assert draws.dtype == dtype
        assert bool(jnp.all(jnp.isfinite(draws) & (draws > 0))), (b, c, draws)
        assert bool(jnp.all(jnp.isfinite(log_prob(draws, b, c)))), (b, c)
    finally:
        jax.config.update("jax_enable_x64", previous)


def test_non_finite_parameters_under_jit_give_nan_instead_of_hanging():
    # Under jit the constructor cannot validate, so a nan or inf tilt (say from a diverged
    # sampler upstream) must come back as nan at once; the rejection loop would never accept.
    b = jnp.array([1.0, 2.5, jnp.inf, 1.0, 3.0])
    c = jnp.array([jnp.nan, 1.0, 1.0, jnp.inf, 0.5])
    draws = np.asarray(draw(jax.random.key(6), b, c, 4))
    assert np.all(np.isnan(draws[:, [0, 2, 3]]))
    assert np.all(np.isfinite(draws[:, [1, 4]]) & (draws[:, [1, 4]] > 0))


def test_vmapped_chains_of_draws_all_finish():
    # Vectorised Gibbs chains vmap the sampler over keys; every element must be accepted within
    # the loop bound (a stream that repeats its bits under vmap would leave nan behind).
    def draws(key, c):
        return PolyaGamma(jnp.ones(300), c).sample(key)

    c = 3.0 * jax.random.normal(jax.random.key(7), (8, 300))
    out = jax.jit(jax.vmap(draws))(jax.random.split(jax.random.key(8), 8), c)
    assert bool(jnp.all(jnp.isfinite(out) & (out > 0)))
