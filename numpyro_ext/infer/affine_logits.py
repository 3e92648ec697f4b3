r"""The conditionally conjugate structure of a Pólya-gamma augmented model.

After :class:`numpyro_ext.handlers.polya_gamma`, a model whose latent block :math:`z` has a
Gaussian prior :math:`z = m + L v`, :math:`v \sim N(0, I)`, and whose logits are affine in it,
:math:`\psi = X z + c`, has the Gaussian full conditional (Polson, Scott & Windle 2013, §3)

.. math::

    v \mid \omega, y \sim N\big(P^{-1} A^\top W (\kappa - \Omega \psi_0),\; P^{-1}\big),
    \qquad P = I + A^\top W \Omega A, \quad A = X L, \quad \psi_0 = X m + c,

with :math:`W` the mask/scale weights of the observations. :func:`conjugate_terms` reads
:math:`m, L, X, c, b, \kappa, W` off the model by tracing it (the design :math:`X` is the
Jacobian of the logits, obtained with ``jax.jacfwd``), and :func:`check_conjugate` verifies at
random points that the logits are affine, that the prior and every other factor of the model do
not move with :math:`z`, and raises a ``ValueError`` naming the offending site otherwise.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax.scipy.linalg import block_diag
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
    "ConjugateTerms",
    "block_layout",
    "check_conjugate",
    "conjugate_terms",
    "conjugate_terms_and_rest",
    "full_precision",
    "trace_with",
]


def full_precision(fn: Callable) -> Callable:
    """Trace ``fn`` with full-precision float32 matrix products.

    An accelerator's default float32 product may round its inputs (TF32 on recent NVIDIA GPUs,
    about three decimal digits): the logits ``X z`` would then not be affine to the precision
    the structure check asks for, and the Gaussian draw would be that far from exact.
    """

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with jax.default_matmul_precision("highest"):
            return fn(*args, **kwargs)

    return wrapped


class BlockLayout(NamedTuple):
    """Static layout of the Gaussian block and of the augmented observations.

    :param names: the Gaussian latent sites, in trace order.
    :param shapes: their shapes.
    :param auxiliaries: the Pólya-gamma auxiliary sites, in trace order.
    :param auxiliary_shapes: their shapes (those of the augmented observed sites).
    :param has_deterministic: whether the model has ``deterministic`` sites.
    :param unit_b: whether every augmented site is a Bernoulli (all Pólya-gamma shapes are 1,
        whatever the values of other blocks), so that the sampler's ``b = 1`` path is static.
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    auxiliaries: tuple[str, ...]
    auxiliary_shapes: tuple[tuple[int, ...], ...]
    has_deterministic: bool = False
    unit_b: bool = False

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


class ConjugateTerms(NamedTuple):
    r"""Everything one Gibbs sweep needs: prior ``z = loc + scale_tril v`` and ``psi = X z + c``.

    :param loc: prior mean :math:`m` of the flattened block, shape ``(d,)``.
    :param scale_tril: prior Cholesky factor :math:`L`, shape ``(d, d)``.
    :param design: :math:`X`, shape ``(n, d)``.
    :param offset: :math:`c`, shape ``(n,)``.
    :param b: Pólya-gamma shapes, shape ``(n,)``.
    :param kappa: :math:`\kappa`, shape ``(n,)``.
    :param weight: mask times scale of each observation, shape ``(n,)``.
    :param log_constant: the omega-free constant ``log C(y) - b log 2``, shape ``(n,)``.
    :param whitened: :math:`A = X L`, shape ``(n, d)``.
    :param whitened_offset: :math:`\psi_0 = X m + c`, shape ``(n,)``.
    """

    loc: jax.Array
    scale_tril: jax.Array
    design: jax.Array
    offset: jax.Array
    b: jax.Array
    kappa: jax.Array
    weight: jax.Array
    log_constant: jax.Array
    whitened: jax.Array
    whitened_offset: jax.Array

    def whitened_conditional(self, omega: jax.Array) -> tuple[jax.Array, jax.Array]:
        r"""``(L_P, r)`` with ``v | omega ~ N(P^{-1} r, P^{-1})`` in the whitened coordinates.

        ``P = I + A^T W Omega A = L_P L_P^T`` and ``r = A^T W (kappa - Omega psi_0)``.

        :param omega: Pólya-gamma auxiliaries (or their means), shape ``(n,)``.
        """
        A, w_omega = self.whitened, self.weight * omega
        precision = jnp.eye(A.shape[1], dtype=A.dtype) + A.T @ (w_omega[:, None] * A)
        rhs = A.T @ (self.weight * self.kappa - w_omega * self.whitened_offset)
        return jnp.linalg.cholesky(precision), rhs


def _is_auxiliary(site: dict) -> bool:
    return bool((site.get("infer") or {}).get(AUXILIARY_KEY, False))


def _trace(model: Callable, args, kwargs, values: dict) -> dict:
    """Trace ``model`` with ``values`` substituted and unit Pólya-gamma auxiliaries."""

    def substitute_fn(site):
        if site["name"] in values:
            return values[site["name"]]
        if _is_auxiliary(site):
            return jnp.ones(site["fn"].shape())
        return None

    return trace_with(model, args, kwargs, substitute_fn)


def trace_with(model: Callable, args, kwargs, substitute_fn: Callable) -> dict:
    """Trace ``model`` (seeded) with ``substitute_fn`` choosing the sites' values."""
    seeded = handlers.seed(model, jax.random.key(0))
    return handlers.trace(handlers.substitute(seeded, substitute_fn=substitute_fn)).get_trace(
        *args, **kwargs
    )


def block_layout(model: Callable, args, kwargs) -> BlockLayout:
    """Read the block (every latent site that is not an auxiliary) and the auxiliaries.

    :param model: the augmented model.
    :param args: its positional arguments.
    :param kwargs: its keyword arguments.
    """
    tr = _trace(model, args, kwargs, {})
    latent = [(k, s) for k, s in tr.items() if s["type"] == "sample" and not s["is_observed"]]
    names = tuple(k for k, s in latent if not _is_auxiliary(s))
    auxiliaries = tuple(k for k, s in latent if _is_auxiliary(s))
    if not auxiliaries:
        raise ValueError(
            "PolyaGammaGibbs: the model has no observed Bernoulli, Binomial or "
            "NegativeBinomial site with logits to augment"
        )
    for k in names:
        _gaussian_prior(k, tr[k]["fn"])
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
    )


def _gaussian_prior(name: str, fn) -> tuple[jax.Array, jax.Array]:
    """``(loc, scale_tril)`` of a Gaussian site's flattened value, or a ``ValueError``."""
    shape = fn.batch_shape + fn.event_shape
    base, masked = fn, False
    while isinstance(base, (ExpandedDistribution, Independent, MaskedDistribution)):
        masked = masked or isinstance(base, MaskedDistribution)
        base = base.base_dist
    if not masked and isinstance(base, dist.Normal):
        loc = jnp.broadcast_to(base.loc, shape).ravel()
        return loc, jnp.diag(jnp.broadcast_to(base.scale, shape).ravel())
    gaussian = isinstance(base, (dist.MultivariateNormal, GaussianProcess))
    if not masked and gaussian and shape == base.event_shape:
        return jnp.asarray(base.mean), base.scale_tril
    what = ("masked " if masked else "") + type(base).__name__
    raise ValueError(
        f"PolyaGammaGibbs: latent site {name!r} has a {what} prior (shape {shape}); only "
        "Normal, unbatched MultivariateNormal and GaussianProcess latents are updated by "
        "Pólya-gamma Gibbs. Sample the others by a collapsed slice update, "
        "CollapsedPolyaGammaGibbs(model), or with NUTS in a composite kernel: "
        "Gibbs([(PolyaGammaGibbs(model), [gaussian sites]), (NUTS(model), None)])"
    )


def _augmented_terms(tr: dict) -> tuple[jax.Array, ...]:
    """Flattened ``(psi, b, kappa, weight, log_constant)`` over the augmented sites."""
    psi, b, kappa, weight, const = [], [], [], [], []
    for site in tr.values():
        meta = (site.get("infer") or {}).get(INFER_KEY) if site["type"] == "sample" else None
        if meta is None or not site["is_observed"]:
            continue
        shape = jnp.shape(meta["b"])
        batch = shape[: len(shape) - meta["event_dim"]]
        w = jnp.ones(batch)
        for m in (meta["mask"], site.get("mask")):
            if m is not None:
                w = w * jnp.broadcast_to(m, batch)
        if site.get("scale") is not None:
            w = w * site["scale"]
        w = jnp.broadcast_to(w.reshape(batch + (1,) * meta["event_dim"]), shape)
        psi.append(jnp.broadcast_to(meta["logits"], shape).ravel())
        b.append(meta["b"].ravel())
        kappa.append(meta["kappa"].ravel())
        weight.append(w.ravel())
        const.append(meta["log_constant"].ravel())
    return tuple(jnp.concatenate(x) for x in (psi, b, kappa, weight, const))


def _other_log_density(tr: dict, layout: BlockLayout) -> jax.Array:
    """Log density of every factor outside the Gaussian block and the augmented likelihoods."""
    total = jnp.zeros(())
    for k, site in tr.items():
        if site["type"] != "sample" or k in layout.names or _is_auxiliary(site):
            continue
        if INFER_KEY in (site.get("infer") or {}):
            continue
        lp = site["fn"].log_prob(site["value"])
        if site.get("mask") is not None:
            lp = jnp.where(site["mask"], lp, 0.0)
        total = total + jnp.sum(lp)
    return total


def _evaluate(model, args, kwargs, layout: BlockLayout, z: jax.Array):
    tr = _trace(model, args, kwargs, layout.unravel(z))
    priors = [_gaussian_prior(k, tr[k]["fn"]) for k in layout.names]
    loc = jnp.concatenate([p[0] for p in priors])
    tril = block_diag(*[p[1] for p in priors])
    return _augmented_terms(tr), loc, tril, _other_log_density(tr, layout)


def conjugate_terms(model: Callable, args, kwargs, layout: BlockLayout) -> ConjugateTerms:
    """The prior, design and Pólya-gamma parameters of ``model`` (jit- and vmap-safe).

    The design is the Jacobian of the logits at ``z = 0``; it equals the design everywhere only
    if the logits are affine, which :func:`check_conjugate` verifies.

    :param model: the augmented model.
    :param args: its positional arguments.
    :param kwargs: its keyword arguments.
    :param layout: the block layout from :func:`block_layout`.
    """
    return conjugate_terms_and_rest(model, args, kwargs, layout)[0]


def conjugate_terms_and_rest(
    model: Callable, args, kwargs, layout: BlockLayout
) -> tuple[ConjugateTerms, jax.Array]:
    """:func:`conjugate_terms` and the log density of every other factor of the model.

    The second output sums the log densities of the sites outside the Gaussian block, the
    auxiliaries and the augmented likelihoods (the observed values of a conditioned model
    included); :func:`check_conjugate` verifies that it does not move with the block.

    :param model: the augmented model.
    :param args: its positional arguments.
    :param kwargs: its keyword arguments.
    :param layout: the block layout from :func:`block_layout`.
    """
    d = sum(math.prod(s) for s in layout.shapes)
    z0 = jnp.zeros(d, jnp.result_type(float))

    def logits(z):
        return _evaluate(model, args, kwargs, layout, z)[0][0]

    (offset, b, kappa, weight, const), loc, tril, other = _evaluate(
        model, args, kwargs, layout, z0
    )
    design = jax.jacfwd(logits)(z0)
    whitened, whitened_offset = design @ tril, design @ loc + offset
    terms = ConjugateTerms(
        loc, tril, design, offset, b, kappa, weight, const, whitened, whitened_offset
    )
    return terms, other


def check_conjugate(
    model: Callable, args, kwargs, layout: BlockLayout, num_points: int = 3
) -> ConjugateTerms:
    """Verify the conjugate structure at random points; raise a ``ValueError`` if it fails.

    At ``num_points`` prior draws of the block it checks that the logits equal
    ``X z + c`` (affinity), and that the Gaussian prior, the Pólya-gamma parameters and the log
    density of every other site of the model do not change with ``z``. The tolerance is
    ``sqrt(eps)`` relative to the size of the terms, far below what any nonlinearity gives.

    :param model: the augmented model.
    :param args: its positional arguments (concrete).
    :param kwargs: its keyword arguments (concrete).
    :param layout: the block layout from :func:`block_layout`.
    :param num_points: how many random points to check.
    :return: the conjugate terms at ``z = 0``.
    """
    terms = jax.jit(lambda: conjugate_terms(model, args, kwargs, layout))()
    evaluate = jax.jit(lambda z: _evaluate(model, args, kwargs, layout, z))
    (_offset, b, kappa, weight, _), loc, tril, other0 = evaluate(jnp.zeros_like(terms.loc))
    eps = float(jnp.finfo(terms.design.dtype).eps)
    rng = np.random.default_rng(0)
    for _ in range(num_points):
        z = terms.loc + terms.scale_tril @ jnp.asarray(rng.normal(size=terms.loc.shape) * 2.0)
        (psi, b_z, kappa_z, weight_z, _), loc_z, tril_z, other_z = evaluate(
            z.astype(terms.loc.dtype)
        )
        affine = terms.design @ z + terms.offset
        size = jnp.abs(terms.design) @ jnp.abs(z) + jnp.abs(terms.offset) + 1.0
        bad = np.asarray(jnp.abs(psi - affine) > 1e3 * eps * size)
        if bad.any():
            raise ValueError(
                "PolyaGammaGibbs: the logits are not affine in the Gaussian latents "
                f"{list(layout.names)}: at a random point {int(bad.sum())} of {bad.size} logits "
                "differ from their linearisation (first difference "
                f"{float(jnp.abs(psi - affine)[bad][0]):.3g}); Pólya-gamma Gibbs needs "
                "logits = X z + c"
            )
        _check_unchanged("the Gaussian prior", (loc, tril), (loc_z, tril_z), eps, layout)
        _check_unchanged(
            "b, kappa or the masks", (b, kappa, weight), (b_z, kappa_z, weight_z), eps, layout
        )
        _check_unchanged("the density of the other sites", other0, other_z, eps, layout)
    return terms


def _check_unchanged(what: str, before, after, eps: float, layout: BlockLayout) -> None:
    for x, y in zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True):
        if not np.allclose(np.asarray(x), np.asarray(y), rtol=1e3 * eps, atol=1e3 * eps):
            raise ValueError(
                f"PolyaGammaGibbs: {what} depends on the Gaussian latents "
                f"{list(layout.names)}; the block must enter the model only through its "
                "Gaussian prior and the augmented logits"
            )
