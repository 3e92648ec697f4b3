"""Encoders and the conditional families they parameterise.

Amortised inference maps each datum (or data set) :math:`x` through a network
:math:`h = f_\\phi(x)` and reads a distribution off :math:`h`: ``q(z | x) = family(h)``. This
module holds both halves, shared by the amortised guides (:mod:`numpyro_ext.guides`) and
amortised posterior estimation (:mod:`numpyro_ext.infer`):

- :func:`as_encoder` turns a Flax NNX module, an Equinox module or a plain ``apply(params, x)``
  into a function whose weights are NumPyro params (through ``numpyro.contrib.module``);
- :class:`DiagonalNormalFamily`, :class:`FullRankNormalFamily` and
  :class:`ConditionalFlowFamily` map ``h`` to a distribution over a ``D``-vector.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.distributions.util import vec_to_tril_matrix

__all__ = [
    "ConditionalFlowFamily",
    "DiagonalNormalFamily",
    "FullRankNormalFamily",
    "as_encoder",
]


def _inv_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


def as_encoder(
    encoder: Any,
    name: str,
    params: Any = None,
    batched: bool | None = None,
) -> Callable:
    """Register ``encoder``'s parameters with NumPyro and return a batched callable ``x -> h``.

    Call it inside a model or guide. A Flax NNX module goes through
    :func:`numpyro.contrib.module.nnx_module`, an Equinox module through
    :func:`~numpyro.contrib.module.eqx_module` (and is vmapped over the leading axis, Equinox's
    per-example convention), and a plain ``apply(params, x)`` registers the pytree ``params``
    as ``numpyro.param(name + "$params")``.

    :param encoder: an ``nnx.Module``, an ``eqx.Module`` or a function ``apply(params, x)``.
    :param name: NumPyro name of the encoder; its parameters are stored as ``name + "$params"``.
    :param params: initial parameter pytree, required for a plain ``apply`` function.
    :param batched: whether ``encoder`` maps a batch ``(B, ...)`` itself; defaults to true for
        NNX modules and ``apply`` functions and false for Equinox modules.
    :return: a function mapping a batch of inputs to a batch of encoder outputs.

    >>> import jax.numpy as jnp
    >>> from numpyro import handlers
    >>> apply = lambda p, x: x @ p["w"]
    >>> f = handlers.seed(lambda x: as_encoder(apply, "enc", {"w": jnp.ones((2, 3))})(x), 0)
    >>> f(jnp.ones((4, 2))).shape
    (4, 3)
    """
    kind = _encoder_kind(encoder)
    if kind == "nnx":
        from numpyro.contrib.module import nnx_module

        fn = nnx_module(name, encoder)
    elif kind == "eqx":
        from numpyro.contrib.module import eqx_module

        fn = eqx_module(name, encoder)
    else:
        if params is None:
            raise ValueError(
                f"encoder {name!r}: a plain apply(params, x) function needs its initial "
                "parameter pytree in `encoder_params`; got None"
            )
        fn = jax.tree_util.Partial(encoder, numpyro.param(name + "$params", params))
    if batched is None:
        batched = kind != "eqx"
    return fn if batched else jax.vmap(fn)


def _encoder_kind(encoder: Any) -> str:
    for kind, module, cls in (("nnx", "flax.nnx", "Module"), ("eqx", "equinox", "Module")):
        try:
            base = getattr(__import__(module, fromlist=[cls]), cls)
        except ImportError:
            continue
        if isinstance(encoder, base):
            return kind
    if not callable(encoder):
        raise ValueError(
            "encoder must be a Flax NNX module, an Equinox module or a function "
            f"apply(params, x); got {type(encoder).__name__}"
        )
    return "apply"


@dataclass(frozen=True)
class DiagonalNormalFamily:
    """Diagonal Gaussian :math:`N(\\mu, \\mathrm{diag}\\,\\sigma^2)` read off an encoder output.

    The output ``h`` (last axis ``2 D``) holds :math:`\\mu = h_{:D}` and
    :math:`\\sigma = \\operatorname{softplus}(h_{D:} + c)` with :math:`c` chosen so that a
    zero output gives ``init_scale``.

    :param init_scale: the scale an all-zero encoder output produces.

    >>> import jax.numpy as jnp
    >>> scale = jnp.sqrt(DiagonalNormalFamily(init_scale=0.5)(jnp.zeros((3, 4)), 2).variance)
    >>> scale.shape, bool(jnp.allclose(scale, 0.5))
    ((3, 2), True)
    """

    init_scale: float = 0.1

    def output_size(self, dim: int) -> int:
        """Width of the encoder output for a ``dim``-dimensional latent."""
        return 2 * dim

    def loc_scale(self, h: jax.Array, dim: int) -> tuple[jax.Array, jax.Array]:
        """Split an encoder output into location and scale, each ``(..., dim)``."""
        shift = _inv_softplus(self.init_scale)
        return h[..., :dim], jax.nn.softplus(h[..., dim:] + shift)

    def __call__(self, h: jax.Array, dim: int) -> dist.Distribution:
        loc, scale = self.loc_scale(h, dim)
        return dist.Normal(loc, scale).to_event(1)


@dataclass(frozen=True)
class FullRankNormalFamily:
    """Full-rank Gaussian :math:`N(\\mu, L L^\\top)` read off an encoder output.

    The output ``h`` (last axis ``D + D (D + 1) / 2``) holds :math:`\\mu = h_{:D}` and the
    lower triangle of :math:`L` row by row; the diagonal of :math:`L` passes through
    :math:`\\operatorname{softplus}(\\cdot + c)` so a zero output gives ``init_scale``.

    :param init_scale: the diagonal of :math:`L` an all-zero encoder output produces.

    >>> import jax.numpy as jnp
    >>> FullRankNormalFamily(init_scale=1.0)(jnp.zeros((5,)), 2).covariance_matrix
    Array([[1., 0.],
           [0., 1.]], dtype=float32)
    """

    init_scale: float = 0.1

    def output_size(self, dim: int) -> int:
        """Width of the encoder output for a ``dim``-dimensional latent."""
        return dim + dim * (dim + 1) // 2

    def loc_scale_tril(self, h: jax.Array, dim: int) -> tuple[jax.Array, jax.Array]:
        """Split an encoder output into location ``(..., D)`` and factor ``L``, ``(..., D, D)``."""
        raw = vec_to_tril_matrix(h[..., dim:])
        diag = jax.nn.softplus(
            jnp.diagonal(raw, axis1=-2, axis2=-1) + _inv_softplus(self.init_scale)
        )
        eye = jnp.eye(dim, dtype=bool)
        tril = jnp.where(eye, diag[..., None, :] * eye, raw)
        return h[..., :dim], tril

    def __call__(self, h: jax.Array, dim: int) -> dist.Distribution:
        loc, tril = self.loc_scale_tril(h, dim)
        return dist.MultivariateNormal(loc, scale_tril=tril)


def _default_flow(key, dim: int, context_dim: int):
    from numpyro_ext.transforms import masked_autoregressive_flow

    return masked_autoregressive_flow(key, dim, num_layers=3, context_dim=context_dim)


class ConditionalFlowFamily:
    """Conditional flow :math:`u = T_h(\\varepsilon)` with :math:`\\varepsilon \\sim N(0, I)`.

    The encoder output ``h`` (last axis ``context_dim``) is the flow's context; the flow's own
    weights are one more parameter pytree, ``name + "$params"``. The default flow is a
    3-layer affine masked autoregressive flow (Papamakarios et al. 2017) from
    :func:`numpyro_ext.transforms.masked_autoregressive_flow`, identity at initialisation;
    pass ``flow=builder(key, dim, context_dim)`` for another conditional bijector (anything
    with ``conditioned(context)``). Needs ``D >= 2``.

    :param context_dim: width of the encoder output fed to the flow as context.
    :param flow: builder ``(key, dim, context_dim) -> bijector``.
    :param name: NumPyro name of the flow's parameters.
    :param seed: seed of the flow's initial weights.

    >>> import jax.numpy as jnp
    >>> from numpyro import handlers
    >>> family = ConditionalFlowFamily(context_dim=4)
    >>> q = handlers.seed(family, 0)(jnp.zeros((3, 4)), 2)
    >>> q.batch_shape, q.event_shape
    ((3,), (2,))
    """

    def __init__(
        self,
        context_dim: int,
        flow: Callable | None = None,
        name: str = "flow",
        seed: int = 0,
    ) -> None:
        if context_dim < 1:
            raise ValueError(f"ConditionalFlowFamily: context_dim must be >= 1, got {context_dim}")
        self.context_dim = context_dim
        self.builder = _default_flow if flow is None else flow
        self.name = name
        self.seed = seed
        self._initial: dict = {}

    def output_size(self, dim: int) -> int:
        """Width of the encoder output: the context width, whatever the latent size."""
        return self.context_dim

    def flow(self, dim: int, dtype) -> Any:
        """The flow for a ``dim``-dimensional latent with its weights registered as a param."""
        key = (dim, jnp.dtype(dtype).name)
        if key not in self._initial:
            if dim < 2:
                raise ValueError(
                    f"ConditionalFlowFamily: a flow needs >= 2 latent dimensions, got {dim}; "
                    "use the Gaussian families for a scalar latent"
                )
            flow = self.builder(jax.random.key(self.seed), dim, self.context_dim)
            self._initial[key] = jax.tree.map(lambda a: jnp.asarray(a, dtype), flow)
        leaves, treedef = jax.tree.flatten(self._initial[key])
        trainable = [i for i, leaf in enumerate(leaves) if jnp.issubdtype(leaf.dtype, jnp.inexact)]
        values = numpyro.param(self.name + "$params", [leaves[i] for i in trainable])
        for i, value in zip(trainable, values, strict=True):
            leaves[i] = value
        return jax.tree.unflatten(treedef, leaves)

    def __call__(self, h: jax.Array, dim: int) -> dist.Distribution:
        base = dist.Normal(jnp.zeros((*h.shape[:-1], dim), h.dtype), 1.0).to_event(1)
        return dist.TransformedDistribution(base, self.flow(dim, h.dtype).conditioned(h))
