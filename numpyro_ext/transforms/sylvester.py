"""Orthogonal Sylvester flow (van den Berg et al. 2018).

\\[ y = x + Q R\\, \\tanh(\\tilde R Q^\\top x + b), \\]

with \\(Q\\) orthogonal (a product of Householder reflections) and \\(R, \\tilde R\\) upper
triangular. By Sylvester's determinant identity
\\(\\log|\\det J| = \\sum_i \\log|1 + R_{ii} \\tilde R_{ii} \\tanh'(a_i)|\\). Invertibility
needs \\(R_{ii}\\tilde R_{ii} > -1\\); the diagonals are \\(\\tanh\\) of free parameters, as
in the paper.

Inverse (numerical, documented): with \\(v = Q^\\top x\\) and \\(w = Q^\\top y\\),
\\(w = v + R \\tanh(\\tilde R v + b)\\) is upper triangular in \\(v\\), so coordinates are
recovered from last to first, each from an increasing scalar equation solved by bisection
(:func:`~numpyro_ext.transforms.monotone_inverse.solve_increasing`). A failed solve raises
(eager) or gives NaN (traced).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from numpyro_ext.transforms.bijector import Bijector
from numpyro_ext.transforms.householder import householder_matrix
from numpyro_ext.transforms.monotone_inverse import raise_if_not_converged, solve_increasing

__all__ = ["Sylvester"]


def _triangular(raw):
    d = raw.shape[-1]
    upper = jnp.triu(raw, 1)
    return upper + jnp.tanh(jnp.diagonal(raw, axis1=-2, axis2=-1))[..., None, :] * jnp.eye(d)


class Sylvester(Bijector):
    """\\(y = x + Q R \\tanh(\\tilde R Q^\\top x + b)\\).

    :param q_vectors: Householder vectors ``(k, d)`` defining \\(Q\\).
    :param raw_r: ``(d, d)``; strict upper part of \\(R\\), diagonal through ``tanh``.
    :param raw_r_tilde: ``(d, d)``; the same for \\(\\tilde R\\).
    :param b: ``(d,)`` bias.

    >>> import jax, jax.numpy as jnp
    >>> flow = Sylvester.init(jax.random.key(0), 3)
    >>> x = jnp.array([0.1, -0.4, 0.3])
    >>> bool(jnp.allclose(flow.inverse(flow.forward(x)), x, atol=1e-5))
    True
    """

    forward_min_event_ndims = 1
    _leaves = ("q_vectors", "raw_r", "raw_r_tilde", "b")

    def __init__(self, q_vectors, raw_r, raw_r_tilde, b) -> None:
        self.q_vectors = jnp.asarray(q_vectors)
        self.raw_r = jnp.asarray(raw_r)
        self.raw_r_tilde = jnp.asarray(raw_r_tilde)
        self.b = jnp.asarray(b)
        d = self.b.shape[-1]
        for name in ("raw_r", "raw_r_tilde"):
            if getattr(self, name).shape[-2:] != (d, d):
                raise ValueError(
                    f"Sylvester: {name} must be ({d}, {d}), got {getattr(self, name).shape}"
                )

    @classmethod
    def init(cls, key, dim: int, scale: float = 0.3) -> Sylvester:
        """Random parameters of the given scale, ``dim`` Householder vectors.

        :param key: PRNG key.
        :param dim: event size.
        :param scale: standard deviation of the triangular entries.
        """
        k = jax.random.split(key, 4)
        return cls(
            jax.random.normal(k[0], (dim, dim)),
            scale * jax.random.normal(k[1], (dim, dim)),
            scale * jax.random.normal(k[2], (dim, dim)),
            scale * jax.random.normal(k[3], (dim,)),
        )

    def _parts(self, dtype):
        q = householder_matrix(self.q_vectors.astype(dtype))
        r = _triangular(self.raw_r.astype(dtype))
        return q, r, _triangular(self.raw_r_tilde.astype(dtype))

    def _forward_and_log_det(self, x):
        q, r, rt = self._parts(x.dtype)
        v = x @ q
        a = v @ rt.T + self.b
        y = x + jnp.tanh(a) @ r.T @ q.T
        diag = jnp.diagonal(r) * jnp.diagonal(rt)
        return y, jnp.sum(jnp.log1p(diag * (1 - jnp.tanh(a) ** 2)), -1)

    def _inverse_and_log_det(self, y):
        q, r, rt = self._parts(y.dtype)
        w = y @ q
        d = w.shape[-1]

        def solve(i, state):
            v, ok = state
            i = d - 1 - i
            later = jnp.arange(d) > i
            v_later = jnp.where(later, v, 0.0)
            a_later = jnp.where(later, v_later @ rt.T + self.b, 0.0)
            rhs = w[..., i] - jnp.sum(r[i] * jnp.where(later, jnp.tanh(a_later), 0.0), -1)
            c = self.b[i] + jnp.sum(rt[i] * v_later, -1)
            r_ii, rt_ii = r[i, i], rt[i, i]
            width = jnp.abs(r_ii) * 1.001 + 1e-6

            def fn(t):
                return t + r_ii * jnp.tanh(rt_ii * t + c)

            root, converged = solve_increasing(fn, rhs, rhs - width, rhs + width)
            return v.at[..., i].set(root), ok & converged

        v, ok = lax.fori_loop(0, d, solve, (jnp.zeros_like(w), jnp.ones(w.shape[:-1], bool)))
        v = raise_if_not_converged(ok[..., None], v, "Sylvester")
        x = v @ q.T
        return x, -self._forward_and_log_det(x)[1]
