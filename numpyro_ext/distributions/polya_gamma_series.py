"""The series that define the Jacobi distribution J*(h), the unscaled Pólya-gamma law.

``PG(b, c) = J*(b, c / 2) / 4`` (Polson, Scott & Windle 2013), and ``J*(h)`` has the density

.. math::

    f(x \\mid h) = \\frac{2^h}{\\Gamma(h)} \\sum_{n \\ge 0} (-1)^n
        \\frac{\\Gamma(n + h)}{n!} \\frac{2n + h}{\\sqrt{2 \\pi x^3}} e^{-(2n + h)^2 / (2x)},

the "left" alternating series (Windle, Polson & Scott, arXiv:1405.0506, eq. 5). It converges
fast and without cancellation for small ``x``; its terms decrease from ``n = 0`` on as long as
``x <= 2 (h + 1) / log(2 + h)`` (:func:`left_monotone_bound`). For large ``x`` two other forms are
used here:

* ``h = 1``: Devroye's right series
  ``f(x | 1) = sum_n (-1)^n pi (n + 1/2) exp(-(n + 1/2)^2 pi^2 x / 2)``.
* any ``h``: write ``J*(h) = G / d_1 + R`` with ``G ~ Gamma(h)``, ``d_1 = pi^2 / 8`` and ``R`` the
  rest of the gamma series. Then ``f(x | h) = (pi/2)^h x^(h-1) e^(-d_1 x) rho_h(x) / Gamma(h)``
  with ``rho_h(x) = E[(1 - R/x)_+^(h-1)]`` under the exponentially tilted law of ``R``, whose
  cumulants are known in closed form; expanding in ``R / x`` gives :func:`tail_factor`.
  Its truncation error is ``O(exp(-pi^2 x))``, below ``1e-11`` relative for ``x >= 2.5``.

All functions work elementwise on broadcast arrays, in the dtype of their inputs.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

__all__ = []

LEFT_TERMS = 12
TAIL_TERMS = 28


def left_monotone_bound(h):
    """Largest ``x`` for which the left-series terms decrease from ``n = 0``: ``2(h+1)/log(2+h)``.

    The ratio of consecutive terms is largest at ``n = 0`` and equals
    ``(2 + h) exp(-2 (h + 1) / x)``.

    :param h: shape parameter of ``J*(h)``.
    """
    return 2.0 * (h + 1.0) / jnp.log(2.0 + h)


def left_log_coefficients(h, n_terms: int = LEFT_TERMS):
    """``log[Gamma(n + h) / (Gamma(h) n!) (2n + h) / h]`` for ``n < n_terms``, on a last axis.

    These are the left-series terms relative to the first one, without the ``x`` dependence.

    :param h: shape parameter, any shape; the result has shape ``h.shape + (n_terms,)``.
    :param n_terms: number of terms.
    """
    h = jnp.asarray(h)[..., None]
    n = jnp.arange(n_terms, dtype=h.dtype)
    return gammaln(n + h) - gammaln(h) - gammaln(n + 1.0) + jnp.log((2.0 * n + h) / h)


def left_ratio(x, h, log_coefficients):
    """``f(x | h) / a_0(x | h)``: the left series divided by its first term.

    Term ``n`` relative to term 0 is ``exp(log_coefficients[n]) q^(n (n + h))`` with
    ``q = exp(-2 / x)``, built by the recurrence ``q^(n(n+h)) = q^((n-1)(n-1+h)) q^(2n-1) q^h``
    (two exponentials per point instead of one per term).

    :param x: point(s) in ``J*`` scale, ``x > 0``.
    :param h: shape parameter, broadcast with ``x``.
    :param log_coefficients: :func:`left_log_coefficients` for ``h`` (last axis: terms).
    """
    q = jnp.exp(-2.0 / x)
    qh = jnp.exp(-2.0 * h / x)
    coefficients = jnp.exp(log_coefficients)
    total = jnp.ones_like(q)
    power, odd = jnp.ones_like(q), q
    for n in range(1, log_coefficients.shape[-1]):
        power = power * odd * qh
        odd = odd * q * q
        total = total + (-1.0) ** n * coefficients[..., n] * power
    return total


def left_series(x, h, log_coefficients):
    """``log f(x | h)`` from the left series: log of the first term plus log of the ratio.

    :param x: point(s) in ``J*`` scale, ``x > 0``.
    :param h: shape parameter.
    :param log_coefficients: :func:`left_log_coefficients` for ``h``.
    """
    log_a0 = (
        h * math.log(2.0)
        + jnp.log(h)
        - 0.5 * math.log(2.0 * math.pi)
        - 1.5 * jnp.log(x)
        - h * h / (2.0 * x)
    )
    return log_a0 + jnp.log(left_ratio(x, h, log_coefficients))


def devroye_right_ratio(x, n_terms: int = 4):
    """``f(x | 1) / [(pi / 2) exp(-pi^2 x / 8)] = sum_n (-1)^n (2n + 1) exp(-n (n+1) pi^2 x / 2)``.

    Exact for ``h = 1`` (Devroye 2009); four terms reach double precision for ``x >= 0.64``.

    :param x: point(s) in ``J*`` scale.
    :param n_terms: number of terms.
    """
    total = jnp.zeros_like(x)
    for n in range(n_terms):
        total = total + (-1.0) ** n * (2 * n + 1) * jnp.exp(-n * (n + 1) * math.pi**2 * x / 2)
    return total


def _moment_polynomials(n_terms: int) -> np.ndarray:
    """``A[j, d]``: the tilted moment ``m_j(h) = sum_d A[j, d] h^d`` of ``u`` (see below).

    ``u = sum_{k >= 2} g_k / (k (k - 1))`` with ``g_k ~ Gamma(h)`` has cumulants
    ``kappa_i = h (i - 1)! T_i``, ``T_i = sum_{k >= 2} (k (k - 1))^(-i)`` (``T_1 = 1``), and
    moments from ``m_j = sum_i C(j - 1, i - 1) kappa_i m_{j - i}``: polynomials in ``h``.
    """
    k = np.arange(2, 200_001, dtype=np.float64)
    base = 1.0 / (k * (k - 1.0))
    power_sums = np.array([np.sum(base**i) for i in range(1, n_terms + 1)])
    power_sums[0] = 1.0
    kappa = np.array([math.factorial(i - 1) * power_sums[i - 1] for i in range(1, n_terms)])
    poly = np.zeros((n_terms, n_terms))
    poly[0, 0] = 1.0
    for j in range(1, n_terms):
        for i in range(1, j + 1):
            poly[j, 1:] += math.comb(j - 1, i - 1) * kappa[i - 1] * poly[j - i, :-1]
    return poly


_MOMENT_POLYNOMIALS = _moment_polynomials(TAIL_TERMS)


def tail_coefficients(h, n_terms: int = TAIL_TERMS):
    """Coefficients ``P_j(h)`` with ``rho_h(x) = sum_j P_j(h) y^j``, ``y = 2 / (pi^2 x)``.

    ``R = 2 u / pi^2`` under the tilt ``exp(pi^2 R / 8)``; ``P_j = C(h - 1, j) (-1)^j m_j(h)``
    with ``m_j`` the ``j``-th moment of ``u`` (:func:`_moment_polynomials`).

    :param h: shape parameter, any shape; the result has shape ``h.shape + (n_terms,)``.
    :param n_terms: number of terms (``j = 0 .. n_terms - 1``), at most ``TAIL_TERMS``.
    """
    h = jnp.asarray(h)[..., None]
    poly = jnp.asarray(_MOMENT_POLYNOMIALS[:n_terms, :n_terms], dtype=h.dtype)
    moments = poly[:, -1]
    for d in range(n_terms - 2, -1, -1):
        moments = moments * h + poly[:, d]
    j = jnp.arange(1, n_terms, dtype=h.dtype)
    steps = ((j - 1.0) - (h - 1.0)) / j
    signs = jnp.concatenate([jnp.ones_like(h), jnp.cumprod(steps, axis=-1)], axis=-1)
    return signs * moments


def tail_factor(x, coefficients):
    """``rho_h(x) = E[(1 - R/x)_+^(h - 1)]`` by Horner's rule in ``y = 2 / (pi^2 x)``.

    :param x: point(s) in ``J*`` scale, ``x >= 2.5`` for full accuracy.
    :param coefficients: :func:`tail_coefficients` for ``h``, broadcast with ``x``.
    """
    y = 2.0 / (math.pi**2 * x)
    total = coefficients[..., -1]
    for j in range(coefficients.shape[-1] - 2, -1, -1):
        total = total * y + coefficients[..., j]
    return total
