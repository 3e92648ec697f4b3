"""Planar flow (Rezende & Mohamed 2015): \\(y = x + \\hat u\\, \\tanh(w^\\top x + b)\\).

\\(\\log|\\det J| = \\log|1 + \\tanh'(w^\\top x + b)\\, \\hat u^\\top w|\\). The map is invertible
iff \\(w^\\top \\hat u \\ge -1\\); the free vector ``u`` is projected to
\\(\\hat u = u + [m(w^\\top u) - w^\\top u]\\, w / \\|w\\|^2\\) with
\\(m(a) = -1 + \\mathrm{softplus}(a)\\), which enforces it strictly.

Inverse (numerical, documented): writing \\(\\alpha = w^\\top x\\), the output satisfies
\\(w^\\top y = \\alpha + w^\\top\\hat u \\tanh(\\alpha + b)\\), an increasing scalar equation whose
root lies in \\(w^\\top y \\pm |w^\\top \\hat u|\\). It is solved by bisection
(:func:`~numpyro_ext.transforms.monotone_inverse.solve_increasing`) and
\\(x = y - \\hat u \\tanh(\\alpha + b)\\). A failed solve raises (eager) or gives NaN (traced),
never a silently wrong value.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from numpyro_ext.transforms.bijector import Bijector
from numpyro_ext.transforms.monotone_inverse import raise_if_not_converged, solve_increasing

__all__ = ["Planar"]


class Planar(Bijector):
    """\\(y = x + \\hat u \\tanh(w^\\top x + b)\\) with \\(w^\\top \\hat u > -1\\).

    :param u: free direction, ``(..., d)`` (projected to \\(\\hat u\\)).
    :param w: normal vector, ``(..., d)``, non-zero.
    :param b: bias, ``(...)``.

    >>> import jax.numpy as jnp
    >>> flow = Planar(jnp.array([1.0, 0.0]), jnp.array([1.0, 1.0]), 0.0)
    >>> y = flow.forward(jnp.array([0.5, -0.2]))
    >>> [round(v, 5) for v in flow.inverse(y).tolist()]
    [0.5, -0.2]
    """

    forward_min_event_ndims = 1
    _leaves = ("u", "w", "b")

    def __init__(self, u, w, b=0.0) -> None:
        self.u = jnp.asarray(u)
        self.w = jnp.asarray(w)
        self.b = jnp.asarray(b)
        if self.u.shape[-1:] != self.w.shape[-1:]:
            raise ValueError(f"Planar: u {self.u.shape} and w {self.w.shape} differ in size")

    @classmethod
    def init(cls, key, dim: int, scale: float = 0.1) -> Planar:
        """Small random parameters.

        :param key: PRNG key.
        :param dim: event size.
        :param scale: standard deviation of the entries.
        """
        ku, kw = jax.random.split(key)
        return cls(
            scale * jax.random.normal(ku, (dim,)), scale * jax.random.normal(kw, (dim,)), 0.0
        )

    def _u_hat(self):
        wu = jnp.sum(self.w * self.u, -1, keepdims=True)
        m = -1.0 + jax.nn.softplus(wu)
        return self.u + (m - wu) * self.w / jnp.sum(self.w**2, -1, keepdims=True)

    def _forward_and_log_det(self, x):
        u_hat = self._u_hat()
        a = jnp.sum(self.w * x, -1) + self.b
        y = x + u_hat * jnp.tanh(a)[..., None]
        wu = jnp.sum(self.w * u_hat, -1)
        log_det = jnp.log1p((1 - jnp.tanh(a) ** 2) * wu)
        return y, log_det

    def _inverse_and_log_det(self, y):
        u_hat = self._u_hat()
        wu = jnp.sum(self.w * u_hat, -1)
        target = jnp.sum(self.w * y, -1)
        width = jnp.abs(wu) * 1.001 + 1e-6

        def fn(alpha):
            return alpha + wu * jnp.tanh(alpha + self.b)

        alpha, converged = solve_increasing(fn, target, target - width, target + width)
        alpha = raise_if_not_converged(converged, alpha, "Planar")
        x = y - u_hat * jnp.tanh(alpha + self.b)[..., None]
        return x, -self._forward_and_log_det(x)[1]
