"""The Pólya-gamma density for large ``b`` by Laplace inversion through the saddle point.

``p(w) = (1 / 2 pi i) int M(s) exp(-s w) ds`` with the moment generating function
``M(s) = [cosh(c/2) / cosh(sqrt((c^2/2 - s)/2))]^b``, taken along the vertical line through the
saddle point ``s0`` (``K'(s0) = w`` for ``K = log M``), where the integrand is a narrow bump.
The trapezoid rule converges geometrically for such analytic integrands, so a fixed grid gives
the density to near machine precision. Daniels (1954) keeps only the Gaussian term of this
integral (the saddle-point approximation of Windle, Polson & Scott, arXiv:1405.0506); here the
integral is computed, so no approximation error is left beyond the quadrature's.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

__all__ = []

_NODES = 512
_WIDTH = 16.0
_BISECTIONS = 80


def _phi(kappa):
    """``tanh(sqrt(k)) / sqrt(k)`` continued to ``k < 0`` as ``tan(sqrt(-k)) / sqrt(-k)``."""
    small = jnp.abs(kappa) < 1e-3
    ks = jnp.where(small, 1.0, kappa)
    root = jnp.sqrt(jnp.abs(ks))
    big = jnp.where(ks > 0, jnp.tanh(root), jnp.tan(root)) / root
    series = 1.0 - kappa / 3.0 + 2.0 * kappa**2 / 15.0 - 17.0 * kappa**3 / 315.0
    return jnp.where(small, series, big)


def _saddle_kappa(ratio):
    """Solve ``phi(kappa) = ratio`` by bisection on ``(-pi^2/4, (1/ratio + 1)^2)``."""
    lo = jnp.full_like(ratio, -(math.pi**2) / 4.0)
    hi = jnp.square(1.0 / ratio + 1.0)

    def step(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        above = _phi(mid) > ratio
        return jnp.where(above, mid, lo), jnp.where(above, hi, mid)

    lo, hi = jax.lax.fori_loop(0, _BISECTIONS, step, (lo, hi))
    return 0.5 * (lo + hi)


def _log_cosh_sqrt_complex(q):
    """``log cosh(sqrt(q))`` on the principal branch, continuous along the integration line."""
    root = jnp.sqrt(q)
    return root - math.log(2.0) + jnp.log1p(jnp.exp(-2.0 * root))


def log_density_saddle(w, b, c):
    """``log p(w | b, c)`` of ``PG(b, c)`` by saddle-point Laplace inversion (use for ``b >= 20``).

    :param w: points, ``w > 0``.
    :param b: shape, broadcast with ``w``.
    :param c: tilt, broadcast with ``w``.
    """
    dtype = w.dtype
    complex_dtype = jnp.complex128 if dtype == jnp.float64 else jnp.complex64
    kappa = _saddle_kappa(4.0 * w / b)
    # The saddle point is s0 = c^2/2 - 2 kappa. Along s = s0 + i y the argument of cosh(sqrt(.))
    # is (c^2/2 - s)/2 = kappa - i y/2: written through kappa, so that a large c^2/2 never
    # swallows kappa in rounding.
    # K''(s0) = (b / 8) * (-phi'(kappa)) * ... ; dkappa/ds = -1/2, K'(s) = b phi(kappa) / 4.
    dphi = jax.vmap(jax.grad(_phi))(kappa.reshape(-1)).reshape(kappa.shape)
    curvature = -b * dphi / 8.0
    step = _WIDTH / jnp.sqrt(curvature) / _NODES
    y = step[..., None] * jnp.arange(_NODES + 1, dtype=dtype)
    arg = (kappa[..., None] - 0.5j * y).astype(complex_dtype)
    log_m = -b[..., None] * _log_cosh_sqrt_complex(arg)
    log_m0 = jnp.real(log_m[..., :1])
    integrand = jnp.real(jnp.exp(log_m - log_m0 - 1j * y * w[..., None]))
    weights = jnp.ones(_NODES + 1, dtype).at[0].set(0.5)
    integral = step * jnp.sum(weights * integrand, axis=-1)
    log_cosh_c = jnp.abs(0.5 * c) + jnp.log1p(jnp.exp(-jnp.abs(c))) - math.log(2.0)
    # log M(s0) - s0 w = b log cosh(c/2) - c^2 w / 2 + [-b log cosh(sqrt(kappa)) + 2 kappa w]
    tilt = b * log_cosh_c - 0.5 * c * c * w
    return tilt + log_m0[..., 0] + 2.0 * kappa * w - math.log(math.pi) + jnp.log(integral)
