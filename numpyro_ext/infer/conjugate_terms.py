r"""The conditionally conjugate terms of a Pólya-gamma augmented model, read off and checked.

With the Gaussian block :math:`z = m + L v` (:mod:`numpyro_ext.infer.gaussian_block`) entering
affine logits :math:`\psi = X z + c`, the block's full conditional is Gaussian
(Polson, Scott & Windle 2013, §3):

.. math::

    v \mid \omega, y \sim N\big(P^{-1} A^\top W (\kappa - \Omega \psi_0),\; P^{-1}\big),
    \qquad P = I + A^\top W \Omega A, \quad A = X L, \quad \psi_0 = X m + c,

with :math:`W` the mask/scale weights of the observations. :func:`conjugate_terms` reads
:math:`m, L, X, c, b, \kappa, W` by tracing the model once (the design :math:`X` is the Jacobian
of the logits, from ``jax.jacfwd``); :func:`check_conjugate` verifies at random points that the
logits are affine and finite and that nothing else in the model moves with :math:`z`, and
raises a ``ValueError`` naming the offending site and the caller otherwise.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import block_diag

from numpyro_ext.handlers import INFER_KEY
from numpyro_ext.infer.gaussian_block import (
    BlockLayout,
    gaussian_prior,
    is_auxiliary,
    trace_block,
)

__all__ = [
    "AugmentedTerms",
    "ConjugateTerms",
    "augmented_terms",
    "check_conjugate",
    "check_finite",
    "conjugate_terms",
    "conjugate_terms_and_rest",
    "evaluate",
    "full_precision",
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


class ConjugateTerms(NamedTuple):
    r"""Everything one Gibbs sweep needs: prior ``z = loc + scale_tril v`` and ``psi = X z + c``.

    :param loc: prior mean :math:`m` of the flattened block, shape ``(d,)``.
    :param scale_tril: prior Cholesky factor :math:`L`, shape ``(d, d)``.
    :param design: :math:`X`, shape ``(n, d)``.
    :param offset: :math:`c`, shape ``(n,)``.
    :param b: Pólya-gamma shapes, shape ``(n,)`` (``0`` for a binomial row with no trials).
    :param kappa: :math:`\kappa`, shape ``(n,)``.
    :param weight: mask times scale of each observation, shape ``(n,)``.
    :param log_constant: the omega-free constant ``log C(y) - b log 2``, shape ``(n,)``.
    :param whitened: :math:`A = X L`, shape ``(n, d)`` (``None`` where a caller works from the
        Gram matrix of a fixed design instead).
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
    whitened: jax.Array | None
    whitened_offset: jax.Array

    def whitened_rhs(self, omega: jax.Array) -> jax.Array:
        """``r = A^T W (kappa - Omega psi_0)``."""
        # u @ A contracts A's rows in place; A.T @ u would copy A transposed at every call
        return (self.weight * (self.kappa - omega * self.whitened_offset)) @ self.whitened

    def whitened_conditional(self, omega: jax.Array) -> tuple[jax.Array, jax.Array]:
        r"""``(L_P, r)`` with ``v | omega ~ N(P^{-1} r, P^{-1})`` in the whitened coordinates.

        ``P = I + A^T W Omega A = L_P L_P^T`` and ``r = A^T W (kappa - Omega psi_0)``.

        :param omega: Pólya-gamma auxiliaries (or their means), shape ``(n,)``.
        """
        A = self.whitened
        precision = jnp.eye(A.shape[1], dtype=A.dtype) + A.T @ ((self.weight * omega)[:, None] * A)
        # the factorisation reads only the lower triangle: no symmetrising copy of P
        chol = jax.lax.linalg.cholesky(precision, symmetrize_input=False)
        return chol, self.whitened_rhs(omega)


class AugmentedTerms(NamedTuple):
    """The augmented observations, flattened and concatenated over the augmented sites."""

    logits: jax.Array
    b: jax.Array
    kappa: jax.Array
    weight: jax.Array
    log_constant: jax.Array


def augmented_terms(tr: dict) -> AugmentedTerms:
    """Flattened logits, ``b``, ``kappa``, weights and constants of the augmented sites."""
    psi, b, kappa, weight, const = [], [], [], [], []
    for site in tr.values():
        meta = (site.get("infer") or {}).get(INFER_KEY) if site["type"] == "sample" else None
        if meta is None or not site["is_observed"]:
            continue
        shape = jnp.shape(meta["b"])
        batch = shape[: len(shape) - meta["event_dim"]]
        w = jnp.asarray(meta["weight"])
        if site.get("mask") is not None:
            mask = jnp.broadcast_to(site["mask"], batch).reshape(batch + (1,) * meta["event_dim"])
            w = w * mask
        if site.get("scale") is not None:
            w = w * site["scale"]
        w = jnp.broadcast_to(w, shape)
        psi.append(jnp.broadcast_to(meta["logits"], shape).ravel())
        b.append(meta["b"].ravel())
        kappa.append(meta["kappa"].ravel())
        weight.append(w.ravel())
        const.append(meta["log_constant"].ravel())
    return AugmentedTerms(*(jnp.concatenate(x) for x in (psi, b, kappa, weight, const)))


def _other_log_density(tr: dict, layout: BlockLayout) -> jax.Array:
    """Log density of every factor outside the Gaussian block and the augmented likelihoods."""
    total = jnp.zeros(())
    for k, site in tr.items():
        if site["type"] != "sample" or k in layout.names or is_auxiliary(site):
            continue
        if INFER_KEY in (site.get("infer") or {}):
            continue
        lp = site["fn"].log_prob(site["value"])
        if site.get("mask") is not None:
            lp = jnp.where(site["mask"], lp, 0.0)
        total = total + jnp.sum(lp)
    return total


def evaluate(model, args, kwargs, layout: BlockLayout, z: jax.Array, caller: str):
    """``(augmented terms, loc, scale_tril, other log density)`` of the model at block ``z``."""
    tr = trace_block(model, args, kwargs, layout.unravel(z))
    priors = [gaussian_prior(k, tr[k]["fn"], caller) for k in layout.names]
    loc = jnp.concatenate([p[0] for p in priors])
    tril = block_diag(*[p[1] for p in priors])
    return augmented_terms(tr), loc, tril, _other_log_density(tr, layout)


def conjugate_terms(
    model: Callable, args, kwargs, layout: BlockLayout, caller: str
) -> ConjugateTerms:
    """The prior, design and Pólya-gamma parameters of ``model`` (jit- and vmap-safe).

    The design is the Jacobian of the logits at ``z = 0``; it equals the design everywhere only
    if the logits are affine, which :func:`check_conjugate` verifies.

    :param model: the augmented model.
    :param args: its positional arguments.
    :param kwargs: its keyword arguments.
    :param layout: the block layout from :func:`~numpyro_ext.infer.gaussian_block.block_layout`.
    :param caller: the public entry point named in errors.
    """
    return conjugate_terms_and_rest(model, args, kwargs, layout, caller)[0]


def conjugate_terms_and_rest(
    model: Callable, args, kwargs, layout: BlockLayout, caller: str
) -> tuple[ConjugateTerms, jax.Array]:
    """:func:`conjugate_terms` and the log density of every other factor of the model.

    The second output sums the log densities of the sites outside the Gaussian block, the
    auxiliaries and the augmented likelihoods (the observed values of a conditioned model
    included); :func:`check_conjugate` verifies that it does not move with the block.
    """
    z0 = jnp.zeros(layout.size, jnp.result_type(float))

    def logits(z):
        return evaluate(model, args, kwargs, layout, z, caller)[0].logits

    aug, loc, tril, other = evaluate(model, args, kwargs, layout, z0, caller)
    design = jax.jacfwd(logits)(z0)
    terms = ConjugateTerms(
        loc, tril, design, aug.logits, aug.b, aug.kappa, aug.weight, aug.log_constant,
        design @ tril, design @ loc + aug.logits,
    )  # fmt: skip
    return terms, other


def check_finite(terms: ConjugateTerms, layout: BlockLayout, caller: str) -> None:
    """Refuse a design or offset with ``nan`` or ``inf`` (concrete terms), naming the site."""
    rows = ~np.asarray(jnp.all(jnp.isfinite(terms.design), axis=1) & jnp.isfinite(terms.offset))
    if rows.any():
        first = int(np.argmax(rows))
        raise ValueError(
            f"{caller}: the logits of site {layout.site_of_observation(first)!r} are not finite "
            f"in {int(rows.sum())} observation(s) (first at flattened index {first}): the "
            "design or offset holds nan or inf; remove or mask those observations"
        )


def check_conjugate(
    model: Callable, args, kwargs, layout: BlockLayout, caller: str, num_points: int = 3
) -> ConjugateTerms:
    """Verify the conjugate structure at random points; raise a ``ValueError`` if it fails.

    At ``num_points`` prior draws of the block it checks that the logits equal
    ``X z + c`` (affinity), and that the Gaussian prior, the Pólya-gamma parameters and the log
    density of every other site of the model do not change with ``z``. The tolerance is
    ``1e3 eps`` relative to the size of the terms, far below what any nonlinearity gives.

    :param model: the augmented model.
    :param args: its positional arguments (concrete).
    :param kwargs: its keyword arguments (concrete).
    :param layout: the block layout.
    :param caller: the public entry point named in errors.
    :param num_points: how many random points to check.
    :return: the conjugate terms at ``z = 0``.
    """
    terms = jax.jit(lambda: conjugate_terms(model, args, kwargs, layout, caller))()
    check_finite(terms, layout, caller)
    run = jax.jit(lambda z: evaluate(model, args, kwargs, layout, z, caller))
    aug0, loc, tril, other0 = run(jnp.zeros_like(terms.loc))
    eps = float(jnp.finfo(terms.design.dtype).eps)
    rng = np.random.default_rng(0)
    for _ in range(num_points):
        noise = jnp.asarray(rng.normal(size=terms.loc.shape) * 2.0, terms.loc.dtype)
        z = terms.loc + terms.scale_tril @ noise
        aug, loc_z, tril_z, other_z = run(z)
        affine = terms.design @ z + terms.offset
        size = jnp.abs(terms.design) @ jnp.abs(z) + jnp.abs(terms.offset) + 1.0
        bad = np.asarray(jnp.abs(aug.logits - affine) > 1e3 * eps * size)
        if bad.any():
            raise ValueError(
                f"{caller}: the logits are not affine in the Gaussian latents "
                f"{list(layout.names)}: at a random point {int(bad.sum())} of {bad.size} logits "
                "differ from their linearisation (first difference "
                f"{float(jnp.abs(aug.logits - affine)[bad][0]):.3g}, site "
                f"{layout.site_of_observation(int(np.argmax(bad)))!r}); Pólya-gamma Gibbs needs "
                "logits = X z + c"
            )
        _check_unchanged(caller, "the Gaussian prior", (loc, tril), (loc_z, tril_z), eps, layout)
        _check_unchanged(
            caller,
            "b, kappa or the masks",
            (aug0.b, aug0.kappa, aug0.weight),
            (aug.b, aug.kappa, aug.weight),
            eps,
            layout,
        )
        _check_unchanged(caller, "the density of the other sites", other0, other_z, eps, layout)
    return terms


def _check_unchanged(caller, what: str, before, after, eps: float, layout: BlockLayout) -> None:
    for x, y in zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True):
        if not np.allclose(np.asarray(x), np.asarray(y), rtol=1e3 * eps, atol=1e3 * eps):
            raise ValueError(
                f"{caller}: {what} depends on the Gaussian latents "
                f"{list(layout.names)}; the block must enter the model only through its "
                "Gaussian prior and the augmented logits"
            )
