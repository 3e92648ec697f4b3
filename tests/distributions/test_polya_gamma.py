"""PolyaGamma: exactness of the sampler against closed forms, density accuracy, KL, robustness.

Every statistical tolerance below is a multiple of the Monte Carlo standard error of the
quantity tested (mean: sqrt(Var / n); variance: sqrt((mu_4 - sigma^4) / n) with mu_4 from the
cumulants of the Laplace transform; Laplace transform: sqrt((L(2t) - L(t)^2) / n)), with fixed
seeds. ``Z_BOUND = 4.5`` keeps the family-wise false-alarm rate below 1e-3 over all checks.

The exactness checks run against both samplers: the compiled CPU sampler (``"cpu"``, skipped
when the extension is not built) and the pure-JAX reference (``"jax"``).
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

from numpyro_ext.distributions import PolyaGamma, sample_polya_gamma
from numpyro_ext.distributions.polya_gamma_sampler import MAX_B, MIN_B, has_cpu_extension

Z_BOUND = 4.5

IMPLEMENTATIONS = [
    pytest.param(
        "cpu",
        marks=pytest.mark.skipif(not has_cpu_extension(), reason="CPU extension not built"),
    ),
    "jax",
]


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
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_mean_and_variance_z_scores_over_grid_of_b_and_c(implementation):
    b, c = np.meshgrid(GRID_B, GRID_C, indexing="ij")
    d = PolyaGamma(jnp.asarray(b.ravel()), jnp.asarray(c.ravel()))
    shape = (15_000, *d.batch_shape)
    draws = np.asarray(
        sample_polya_gamma(jax.random.key(0), d.b, d.c, shape, implementation=implementation)
    )
    for i, (bi, ci) in enumerate(zip(b.ravel(), c.ravel(), strict=True)):
        z_mean, z_var = z_scores(draws[:, i], bi, ci)
        assert abs(z_mean) < Z_BOUND, (bi, ci, z_mean)
        assert abs(z_var) < Z_BOUND, (bi, ci, z_var)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("b, n", [(200.0, 8_000), (50.0, 8_000), (1000.0, 2_000)])
def test_large_b_mean_and_variance_z_scores(implementation, b, n):
    d = PolyaGamma(jnp.array([b, b]), jnp.array([0.0, 3.0]))
    draws = np.asarray(
        sample_polya_gamma(jax.random.key(1), d.b, d.c, (n, 2), implementation=implementation)
    )
    for i, c in enumerate((0.0, 3.0)):
        z_mean, z_var = z_scores(draws[:, i], b, c)
        assert abs(z_mean) < Z_BOUND and abs(z_var) < Z_BOUND, (c, z_mean, z_var)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("b, c", [(3.5, 1.0), (2.5, 0.0), (1.0, 0.3), (0.3, 2.0)])
def test_empirical_laplace_transform_matches_closed_form(b, c, implementation):
    """Where the reference package's alternate sampler is biased (1 < b <= 8, small c) too."""
    d = PolyaGamma(b, c)
    n = 40_000
    draws = sample_polya_gamma(jax.random.key(2), b, c, (n,), implementation=implementation)
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


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_float32_mean_matches_closed_form(dtype, implementation):
    d = PolyaGamma(jnp.asarray(3.5, dtype), jnp.asarray(1.0, dtype))
    n = 40_000
    draws = sample_polya_gamma(jax.random.key(4), d.b, d.c, (n,), implementation=implementation)
    assert draws.dtype == dtype
    draws = np.asarray(draws, dtype=np.float64)
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


# --- the compiled CPU sampler against the pure-JAX reference --------------------------------

needs_cpu_extension = pytest.mark.skipif(not has_cpu_extension(), reason="CPU extension not built")


@needs_cpu_extension
@pytest.mark.usefixtures("x64")
def test_cpu_extension_matches_pure_jax_sampler_in_distribution():
    """Two-sample Kolmogorov-Smirnov tests, one per cell (Bonferroni: p > 1e-3 / 6 cells).

    Negative control: the same test tells PG(1, 0) from PG(1.05, 0) at this sample size.
    """
    from scipy.stats import ks_2samp

    n = 20_000
    cells = [(1.0, 0.0), (1.0, 3.0), (2.5, 1.0), (0.3, 2.0), (7.3, 0.5), (50.0, 4.0)]
    b = jnp.array([cell[0] for cell in cells] + [1.05])
    c = jnp.array([cell[1] for cell in cells] + [0.0])
    ours = np.asarray(sample_polya_gamma(jax.random.key(10), b, c, (n, 7), implementation="cpu"))
    ref = np.asarray(sample_polya_gamma(jax.random.key(11), b, c, (n, 7), implementation="jax"))
    for i, cell in enumerate(cells):
        assert ks_2samp(ours[:, i], ref[:, i]).pvalue > 1e-3 / len(cells), cell
    assert ks_2samp(ours[:, 0], ref[:, 6]).pvalue < 1e-3  # PG(1, 0) against PG(1.05, 0)


@needs_cpu_extension
def test_cpu_sampler_under_vmap_draws_what_separate_calls_draw(dtype):
    def one(key, b, c):
        return sample_polya_gamma(key, b, c, implementation="cpu")

    keys = jax.random.split(jax.random.key(3), 4)
    b = jnp.array([1.0, 2.5, 40.0], dtype)
    c = jnp.array([[0.0, 1.0, -3.0]], dtype)
    batched = jax.jit(jax.vmap(one, (0, None, None)))(keys, b, c)
    separate = jnp.stack([one(key, b, c) for key in keys])
    assert batched.shape == (4, 1, 3) and batched.dtype == dtype
    np.testing.assert_array_equal(np.asarray(batched), np.asarray(separate))
    # nested vmap, batched tilts
    nested = jax.vmap(jax.vmap(one, (0, None, 0)), (0, None, None))(
        jax.random.split(jax.random.key(4), (2, 3)), b, jnp.ones((3, 1, 3), dtype)
    )
    assert nested.shape == (2, 3, 1, 3) and bool(jnp.all(nested > 0))


def test_default_sampler_on_cpu_is_the_compiled_one():
    key, c = jax.random.key(0), jnp.linspace(-3.0, 3.0, 5)
    auto = sample_polya_gamma(key, 1.0, c)
    expected = "cpu" if has_cpu_extension() else "jax"
    np.testing.assert_array_equal(auto, sample_polya_gamma(key, 1.0, c, implementation=expected))


def test_sampler_entry_point_broadcasts_and_checks_its_options():
    draws = sample_polya_gamma(jax.random.key(0), jnp.ones((3, 1)), jnp.zeros(4))
    assert draws.shape == (3, 4)
    assert sample_polya_gamma(jax.random.key(0), 1.0, 0.0, (2, 5)).shape == (2, 5)
    with pytest.raises(ValueError, match="implementation"):
        sample_polya_gamma(jax.random.key(0), 1.0, 0.0, implementation="gpu")


# --- hostile inputs ----------------------------------------------------------------------------


@pytest.mark.parametrize("b", [1e-25, 1e-20, 5e9, 2 * MAX_B])
def test_b_outside_the_supported_range_is_refused_naming_b_and_the_range(b):
    # Draws once came back nan (b = 1e-25 in float32, b = 5e9) or zero (b = 1e-20 in float32).
    with pytest.raises(ValueError, match=r"'b' must be in the supported range \[1e-12, 1e\+07\]"):
        PolyaGamma(b, 0.0)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_b_outside_the_range_under_jit_gives_nan_and_the_ends_of_the_range_sample(
    dtype, implementation
):
    b = jnp.array([1e-20, MIN_B, 1e-3, 5e9], dtype)

    @jax.jit
    def sample(key, b):
        return sample_polya_gamma(key, b, 0.0, (64, 4), implementation=implementation)

    draws = np.asarray(sample(jax.random.key(0), b))
    assert np.all(np.isnan(draws[:, [0, 3]]))
    inside = draws[:, 1:3]
    assert np.all(np.isfinite(inside) & (inside > 0)), inside
    # Draws of PG(b, 0) for tiny b sit near b^2 / (4 N^2), N standard normal (Levy kernel).
    assert np.median(draws[:, 1]) < 1e-22


def test_float32_log_prob_is_never_nan_on_a_hostile_grid():
    # 525 of these 4380 points were nan (saddle-point branch: tiny w, and |c| >= 1e3).
    w = jnp.geomspace(1e-12, 1e4, 73, dtype=jnp.float32)
    for b in (0.01, 0.3, 1.0, 2.5, 7.3, 20.0, 25.0, 100.0, 1e3, 1e4):
        for c in (0.0, 1.0, 10.0, 100.0, 1e3, 1e4):
            log_p = log_prob(w, jnp.float32(b), jnp.float32(c))
            assert not bool(jnp.any(jnp.isnan(log_p) | (log_p == jnp.inf))), (b, c)
    # where the log density itself overflows float32 it is -inf, not nan
    assert log_prob(jnp.float32(1e-36), jnp.float32(1e4), jnp.float32(0.0)) == -jnp.inf


def test_log_prob_at_large_tilt_matches_float64_and_mpmath():
    mpmath.mp.dps = 60
    exact = mpmath_log_density(100.0, 25.0, 1e4)
    f32 = float(log_prob(jnp.float32(100.0), jnp.float32(25.0), jnp.float32(1e4)))
    np.testing.assert_allclose(f32, exact, rtol=1e-6)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize(
    "b, c, bulk", [(25.0, 1e3, True), (100.0, 1e3, True), (25.0, 1e4, True), (200.0, 0.0, False)]
)
def test_log_prob_matches_mpmath_at_large_tilt_and_far_left(b, c, bulk):
    d = PolyaGamma(b, c)
    mean, sd = float(d.mean), float(d.variance) ** 0.5
    points = [mean / 20, mean / 5]  # left of the bulk: the left-series branch
    if bulk:  # the saddle-point branch; the series cancels to about b digits there
        points += [mean - 2 * sd, mean, mean + 3 * sd]
    ours = np.asarray(log_prob(jnp.asarray(points), b, c))
    mpmath.mp.dps = 300 if bulk else 60
    exact = np.array([_mpmath_log_density_digits(w, b, c) for w in points])
    np.testing.assert_allclose(ours, exact, rtol=1e-9, atol=1e-9)


def _mpmath_log_density_digits(w, b, c):
    previous = mpmath.mp.dps
    w, b, c = mpmath.mpf(w), mpmath.mpf(b), mpmath.mpf(c)

    def term(n):
        return (
            (-1) ** n
            * mpmath.exp(mpmath.loggamma(n + b) - mpmath.loggamma(n + 1))
            * (2 * n + b)
            * mpmath.exp(-((2 * n + b) ** 2) / (8 * w))
        )

    series = mpmath.nsum(term, [0, mpmath.inf])
    log_pg0 = mpmath.log(2 ** (b - 1) / mpmath.gamma(b) * series)
    log_pg0 -= mpmath.log(mpmath.sqrt(2 * mpmath.pi * w**3))
    mpmath.mp.dps = previous
    return float(log_pg0 + b * mpmath.log(mpmath.cosh(c / 2)) - c * c * w / 2)
