r"""The Gaussian block of a Pólya-gamma augmented model: which sites form it, and their prior.

After :class:`numpyro_ext.handlers.polya_gamma`, the latent sites of a model split into the
Pólya-gamma auxiliaries and the rest. The Gaussian block is the latent sites with a ``Normal``,
unbatched ``MultivariateNormal`` or :class:`~numpyro_ext.distributions.GaussianProcess`
prior; flattened and concatenated, it is one vector :math:`z = m + L v`, :math:`v \sim N(0, I)`.
:func:`block_layout` reads the layout off one trace of the model and :func:`gaussian_prior`
the prior's mean and Cholesky factor of one site. Every function takes ``caller``, the name of
the public entry point, so that its errors name what the user called.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.distributions.distribution import (
    ExpandedDistribution,
    Independent,
    MaskedDistribution,
)

from numpyro_ext.distributions import GaussianProcess
from numpyro_ext.handlers import AUXILIARY_KEY, INFER_KEY

__all__ = [
    "BlockLayout",
    "block_layout",
    "gaussian_prior",
    "is_auxiliary",
    "trace_block",
    "trace_with",
]


class BlockLayout(NamedTuple):
    """Static layout of the Gaussian block and of the augmented observations.

    :param names: the Gaussian latent sites, in trace order.
    :param shapes: their shapes.
    :param auxiliaries: the Pólya-gamma auxiliary sites, in trace order.
    :param auxiliary_shapes: their shapes (those of the augmented observed sites).
    :param has_deterministic: whether the model has ``deterministic`` sites.
    :param unit_b: whether every augmented site is a Bernoulli (all Pólya-gamma shapes are 1,
        whatever the values of other blocks), so that the sampler's ``b = 1`` path is static.
    :param kinds: the likelihood families of the augmented sites (``"bernoulli"``,
        ``"binomial"``, ``"negbin"``).
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    auxiliaries: tuple[str, ...]
    auxiliary_shapes: tuple[tuple[int, ...], ...]
    has_deterministic: bool = False
    unit_b: bool = False
    kinds: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        """Length of the flattened block."""
        return sum(math.prod(s) for s in self.shapes)

    def ravel(self, values: dict) -> jax.Array:
        """Concatenate the block's site values into one vector."""
        return jnp.concatenate([jnp.ravel(values[k]) for k in self.names])

    def unravel(self, flat: jax.Array, auxiliary: bool = False) -> dict:
        """Split a vector into the block's (or the auxiliaries') site values."""
        names, shapes = (
            (self.auxiliaries, self.auxiliary_shapes) if auxiliary else (self.names, self.shapes)
        )
        sizes = [math.prod(s) for s in shapes]
        pieces = jnp.split(flat, np.cumsum(sizes)[:-1]) if names else []
        return {k: p.reshape(s) for k, p, s in zip(names, pieces, shapes, strict=True)}

    def site_of_observation(self, index: int) -> str:
        """The augmented site holding flattened observation ``index``."""
        sizes = np.cumsum([math.prod(s) for s in self.auxiliary_shapes])
        name = self.auxiliaries[int(np.searchsorted(sizes, index, side="right"))]
        return name.removesuffix("_pg_omega")


def is_auxiliary(site: dict) -> bool:
    """Whether a trace site is a Pólya-gamma auxiliary added by the handler."""
    return bool((site.get("infer") or {}).get(AUXILIARY_KEY, False))


def trace_with(model: Callable, args, kwargs, substitute_fn: Callable) -> dict:
    """Trace ``model`` (seeded) with ``substitute_fn`` choosing the sites' values."""
    seeded = handlers.seed(model, jax.random.key(0))
    return handlers.trace(handlers.substitute(seeded, substitute_fn=substitute_fn)).get_trace(
        *args, **kwargs
    )


def trace_block(model: Callable, args, kwargs, values: dict) -> dict:
    """Trace ``model`` with ``values`` substituted and unit Pólya-gamma auxiliaries."""

    def substitute_fn(site):
        if site["name"] in values:
            return values[site["name"]]
        if is_auxiliary(site):
            return jnp.ones(site["fn"].shape())
        return None

    return trace_with(model, args, kwargs, substitute_fn)


def gaussian_prior(name: str, fn, caller: str) -> tuple[jax.Array, jax.Array]:
    """``(loc, scale_tril)`` of a Gaussian site's flattened value, or a ``ValueError``.

    Integer parameters (``Normal(0, 1)``) are promoted to the default float type.

    :param name: the site's name (for the error).
    :param fn: the site's distribution.
    :param caller: the public entry point named in the error.
    """
    shape = fn.batch_shape + fn.event_shape
    base, masked = fn, False
    while isinstance(base, (ExpandedDistribution, Independent, MaskedDistribution)):
        masked = masked or isinstance(base, MaskedDistribution)
        base = base.base_dist
    dtype = jnp.result_type(float)
    if not masked and isinstance(base, dist.Normal):
        loc = jnp.broadcast_to(jnp.asarray(base.loc, dtype), shape).ravel()
        scale = jnp.broadcast_to(jnp.asarray(base.scale, dtype), shape).ravel()
        return loc, jnp.diag(scale)
    gaussian = isinstance(base, (dist.MultivariateNormal, GaussianProcess))
    if not masked and gaussian and shape == base.event_shape:
        return jnp.asarray(base.mean, dtype), jnp.asarray(base.scale_tril, dtype)
    what = ("masked " if masked else "") + type(base).__name__
    raise ValueError(
        f"{caller}: latent site {name!r} has a {what} prior (shape {shape}); only "
        "Normal, unbatched MultivariateNormal and GaussianProcess latents are updated by "
        "Pólya-gamma Gibbs. Sample the others by a collapsed slice update, "
        "CollapsedPolyaGammaGibbs(model), or with NUTS in a composite kernel: "
        "Gibbs([(PolyaGammaGibbs(model), [gaussian sites]), (NUTS(model), None)])"
    )


def block_layout(model: Callable, args, kwargs, caller: str) -> BlockLayout:
    """Read the block (every latent site that is not an auxiliary) and the auxiliaries.

    :param model: the augmented model.
    :param args: its positional arguments.
    :param kwargs: its keyword arguments.
    :param caller: the public entry point named in errors.
    """
    tr = trace_block(model, args, kwargs, {})
    latent = [(k, s) for k, s in tr.items() if s["type"] == "sample" and not s["is_observed"]]
    names = tuple(k for k, s in latent if not is_auxiliary(s))
    auxiliaries = tuple(k for k, s in latent if is_auxiliary(s))
    if not auxiliaries:
        raise ValueError(
            f"{caller}: the model has no observed Bernoulli, Binomial or "
            "NegativeBinomial site with logits to augment"
        )
    if not names:
        raise ValueError(f"{caller}: the model has no Gaussian latent site to sample")
    for k in names:
        gaussian_prior(k, tr[k]["fn"], caller)
    kinds = {
        s["infer"][INFER_KEY]["kind"]
        for s in tr.values()
        if s["type"] == "sample" and INFER_KEY in (s.get("infer") or {})
    }
    return BlockLayout(
        names,
        tuple(tuple(jnp.shape(tr[k]["value"])) for k in names),
        auxiliaries,
        tuple(tuple(tr[k]["fn"].shape()) for k in auxiliaries),
        any(s["type"] == "deterministic" for s in tr.values()),
        kinds == {"bernoulli"},
        tuple(sorted(kinds)),
    )
