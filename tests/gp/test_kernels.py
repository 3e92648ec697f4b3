"""Tests for numpyro_ext.gp.kernels: closed forms, Gram/diag agreement, algebra, pytrees."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_ext.gp import (
    Linear,
    Matern12,
    Matern32,
    Matern52,
    Periodic,
    Product,
    Scaled,
    SquaredExponential,
    Sum,
)
from numpyro_ext.gp.kernels import DIRECT_MAX_DIM, valid_hyperparameters

X1 = np.array([[0.0, 1.0], [0.5, -0.3], [2.0, 0.7]])
X2 = np.array([[0.1, 0.2], [-1.0, 0.4]])


def _pairwise_r(ell):
    return np.sqrt((((X1[:, None, :] - X2[None, :, :]) / ell) ** 2).sum(-1))


@pytest.mark.parametrize(
    ("kernel", "profile"),
    [
        (SquaredExponential, lambda r: np.exp(-0.5 * r**2)),
        (Matern12, lambda r: np.exp(-r)),
        (Matern32, lambda r: (1 + np.sqrt(3) * r) * np.exp(-np.sqrt(3) * r)),
        (Matern52, lambda r: (1 + np.sqrt(5) * r + 5 * r**2 / 3) * np.exp(-np.sqrt(5) * r)),
    ],
)
def test_stationary_kernels_match_closed_forms_with_ard(x64, kernel, profile):
    ell = np.array([0.7, 1.9])
    k = kernel(variance=1.7, lengthscale=jnp.asarray(ell))
    np.testing.assert_allclose(k(X1, X2), 1.7 * profile(_pairwise_r(ell)), rtol=1e-12)
    np.testing.assert_allclose(k.diag(X1), jnp.diagonal(k(X1)), rtol=1e-12)


def test_periodic_and_linear_match_closed_forms(x64):
    diff = X1[:, None, :] - X2[None, :, :]
    expected = 0.5 * np.exp(-2 * ((np.sin(np.pi * diff / 1.3) / 0.8) ** 2).sum(-1))
    np.testing.assert_allclose(Periodic(0.5, 0.8, 1.3)(X1, X2), expected, rtol=1e-12)
    np.testing.assert_allclose(Linear(0.3)(X1, X2), 0.3 * X1 @ X2.T, rtol=1e-12)
    for k in (Periodic(0.5, 0.8, 1.3), Linear(jnp.array([0.3, 2.0]))):
        np.testing.assert_allclose(k.diag(X1), jnp.diagonal(k(X1)), rtol=1e-12)


def test_kernel_algebra_builds_sums_products_and_scalings(x64):
    a, b = SquaredExponential(1.0, 0.5), Matern32(2.0, 1.5)
    assert isinstance(a + b, Sum) and isinstance(a * b, Product)
    assert isinstance(3.0 * a, Scaled) and isinstance(a * 3.0, Scaled)
    np.testing.assert_allclose((a + b)(X1, X2), a(X1, X2) + b(X1, X2))
    np.testing.assert_allclose((a * b)(X1, X2), a(X1, X2) * b(X1, X2))
    np.testing.assert_allclose((3.0 * a)(X1, X2), 3.0 * a(X1, X2))
    k = 2.0 * a * b + Linear(0.1)
    np.testing.assert_allclose(k.diag(X1), jnp.diagonal(k(X1)), rtol=1e-12)


def test_kernels_are_pytrees_usable_under_jit_vmap_and_grad(x64):
    k = SquaredExponential(1.0, 0.5) + Periodic(1.0, 1.0, 2.0)
    assert len(jax.tree.leaves(k)) == 5
    np.testing.assert_allclose(jax.jit(lambda k: k(X1, X2))(k), k(X1, X2))
    ells = jnp.array([0.5, 1.0, 2.0])
    grams = jax.vmap(lambda ell: SquaredExponential(1.0, ell)(X1, X2))(ells)
    assert grams.shape == (3, 3, 2)
    g = jax.grad(lambda ell: SquaredExponential(1.0, ell)(X1, X2).sum())(0.5)
    fd = (
        SquaredExponential(1.0, 0.5 + 1e-6)(X1, X2).sum()
        - SquaredExponential(1.0, 0.5 - 1e-6)(X1, X2).sum()
    ) / 2e-6
    np.testing.assert_allclose(g, fd, rtol=1e-6)


def test_matern_gradient_is_finite_on_the_diagonal(x64):
    g = jax.grad(lambda ell: Matern12(1.0, ell)(X1).sum())(0.7)
    assert np.isfinite(g)


def test_one_dimensional_inputs_are_a_column(x64):
    x = jnp.linspace(0.0, 1.0, 4)
    np.testing.assert_allclose(SquaredExponential()(x), SquaredExponential()(x[:, None]))


def test_high_dimensional_inputs_use_the_centred_expansion_and_match_closed_form(x64):
    # D > DIRECT_MAX_DIM takes the matrix-product path; inputs far from the origin
    rng = np.random.default_rng(0)
    A = 50.0 + rng.normal(size=(5, DIRECT_MAX_DIM + 3))
    B = 50.0 + rng.normal(size=(4, DIRECT_MAX_DIM + 3))
    r2 = (((A[:, None, :] - B[None, :, :]) / 1.7) ** 2).sum(-1)
    np.testing.assert_allclose(SquaredExponential(1.3, 1.7)(A, B), 1.3 * np.exp(-0.5 * r2))


def test_float32_gram_of_nearby_inputs_is_accurate_to_a_few_ulps():
    # Regression: the expansion |a|^2 + |b|^2 - 2ab lost ~|a|^2 * eps in float32, so inducing
    # inputs drifting together made Kuu indefinite by more than the jitter and float32 SVGP
    # fits spiked and went NaN. 40 inducing inputs over [-4, 4] (the minibatch example), two of
    # them 1e-3 apart; reference in float64 from the same float32 inputs. The float32 Gram can
    # only be as accurate as rounding its entries (half an ulp of the variance, plus the
    # rounding of exp); allow 3 ulps (the expansion was off by 7-9).
    Z = np.linspace(-4.0, 4.0, 40).astype(np.float32)
    Z[20] = Z[19] + np.float32(1e-3)
    Z = Z[:, None]
    ulp = np.finfo(np.float32).eps * 1.2
    for kernel in (Matern52, SquaredExponential):
        K32 = np.asarray(kernel(1.2, 1.3)(jnp.asarray(Z)), np.float64)
        d = Z.astype(np.float64) - Z.astype(np.float64).T
        r = np.abs(d) / np.float64(np.float32(1.3))
        if kernel is Matern52:
            K64 = 1.2 * (1 + np.sqrt(5) * r + 5 * r**2 / 3) * np.exp(-np.sqrt(5) * r)
        else:
            K64 = 1.2 * np.exp(-0.5 * r**2)
        assert np.max(np.abs(K32 - K64)) < 3 * ulp


def test_kernels_keep_float32():
    k = Matern52(1.0, 0.5)
    assert k(jnp.asarray(X1, jnp.float32)).dtype == jnp.float32


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="lengthscale must be a scalar or have shape"):
        SquaredExponential(lengthscale=jnp.ones(3))(X1)
    with pytest.raises(ValueError, match="disagree in dimension"):
        SquaredExponential()(X1, jnp.ones((2, 3)))
    with pytest.raises(ValueError, match=r"shape \(N, D\)"):
        SquaredExponential()(jnp.ones((2, 2, 2)))


@pytest.mark.parametrize("kernel", [SquaredExponential(), Matern32(), Periodic(), Linear()])
def test_integer_and_boolean_inputs_are_promoted_to_the_default_float(kernel):
    K = kernel(jnp.arange(4))
    assert K.dtype == jnp.float32 and kernel.diag(jnp.arange(4)).dtype == jnp.float32
    np.testing.assert_allclose(K, kernel(jnp.arange(4.0)))
    assert kernel(jnp.ones(3, bool)).dtype == jnp.float32


def test_integer_hyperparameters_are_accepted(x64):
    np.testing.assert_allclose(SquaredExponential(2, 3)(X1), SquaredExponential(2.0, 3.0)(X1))


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: SquaredExponential(lengthscale=0.0), "lengthscale must be positive"),
        (lambda: Matern52(lengthscale=np.array([1.0, -1.0])), "lengthscale must be positive"),
        (lambda: Matern12(variance=-1.0), "variance must be non-negative"),
        (lambda: Periodic(period=0.0), "period must be positive"),
        (lambda: SquaredExponential(variance=jnp.nan), "variance must be non-negative and"),
        (lambda: Linear(variance=jnp.inf), "variance must be non-negative and finite"),
        (lambda: Scaled(SquaredExponential(), -2.0), "scale must be non-negative"),
    ],
)
def test_out_of_range_concrete_hyperparameters_are_refused(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_traced_hyperparameters_are_not_checked_but_valid_hyperparameters_reports_them():
    gram = jax.jit(lambda ell: SquaredExponential(1.0, ell)(X1))
    assert gram(1.0).shape == (3, 3)  # building the kernel from a tracer does not raise
    valid = jax.jit(
        lambda ell, s: valid_hyperparameters(2.0 * SquaredExponential(1.0, ell) + Linear(s))
    )
    assert bool(valid(1.0, 0.0)) and not bool(valid(0.0, 1.0)) and not bool(valid(1.0, -1.0))
    assert bool(valid(jnp.nan, 1.0))  # NaN propagates rather than counting as out of range
