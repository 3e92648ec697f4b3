"""Tests for numpyro_ext.linalg: jitter-safe Cholesky and low-rank Cholesky updates."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from numpyro_ext.linalg import cholesky, cholesky_update

_jit_update = jax.jit(cholesky_update)  # one compilation per shape across hypothesis examples


def _spd(seed, batch, n, dtype=jnp.float64):
    G = jax.random.normal(jax.random.key(seed), (*batch, n, n), dtype)
    return G @ jnp.swapaxes(G, -1, -2) + n * jnp.eye(n, dtype=dtype)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**16),
    shapes=st.sampled_from([((), 1, 1, True), ((3,), 5, 1, True), ((2, 2), 4, 3, False)]),
)
def test_cholesky_update_matches_fresh_factorisation(x64, seed, shapes):
    batch, n, m, rank_one = shapes
    A = _spd(seed, batch, n)
    L = jnp.linalg.cholesky(A)
    shape = (*batch, n) if rank_one else (*batch, n, m)
    U = jax.random.normal(jax.random.key(seed + 1), shape)
    UU = U[..., None] * U[..., None, :] if rank_one else U @ jnp.swapaxes(U, -1, -2)
    expected = jnp.linalg.cholesky(A + UU)
    np.testing.assert_allclose(_jit_update(L, U), expected, rtol=1e-10, atol=1e-10)


def test_cholesky_update_broadcasts_a_single_update_over_batched_factors(x64):
    A = _spd(0, (4,), 5)
    u = jax.random.normal(jax.random.key(1), (5, 2))
    out = cholesky_update(jnp.linalg.cholesky(A), u)
    np.testing.assert_allclose(out, jnp.linalg.cholesky(A + u @ u.T), rtol=1e-10)


def test_cholesky_update_is_jittable_and_differentiable(x64):
    A = _spd(2, (), 4)
    L = jnp.linalg.cholesky(A)
    u = jnp.arange(1.0, 5.0)
    out = jax.jit(cholesky_update)(L, u)
    np.testing.assert_allclose(out, jnp.linalg.cholesky(A + jnp.outer(u, u)), rtol=1e-10)
    g = jax.grad(lambda u: jnp.sum(cholesky_update(L, u) ** 2))(u)
    np.testing.assert_allclose(g, 2.0 * u, rtol=1e-8)  # ||L'||_F^2 = tr(A) + u.u


def test_cholesky_update_works_in_float32():
    A = _spd(3, (), 6, jnp.float32)
    U = jax.random.normal(jax.random.key(4), (6, 2), jnp.float32)
    out = cholesky_update(jnp.linalg.cholesky(A), U)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, jnp.linalg.cholesky(A + U @ U.T), rtol=1e-4, atol=1e-4)


def test_cholesky_update_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="U must have shape"):
        cholesky_update(jnp.eye(3), jnp.ones((4, 2)))


def test_cholesky_adds_jitter_and_matches_numpy(x64):
    A = _spd(5, (), 4)
    np.testing.assert_allclose(
        cholesky(A, jitter=1e-3), np.linalg.cholesky(np.asarray(A) + 1e-3 * np.eye(4))
    )


def test_cholesky_escalates_jitter_for_a_singular_matrix(x64):
    v = jnp.arange(1.0, 5.0)
    A = jnp.outer(v, v)  # rank one: the first attempt without enough jitter fails
    L = cholesky(A, jitter=1e-14, max_tries=8)
    assert bool(jnp.all(jnp.isfinite(L)))
    np.testing.assert_allclose(L @ L.T, A, atol=1e-5)


def test_cholesky_raises_clear_error_eagerly_and_under_jit():
    with pytest.raises(ValueError, match=r"Kuu .* not positive definite"):
        cholesky(-jnp.eye(3), name="Kuu")
    with pytest.raises(Exception, match=r"Kuu .* not positive definite"):
        jax.jit(lambda A: cholesky(A, name="Kuu"))(-jnp.eye(3)).block_until_ready()


def test_cholesky_rejects_non_square_input():
    with pytest.raises(ValueError, match="must be square"):
        cholesky(jnp.ones((2, 3)))


def test_cholesky_passes_nan_input_through_instead_of_raising():
    A = jnp.full((2, 2), jnp.nan)
    assert bool(jnp.any(jnp.isnan(jax.jit(cholesky)(A))))


def test_gradient_is_finite_when_the_first_jitter_fails(x64):
    v = jnp.arange(1.0, 4.0)

    def loss(s):
        return jnp.sum(cholesky(s * jnp.outer(v, v), jitter=1e-14, max_tries=8))

    assert bool(jnp.isfinite(jax.grad(loss)(1.0)))
