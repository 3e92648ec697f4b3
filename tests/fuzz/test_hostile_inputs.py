"""Hostile and careless inputs to the public API, each with its expected outcome.

Every case states what a user must get: a ``ValueError`` naming the argument (or site) and
what was expected, or a finite, correct answer. Dtypes int / bool / float32 / float64,
non-finite values, bad shapes and extreme magnitudes.
"""

import contextlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpyro import handlers

from numpyro_ext.distributions import GaussianProcess, PolyaGamma
from numpyro_ext.gp import (
    Linear,
    Matern32,
    Periodic,
    SquaredExponential,
    collapsed_elbo,
    collapsed_predict,
)
from numpyro_ext.handlers import polya_gamma
from numpyro_ext.infer import AmortizedPosterior
from numpyro_ext.linalg import CholeskyError, cholesky, cholesky_errors, cholesky_update

DTYPES = ["int32", "bool", "float32", "float64"]


@contextlib.contextmanager
def _x64():
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", previous)


@pytest.fixture
def enable_x64():
    with _x64():
        yield


# --- linalg -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("A", "match"),
    [
        (np.ones(3), r"must be square \(\.\.\., N, N\)"),
        (np.ones((2, 3)), "must be square"),
        (-np.eye(3), r"matrix \(3 x 3\) is not positive definite"),
    ],
)
def test_cholesky_refuses_bad_matrices_by_name(A, match):
    with pytest.raises(ValueError, match=match):
        cholesky(A)


def test_cholesky_failure_inside_jit_reads_first_under_cholesky_errors():
    with pytest.raises(CholeskyError, match=r"^cholesky: K \(2 x 2\)"), cholesky_errors():
        jax.jit(lambda A: cholesky(A, name="K"))(-jnp.eye(2)).block_until_ready()


@pytest.mark.parametrize("dtype", ["int32", "float32"])
def test_cholesky_of_integer_or_float32_identity_is_finite(dtype):
    L = cholesky(jnp.eye(3, dtype=dtype) * 4)
    assert jnp.issubdtype(L.dtype, jnp.floating) and bool(jnp.all(jnp.isfinite(L)))
    np.testing.assert_allclose(np.diag(L), 2.0, rtol=1e-5)


@given(st.integers(-30, 30), st.integers(0, 10**6))
def test_cholesky_of_spd_matrices_at_extreme_scales_in_float64(exponent, seed):
    with _x64():
        # A = 10^e (B B^T + I) spans 60 orders of magnitude; jitter 0 keeps the factor exact.
        B = np.random.default_rng(seed).normal(size=(4, 4))
        A = 10.0**exponent * (B @ B.T + np.eye(4))
        L = cholesky(A, jitter=0.0)
        np.testing.assert_allclose(L @ L.T, A, rtol=1e-10, atol=1e-12 * 10.0**exponent)


@pytest.mark.parametrize(
    ("L", "U", "match"),
    [
        (np.triu(np.ones((70, 70))) + np.eye(70), np.ones(70), "strict upper triangle"),
        (-np.eye(3), np.ones(3), "zero or negative entry"),
        (np.eye(3), np.ones(4), r"U must have shape \(\.\.\., 3\)"),
        (np.ones(3), np.ones(3), "L must be square"),
    ],
)
def test_cholesky_update_refuses_non_factors_and_bad_shapes(L, U, match):
    with pytest.raises(ValueError, match=match):
        cholesky_update(L, U)


# --- kernels and GaussianProcess -----------------------------------------------------------


def _inputs(dtype, n=5):
    return (np.arange(n) % 2).astype(bool) if dtype == "bool" else np.arange(n).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", [SquaredExponential(), Matern32(2, 3), Periodic(), Linear()])
def test_kernels_accept_every_input_dtype(enable_x64, kernel, dtype):
    K = kernel(_inputs(dtype))
    assert jnp.issubdtype(K.dtype, jnp.floating) and bool(jnp.all(jnp.isfinite(K)))
    np.testing.assert_allclose(K, K.T)
    np.testing.assert_allclose(jnp.diagonal(K), kernel.diag(_inputs(dtype)), rtol=1e-12)


@given(st.sampled_from(["float32", "float64"]), st.integers(-30, 30))
def test_stationary_gram_stays_in_range_at_extreme_input_scales(dtype, exponent):
    with _x64():
        X = (np.linspace(-1.0, 1.0, 6) * 10.0**exponent).astype(dtype)
        K = SquaredExponential(1.0, 1.0)(X)
        assert bool(jnp.all(jnp.isfinite(K))) and bool(jnp.all((K >= 0) & (K <= 1)))
        np.testing.assert_allclose(jnp.diagonal(K), 1.0)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: SquaredExponential(lengthscale=0.0), "lengthscale must be positive"),
        (lambda: SquaredExponential(lengthscale=-1.0), "lengthscale must be positive"),
        (lambda: SquaredExponential(variance=np.nan), "variance must be non-negative and"),
        (lambda: Matern32(lengthscale=np.inf), "lengthscale must be positive and finite"),
        (lambda: Periodic(period=0), "period must be positive"),
        (lambda: Linear(variance=-1), "variance must be non-negative"),
        (lambda: SquaredExponential()(np.ones((2, 2, 2))), r"shape \(N, D\) or \(N,\)"),
        (lambda: SquaredExponential()(np.ones((2, 2)), np.ones((2, 3))), "disagree in dim"),
        (lambda: SquaredExponential(lengthscale=np.ones(3))(np.ones((2, 2))), "lengthscale"),
    ],
)
def test_kernels_refuse_bad_hyperparameters_and_shapes(build, match):
    with pytest.raises(ValueError, match=match):
        build()


@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_process_samples_from_any_input_dtype(dtype):
    gp = GaussianProcess(SquaredExponential(), _inputs(dtype, 20))
    draw = gp.sample(jax.random.key(0))
    assert draw.shape == (20,) and bool(jnp.all(jnp.isfinite(draw)))
    assert bool(jnp.isfinite(gp.log_prob(draw)))


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((SquaredExponential(), np.array([0.0, np.nan])), {}, "X must be finite"),
        ((SquaredExponential(), np.array([0.0, np.inf])), {}, "X must be finite"),
        ((lambda a, b: a, np.ones(3)), {}, "kernel must be a numpyro_ext.gp.Kernel"),
        ((SquaredExponential(), np.ones((2, 2, 2))), {}, r"shape \(N, D\)"),
        ((SquaredExponential(), np.ones(3)), {"jitter": -1.0}, "jitter must be"),
        ((SquaredExponential(), np.ones(3)), {"mean_fn": lambda X: np.ones(2)}, "mean_fn"),
    ],
)
def test_gaussian_process_refuses_bad_arguments(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        GaussianProcess(*args, **kwargs)


# --- collapsed bound -------------------------------------------------------------------------

X = np.linspace(0.0, 1.0, 8)
Y = np.sin(3 * X)


@pytest.mark.parametrize(
    ("noise", "match"),
    [
        (0.0, "positive and finite, got 0.0"),
        (-1.0, "got -1.0"),
        (np.nan, "got nan"),
        (np.inf, "got inf"),
        (np.ones(2), "must be a scalar"),
    ],
)
def test_collapsed_bound_refuses_bad_noise_by_name(noise, match):
    with pytest.raises(ValueError, match="noise_variance must be") as info:
        collapsed_elbo(SquaredExponential(), X, Y, X[::2], noise)
    assert info.match(match)


@pytest.mark.parametrize(
    ("y", "match"),
    [
        (Y[:-1], r"y must have shape \(8,\)"),
        (np.where(X > 0.5, np.nan, Y), "y must be finite"),
        (Y[:, None], r"y must have shape \(8,\)"),
    ],
)
def test_collapsed_bound_refuses_bad_targets(y, match):
    with pytest.raises(ValueError, match=match):
        collapsed_elbo(SquaredExponential(), X, y, X[::2], 0.1)


def test_collapsed_bound_is_minus_infinity_for_zero_noise_under_jit():
    bound = jax.jit(lambda s2: collapsed_elbo(SquaredExponential(), X, Y, X[::2], s2))
    assert float(bound(0.0)) == -math.inf and math.isfinite(float(bound(0.1)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_collapsed_bound_and_predictions_accept_every_dtype(dtype):
    Xd, yd = _inputs(dtype, 8), _inputs(dtype, 8)
    bound = collapsed_elbo(SquaredExponential(1.0, 2.0), Xd, yd, Xd[::2], 0.5)
    mean, var = collapsed_predict(SquaredExponential(1.0, 2.0), Xd, yd, Xd[::2], 0.5, Xd)
    assert math.isfinite(float(bound))
    assert bool(jnp.all(jnp.isfinite(mean))) and bool(jnp.all(var >= -1e-5))


@given(st.sampled_from(["float32", "float64"]), st.integers(-6, 6))
def test_collapsed_bound_is_finite_for_targets_at_extreme_scales(dtype, exponent):
    with _x64():
        y = (Y * 10.0**exponent).astype(dtype)
        bound = collapsed_elbo(SquaredExponential(), X.astype(dtype), y, X[::2].astype(dtype), 0.1)
        assert math.isfinite(float(bound))


# --- distributions, handlers, posterior estimation ----------------------------------------


@pytest.mark.parametrize(
    ("b", "c", "match"),
    [
        (0.0, 0.0, r"'b' must be in the supported range \[1e-12"),
        (-1.0, 0.0, "'b'"),
        (np.nan, 0.0, "'b'"),
        (np.inf, 0.0, "'b'"),
        (1.0, np.nan, "'c' must be"),
        (1.0, np.inf, "'c'"),
    ],
)
def test_polya_gamma_refuses_bad_arguments_by_name(b, c, match):
    with pytest.raises(ValueError, match=match):
        PolyaGamma(b, c)


def test_polya_gamma_accepts_integer_shape_and_samples_finitely():
    draws = PolyaGamma(np.array([1, 3]), 1.5).sample(jax.random.key(0), (50,))
    assert bool(jnp.all(jnp.isfinite(draws) & (draws > 0)))


@pytest.mark.parametrize("b", [1e-25, 5e9])
def test_polya_gamma_at_an_unsupported_shape_is_refused_naming_b(b):
    with pytest.raises(ValueError, match=r"'b'|b must|argument b"):
        PolyaGamma(np.array([b, b]), 0.0).sample(jax.random.key(0), (50,))


def test_polya_gamma_handler_refuses_a_named_unsupported_likelihood():
    def model(y):
        rate = numpyro.sample("rate", dist.Gamma(1.0, 1.0))
        numpyro.sample("y", dist.Poisson(rate).expand([3]).to_event(1), obs=y)

    with pytest.raises(ValueError, match="'y'"):
        handlers.trace(handlers.seed(polya_gamma(model, sites=["y"]), 0)).get_trace(jnp.ones(3))


def test_polya_gamma_handler_refuses_a_string_for_sites():
    with pytest.raises(ValueError, match="'sites' must be a list"):
        polya_gamma(lambda: None, sites="y")


def _simulator(x=None):
    theta = numpyro.sample("theta", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    numpyro.sample("x", dist.Normal(theta, 1.0).to_event(1), obs=x)


@pytest.mark.parametrize(
    ("kwargs", "fit_kwargs", "match"),
    [
        ({"observed": "y"}, {}, "no sample site 'y'"),
        ({"observed": "x", "parameters": ["phi"]}, {}, r"parameters \['phi'\]"),
        ({"observed": "x"}, {"batch_size": 0}, "must be positive"),
        ({"observed": "x"}, {"validation_fraction": 1.5}, "validation_fraction"),
        ({"observed": "x"}, {"num_simulations": 0}, "must be positive"),
        ({"observed": "x", "parameters": []}, {}, "parameters is empty"),
    ],
)
def test_posterior_estimation_refuses_bad_arguments(kwargs, fit_kwargs, match):
    with pytest.raises(ValueError, match=match):
        AmortizedPosterior(_simulator, **kwargs).fit(jax.random.key(0), **fit_kwargs)


def test_posterior_estimation_refuses_a_model_without_a_parameter_site():
    def no_parameter(x=None):
        numpyro.sample("x", dist.Normal(0.0, 1.0).expand([2]).to_event(1), obs=x)

    with pytest.raises(ValueError, match="no latent sample site to estimate"):
        AmortizedPosterior(no_parameter, observed="x").fit(jax.random.key(0))


# --- subsampled plates ----------------------------------------------------------------------


@pytest.mark.parametrize(("size", "fails"), [(20, False), (21, True), (10**6, True)])
def test_check_subsample_refuses_a_plate_larger_than_its_data(size, fails):
    from numpyro_ext.subsample import check_subsample

    def model(y, size):
        with numpyro.plate("data", size, subsample_size=4) as idx:
            numpyro.sample("y", dist.Normal(0.0, 1.0), obs=y[idx])

    if fails:
        with pytest.raises(IndexError, match=rf"plate 'data' \(size {size}, subsample_size 4\)"):
            check_subsample(model, jnp.zeros(20), size)
    else:
        assert check_subsample(model, jnp.zeros(20), size) == {"data": (20, 4)}


# --- transforms, arviz bridge ----------------------------------------------------------------


@pytest.mark.parametrize("dim", [0, 1])
def test_flow_builders_refuse_a_dimension_below_two(dim):
    from numpyro_ext.transforms import masked_autoregressive_flow, neural_spline_flow

    for build in (neural_spline_flow, masked_autoregressive_flow):
        with pytest.raises(ValueError, match="dim must be >= 2"):
            build(jax.random.key(0), dim)


def test_chain_of_exp_reports_a_positive_codomain():
    from numpyro_ext.transforms import Chain

    chain = Chain([dist.transforms.ExpTransform()])
    assert chain.codomain is dist.constraints.positive


def test_from_svi_refuses_a_non_positive_number_of_draws():
    from numpyro.infer.autoguide import AutoNormal

    from numpyro_ext.arviz import from_svi

    guide = AutoNormal(_simulator)
    with pytest.raises(ValueError, match="num_samples must be a positive integer"):
        from_svi(guide, {}, model_args=(jnp.zeros(2),), num_samples=0)


def test_from_svi_with_mismatched_data_raises_value_error():
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoNormal

    from numpyro_ext.arviz import from_svi

    def model(X, y=None):
        beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        with numpyro.plate("data", X.shape[0]):
            numpyro.sample("y", dist.Normal(X @ beta, 1.0), obs=y)

    X, y = jnp.ones((5, 2)), jnp.ones(5)
    guide = AutoNormal(model)
    params = (
        SVI(model, guide, numpyro.optim.Adam(0.1), Trace_ELBO())
        .run(jax.random.key(0), 2, X, y, progress_bar=False)
        .params
    )
    with pytest.raises(ValueError):
        from_svi(guide, params, model_args=(jnp.ones((5, 3)), y), num_samples=5)
