"""Numerical inverse of an increasing scalar function by bracketed bisection.

Planar and Sylvester flows have no closed-form inverse, but each reduces to scalar equations
\\(f(t) = c\\) with \\(f\\) strictly increasing and a known bracket. Bisection on a valid
bracket cannot fail; it runs a fixed number of halvings (enough to reach the dtype's resolution
from the bracket width) inside ``lax.fori_loop``, vectorised over every element. The result
carries a ``converged`` flag (bracket valid and final width at float resolution) so callers can
refuse to return a wrong answer: eager calls raise, traced calls return NaN.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["solve_increasing"]


def solve_increasing(fn: Callable, target, lower, upper):
    """Solve \\(f(t) = c\\) elementwise for increasing ``fn`` with ``f(lower) <= c <= f(upper)``.

    :param fn: elementwise increasing function.
    :param target: \\(c\\).
    :param lower: lower bracket.
    :param upper: upper bracket.
    :return: ``(root, converged)``.

    >>> import jax.numpy as jnp
    >>> root, ok = solve_increasing(lambda t: t**3, jnp.array(8.0), 0.0, 4.0)
    >>> round(float(root), 4), bool(ok)
    (2.0, True)
    """
    target = jnp.asarray(target)
    dtype = jnp.result_type(target, lower, upper, float)
    lo = jnp.broadcast_to(jnp.asarray(lower, dtype), target.shape)
    hi = jnp.broadcast_to(jnp.asarray(upper, dtype), target.shape)
    valid = (fn(lo) <= target) & (fn(hi) >= target)
    iterations = 60 if dtype == jnp.float32 else 120

    def halve(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        below = fn(mid) < target
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

    lo, hi = lax.fori_loop(0, iterations, halve, (lo, hi))
    root = 0.5 * (lo + hi)
    eps = jnp.finfo(dtype).eps
    converged = valid & (hi - lo <= 8 * eps * (1 + jnp.abs(root)))
    return root, converged


def raise_if_not_converged(converged, value, who: str):
    """NaN where ``converged`` is false; raise instead when the values are concrete.

    :param converged: boolean flags, broadcastable to ``value``.
    :param value: the solution.
    :param who: name used in the error message.
    """
    if not isinstance(converged, jax.core.Tracer) and not bool(jnp.all(converged)):
        raise ValueError(
            f"{who}: the numerical inverse did not converge for "
            f"{int(jnp.size(converged) - jnp.sum(converged))} element(s); the bracket was "
            "invalid (non-finite input or parameters outside the invertible set)"
        )
    return jnp.where(converged, value, jnp.nan)
