"""Numerically careful linear algebra for Gaussian models.

Two tools the sparse-GP code leans on:

- :func:`cholesky` factors a symmetric positive-definite matrix after adding a small diagonal
  jitter, escalating the jitter tenfold when the factor fails, and raising a
  :class:`CholeskyError` (a ``ValueError``) that names the matrix when every attempt fails,
  instead of handing back NaNs. Inside ``jit`` JAX wraps that error in a ``JaxRuntimeError``;
  :func:`cholesky_errors` unwraps it.
- :func:`cholesky_update` turns the factor ``L`` of ``A = L L^T`` into the factor of
  ``A + U U^T`` block by block in ``O(N^2 (b + M))`` operations, rather than the ``O(N^3)`` of
  a fresh factorisation.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.linalg import solve_triangular

__all__ = ["CholeskyError", "cholesky", "cholesky_errors", "cholesky_update"]


class CholeskyError(ValueError):
    """A finite matrix that stays indefinite after every jitter :func:`cholesky` tries."""


#: Appended to the message raised from inside ``jit``, where JAX wraps it in a
#: ``JaxRuntimeError`` after a traceback; :func:`cholesky_errors` strips it again.
_INSIDE_JIT = (
    " [raised inside jit: run the call under `with numpyro_ext.linalg.cholesky_errors():` to "
    "get this CholeskyError on its own]"
)


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _failure_message(name: str, size: int, jitter: float) -> str:
    return (
        f"cholesky: {name} ({size} x {size}) is not positive definite even after adding "
        f"{jitter:.1e} to its diagonal; check the kernel hyperparameters for NaN/inf, "
        "remove duplicated inputs, normalise the inputs, or enable float64"
    )


def _raise_failure(failed, name: str, size: int, jitter: float, traced: bool = False):
    if np.any(np.asarray(failed)):
        raise CholeskyError(_failure_message(name, size, jitter) + (_INSIDE_JIT if traced else ""))
    return np.zeros((), np.float32)


_MESSAGE = re.compile(r"CholeskyError: (cholesky: [^\n]*?)(?: \[raised inside jit|\n|$)")


@contextlib.contextmanager
def cholesky_errors() -> Iterator[None]:
    """Re-raise a :class:`CholeskyError` that escaped a ``jit`` as itself.

    Inside a compiled program the failure of :func:`cholesky` reaches Python as a
    ``jax.errors.JaxRuntimeError`` ("INTERNAL: CpuCallback error ...") whose text ends with a
    traceback and, last, the readable message. Run the compiled call in this context (or
    decorate the function calling it) and that error becomes a ``CholeskyError``, a
    ``ValueError`` naming the matrix and the fix, chained to the original. Other errors pass
    through untouched. numpyro_ext's own compiled functions (the collapsed bound and its
    predictions) already use it.

    >>> import jax, jax.numpy as jnp
    >>> try:
    ...     with cholesky_errors():
    ...         jax.block_until_ready(jax.jit(cholesky)(-jnp.eye(2)))
    ... except CholeskyError as error:
    ...     print(str(error)[:44])
    cholesky: matrix (2 x 2) is not positive def
    """
    try:
        yield
    except jax.errors.JaxRuntimeError as error:
        match = _MESSAGE.search(str(error))
        if match is None:
            raise
        raise CholeskyError(match.group(1)) from error


def _report_failure(bad, name: str, size: int, jitter: float) -> jax.Array:
    """Raise from inside ``jit`` when ``bad``; returns a zero to add to the result.

    A ``pure_callback`` (no side effect, so ``jit`` keeps its fast dispatch path) whose result
    is used, behind a ``lax.cond`` so that the host is only called when ``bad``. Under ``vmap``
    there is no check: the failed matrices keep their NaN factor. A host callback inside a
    vmapped program can wedge XLA:CPU (every thread parked, the caller waiting forever; seen
    with a vmapped ``Trace_ELBO`` of a GP model), and a batched ``cond`` would become a
    ``select`` that calls the host every time.
    """
    zero = jax.ShapeDtypeStruct((), np.float32)

    @jax.custom_batching.custom_vmap
    def check(bad):
        report = partial(_raise_failure, name=name, size=size, jitter=jitter, traced=True)
        call = lambda bad: jax.pure_callback(report, zero, bad)  # noqa: E731
        return lax.cond(bad, call, lambda bad: jnp.zeros((), np.float32), bad)

    @check.def_vmap
    def check_batch(axis_size, in_batched, bad):
        return jnp.zeros((), np.float32), False

    return check(bad)


def _jitters(jitter: float, max_tries: int) -> list[float]:
    """The escalating jitters: ``jitter * 10^k``, or ``1e-8 * 10^k`` after a zero first try."""
    if jitter > 0:
        return [jitter * 10.0**k for k in range(max_tries)]
    return [0.0] + [10.0 ** (k - 8) for k in range(1, max_tries)]


def _failed(L: jax.Array) -> jax.Array:
    """Which factors (one per matrix of the batch) came out with NaN."""
    return jnp.any(jnp.isnan(L), axis=(-2, -1))


@partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3, 4))
def _jittered_cholesky(
    A: jax.Array, jitter: float, max_tries: int, name: str, traced: bool
) -> jax.Array:
    """Factor ``A + eps I`` once; retry with larger ``eps`` only for the matrices that failed."""
    jitters = _jitters(jitter, max_tries)
    eye = jnp.eye(A.shape[-1], dtype=A.dtype)
    L = jnp.linalg.cholesky(A + jnp.asarray(jitters[0], A.dtype) * eye)
    if max_tries == 1:
        if traced:
            L = L + _report_failure(_bad(L, A), name, A.shape[-1], jitters[-1]).astype(L.dtype)
        return L
    eps = jnp.asarray(jitters, A.dtype)

    def retry(carry):
        k, L = carry
        again = _failed(L)[..., None, None]
        L = jnp.where(again, jnp.linalg.cholesky(A + eps[k] * eye), L)
        if traced:  # only the failure path enters this loop: the check costs nothing otherwise
            bad = (k == max_tries - 1) & _bad(L, A)
            L = L + _report_failure(bad, name, A.shape[-1], jitters[-1]).astype(L.dtype)
        return k + 1, L

    def again(carry):
        return (carry[0] < max_tries) & jnp.any(_failed(carry[1]))

    return lax.while_loop(again, retry, (1, L))[1]


@_jittered_cholesky.defjvp
def _jittered_cholesky_jvp(jitter, max_tries, name, traced, primals, tangents):
    # Derivative of the factor of A + eps I with respect to A (Murray 2016, "Differentiation of
    # the Cholesky decomposition", eq. 9), taken at the factor returned: a failed first attempt
    # never reaches the gradient.
    (A,), (dA,) = primals, tangents
    L = _jittered_cholesky(A, jitter, max_tries, name, traced)
    dA = 0.5 * (dA + jnp.swapaxes(dA, -1, -2))
    tmp = lax.linalg.triangular_solve(L, dA, left_side=False, transpose_a=True, lower=True)
    S = lax.linalg.triangular_solve(L, tmp, left_side=True, lower=True)
    half_diagonal = jnp.where(jnp.eye(A.shape[-1], dtype=bool), 0.5, 1.0).astype(S.dtype)
    return L, L @ (jnp.tril(S) * half_diagonal)


def _bad(L: jax.Array, A: jax.Array) -> jax.Array:
    """A finite ``A`` whose factor still holds NaN (NaN/inf in ``A`` passes through)."""
    return jnp.any(_failed(L) & jnp.all(jnp.isfinite(A), axis=(-2, -1)))


def cholesky(
    A: jax.Array, jitter: float = 1e-6, max_tries: int = 3, name: str = "matrix"
) -> jax.Array:
    r"""Lower Cholesky factor of ``A + jitter I``, escalating the jitter when that fails.

    Factors :math:`A + \epsilon I` once; only a matrix whose factor contains NaN is factored
    again, with :math:`10\epsilon, \dots, 10^{T-1}\epsilon` in turn (a ``lax.while_loop`` that
    a well-conditioned matrix never enters). The gradient is the Cholesky derivative at the
    factor returned, so a failed attempt cannot put NaN into it. When every attempt fails on a
    finite matrix it raises :class:`CholeskyError` (eagerly, or from inside ``jit``, where JAX
    wraps it in a ``JaxRuntimeError`` that :func:`cholesky_errors` unwraps; under ``vmap`` the
    factor of that matrix is NaN instead, see :func:`_report_failure`); a matrix that already
    contains NaN or inf gives a NaN factor, so that samplers can reject the proposal that
    produced it. Batched input ``(..., N, N)`` escalates each matrix separately.

    :param A: symmetric positive semi-definite matrix, shape ``(..., N, N)``.
    :param jitter: first diagonal jitter :math:`\epsilon` (``0`` tries the matrix as it is,
        then :math:`10^{-7}, 10^{-6}, \dots`).
    :param max_tries: how many jitters to try.
    :param name: what the matrix is, for the error message.
    :return: lower-triangular ``L`` with ``L L^T = A + \epsilon I``.

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
    traced = not _is_concrete(A)
    L = _jittered_cholesky(A, float(jitter), int(max_tries), name, traced)
    if not traced:
        _raise_failure(_bad(L, A), name, A.shape[-1], _jitters(jitter, max_tries)[-1])
    return L


def _block_size(n: int, m: int) -> int:
    # Per block the work is O(N (b^2 + b M + M^2)) and the blocks run one after another; 64
    # keeps BLAS busy, >= M keeps the M x M factor amortised, and at most ~32 blocks keep the
    # unrolled program (and its compile time) small.
    return max(64, m, -(-n // 32))


def _blocked_update(L: jax.Array, U: jax.Array, b: int) -> jax.Array:
    """Factor of ``L L^T + U U^T`` for one ``(N, N)`` factor and one ``(N, M)`` update.

    Column block by column block (sizes known at trace time, so the loop is unrolled): with
    ``L11``, ``U1`` the rows of the block and ``L21``, ``U2`` those below,

    - ``L11' = chol(L11 L11^T + U1 U1^T)``, a ``b x b`` factorisation;
    - ``L21' = (L21 L11^T + U2 U1^T) L11'^-T``;
    - the trailing factor gets the rank-``M`` update ``U2' = (U2 - L21 T) C^-T`` with
      ``T = L11^-1 U1`` and ``C = chol(I + T^T T)``: the columns of ``[-T; I] C^-T`` span the
      null space of ``[L11, U1]`` orthonormally, so ``U2' U2'^T`` is what the block leaves over.

    Everything is a matrix product, a triangular solve or a small Cholesky (BLAS 3).
    """
    n, m = U.shape
    R, V = L.T, U.T  # block rows of R = L^T and V = U^T are contiguous
    eye = jnp.eye(m, dtype=L.dtype)
    rows = []
    for s in range(0, n, b):
        e = min(s + b, n)
        R11, V1 = R[s:e, s:e], V[:, : e - s]
        L11, U1 = R11.T, V1.T
        L11n = jnp.linalg.cholesky(L11 @ R11 + U1 @ V1)
        if e == n:
            rows.append(jnp.pad(L11n.T, ((0, 0), (s, 0))))
            break
        R12, V2 = R[s:e, e:], V[:, e - s :]
        R12n = solve_triangular(L11n, L11 @ R12 + U1 @ V2, lower=True)
        rows.append(jnp.pad(jnp.concatenate([L11n.T, R12n], 1), ((0, 0), (s, 0))))
        T = solve_triangular(L11, U1, lower=True)
        C = jnp.linalg.cholesky(eye + T.T @ T)
        V = solve_triangular(C, V2 - T.T @ R12, lower=True)
    return jnp.concatenate(rows, 0).T


def cholesky_update(L: jax.Array, U: jax.Array, *, block_size: int | None = None) -> jax.Array:
    r"""Lower Cholesky factor of :math:`L L^T + U U^T` from the factor :math:`L`.

    A blocked low-rank update: the columns are processed in blocks of ``b``; each block takes
    one ``b x b`` Cholesky, triangular solves and matrix products, and hands a rank-``M``
    update to the rest (see :func:`_blocked_update`), :math:`O(N^2 (b + M + M^2 / b))` in all
    against :math:`O(N^3)` for forming and factoring :math:`L L^T + U U^T` afresh. It is exact
    (no downdating, so no cancellation beyond a fresh factorisation's). When ``N <= b`` it is
    a fresh factorisation.

    ``L`` must be a Cholesky factor: lower triangular with a positive diagonal. A concrete
    ``L`` that is not (an upper-triangular factor, a zero or negative pivot) raises
    ``ValueError``; a traced one gives a NaN result for that matrix. The check costs
    :math:`O(N^2)`, against the update's :math:`O(N^2 M)`.

    :param L: lower-triangular factor with a positive diagonal, shape ``(..., N, N)``.
    :param U: update, shape ``(..., N, M)`` (rank ``M``), or ``(N,)`` / ``L.shape[:-1]``
        (rank one); its batch dimensions broadcast against those of ``L``.
    :param block_size: columns per block ``b``; by default ``max(64, M, ceil(N / 32))``.
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
    m = U.shape[-1]
    if block_size is not None and block_size < 1:
        raise ValueError(f"cholesky_update: block_size must be >= 1, got {block_size}")
    b = _block_size(n, m) if block_size is None else int(block_size)
    dtype = jnp.result_type(L, U)
    if not jnp.issubdtype(dtype, jnp.inexact):
        dtype = jax.dtypes.canonicalize_dtype(jnp.float64)
    not_factor = jnp.any(jnp.triu(L, 1) != 0, axis=(-2, -1)) | jnp.any(
        jnp.diagonal(L, axis1=-2, axis2=-1) <= 0, axis=-1
    )
    if _is_concrete(not_factor) and bool(jnp.any(not_factor)):
        upper = bool(jnp.any(jnp.triu(L, 1) != 0))
        raise ValueError(
            "cholesky_update: L must be a lower-triangular Cholesky factor with a positive "
            "diagonal; "
            + (
                "its strict upper triangle is not zero (pass L.T if you hold the upper factor)"
                if upper
                else "its diagonal has a zero or negative entry"
            )
        )
    batch = jnp.broadcast_shapes(L.shape[:-2], U.shape[:-2])
    L = jnp.broadcast_to(L, (*batch, n, n)).astype(dtype).reshape((-1, n, n))
    U = jnp.broadcast_to(U, (*batch, n, m)).astype(dtype).reshape((-1, n, m))
    update = partial(_blocked_update, b=b)
    result = jax.vmap(update)(L, U).reshape((*batch, n, n))
    bad = jnp.broadcast_to(not_factor, batch)[..., None, None]
    return jnp.where(bad, jnp.asarray(jnp.nan, dtype), result)
