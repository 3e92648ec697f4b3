"""Ready-made flow stacks: neural spline flows and masked autoregressive flows.

Each builder returns one :class:`~numpyro_ext.transforms.Scan` over ``num_layers`` identical
layers (a reversal permutation then a coupling or autoregressive layer), initialised to the
identity map. Scanning keeps compile time flat in depth. Pass ``context_dim`` for a
conditional flow and bind the context with ``flow.conditioned(context)``::

    flow = neural_spline_flow(key, dim=4, context_dim=8)
    q = dist.TransformedDistribution(dist.Normal(0, 1).expand([4]).to_event(1),
                                     flow.conditioned(encoder(x)))
"""

from __future__ import annotations

from collections.abc import Sequence

import jax

from numpyro_ext.transforms.autoregressive import MaskedAutoregressive
from numpyro_ext.transforms.bijector import Chain
from numpyro_ext.transforms.coupling import SplineCoupling
from numpyro_ext.transforms.permute import Permute
from numpyro_ext.transforms.scan import Scan

__all__ = ["masked_autoregressive_flow", "neural_spline_flow"]


def _check_dim(dim: int, who: str) -> None:
    if dim < 2:
        raise ValueError(f"{who}: dim must be >= 2 (a 1-d flow has nothing to couple), got {dim}")


def neural_spline_flow(
    key,
    dim: int,
    num_layers: int = 4,
    hidden: Sequence[int] = (32, 32),
    num_bins: int = 8,
    boundary: float = 4.0,
    context_dim: int = 0,
    affine: bool = False,
    unroll: int | bool | None = None,
) -> Scan:
    """Spline-coupling flow (Durkan et al. 2019): ``num_layers`` x (reverse, spline coupling).

    :param key: PRNG key.
    :param dim: event size (>= 2).
    :param num_layers: number of coupling layers.
    :param hidden: conditioner hidden widths.
    :param num_bins: spline bins.
    :param boundary: spline half-width.
    :param context_dim: context width (0: unconditional).
    :param affine: each coupling also shifts and scales its output (see
        :class:`~numpyro_ext.transforms.SplineCoupling`).
    :param unroll: ``lax.scan``'s ``unroll``; the default unrolls up to
        :data:`~numpyro_ext.transforms.scan.UNROLL_DEPTH` layers (see
        :class:`~numpyro_ext.transforms.Scan`).

    >>> import jax, jax.numpy as jnp
    >>> flow = neural_spline_flow(jax.random.key(0), dim=2, num_layers=3)
    >>> flow.forward(jnp.ones(2)).tolist()  # identity at initialisation
    [1.0, 1.0]
    """
    _check_dim(dim, "neural_spline_flow")
    layers = [
        Chain(
            [
                SplineCoupling.init(
                    k,
                    dim,
                    hidden,
                    split=dim // 2,
                    num_bins=num_bins,
                    boundary=boundary,
                    context_dim=context_dim,
                    affine=affine,
                ),
                Permute.reverse(dim),
            ]
        )
        for k in jax.random.split(key, num_layers)
    ]
    return Scan.stack(layers, unroll=unroll)


def masked_autoregressive_flow(
    key,
    dim: int,
    num_layers: int = 4,
    hidden: Sequence[int] = (32, 32),
    transform: str = "affine",
    num_bins: int = 8,
    boundary: float = 4.0,
    context_dim: int = 0,
    unroll: int | bool | None = None,
) -> Scan:
    """MAF (Papamakarios et al. 2017): ``num_layers`` x (reverse, masked autoregressive).

    :param key: PRNG key.
    :param dim: event size (>= 2).
    :param num_layers: number of layers.
    :param hidden: MADE hidden widths.
    :param transform: ``"affine"`` or ``"spline"``.
    :param num_bins: spline bins.
    :param boundary: spline half-width.
    :param context_dim: context width (0: unconditional).
    :param unroll: ``lax.scan``'s ``unroll``; the default unrolls up to
        :data:`~numpyro_ext.transforms.scan.UNROLL_DEPTH` layers (see
        :class:`~numpyro_ext.transforms.Scan`).

    >>> import jax, jax.numpy as jnp
    >>> flow = masked_autoregressive_flow(jax.random.key(0), dim=3, num_layers=2)
    >>> flow.inverse(jnp.ones(3)).shape
    (3,)
    """
    _check_dim(dim, "masked_autoregressive_flow")
    layers = [
        Chain(
            [
                MaskedAutoregressive.init(
                    k, dim, hidden, transform, num_bins, boundary, context_dim=context_dim
                ),
                Permute.reverse(dim),
            ]
        )
        for k in jax.random.split(key, num_layers)
    ]
    return Scan.stack(layers, unroll=unroll)
