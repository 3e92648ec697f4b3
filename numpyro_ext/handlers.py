r"""Effect handlers: Pólya-gamma augmentation of logit likelihoods.

A Bernoulli, binomial or negative-binomial likelihood with logits :math:`\psi` is a mixture of
Gaussians in :math:`\psi` over a Pólya-gamma variable (Polson, Scott & Windle 2013, JASA, Thm 1):

.. math::

    \frac{(e^{\psi})^{a}}{(1 + e^{\psi})^{b}}
    = 2^{-b} e^{\kappa \psi} \int_0^\infty e^{-\omega \psi^2 / 2}\, p(\omega \mid b, 0)\, d\omega,
    \qquad \kappa = a - b/2.

:class:`polya_gamma` rewrites each augmented observed site ``y`` of a model into a latent site
``y_pg_omega ~ PG(b, 0)`` (same plates, one per observation) and the observed factor
:math:`C(y)\, 2^{-b} e^{\kappa \psi - \omega \psi^2 / 2}`, where :math:`C(y)` is the likelihood's
combinatorial constant. Integrating the auxiliaries out gives back the original model exactly;
conditionally on them the likelihood is Gaussian in :math:`\psi`, which is what
:class:`numpyro_ext.infer.PolyaGammaGibbs` exploits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from jax.scipy.special import gammaln
from numpyro.distributions import constraints
from numpyro.distributions.conjugate import NegativeBinomialLogits
from numpyro.distributions.discrete import BernoulliLogits, BinomialLogits
from numpyro.distributions.distribution import (
    Distribution,
    ExpandedDistribution,
    Independent,
    MaskedDistribution,
)
from numpyro.primitives import Messenger
from numpyro.util import not_jax_tracer

from numpyro_ext.distributions import PolyaGamma

__all__ = ["PolyaGammaLikelihood", "polya_gamma"]

AUXILIARY_SUFFIX = "_pg_omega"
INFER_KEY = "polya_gamma"
AUXILIARY_KEY = "polya_gamma_auxiliary"
_AUGMENTED = (BernoulliLogits, BinomialLogits, NegativeBinomialLogits)
_KINDS = {
    BernoulliLogits: "bernoulli",
    BinomialLogits: "binomial",
    NegativeBinomialLogits: "negbin",
}
_LOG2 = math.log(2.0)


def _pg_shape_and_offset(kind: str, y, total_count):
    """``(b, kappa, log C(y))`` of the augmentation identity for one likelihood family."""
    if kind == "bernoulli":
        return jnp.ones_like(y), y - 0.5, jnp.zeros_like(y)
    if kind == "binomial":
        n = total_count
        log_choose = gammaln(n + 1.0) - gammaln(y + 1.0) - gammaln(n - y + 1.0)
        return n + jnp.zeros_like(y), y - 0.5 * n, log_choose
    r = total_count
    log_choose = gammaln(y + r) - gammaln(r) - gammaln(y + 1.0)
    return y + r, 0.5 * (y - r), log_choose


class PolyaGammaLikelihood(Distribution):
    r"""The augmented factor :math:`C(y)\, 2^{-b} \exp(\kappa \psi - \omega \psi^2 / 2)` of a site.

    ``log_prob(y)`` is the log of that factor: it is not normalised in ``y``; integrated against
    ``PG(b, 0)`` over :math:`\omega` it is the original likelihood of ``y``. ``sample`` draws from
    the original (un-augmented) likelihood, so ``Predictive`` on an augmented model still
    simulates data.

    :param base: the original likelihood (``BernoulliLogits``, ``BinomialLogits`` or
        ``NegativeBinomialLogits``), already broadcast to the site's batch shape.
    :param omega: the Pólya-gamma auxiliaries, one per element of the site.

    >>> import jax.numpy as jnp, numpyro.distributions as dist
    >>> f = PolyaGammaLikelihood(dist.Bernoulli(logits=jnp.array([0.3])), jnp.array([0.25]))
    >>> float(f.log_prob(jnp.array([1.0]))[0]) == float(-jnp.log(2.0) + 0.5 * 0.3 - 0.125 * 0.09)
    True
    """

    arg_constraints: ClassVar[dict] = {"omega": constraints.nonnegative}
    pytree_data_fields = ("base", "omega")

    def __init__(self, base: Distribution, omega, *, validate_args: bool | None = None):
        if not isinstance(base, _AUGMENTED):
            raise ValueError(f"PolyaGammaLikelihood: cannot augment {type(base).__name__}")
        self.base = base
        self.omega = omega
        batch_shape = jax.lax.broadcast_shapes(base.batch_shape, jnp.shape(omega))
        super().__init__(batch_shape=batch_shape, validate_args=validate_args)

    @property
    def support(self):
        return self.base.support

    @property
    def kind(self) -> str:
        return _KINDS[type(self.base)]

    @property
    def logits(self):
        return self.base.logits

    @property
    def total_count(self):
        return getattr(self.base, "total_count", None)

    def sample(self, key, sample_shape=()):
        return self.base.expand(self.batch_shape).sample(key, sample_shape)

    def log_prob(self, value):
        b, kappa, log_choose = _pg_shape_and_offset(self.kind, value, self.total_count)
        psi = self.logits
        omega = jnp.where(b > 0, self.omega, 0.0)  # PG(0, c) = 0: rows with no trials
        return log_choose - b * _LOG2 + kappa * psi - 0.5 * omega * psi * psi


def _broadcast(base: Distribution, shape: tuple[int, ...]) -> Distribution:
    """The same likelihood family with its parameters broadcast to ``shape``."""
    logits = jnp.broadcast_to(base.logits, shape)
    if isinstance(base, BernoulliLogits):
        return BernoulliLogits(logits)
    total_count = jnp.broadcast_to(base.total_count, shape)
    if isinstance(base, BinomialLogits):
        return BinomialLogits(logits, total_count)
    return NegativeBinomialLogits(total_count, logits)


def _unwrap(fn: Distribution) -> Distribution:
    """The base distribution under ``Expanded`` / ``Masked`` / ``Independent`` wrappers."""
    while isinstance(fn, (ExpandedDistribution, MaskedDistribution, Independent)):
        fn = fn.base_dist
    return fn


class _WeightProbe(Distribution):
    """Stands in for the likelihood under a site's wrappers: ``log_prob`` is ``shift``."""

    def __init__(self, base: Distribution, shift):
        self.shift = shift
        self._support = base.support
        super().__init__(batch_shape=base.batch_shape, event_shape=base.event_shape)

    @property
    def support(self):
        return self._support

    def log_prob(self, value):
        return self.shift


def _wrapper_weights(fn: Distribution, value, shape: tuple[int, ...]) -> jax.Array:
    """Per-element weights (``1`` kept, ``0`` masked) that ``fn``'s wrappers give its base.

    The wrappers are evaluated through their public ``log_prob`` with the base replaced by a
    probe whose log density is a free shift per element: the gradient in the shift is the
    weight, whatever combination of ``mask``, ``expand`` and ``to_event`` wraps the base.
    """

    wrapper = fn
    while isinstance(wrapper, (ExpandedDistribution, Independent)):
        wrapper = wrapper.base_dist
    if not isinstance(wrapper, MaskedDistribution) and isinstance(wrapper, _AUGMENTED):
        return jnp.ones(shape, jnp.result_type(float))  # no mask anywhere in the chain

    def total(shift):
        probe = jax.tree.map(
            lambda d: _WeightProbe(d, shift) if isinstance(d, _AUGMENTED) else d,
            fn,
            is_leaf=lambda d: isinstance(d, _AUGMENTED),
        )
        return jnp.sum(probe.log_prob(value))

    return jax.grad(total)(jnp.zeros(shape, jnp.result_type(float)))


def _integer(x) -> np.ndarray:
    return np.isfinite(x) & (np.floor(x) == x)


def _validate_observations(name: str, kind: str, y, total_count, kept) -> None:
    """Refuse concrete observations outside the likelihood's support, naming the site."""
    if not (not_jax_tracer(y) and not_jax_tracer(total_count) and not_jax_tracer(kept)):
        return
    y = np.asarray(y, dtype=float)
    kept = np.broadcast_to(np.asarray(kept, bool), y.shape)
    if kind == "bernoulli":
        checks = [(y, (y == 0) | (y == 1), "a Bernoulli observation must be 0 or 1")]
    elif kind == "binomial":
        n = np.broadcast_to(np.asarray(total_count, dtype=float), y.shape)
        checks = [
            (n, _integer(n) & (n >= 0), "a Binomial total_count must be a whole number >= 0"),
            (y, _integer(y) & (y >= 0), "a Binomial observation must be a whole number >= 0"),
            (y, ~(_integer(n) & (y > n)), "a Binomial observation must not exceed total_count"),
        ]
    else:
        r = np.broadcast_to(np.asarray(total_count, dtype=float), y.shape)
        checks = [
            (r, np.isfinite(r) & (r > 0), "a NegativeBinomial total_count must be finite and > 0"),
            (y, _integer(y) & (y >= 0), "a NegativeBinomial observation must be a whole number "
             ">= 0"),
        ]  # fmt: skip
    for values, ok, expected in checks:
        bad = kept & ~ok
        if bad.any():
            raise ValueError(
                f"polya_gamma: site {name!r}: {expected}; got {values[bad].ravel()[:5]} "
                f"({int(bad.sum())} invalid)"
            )


class polya_gamma(Messenger):
    r"""Augment logit likelihoods with Pólya-gamma auxiliaries (Polson, Scott & Windle 2013).

    Each augmented observed site ``y`` with logits :math:`\psi` gets a latent site
    ``y_pg_omega ~ PG(b, 0)`` inside the same plates, and its likelihood becomes
    :class:`PolyaGammaLikelihood`, :math:`C(y) 2^{-b} e^{\kappa \psi - \omega \psi^2/2}`:

    ==================================  ===========  ==================  ===================
    likelihood                          :math:`b`    :math:`\kappa`      :math:`C(y)`
    ==================================  ===========  ==================  ===================
    ``Bernoulli(logits=psi)``           1            ``y - 1/2``         1
    ``Binomial(n, logits=psi)``         ``n``        ``y - n/2``         ``binom(n, y)``
    ``NegativeBinomialLogits(r, psi)``  ``y + r``    ``(y - r)/2``       ``binom(y+r-1, y)``
    ==================================  ===========  ==================  ===================

    Masks (``fn.mask``, ``handlers.mask``, ``obs_mask``), plates and ``scale`` keep applying to
    the augmented factor. Apply the handler inside ``condition`` (``polya_gamma(condition(m,
    data))``) so that it sees the observations.

    :param fn: the model (or ``None`` when used as a context manager / decorator factory).
    :param sites: names of the observed sites to augment; ``None`` augments every observed
        Bernoulli/Binomial/NegativeBinomial site with logits and leaves the others alone.
        Naming a site whose likelihood cannot be augmented raises a ``ValueError``.

    >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
    >>> from numpyro import handlers
    >>> @polya_gamma
    ... def model(x, y):
    ...     beta = numpyro.sample("beta", dist.Normal(0.0, 1.0))
    ...     with numpyro.plate("n", x.shape[0]):
    ...         numpyro.sample("y", dist.Bernoulli(logits=beta * x), obs=y)
    >>> tr = handlers.trace(handlers.seed(model, 0)).get_trace(jnp.ones(3), jnp.ones(3))
    >>> tr["y_pg_omega"]["value"].shape
    (3,)
    """

    def __init__(self, fn: Callable | None = None, sites: Iterable[str] | None = None):
        if isinstance(sites, str):
            raise ValueError(f"polya_gamma: 'sites' must be a list of site names; got {sites!r}")
        self.sites = None if sites is None else frozenset(sites)
        super().__init__(fn)

    def _selected(self, name: str) -> bool:
        if self.sites is None:
            return True
        # ``obs_mask`` splits site ``y`` into ``y_observed`` and ``y_unobserved``
        return name in self.sites or name.removesuffix("_observed") in self.sites

    def process_message(self, msg: dict) -> None:
        if msg["type"] != "sample" or not self._selected(msg["name"]):
            return
        if INFER_KEY in (msg.get("infer") or {}):
            return
        name = msg["name"]
        base = _unwrap(msg["fn"])
        if not isinstance(base, _AUGMENTED):
            if self.sites is None:
                return
            raise ValueError(
                f"polya_gamma: site {name!r} has a {type(base).__name__} likelihood; only "
                "Bernoulli, Binomial and NegativeBinomial logits are augmented"
            )
        if not msg["is_observed"]:
            if self.sites is None:
                return
            raise ValueError(f"polya_gamma: site {name!r} is not observed; nothing to augment")
        self._augment(msg, base)

    @staticmethod
    def _augment(msg: dict, base: Distribution) -> None:
        fn = msg["fn"]
        event_dim = fn.event_dim
        shape = fn.batch_shape + fn.event_shape
        y = jnp.broadcast_to(jnp.asarray(msg["value"], jnp.result_type(float)), shape)
        weight = _wrapper_weights(fn, y, shape)
        base = _broadcast(base, shape)
        kind = _KINDS[type(base)]
        total_count = getattr(base, "total_count", None)
        kept = weight != 0
        if msg.get("mask") is not None and not_jax_tracer(msg["mask"]):
            batch = shape[: len(shape) - event_dim]
            site_mask = jnp.broadcast_to(msg["mask"], batch).reshape(batch + (1,) * event_dim)
            kept = kept & site_mask
        _validate_observations(msg["name"], kind, y, total_count, kept)
        b, kappa, log_choose = _pg_shape_and_offset(kind, y, total_count)
        # PG(0, c) is a point mass at 0: a binomial row with no trials contributes nothing
        active = jax.lax.stop_gradient(b) > 0
        prior = PolyaGamma(jnp.where(active, jax.lax.stop_gradient(b), 1.0), jnp.zeros_like(b))
        if not (not_jax_tracer(active) and bool(jnp.all(active))):
            prior = prior.mask(active)
        prior = prior.to_event(event_dim)
        omega = numpyro.sample(msg["name"] + AUXILIARY_SUFFIX, prior, infer={AUXILIARY_KEY: True})
        factor = PolyaGammaLikelihood(base, omega).to_event(event_dim)
        if not_jax_tracer(weight) and bool(jnp.all(weight == 1)):
            fn_mask = None
        else:
            kept_elements = weight != 0
            fn_mask = jnp.any(kept_elements, axis=tuple(range(-event_dim, 0)))
            factor = factor.mask(fn_mask)
        msg["fn"] = factor
        msg["infer"] = {
            **(msg.get("infer") or {}),
            INFER_KEY: {
                "auxiliary": msg["name"] + AUXILIARY_SUFFIX,
                "kind": kind,
                "logits": base.logits,
                "b": b,
                "kappa": kappa,
                "log_constant": log_choose - b * _LOG2,
                "weight": weight,
                "event_dim": event_dim,
            },
        }
