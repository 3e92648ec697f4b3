"""Numerically careful linear algebra for Gaussian models.

Two tools the sparse-GP code leans on:

- :func:`cholesky` factors a symmetric positive-definite matrix after adding a small diagonal
  jitter, escalating the jitter tenfold when the factor fails, and raising a ``ValueError`` that
  names the matrix when every attempt fails, instead of handing back NaNs.
- :func:`cholesky_update` turns the factor ``L`` of ``A = L L^T`` into the factor of
  ``A + U U^T`` in ``O(N^2 M)`` operations (Seeger 2004), rather than the ``O(N^3)`` of a fresh
  factorisation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["cholesky", "cholesky_update"]


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _raise_failure(failed, name: str, size: int, jitter: float) -> None:
    if np.any(np.asarray(failed)):
        raise ValueError(
            f"cholesky: {name} ({size} x {size}) is not positive definite even after adding "
            f"{jitter:.1e} to its diagonal; check the kernel hyperparameters for NaN/inf, "
            "remove duplicated inputs, normalise the inputs, or enable float64"
        )


def _report_failure(bad, name: str, size: int, jitter: float):
    """Raise from inside ``jit`` when ``bad``; under ``vmap`` one check for the whole batch."""

    @jax.custom_batching.custom_vmap
    def check(bad):
        report = lambda: jax.debug.callback(_raise_failure, bad, name, size, jitter)  # noqa: E731
        lax.cond(bad, report, lambda: None)
        return bad

    @check.def_vmap
    def check_batch(axis_size, in_batched, bad):
        check(jnp.any(bad))
        return bad, in_batched[0]

    return check(bad)


def cholesky(
    A: jax.Array, jitter: float = 1e-6, max_tries: int = 3, name: str = "matrix"
) -> jax.Array:
    r"""Lower Cholesky factor of ``A + jitter I``, escalating the jitter when that fails.

    Tries :math:`\epsilon, 10\epsilon, \dots, 10^{T-1}\epsilon` in turn (only while the
    previous factor contains NaN), so a well-conditioned matrix costs one factorisation.
    When every attempt fails on a finite matrix it raises ``ValueError`` (eagerly, or from
    inside ``jit``); a matrix that already contains NaN or inf gives a NaN factor, so that
    samplers can reject the proposal that produced it.

    :param A: symmetric positive semi-definite matrix, shape ``(..., N, N)``.
    :param jitter: first diagonal jitter :math:`\epsilon`.
    :param max_tries: how many jitters to try.
    :param name: what the matrix is, for the error message.
    :return: lower-triangular ``L`` with ``L L^T = A + jitter I``.

    >>> import jax.numpy as jnp
    >>> L = cholesky(jnp.array([[4.0, 2.0], [2.0, 2.0]]), jitter=0.0)
    >>> L.tolist()
    [[2.0, 0.0], [1.0, 1.0]]
    """
    A = jnp.asarray(A)
    if A.ndim < 2 or A.shape[-1] != A.shape[-2]:
        raise ValueError(f"cholesky: {name} must be square (..., N, N), got shape {A.shape}")
    if max_tries < 1:
        raise ValueError(f"cholesky: max_tries must be >= 1, got {max_tries}")
    eye = jnp.eye(A.shape[-1], dtype=A.dtype)
    # Find the jitter on a gradient-free copy, then factor once: a failed trial factor must not
    # reach the backward pass (its NaNs would poison the gradient even when not selected).
    A_trial = lax.stop_gradient(A)

    def failed(L):
        return jnp.any(jnp.isnan(L))

    eps = jnp.asarray(jitter, A.dtype)
    L = jnp.linalg.cholesky(A_trial + eps * eye)
    for k in range(1, max_tries):
        retry = failed(L)
        eps_k = jitter * 10.0**k if jitter > 0 else 10.0 ** (k - 8)
        eps = jnp.where(retry, jnp.asarray(eps_k, A.dtype), eps)
        L = lax.cond(retry, lambda e=eps_k: jnp.linalg.cholesky(A_trial + e * eye), lambda L=L: L)
    last = jitter * 10.0 ** (max_tries - 1) if jitter > 0 else 10.0 ** (max_tries - 9)
    # A matrix that already holds NaN/inf passes it on (HMC rejects such proposals); a finite
    # matrix that no jitter makes positive definite is an error.
    bad = failed(L) & jnp.all(jnp.isfinite(A_trial))
    if _is_concrete(bad):
        _raise_failure(bad, name, A.shape[-1], last)
    else:
        _report_failure(bad, name, A.shape[-1], last)
    L = jnp.linalg.cholesky(A + eps * eye)
    return L


def _rank_one_update(L: jax.Array, x: jax.Array) -> jax.Array:
    """Factor of ``L L^T + x x^T`` for one (N, N) factor and one (N,) vector."""
    n = L.shape[-1]
    rows = jnp.arange(n)

    def step(k, carry):
        R, x = carry  # R = L^T: column k of L is the contiguous row k of R
        col = lax.dynamic_index_in_dim(R, k, keepdims=False)
        lkk, xk = col[k], x[k]
        r = jnp.hypot(lkk, xk)
        c, s = r / lkk, xk / lkk
        below = rows > k
        new_col = jnp.where(below, (col + s * x) / c, jnp.where(rows == k, r, col))
        new_x = jnp.where(below, c * x - s * new_col, x)
        return lax.dynamic_update_index_in_dim(R, new_col, k, 0), new_x

    return lax.fori_loop(0, n, step, (L.T, x))[0].T


def cholesky_update(L: jax.Array, U: jax.Array) -> jax.Array:
    r"""Lower Cholesky factor of :math:`L L^T + U U^T` from the factor :math:`L`.

    A sequence of rank-one updates (Seeger 2004, "Low rank updates for the Cholesky
    decomposition"), each a ``lax.fori_loop`` of Givens-like rotations: :math:`O(N^2 M)` for a
    rank-``M`` update. ``L`` must have a positive diagonal.

    :param L: lower-triangular factor, shape ``(..., N, N)``.
    :param U: update, shape ``(..., N, M)`` (rank ``M``), or ``(N,)`` / ``L.shape[:-1]``
        (rank one); its batch dimensions broadcast against those of ``L``.
    :return: the updated factor, shape ``broadcast(...) + (N, N)``.

    >>> import jax.numpy as jnp
    >>> L = jnp.eye(2)
    >>> L1 = cholesky_update(L, jnp.array([0.0, 1.0]))
    >>> bool(jnp.allclose(L1, jnp.array([[1.0, 0.0], [0.0, 2.0**0.5]])))
    True
    """
    L = jnp.asarray(L)
    U = jnp.asarray(U)
    if L.ndim < 2 or L.shape[-1] != L.shape[-2]:
        raise ValueError(f"cholesky_update: L must be square (..., N, N), got shape {L.shape}")
    n = L.shape[-1]
    if U.ndim == 1 or (U.ndim == L.ndim - 1 and U.shape[-1] == n):
        U = U[..., None]
    if U.ndim < 2 or U.shape[-2] != n:
        raise ValueError(
            f"cholesky_update: U must have shape (..., {n}) or (..., {n}, M) to match L of "
            f"shape {L.shape}, got {U.shape}"
        )
    dtype = jnp.result_type(L, U)
    batch = jnp.broadcast_shapes(L.shape[:-2], U.shape[:-2])
    L = jnp.broadcast_to(L, (*batch, n, n)).astype(dtype).reshape((-1, n, n))
    U = jnp.broadcast_to(U, batch + U.shape[-2:]).astype(dtype).reshape((-1, n, U.shape[-1]))

    def update(L, U):
        return lax.scan(lambda L, u: (_rank_one_update(L, u), None), L, U.T)[0]

    return jax.vmap(update)(L, U).reshape((*batch, n, n))
