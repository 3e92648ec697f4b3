"""Tests for numpyro_ext.linalg: jitter-safe Cholesky and low-rank Cholesky updates."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jax.extend.core import jaxprs_in_params

from numpyro_ext.linalg import CholeskyError, cholesky, cholesky_errors, cholesky_update

# one compilation per (shape, block size) across hypothesis examples
_jit_update = jax.jit(cholesky_update, static_argnames="block_size")


def _spd(seed, batch, n, dtype=jnp.float64):
    G = jax.random.normal(jax.random.key(seed), (*batch, n, n), dtype)
    return G @ jnp.swapaxes(G, -1, -2) + n * jnp.eye(n, dtype=dtype)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**16),
    shapes=st.sampled_from([((), 1, 1, True), ((3,), 5, 1, True), ((2, 2), 7, 3, False)]),
    block_size=st.sampled_from([None, 1, 2, 3]),
)
def test_cholesky_update_matches_fresh_factorisation(x64, seed, shapes, block_size):
    # small blocks exercise the blocked path (several blocks, a ragged last one) on small N
    batch, n, m, rank_one = shapes
    A = _spd(seed, batch, n)
    L = jnp.linalg.cholesky(A)
    shape = (*batch, n) if rank_one else (*batch, n, m)
    U = jax.random.normal(jax.random.key(seed + 1), shape)
    UU = U[..., None] * U[..., None, :] if rank_one else U @ jnp.swapaxes(U, -1, -2)
    expected = jnp.linalg.cholesky(A + UU)
    out = _jit_update(L, U, block_size=block_size)
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-10)


def test_cholesky_update_with_many_blocks_and_a_wide_update(x64):
    A = _spd(7, (2,), 40)
    U = jax.random.normal(jax.random.key(8), (2, 40, 12))  # M > block size: C is 12 x 12
    for block_size in (None, 8):
        out = _jit_update(jnp.linalg.cholesky(A), U, block_size=block_size)
        expected = jnp.linalg.cholesky(A + U @ jnp.swapaxes(U, -1, -2))
        np.testing.assert_allclose(out, expected, rtol=1e-9, atol=1e-11)
        assert bool(jnp.all(jnp.triu(out, 1) == 0))


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
    for block_size in (None, 1):
        g = jax.grad(lambda u, b=block_size: jnp.sum(cholesky_update(L, u, block_size=b) ** 2))(u)
        np.testing.assert_allclose(g, 2.0 * u, rtol=1e-8)  # ||L'||_F^2 = tr(A) + u.u


def test_cholesky_update_works_in_float32():
    A = _spd(3, (), 6, jnp.float32)
    U = jax.random.normal(jax.random.key(4), (6, 2), jnp.float32)
    out = cholesky_update(jnp.linalg.cholesky(A), U)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, jnp.linalg.cholesky(A + U @ U.T), rtol=1e-4, atol=1e-4)


def test_cholesky_update_rejects_mismatched_shapes_and_bad_block_size():
    with pytest.raises(ValueError, match="U must have shape"):
        cholesky_update(jnp.eye(3), jnp.ones((4, 2)))
    with pytest.raises(ValueError, match="block_size must be >= 1"):
        cholesky_update(jnp.eye(3), jnp.ones(3), block_size=0)


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


def test_under_vmap_a_matrix_no_jitter_rescues_gets_a_nan_factor(x64):
    A = jnp.stack([jnp.eye(3), -jnp.eye(3)])
    L = jax.jit(jax.vmap(lambda A: cholesky(A, name="Kuu")))(A)
    np.testing.assert_allclose(L[0], np.linalg.cholesky(np.eye(3) * (1 + 1e-6)))
    assert bool(jnp.all(jnp.isnan(L[1][jnp.tril_indices(3)])))


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


def test_cholesky_gradient_matches_jax_cholesky_of_the_jittered_matrix(x64):
    A = _spd(9, (3,), 4)
    W = jax.random.normal(jax.random.key(10), (3, 4, 4))

    def ours(A):
        return jnp.sum(W * cholesky(A, jitter=1e-3))

    def plain(A):
        return jnp.sum(W * jnp.linalg.cholesky(A + 1e-3 * jnp.eye(4)))

    grads = jax.jit(lambda A: (jax.grad(ours)(A), jax.grad(plain)(A)))(A)
    np.testing.assert_allclose(*grads, rtol=1e-10, atol=1e-12)
    hessians = jax.jit(lambda A: (jax.hessian(ours)(A), jax.hessian(plain)(A)))(A)
    np.testing.assert_allclose(*hessians, atol=1e-10)


def _count(jaxpr, name):
    """Occurrences of primitive ``name`` outside loops (a loop body runs only on failure)."""
    n = 0
    for eqn in jaxpr.eqns:
        n += eqn.primitive.name == name
        if eqn.primitive.name != "while":
            for sub in jaxprs_in_params(eqn.params):
                n += _count(sub, name)
    return n


def test_a_well_conditioned_matrix_is_factored_once_even_under_grad(x64):
    A = _spd(11, (), 6)
    forward = jax.make_jaxpr(lambda A: cholesky(A))(A).jaxpr
    backward = jax.make_jaxpr(jax.grad(lambda A: jnp.sum(cholesky(A))))(A).jaxpr
    assert _count(forward, "cholesky") == 1
    assert _count(backward, "cholesky") == 1


def test_batched_cholesky_escalates_only_the_matrix_that_fails(x64):
    A = _spd(12, (3,), 4)
    v = jnp.arange(1.0, 5.0)
    A = A.at[1].set(jnp.outer(v, v))  # rank one: needs a larger jitter than the others
    L = jax.jit(lambda A: cholesky(A, jitter=1e-12, max_tries=8))(A)
    assert bool(jnp.all(jnp.isfinite(L)))
    np.testing.assert_allclose(L[0], jnp.linalg.cholesky(A[0] + 1e-12 * jnp.eye(4)), rtol=1e-12)
    np.testing.assert_allclose(L[1] @ L[1].T, A[1], atol=1e-5)


def test_failure_inside_jit_is_reraised_readably_by_cholesky_errors():
    # Inside jit JAX wraps the callback's error in a JaxRuntimeError whose text opens with
    # "INTERNAL: CpuCallback error" and a traceback; cholesky_errors gives the message back.
    with pytest.raises(jax.errors.JaxRuntimeError, match=r"cholesky_errors"):
        jax.jit(lambda A: cholesky(A, name="Kuu"))(-jnp.eye(3)).block_until_ready()
    with pytest.raises(CholeskyError, match=r"^cholesky: Kuu \(3 x 3\) is not positive") as info:
        with cholesky_errors():
            jax.jit(lambda A: cholesky(A, name="Kuu"))(-jnp.eye(3)).block_until_ready()
    assert "CpuCallback" not in str(info.value) and "raised inside jit" not in str(info.value)
    assert isinstance(info.value, ValueError)
    with pytest.raises(ZeroDivisionError), cholesky_errors():  # other errors pass untouched
        _ = 1 / 0


def test_cholesky_update_refuses_an_upper_triangular_factor(x64):
    # N > 64, so the blocked path runs; an upper factor used to give a wrong "factor".
    A = np.eye(100) + 0.1
    upper = np.linalg.cholesky(A).T
    with pytest.raises(ValueError, match="strict upper triangle is not zero"):
        cholesky_update(upper, np.ones(100))
    with pytest.raises(ValueError, match="zero or negative entry"):
        cholesky_update(-np.eye(3), np.ones(3))
    # Traced, the check cannot raise: that matrix's result is NaN instead.
    out = jax.jit(cholesky_update)(jnp.stack([upper.T, upper]), jnp.ones(100))
    assert bool(jnp.all(jnp.isfinite(out[0]))) and bool(jnp.all(jnp.isnan(out[1])))


def test_cholesky_update_promotes_integer_input():
    L = cholesky_update(jnp.eye(2, dtype=jnp.int32), jnp.array([0, 1]))
    assert jnp.issubdtype(L.dtype, jnp.floating)
    np.testing.assert_allclose(L, [[1.0, 0.0], [0.0, 2.0**0.5]], rtol=1e-6)
