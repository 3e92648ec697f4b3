"""Householder reflections (Tomczak & Welling 2016): \\(H = I - 2 v v^\\top / \\|v\\|^2\\).

Each reflection is orthogonal and its own inverse, so \\(\\log|\\det J| = 0\\) (constant
Jacobian). ``k`` reflections compose to any orthogonal matrix for ``k >= d``: a learnable
rotation of the latent space, as in Householder flows and orthogonal Sylvester flows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from numpyro_ext.transforms.bijector import Bijector

__all__ = ["Householder", "householder_matrix"]


def _reflect(x, v):
    coef = 2 * jnp.sum(x * v, -1, keepdims=True) / jnp.sum(v**2, -1, keepdims=True)
    return x - coef * v


def householder_matrix(vectors):
    """The orthogonal matrix \\(H_{k} \\cdots H_1\\) of reflections ``vectors`` ``(k, d)``.

    :param vectors: reflection vectors, applied first row first.
    """
    d = vectors.shape[-1]
    return jax.vmap(lambda e: Householder(vectors).forward(e), out_axes=1)(jnp.eye(d))


class Householder(Bijector):
    """Product of reflections, applied in row order: \\(y = H_{v_k} \\cdots H_{v_1} x\\).

    :param vectors: ``(d,)`` or ``(k, d)`` non-zero reflection vectors.

    >>> import jax.numpy as jnp
    >>> Householder(jnp.array([1.0, 0.0])).forward(jnp.array([2.0, 3.0])).tolist()
    [-2.0, 3.0]
    """

    forward_min_event_ndims = 1
    is_constant_jacobian = True
    _leaves = ("vectors",)

    def __init__(self, vectors) -> None:
        vectors = jnp.asarray(vectors)
        if vectors.ndim == 1:
            vectors = vectors[None]
        zero = jnp.any(jnp.sum(vectors**2, -1) == 0)
        if not isinstance(zero, jax.core.Tracer) and bool(zero):
            raise ValueError("Householder: reflection vectors must be non-zero")
        self.vectors = vectors

    @classmethod
    def init(cls, key, dim: int, num_reflections: int | None = None) -> Householder:
        """Random unit-variance vectors.

        :param key: PRNG key.
        :param dim: event size.
        :param num_reflections: number of reflections (default ``dim``).
        """
        return cls(jax.random.normal(key, (num_reflections or dim, dim)))

    def _apply(self, x, order):
        for i in order:
            x = _reflect(x, self.vectors[i])
        return x, jnp.zeros(jnp.shape(x)[:-1], x.dtype)

    def _forward_and_log_det(self, x):
        return self._apply(x, range(self.vectors.shape[0]))

    def _inverse_and_log_det(self, y):
        return self._apply(y, reversed(range(self.vectors.shape[0])))
