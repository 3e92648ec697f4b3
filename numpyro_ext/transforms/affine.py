"""Elementwise affine bijectors: \\(y = x + b\\), \\(y = a x\\), \\(y = a x + b\\).

All three have a constant Jacobian, \\(\\log|\\det J| = \\sum \\log|a|\\), and a sign
(that of \\(a\\)), so ``TransformedDistribution`` answers ``cdf``/``icdf`` through them as it
does through NumPyro's ``AffineTransform``. Parameters broadcast against the input.

Scales produced by a network (coupling and autoregressive layers) go through
:func:`softplus_scale`, which bounds them to
\\([\\sigma_{\\min}, \\sigma_{\\max}] \\approx [0.0125, 5.54]\\) per layer: an
unbounded scale lets a conditioner fed large inputs (\\(|x| \\sim 10^3\\)) produce scales of
\\(10^{\\pm 3}\\) whose round trip loses every float32 digit, or overflows over a stack.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_ext.transforms.bijector import Bijector

__all__ = ["Affine", "Scale", "Shift"]

_MIN_SCALE = 1e-3
_SOFTPLUS_ONE = float(np.log(np.expm1(1.0 - _MIN_SCALE)))
_RAW_BOUND = 5.0


def soft_clamp(raw, bound: float):
    """\\(b \\tanh(r / b)\\): the identity near 0, smoothly bounded to \\((-b, b)\\)."""
    return bound * jnp.tanh(raw / bound)


def softplus_scale(raw):
    """A bounded positive scale \\(10^{-3} + \\mathrm{softplus}(5 \\tanh(r / 5) + c)\\).

    ``c`` makes ``raw = 0`` give exactly 1 (flows start at the identity); the soft clamp keeps
    the scale in about ``[0.0125, 5.54]`` whatever the conditioner outputs, so round trips
    stay accurate in float32 (nflows and Glow bound their coupling scales the same way).
    """
    return _MIN_SCALE + jax.nn.softplus(soft_clamp(raw, _RAW_BOUND) + _SOFTPLUS_ONE)


def _broadcast_shape(shape, *params):
    return jnp.broadcast_shapes(tuple(shape), *(jnp.shape(p) for p in params))


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

    @property
    def sign(self):
        return 1

    def forward_shape(self, shape):
        return _broadcast_shape(shape, self.shift)

    def inverse_shape(self, shape):
        return _broadcast_shape(shape, self.shift)

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

    @property
    def sign(self):
        return jnp.sign(self.scale)

    def forward_shape(self, shape):
        return _broadcast_shape(shape, self.scale)

    def inverse_shape(self, shape):
        return _broadcast_shape(shape, self.scale)

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

    @property
    def sign(self):
        return jnp.sign(self.scale)

    def forward_shape(self, shape):
        return _broadcast_shape(shape, self.shift, self.scale)

    def inverse_shape(self, shape):
        return _broadcast_shape(shape, self.shift, self.scale)

    def _log_det(self, like):
        log_det = jnp.log(jnp.abs(self.scale))
        shape = jnp.broadcast_shapes(log_det.shape, jnp.shape(self.shift), jnp.shape(like))
        return jnp.broadcast_to(log_det, shape)

    def _forward_and_log_det(self, x):
        return x * self.scale + self.shift, self._log_det(x)

    def _inverse_and_log_det(self, y):
        return (y - self.shift) / self.scale, -self._log_det(y)
