"""Monotone rational-quadratic splines with linear tails (Durkan et al. 2019, "Neural Spline
Flows").

On \\([-B, B]\\) the map is a monotone piecewise rational-quadratic through ``K + 1`` knots
\\((x^{(k)}, y^{(k)})\\) with positive derivatives \\(\\delta^{(k)}\\); outside it is the
identity (the linear tails, with boundary derivatives fixed to 1 so the map is
\\(C^1\\)). In bin ``k`` with \\(\\xi = (x - x^{(k)}) / w_k\\) and \\(s_k = h_k / w_k\\),

\\[ y = y^{(k)} + \\frac{h_k [s_k \\xi^2 + \\delta^{(k)} \\xi(1-\\xi)]}
    {s_k + [\\delta^{(k+1)} + \\delta^{(k)} - 2 s_k] \\xi (1-\\xi)}, \\]

and the inverse solves a quadratic in \\(\\xi\\) (eq. 6 of the paper, in its stable form).
The parameters are unconstrained: softmax gives bin widths and heights, softplus gives the
interior derivatives; all-zero parameters give the identity map.

Numerical range. The slope inside a bin can fall to about \\(2 s^2 / (\\delta^{(k)} +
\\delta^{(k+1)})\\), and where a map is that flat the inverse cannot be recovered from a
rounded output (an output ulp maps back to an input error of ulp / slope). So the raw
parameters are soft-clamped, \\(r \\mapsto 3 \\tanh(r / 3)\\) (the identity near 0), and every
bin keeps at least 1% of the interval: whatever the raw values (a conditioner fed inputs of
scale \\(10^3\\) outputs values of that scale), the slope stays in about
\\([7 \\cdot 10^{-5}, 180]\\) (8 bins), and a float32 round trip stays within a few
\\(10^{-3}\\) in the worst case. Peers (nflows, distrax, flowjax) floor bins and derivatives
at \\(10^{-3}\\)-\\(10^{-4}\\) without bounding the raw values, which allows slopes of
\\(10^{-7}\\) and round-trip errors of order one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_ext.transforms.affine import soft_clamp
from numpyro_ext.transforms.bijector import Bijector

__all__ = ["RationalQuadraticSpline"]

_MIN_BIN = 1e-2
_MIN_DERIVATIVE = 1e-3
_SOFTPLUS_ONE = float(np.log(np.expm1(1.0 - _MIN_DERIVATIVE)))
_RAW_BOUND = 3.0


def _knots(raw, boundary: float):
    """Knot positions ``(K + 1,)`` on ``[-B, B]`` from unconstrained bin sizes ``(K,)``.

    The end knots are exactly ``-B`` and ``B``, so the spline meets its linear tails.
    """
    k = raw.shape[-1]
    floor = min(_MIN_BIN, 0.5 / k)
    sizes = floor + (1.0 - floor * k) * jax.nn.softmax(soft_clamp(raw, _RAW_BOUND), axis=-1)
    cum = jnp.cumsum(sizes[..., :-1], axis=-1)
    edge = jnp.zeros_like(sizes[..., :1])
    return boundary * (2.0 * jnp.concatenate([edge, cum, edge + 1.0], -1) - 1.0)


def _derivative(raw):
    """Knot derivative from its unconstrained value; ``raw = 0`` gives 1 (the tails' slope)."""
    return _MIN_DERIVATIVE + jax.nn.softplus(soft_clamp(raw, _RAW_BOUND) + _SOFTPLUS_ONE)


@jax.custom_jvp
def _take(values, index):
    """``values[i, index[i]]`` for ``values`` of shape ``(n, m)``: a row gather whose tangent is
    a one-hot masked sum, so that its transpose (the gradient) is a select, not a scatter."""
    return jnp.take_along_axis(values, index[:, None], -1, mode="clip")[:, 0]


@_take.defjvp
def _take_jvp(primals, tangents):
    values, index = primals
    onehot = index[:, None] == jnp.arange(values.shape[-1])
    tangent = jnp.sum(jnp.where(onehot, tangents[0], jnp.zeros((), values.dtype)), -1)
    return _take(values, index), tangent


class RationalQuadraticSpline(Bijector):
    """Elementwise monotone rational-quadratic spline on ``[-B, B]``, identity outside.

    Parameter arrays have one trailing axis more than the input elements they act on and
    broadcast against the input.

    :param raw_widths: unconstrained bin widths, ``(..., K)``.
    :param raw_heights: unconstrained bin heights, ``(..., K)``.
    :param raw_derivatives: unconstrained interior knot derivatives, ``(..., K - 1)``.
    :param boundary: \\(B\\), half-width of the spline interval.

    >>> import jax.numpy as jnp
    >>> s = RationalQuadraticSpline(jnp.zeros(4), jnp.zeros(4), jnp.zeros(3))
    >>> float(s.forward(jnp.array(0.3)))  # zero parameters: the identity
    0.3...
    """

    _leaves = ("raw_widths", "raw_heights", "raw_derivatives")

    def __init__(self, raw_widths, raw_heights, raw_derivatives, boundary: float = 3.0) -> None:
        raw_widths, raw_heights = jnp.asarray(raw_widths), jnp.asarray(raw_heights)
        raw_derivatives = jnp.asarray(raw_derivatives)
        k = raw_widths.shape[-1]
        if raw_heights.shape[-1] != k or raw_derivatives.shape[-1] != k - 1:
            raise ValueError(
                "RationalQuadraticSpline: expected widths (..., K), heights (..., K) and "
                f"derivatives (..., K - 1); got {raw_widths.shape}, {raw_heights.shape}, "
                f"{raw_derivatives.shape}"
            )
        if boundary <= 0:
            raise ValueError(f"RationalQuadraticSpline: boundary must be > 0, got {boundary}")
        self.raw_widths = raw_widths
        self.raw_heights = raw_heights
        self.raw_derivatives = raw_derivatives
        self.boundary = float(boundary)

    @classmethod
    def from_params(cls, params, boundary: float = 3.0) -> RationalQuadraticSpline:
        """Split a ``(..., 3K - 1)`` parameter array (widths, heights, derivatives).

        :param params: concatenated unconstrained parameters.
        :param boundary: \\(B\\).
        """
        k = (params.shape[-1] + 1) // 3
        return cls(params[..., :k], params[..., k : 2 * k], params[..., 2 * k :], boundary)

    @property
    def sign(self):
        return 1

    def forward_shape(self, shape):
        return jnp.broadcast_shapes(tuple(shape), self.raw_widths.shape[:-1])

    def inverse_shape(self, shape):
        return self.forward_shape(shape)

    @staticmethod
    def num_params(num_bins: int) -> int:
        """Parameters per element for ``num_bins`` bins: \\(3K - 1\\)."""
        return 3 * num_bins - 1

    def _spline(self, value, inverse: bool):
        dtype = jnp.result_type(value, self.raw_widths)
        value = jnp.asarray(value, dtype)
        shape = jnp.broadcast_shapes(jnp.shape(value), self.raw_widths.shape[:-1])

        def rows(a):
            # one row per scalar: XLA handles a 2-D (elements, knots) layout much better than
            # batch shapes with unit axes, and the bin lookup becomes a plain row gather
            a = a.astype(dtype)
            return jnp.broadcast_to(a, (*shape, a.shape[-1])).reshape(-1, a.shape[-1])

        value = jnp.broadcast_to(value, shape).reshape(-1)
        xs = _knots(rows(self.raw_widths), self.boundary)
        ys = _knots(rows(self.raw_heights), self.boundary)
        # the boundary derivatives are 1: pad the interior ones with the raw value giving 1
        raw_ds = jnp.pad(rows(self.raw_derivatives), [(0, 0), (1, 1)])
        inside = jnp.abs(value) < self.boundary
        clipped = jnp.clip(value, -self.boundary, self.boundary)
        # bin index: how many interior knots lie at or below the value (one gather per table
        # entry afterwards; only the two derivatives needed go through the softplus)
        knots = ys if inverse else xs
        k = jnp.sum(clipped[..., None] >= knots[..., 1:-1], -1)
        x0, x1, y0, y1 = _take(xs, k), _take(xs, k + 1), _take(ys, k), _take(ys, k + 1)
        d0, d1 = _derivative(_take(raw_ds, k)), _derivative(_take(raw_ds, k + 1))
        w, h = x1 - x0, y1 - y0
        s = h / w
        c2 = d1 + d0 - 2 * s
        if inverse:
            dy = clipped - y0
            a = h * (s - d0) + dy * c2
            b = h * d0 - dy * c2
            c = -s * dy
            disc = jnp.maximum(b * b - 4 * a * c, 0.0)
            xi = jnp.clip(2 * c / (-b - jnp.sqrt(disc)), 0.0, 1.0)
            out = x0 + xi * w
            omx = xi * (1 - xi)
            denom = s + c2 * omx
        else:
            xi = (clipped - x0) / w
            omx = xi * (1 - xi)
            denom = s + c2 * omx
            out = y0 + h * (s * xi * xi + d0 * omx) / denom
        # eq. 5 of the paper: dy/dx = s^2 [d1 xi^2 + 2 s xi (1 - xi) + d0 (1 - xi)^2] / denom^2
        slope = s * s * (d1 * xi * xi + 2 * s * omx + d0 * (1 - xi) * (1 - xi)) / (denom * denom)
        log_det = jnp.log(slope)
        if inverse:
            log_det = -log_det
        out = jnp.where(inside, out, value)
        log_det = jnp.where(inside, log_det, jnp.zeros_like(log_det))
        return out.reshape(shape), log_det.reshape(shape)

    def _forward_and_log_det(self, x):
        return self._spline(x, inverse=False)

    def _inverse_and_log_det(self, y):
        return self._spline(y, inverse=True)
