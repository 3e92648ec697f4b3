"""Coupling layers (Dinh et al. 2017, RealNVP; Durkan et al. 2019, neural spline flows).

A coupling layer splits the event into a conditioning part \\(x_A\\), passed through
unchanged, and a transformed part \\(x_B\\):

\\[ y_A = x_A, \\qquad y_B = g_{\\theta(x_A, c)}(x_B), \\]

with \\(g\\) an elementwise bijector whose parameters come from a conditioner network fed
\\(x_A\\) and the optional context \\(c\\). The Jacobian is block triangular:
\\(\\log|\\det J| = \\sum_{i \\in B} \\log|g'_i|\\); both directions cost one network call.

Which coordinates condition is given by a boolean ``mask`` (``True`` = conditioning,
distrax's convention) or by ``split`` (the first ``split`` coordinates condition). Stack layers
with :class:`~numpyro_ext.transforms.Permute` in between so every coordinate is transformed.

Conditional flows (amortised guides, conditional density estimation): build the layer with
``context_dim`` and bind a context with ``layer.conditioned(context)``; the network then sees
``concatenate([x_A, context], -1)``, the context broadcasting against the batch of ``x``::

    layer = SplineCoupling.init(key, dim=4, context_dim=3)
    q = dist.TransformedDistribution(base, layer.conditioned(encoder(data)))

The conditioner may be an NNX or Equinox module, a ``numpyro.contrib.module`` callable, or a
pure ``apply(params, x)`` (see :mod:`numpyro_ext.transforms.conditioners`).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from numpyro_ext.transforms.affine import Affine, softplus_scale
from numpyro_ext.transforms.bijector import Bijector, Chain
from numpyro_ext.transforms.conditioners import MLP, as_conditioner
from numpyro_ext.transforms.spline import RationalQuadraticSpline

__all__ = ["AffineCoupling", "Coupling", "SplineCoupling"]


class Coupling(Bijector):
    """Generic coupling layer; subclasses define the elementwise bijector ``_inner(params)``.

    :param conditioner: network mapping ``[x_A, context]`` to ``len(B) * num_params`` values.
    :param mask: boolean sequence, ``True`` where a coordinate conditions (passes unchanged).
    :param split: alternatively, the first ``split`` coordinates condition.
    :param context: optional context array bound to the layer.
    """

    forward_min_event_ndims = 1
    num_params_per_element: int = 0
    _leaves = ("conditioner", "context")

    def __init__(
        self,
        conditioner,
        mask: Sequence[bool] | None = None,
        split: int | None = None,
        context=None,
    ) -> None:
        if (mask is None) == (split is None):
            raise ValueError(f"{type(self).__name__}: give exactly one of mask or split")
        if mask is not None:
            mask = tuple(bool(m) for m in np.asarray(mask).ravel())
            if all(mask) or not any(mask):
                raise ValueError(
                    f"{type(self).__name__}: mask must have both True and False entries"
                )
        elif split < 1:
            raise ValueError(f"{type(self).__name__}: split must be >= 1, got {split}")
        self.conditioner = as_conditioner(conditioner)
        self.mask = mask
        self.split = split
        self.context = context

    def _indices(self, dim: int):
        if self.mask is not None:
            if len(self.mask) != dim:
                raise ValueError(
                    f"{type(self).__name__}: mask has {len(self.mask)} entries, event has {dim}"
                )
            m = np.asarray(self.mask)
        else:
            if self.split >= dim:
                raise ValueError(
                    f"{type(self).__name__}: split={self.split} leaves nothing to transform "
                    f"in an event of size {dim}"
                )
            m = np.arange(dim) < self.split
        return np.flatnonzero(m), np.flatnonzero(~m)

    def _inner(self, params) -> Bijector:
        raise NotImplementedError

    def _params(self, x_cond, n_out: int):
        inputs = x_cond
        if self.context is not None:
            context = jnp.asarray(self.context, x_cond.dtype)
            batch = jnp.broadcast_shapes(x_cond.shape[:-1], context.shape[:-1])
            inputs = jnp.concatenate(
                [
                    jnp.broadcast_to(x_cond, (*batch, x_cond.shape[-1])),
                    jnp.broadcast_to(context, (*batch, context.shape[-1])),
                ],
                -1,
            )
        out = self.conditioner(inputs)
        expected = n_out * self.num_params_per_element
        if out.shape[-1] != expected:
            raise ValueError(
                f"{type(self).__name__}: conditioner returned {out.shape[-1]} values per "
                f"input, expected {expected} ({n_out} coordinates x "
                f"{self.num_params_per_element} parameters)"
            )
        return out.reshape((*out.shape[:-1], n_out, self.num_params_per_element))

    def _couple(self, value, inverse: bool):
        cond, trans = self._indices(value.shape[-1])
        if self.mask is None:  # contiguous halves: slices and a concatenation, no gathers
            kept, part = value[..., : self.split], value[..., self.split :]
        else:
            kept, part = value[..., cond], value[..., trans]
        inner = self._inner(self._params(kept, trans.size))
        if inverse:
            new, log_det = inner.inverse_and_log_det(part)
        else:
            new, log_det = inner.forward_and_log_det(part)
        batch = jnp.broadcast_shapes(value.shape[:-1], new.shape[:-1])
        if self.mask is None:
            kept = jnp.broadcast_to(kept, (*batch, kept.shape[-1]))
            out = jnp.concatenate([kept, new], -1)
        else:
            out = jnp.broadcast_to(value, (*batch, value.shape[-1])).at[..., trans].set(new)
        return out, jnp.sum(log_det, -1)

    def _forward_and_log_det(self, x):
        return self._couple(x, inverse=False)

    def _inverse_and_log_det(self, y):
        return self._couple(y, inverse=True)

    def conditioned(self, context) -> Bijector:
        return self.replace(context=context)

    @classmethod
    def _init_mlp(cls, key, dim, hidden, mask, split, context_dim, n_params):
        if mask is None and split is None:
            split = dim // 2
        m = np.asarray(mask, bool) if mask is not None else np.arange(dim) < split
        n_cond = int(m.sum())
        net = MLP.init(key, n_cond + context_dim, hidden, (dim - n_cond) * n_params)
        return net, mask, (None if mask is not None else split)


class AffineCoupling(Coupling):
    """RealNVP affine coupling: \\(y_B = x_B \\odot \\sigma + \\mu\\).

    The scale is \\(\\sigma = 10^{-3} + \\mathrm{softplus}(s + c)\\) with \\(c\\) such that a
    zero output gives \\(\\sigma = 1\\): a zero-initialised conditioner is exactly the identity.

    :param conditioner: outputs 2 values (shift, raw scale) per transformed coordinate.
    :param mask: boolean conditioning mask.
    :param split: or the number of leading conditioning coordinates.
    :param context: optional context.

    >>> import jax, jax.numpy as jnp
    >>> layer = AffineCoupling.init(jax.random.key(0), dim=4)
    >>> layer.forward(jnp.ones(4)).shape
    (4,)
    """

    num_params_per_element = 2

    def _inner(self, params) -> Bijector:
        return Affine(params[..., 0], softplus_scale(params[..., 1]))

    @classmethod
    def init(
        cls,
        key,
        dim: int,
        hidden: Sequence[int] = (32, 32),
        mask: Sequence[bool] | None = None,
        split: int | None = None,
        context_dim: int = 0,
    ) -> AffineCoupling:
        """A layer with an :class:`~numpyro_ext.transforms.MLP` conditioner (zero last layer).

        :param key: PRNG key.
        :param dim: event size.
        :param hidden: hidden widths.
        :param mask: conditioning mask (default: ``split = dim // 2``).
        :param split: number of leading conditioning coordinates.
        :param context_dim: width of the context.
        """
        net, mask, split = cls._init_mlp(key, dim, hidden, mask, split, context_dim, 2)
        return cls(net, mask=mask, split=split)


class SplineCoupling(Coupling):
    """Neural-spline coupling: \\(y_B\\) a rational-quadratic spline of \\(x_B\\).

    The spline maps \\([-B, B]\\) onto itself, so on its own it cannot move mass out of that
    interval. With ``affine=True`` the conditioner also outputs a shift and a scale applied after
    the spline, \\(y_B = \\mu + \\sigma\\, g(x_B)\\): a layer can then translate and stretch as
    well as bend (a quadratic ridge such as the banana is one such layer).

    :param conditioner: outputs \\(3K - 1\\) values per transformed coordinate (\\(3K + 1\\)
        with ``affine``: the spline's, then shift and raw scale).
    :param mask: boolean conditioning mask.
    :param split: or the number of leading conditioning coordinates.
    :param num_bins: \\(K\\).
    :param boundary: spline interval \\([-B, B]\\) (identity outside).
    :param affine: follow the spline by a conditional elementwise affine map.
    :param context: optional context.

    >>> import jax, jax.numpy as jnp
    >>> layer = SplineCoupling.init(jax.random.key(0), dim=3, num_bins=4)
    >>> abs(float(layer.forward_log_det_jacobian(jnp.ones(3)))) < 1e-6  # identity at init
    True
    """

    def __init__(
        self,
        conditioner,
        mask: Sequence[bool] | None = None,
        split: int | None = None,
        num_bins: int = 8,
        boundary: float = 3.0,
        context=None,
        affine: bool = False,
    ) -> None:
        super().__init__(conditioner, mask=mask, split=split, context=context)
        self.num_bins = int(num_bins)
        self.boundary = float(boundary)
        self.affine = bool(affine)

    @property
    def num_params_per_element(self) -> int:
        return RationalQuadraticSpline.num_params(self.num_bins) + (2 if self.affine else 0)

    def _inner(self, params) -> Bijector:
        if not self.affine:
            return RationalQuadraticSpline.from_params(params, self.boundary)
        spline = RationalQuadraticSpline.from_params(params[..., :-2], self.boundary)
        return Chain([Affine(params[..., -2], softplus_scale(params[..., -1])), spline])

    @classmethod
    def init(
        cls,
        key,
        dim: int,
        hidden: Sequence[int] = (32, 32),
        mask: Sequence[bool] | None = None,
        split: int | None = None,
        num_bins: int = 8,
        boundary: float = 3.0,
        context_dim: int = 0,
        affine: bool = False,
    ) -> SplineCoupling:
        """A layer with an :class:`~numpyro_ext.transforms.MLP` conditioner (zero last layer).

        :param key: PRNG key.
        :param dim: event size.
        :param hidden: hidden widths.
        :param mask: conditioning mask (default: ``split = dim // 2``).
        :param split: number of leading conditioning coordinates.
        :param num_bins: spline bins.
        :param boundary: spline half-width.
        :param context_dim: width of the context.
        :param affine: follow the spline by a conditional affine map.
        """
        n = RationalQuadraticSpline.num_params(num_bins) + (2 if affine else 0)
        net, mask, split = cls._init_mlp(key, dim, hidden, mask, split, context_dim, n)
        return cls(
            net, mask=mask, split=split, num_bins=num_bins, boundary=boundary, affine=affine
        )
