"""Radial flow (Rezende & Mohamed 2015): \\(y = x + \\beta h(r)(x - x_0)\\),
\\(h(r) = 1/(\\alpha + r)\\), \\(r = \\|x - x_0\\|\\).

\\(\\log|\\det J| = (d-1)\\log(1 + \\beta h) + \\log(1 + \\beta h - \\beta r h^2)\\). Invertible
when \\(\\beta \\ge -\\alpha\\); enforced by \\(\\alpha = \\mathrm{softplus}(a)\\),
\\(\\beta = -\\alpha + \\mathrm{softplus}(\\tilde b)\\).

Inverse: Pyro and the paper give none, but the radius equation
\\(r_y = r (1 + \\beta / (\\alpha + r))\\) is the quadratic
\\(r^2 + (\\alpha + \\beta - r_y) r - \\alpha r_y = 0\\), whose non-negative root is taken in
its cancellation-free form; then \\(x - x_0 = (y - x_0) / (1 + \\beta h(r))\\). So the inverse
is exact, not iterative.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from numpyro_ext.transforms.bijector import Bijector

__all__ = ["Radial"]


def _norm(v):
    sq = jnp.sum(v**2, -1)
    positive = sq > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


class Radial(Bijector):
    """Radial contraction/expansion around ``x0``.

    :param x0: centre, ``(..., d)``.
    :param raw_alpha: unconstrained \\(\\alpha\\) (softplus).
    :param raw_beta: unconstrained \\(\\beta + \\alpha\\) (softplus).

    >>> import jax.numpy as jnp
    >>> flow = Radial(jnp.zeros(2), 0.0, 0.0)
    >>> [round(v, 5) for v in flow.inverse(flow.forward(jnp.array([1.0, 2.0]))).tolist()]
    [1.0, 2.0]
    """

    forward_min_event_ndims = 1
    _leaves = ("x0", "raw_alpha", "raw_beta")

    def __init__(self, x0, raw_alpha=0.0, raw_beta=0.0) -> None:
        self.x0 = jnp.asarray(x0)
        self.raw_alpha = jnp.asarray(raw_alpha)
        self.raw_beta = jnp.asarray(raw_beta)

    @classmethod
    def init(cls, key, dim: int, scale: float = 0.1) -> Radial:
        """Small random centre, \\(\\alpha = \\log 2\\), \\(\\beta\\) near 0.

        :param key: PRNG key.
        :param dim: event size.
        :param scale: standard deviation of the centre.
        """
        return cls(scale * jax.random.normal(key, (dim,)), 0.0, 0.0)

    def _alpha_beta(self):
        alpha = jax.nn.softplus(self.raw_alpha)
        return alpha, -alpha + jax.nn.softplus(self.raw_beta)

    def _forward_and_log_det(self, x):
        alpha, beta = self._alpha_beta()
        diff = x - self.x0
        r = _norm(diff)
        h = 1.0 / (alpha + r)
        y = x + (beta * h)[..., None] * diff
        d = x.shape[-1]
        log_det = (d - 1) * jnp.log1p(beta * h) + jnp.log1p(beta * h - beta * r * h**2)
        return y, log_det

    def _inverse_and_log_det(self, y):
        alpha, beta = self._alpha_beta()
        diff = y - self.x0
        r_y = _norm(diff)
        b = alpha + beta - r_y
        root = jnp.sqrt(b**2 + 4 * alpha * r_y)
        r = jnp.where(b >= 0, 2 * alpha * r_y / (b + root), (root - b) / 2)
        x = self.x0 + diff / (1 + beta / (alpha + r))[..., None]
        return x, -self._forward_and_log_det(x)[1]
