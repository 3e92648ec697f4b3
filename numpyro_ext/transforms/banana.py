"""The banana (twisted Gaussian) transform of Haario et al. (1999).

\\(G(x) = (x_1,\\; x_2 - b x_1^2 - c,\\; x_3, \\dots)\\) bends a correlated Gaussian into a
banana. The Jacobian is unit lower triangular, so the map is volume preserving
(\\(\\log|\\det J| = 0\\), a constant Jacobian) and
\\(G^{-1}(y) = (y_1,\\; y_2 + b y_1^2 + c,\\; y_3, \\dots)\\).
:func:`banana_distribution` builds the distribution of the Bijector API write-up (Dillon et al.
2017): base \\(\\mathcal N(0, [[1, \\rho], [\\rho, 1]])\\), \\(\\rho = 0.95\\), ``b = c = 1``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpyro.distributions as dist

from numpyro_ext.transforms.bijector import Bijector

__all__ = ["Banana", "banana_distribution"]


class Banana(Bijector):
    """\\(G(x) = (x_1, x_2 - b x_1^2 - c, x_3, \\dots)\\), volume preserving.

    :param curvature: \\(b\\).
    :param offset: \\(c\\).

    >>> import jax.numpy as jnp
    >>> Banana().forward(jnp.array([1.0, 0.0])).tolist()
    [1.0, -2.0]
    """

    forward_min_event_ndims = 1
    is_constant_jacobian = True
    _leaves = ("curvature", "offset")

    def __init__(self, curvature=1.0, offset=1.0) -> None:
        self.curvature = jnp.asarray(curvature)
        self.offset = jnp.asarray(offset)

    def _batch_shape(self):
        return jnp.broadcast_shapes(jnp.shape(self.curvature), jnp.shape(self.offset))

    def forward_shape(self, shape):
        batch = jnp.broadcast_shapes(tuple(shape[:-1]), self._batch_shape())
        return (*batch, shape[-1])

    def inverse_shape(self, shape):
        return self.forward_shape(shape)

    def _bend(self, x, sign):
        if jnp.shape(x)[-1] < 2:
            raise ValueError(f"Banana: event size must be >= 2, got shape {jnp.shape(x)}")
        x1 = x[..., 0]
        bent = x[..., 1] + sign * (self.curvature * x1**2 + self.offset)
        x = jnp.broadcast_to(x, (*jnp.shape(bent), jnp.shape(x)[-1]))
        y = x.at[..., 1].set(bent)
        return y, jnp.zeros(jnp.shape(y)[:-1], y.dtype)

    def _forward_and_log_det(self, x):
        return self._bend(x, -1.0)

    def _inverse_and_log_det(self, y):
        return self._bend(y, 1.0)


def banana_distribution(
    rho: float = 0.95, curvature: float = 1.0, offset: float = 1.0
) -> dist.TransformedDistribution:
    """The banana: \\(G\\) applied to \\(\\mathcal N(0, [[1, \\rho], [\\rho, 1]])\\).

    :param rho: correlation of the base Gaussian.
    :param curvature: \\(b\\) of :class:`Banana`.
    :param offset: \\(c\\) of :class:`Banana`.

    >>> import jax
    >>> banana_distribution().sample(jax.random.key(0), (3,)).shape
    (3, 2)
    """
    cov = jnp.array([[1.0, rho], [rho, 1.0]])
    base = dist.MultivariateNormal(jnp.zeros(2), covariance_matrix=cov)
    return dist.TransformedDistribution(base, Banana(curvature, offset))
