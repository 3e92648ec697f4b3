"""Elementwise affine bijectors: \\(y = x + b\\), \\(y = a x\\), \\(y = a x + b\\).

All three have a constant Jacobian, \\(\\log|\\det J| = \\sum \\log|a|\\), so the log-det is
computed once per event shape and reused. Parameters broadcast against the input.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_ext.transforms.bijector import Bijector

__all__ = ["Affine", "Scale", "Shift"]

_MIN_SCALE = 1e-3
_SOFTPLUS_ONE = float(np.log(np.expm1(1.0 - _MIN_SCALE)))


def softplus_scale(raw):
    """A positive scale \\(10^{-3} + \\mathrm{softplus}(r + c)\\) from an unconstrained ``raw``,
    with ``c`` chosen so that ``raw = 0`` gives exactly 1 (flows start at the identity)."""
    return _MIN_SCALE + jax.nn.softplus(raw + _SOFTPLUS_ONE)


def _check_scale(scale, who: str):
    scale = jnp.asarray(scale)
    zero = jnp.any(scale == 0)  # a tracer inside jit even for concrete scales
    if not isinstance(zero, jax.core.Tracer) and bool(zero):
        raise ValueError(f"{who}: scale must be non-zero everywhere, got {scale}")
    return scale


class Shift(Bijector):
    """\\(y = x + b\\); log-det 0.

    :param shift: the offset \\(b\\).

    >>> import jax.numpy as jnp
    >>> float(Shift(2.0).inverse(jnp.array(3.0)))
    1.0
    """

    is_constant_jacobian = True
    _leaves = ("shift",)

    def __init__(self, shift) -> None:
        self.shift = jnp.asarray(shift)

    def _forward_and_log_det(self, x):
        y = x + self.shift
        return y, jnp.zeros(jnp.shape(y), y.dtype)

    def _inverse_and_log_det(self, y):
        x = y - self.shift
        return x, jnp.zeros(jnp.shape(x), x.dtype)


class Scale(Bijector):
    """\\(y = a x\\); \\(\\log|\\det J| = \\log|a|\\) per element.

    :param scale: the non-zero factor \\(a\\).

    >>> import jax.numpy as jnp
    >>> float(Scale(2.0).forward_log_det_jacobian(jnp.zeros(3), event_ndims=1))
    2.0794...
    """

    is_constant_jacobian = True
    _leaves = ("scale",)

    def __init__(self, scale) -> None:
        self.scale = _check_scale(scale, "Scale")

    def _log_det(self, like):
        log_det = jnp.log(jnp.abs(self.scale))
        return jnp.broadcast_to(log_det, jnp.broadcast_shapes(log_det.shape, jnp.shape(like)))

    def _forward_and_log_det(self, x):
        return x * self.scale, self._log_det(x)

    def _inverse_and_log_det(self, y):
        return y / self.scale, -self._log_det(y)


class Affine(Bijector):
    """\\(y = a x + b\\), elementwise; \\(\\log|\\det J| = \\log|a|\\) per element.

    :param shift: \\(b\\).
    :param scale: non-zero \\(a\\).

    >>> import jax.numpy as jnp
    >>> float(Affine(1.0, 3.0).forward(jnp.array(2.0)))
    7.0
    """

    is_constant_jacobian = True
    _leaves = ("shift", "scale")

    def __init__(self, shift, scale) -> None:
        self.shift = jnp.asarray(shift)
        self.scale = _check_scale(scale, "Affine")

    def _log_det(self, like):
        log_det = jnp.log(jnp.abs(self.scale))
        shape = jnp.broadcast_shapes(log_det.shape, jnp.shape(self.shift), jnp.shape(like))
        return jnp.broadcast_to(log_det, shape)

    def _forward_and_log_det(self, x):
        return x * self.scale + self.shift, self._log_det(x)

    def _inverse_and_log_det(self, y):
        return (y - self.shift) / self.scale, -self._log_det(y)
