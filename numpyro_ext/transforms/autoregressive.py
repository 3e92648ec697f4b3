"""Masked autoregressive flow layers (Papamakarios et al. 2017), the fast-density direction.

The layer maps base noise \\(x\\) to data \\(y\\) with

\\[ y_i = g_{\\theta_i(y_{<i}, c)}(x_i), \\]

so the *inverse* (data to noise, what ``log_prob`` of a ``TransformedDistribution`` needs)
is one pass of a masked network, while the forward (sampling) direction is sequential: ``d``
network passes in a ``lax.fori_loop``, each fixing one more coordinate. NumPyro's
``InverseAutoregressiveTransform`` is the opposite trade (fast sampling); use
``Invert(MaskedAutoregressive(...))`` to get that direction from this layer.
\\(g\\) is affine or a rational-quadratic spline, and
\\(\\log|\\det J| = \\sum_i \\log|g'_i|\\) (triangular Jacobian).

The conditioner must be autoregressive: fed ``concatenate([y, context])`` it returns
``num_params * d`` values in parameter-major order where value ``p * d + i`` depends only on
\\(y_{<i}\\) and the context. :class:`~numpyro_ext.transforms.MADE` does this; a conditional
layer is built with ``context_dim`` and bound with ``layer.conditioned(context)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
from jax import lax

from numpyro_ext.transforms.affine import Affine, softplus_scale
from numpyro_ext.transforms.bijector import Bijector
from numpyro_ext.transforms.conditioners import MADE, as_conditioner
from numpyro_ext.transforms.spline import RationalQuadraticSpline

__all__ = ["MaskedAutoregressive"]


class MaskedAutoregressive(Bijector):
    """Masked autoregressive layer with an affine or spline elementwise transform.

    :param conditioner: autoregressive network (e.g. :class:`~numpyro_ext.transforms.MADE`).
    :param transform: ``"affine"`` or ``"spline"``.
    :param num_bins: spline bins (``"spline"`` only).
    :param boundary: spline half-width (``"spline"`` only).
    :param context: optional context bound to the layer.

    >>> import jax, jax.numpy as jnp
    >>> maf = MaskedAutoregressive.init(jax.random.key(0), dim=3)
    >>> maf.inverse(jnp.ones(3)).shape
    (3,)
    """

    forward_min_event_ndims = 1
    _leaves = ("conditioner", "context")

    def __init__(
        self,
        conditioner,
        transform: str = "affine",
        num_bins: int = 8,
        boundary: float = 3.0,
        context=None,
    ) -> None:
        if transform not in ("affine", "spline"):
            raise ValueError(
                f"MaskedAutoregressive: transform must be 'affine' or 'spline', got {transform!r}"
            )
        self.conditioner = as_conditioner(conditioner)
        self.transform = transform
        self.num_bins = int(num_bins)
        self.boundary = float(boundary)
        self.context = context

    @property
    def num_params_per_element(self) -> int:
        if self.transform == "affine":
            return 2
        return RationalQuadraticSpline.num_params(self.num_bins)

    def _inner(self, y_context) -> Bijector:
        y = y_context
        inputs = y
        if self.context is not None:
            context = jnp.asarray(self.context, y.dtype)
            batch = jnp.broadcast_shapes(y.shape[:-1], context.shape[:-1])
            inputs = jnp.concatenate(
                [
                    jnp.broadcast_to(y, (*batch, y.shape[-1])),
                    jnp.broadcast_to(context, (*batch, context.shape[-1])),
                ],
                -1,
            )
        out = self.conditioner(inputs)
        d, k = y.shape[-1], self.num_params_per_element
        if out.shape[-1] != d * k:
            raise ValueError(
                f"MaskedAutoregressive: conditioner returned {out.shape[-1]} values, expected "
                f"{d * k} ({k} parameters x {d} coordinates)"
            )
        params = jnp.moveaxis(out.reshape((*out.shape[:-1], k, d)), -2, -1)
        if self.transform == "affine":
            return Affine(params[..., 0], softplus_scale(params[..., 1]))
        return RationalQuadraticSpline.from_params(params, self.boundary)

    def _forward_and_log_det(self, x):
        def step(_, y):
            return self._inner(y).forward(x)

        y = lax.fori_loop(0, x.shape[-1] - 1, step, jnp.zeros_like(x))
        y, log_det = self._inner(y).forward_and_log_det(x)
        return y, jnp.sum(log_det, -1)

    def _inverse_and_log_det(self, y):
        x, log_det = self._inner(y).inverse_and_log_det(y)
        return x, jnp.sum(log_det, -1)

    def conditioned(self, context) -> Bijector:
        return self.replace(context=context)

    @classmethod
    def init(
        cls,
        key,
        dim: int,
        hidden: Sequence[int] = (32, 32),
        transform: str = "affine",
        num_bins: int = 8,
        boundary: float = 3.0,
        context_dim: int = 0,
    ) -> MaskedAutoregressive:
        """A layer with a :class:`~numpyro_ext.transforms.MADE` conditioner (identity at start).

        :param key: PRNG key.
        :param dim: event size.
        :param hidden: hidden widths.
        :param transform: ``"affine"`` or ``"spline"``.
        :param num_bins: spline bins.
        :param boundary: spline half-width.
        :param context_dim: width of the context.
        """
        k = 2 if transform == "affine" else RationalQuadraticSpline.num_params(num_bins)
        made = MADE.init(key, dim, hidden, k, context_dim=context_dim)
        return cls(made, transform=transform, num_bins=num_bins, boundary=boundary)
