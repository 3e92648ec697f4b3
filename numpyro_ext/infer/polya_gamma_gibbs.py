r"""Exact Pólya-gamma Gibbs sampling for logistic, binomial and negative-binomial models.

The two-block sampler of Polson, Scott & Windle (2013, JASA): with the model augmented by
:class:`numpyro_ext.handlers.polya_gamma`, each sweep draws

.. math::

    \omega_n \mid z \sim \mathrm{PG}(b_n, \psi_n), \qquad
    z \mid \omega, y \sim N\big(\Sigma (S m + X^\top (\kappa - \Omega c)),\;
    \Sigma = (S + X^\top \Omega X)^{-1}\big),

both exactly. The Gaussian draw is taken in the whitened coordinates of the prior,
:math:`z = m + L v`, so one Cholesky factor of :math:`I + A^\top \Omega A` (:math:`A = X L`) and
two triangular solves make a step, with no explicit inverse and no prior precision matrix (a GP
prior over function values works as well as a Normal prior on coefficients).

:class:`PolyaGammaGibbs` is an ``MCMCKernel``: it runs under ``numpyro.infer.MCMC`` and is a
block of ``numpyro.infer.Gibbs`` (so hyperparameters can get NUTS);
:meth:`PolyaGammaGibbs.gibbs_fn` serves ``numpyro.infer.HMCGibbs``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import cho_solve, solve_triangular
from numpyro import handlers
from numpyro.infer.gibbs import conditioned, with_conditioning
from numpyro.infer.mcmc import MCMCKernel
from numpyro.util import is_prng_key, not_jax_tracer

from numpyro_ext.distributions.polya_gamma_sampler import MAX_PIECE, sample_jacobi_star
from numpyro_ext.handlers import polya_gamma
from numpyro_ext.infer.affine_logits import (
    BlockLayout,
    ConjugateTerms,
    block_layout,
    check_conjugate,
    conjugate_terms,
    full_precision,
)

__all__ = [
    "PolyaGammaGibbs",
    "PolyaGammaGibbsState",
    "polya_gamma_sweep",
    "sample_gaussian_block",
    "sample_omega",
]


class PolyaGammaGibbsState(NamedTuple):
    """State of :class:`PolyaGammaGibbs`.

    :param z: the Gaussian latent sites (and the auxiliaries when requested), by name.
    :param omega: the flattened Pólya-gamma auxiliaries of the last sweep.
    :param terms: the model's conjugate terms (refreshed when sibling blocks move).
    :param rng_key: the random key of the next sweep.
    """

    z: dict
    omega: jax.Array
    terms: ConjugateTerms
    rng_key: jax.Array


def sample_omega(key: jax.Array, b: jax.Array, tilt: jax.Array, unit_b: bool = False):
    """``PG(b_n, tilt_n)`` draws, all in one vectorised call (``0`` where ``b_n = 0``).

    The branch is chosen when the model is traced: with ``unit_b`` (every ``b_n = 1``) the draws
    come from Devroye's ``PG(1, c)`` sampler alone, otherwise from the sum-of-pieces sampler of
    :mod:`numpyro_ext.distributions.polya_gamma_sampler` (which also covers ``b_n = 1``).
    ``PolyaGamma(b, c).sample`` would pick between the two at run time and compile both, about
    twice the compile time, and each draw takes about a third longer on CPU.

    :param key: random key.
    :param b: Pólya-gamma shapes, ``b >= 0``, shape ``(n,)``.
    :param tilt: tilts, shape ``(n,)``.
    :param unit_b: promise that every ``b`` is 1.
    """
    z = 0.5 * jnp.abs(tilt)
    if unit_b:
        ones = jnp.ones_like(z)
        return 0.25 * sample_jacobi_star(key, ones, z, jnp.ones(z.shape, jnp.int32), True)
    active = b > 0
    pieces = jnp.ceil(jnp.where(active, b, 1.0) / MAX_PIECE)
    h = jnp.where(active, b, 1.0) / pieces
    omega = 0.25 * sample_jacobi_star(key, h, z, pieces.astype(jnp.int32), False)
    return jnp.where(active, omega, 0.0)


def polya_gamma_sweep(key: jax.Array, z: jax.Array, terms: ConjugateTerms, unit_b: bool = False):
    r"""One exact sweep: ``omega ~ PG(b, psi)``, then ``z | omega, y`` Gaussian.

    In whitened coordinates ``z = m + L v``: ``P = I + A^T W Omega A``,
    ``v ~ N(P^{-1} A^T W (kappa - Omega psi_0), P^{-1})`` with one Cholesky of ``P``.

    :param key: random key.
    :param z: current flattened block, shape ``(d,)``.
    :param terms: the conjugate terms (:class:`numpyro_ext.infer.affine_logits.ConjugateTerms`).
    :param unit_b: promise that every Pólya-gamma shape is 1 (Bernoulli sites only).
    :return: ``(z_new, omega)``.
    """
    key_omega, key_z = jax.random.split(key)
    psi = terms.design @ z + terms.offset
    # with weight w on the factor, omega | z ~ PG(b, sqrt(w) psi) (PG(b, 0) where masked)
    omega = sample_omega(key_omega, terms.b, jnp.sqrt(terms.weight) * psi, unit_b)
    return sample_gaussian_block(key_z, terms, omega), omega


def sample_gaussian_block(key: jax.Array, terms: ConjugateTerms, omega: jax.Array) -> jax.Array:
    r"""The exact draw ``z | omega, y`` (flattened), in the prior's whitened coordinates.

    ``P = I + A^T W Omega A = L_P L_P^T``, ``v ~ N(P^{-1} A^T W (kappa - Omega psi_0), P^{-1})``,
    ``z = m + L v``: one Cholesky of ``P`` and two triangular solves.

    :param key: random key.
    :param terms: the conjugate terms (:class:`numpyro_ext.infer.affine_logits.ConjugateTerms`).
    :param omega: the Pólya-gamma auxiliaries, shape ``(n,)``.
    """
    chol, rhs = terms.whitened_conditional(omega)
    noise = jax.random.normal(key, rhs.shape, rhs.dtype)
    v = cho_solve((chol, True), rhs) + solve_triangular(chol.T, noise, lower=False)
    return terms.loc + terms.scale_tril @ v


def _concrete(*trees) -> bool:
    return all(not_jax_tracer(x) for x in jax.tree.leaves(trees))


class PolyaGammaGibbs(MCMCKernel):
    r"""Exact Pólya-gamma Gibbs sampler for a Gaussian block under logit likelihoods.

    The model is an ordinary NumPyro model: Gaussian latents (``Normal``,
    ``MultivariateNormal`` or :class:`numpyro_ext.distributions.GaussianProcess`) and observed
    ``Bernoulli`` / ``Binomial`` / ``NegativeBinomialLogits`` sites whose logits are affine in
    them. The kernel augments it with :class:`numpyro_ext.handlers.polya_gamma`, checks the
    conjugate structure at ``init`` (affinity of the logits at random points; a ``ValueError``
    naming what fails), then alternates the two exact conditionals of Polson, Scott & Windle
    (2013). ``get_samples()`` holds the original latent sites, plus the auxiliaries
    ``{site}_pg_omega`` with ``auxiliaries=True``.

    Non-Gaussian latents (scales, lengthscales) belong to another block:
    ``Gibbs([(PolyaGammaGibbs(model), ["beta"]), (NUTS(model), None)])``.

    :param model: the (un-augmented) model.
    :param sites: observed sites to augment (``None``: every supported one).
    :param auxiliaries: also return the Pólya-gamma auxiliaries in the samples.
    :param check: verify the conjugate structure at ``init`` (skipped under tracing).

    >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
    >>> from numpyro.infer import MCMC
    >>> def model(x, y):
    ...     beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    ...     numpyro.sample("y", dist.Bernoulli(logits=x @ beta), obs=y)
    >>> x = jnp.stack([jnp.ones(20), jnp.linspace(-2, 2, 20)], -1)
    >>> y = (jnp.linspace(-2, 2, 20) > 0).astype(float)
    >>> mcmc = MCMC(PolyaGammaGibbs(model), num_warmup=50, num_samples=100, progress_bar=False)
    >>> mcmc.run(jax.random.key(0), x, y)
    >>> mcmc.get_samples()["beta"].shape
    (100, 2)
    """

    sample_field = "z"

    def __init__(
        self,
        model: Callable,
        *,
        sites: Iterable[str] | None = None,
        auxiliaries: bool = False,
        check: bool = True,
    ):
        if not callable(model):
            raise ValueError(f"PolyaGammaGibbs: 'model' must be callable; got {type(model)}")
        self._model = model
        self._sites = None if sites is None else tuple(sites)
        self._auxiliaries = auxiliaries
        self._check = check
        self._layout: BlockLayout | None = None
        self._has_deterministic = True
        # MCMC re-runs ``init`` unless the kernel exposes a sample function (as HMC does)
        self._sample_fn = None

    @property
    def model(self) -> Callable:
        return self._model

    @property
    def default_fields(self) -> tuple[str, ...]:
        return ("z",)

    def _augmented(self, model: Callable | None = None) -> Callable:
        return polya_gamma(self._model if model is None else model, sites=self._sites)

    def _z(self, layout: BlockLayout, z: jax.Array, omega: jax.Array) -> dict:
        out = layout.unravel(z)
        if self._auxiliaries:
            out.update(layout.unravel(omega, auxiliary=True))
        return out

    @full_precision
    def init(self, rng_key, num_warmup, init_params, model_args, model_kwargs):
        kwargs = {} if model_kwargs is None else model_kwargs
        model = self._augmented()
        layout = block_layout(model, model_args, kwargs)
        self._layout = layout
        self._has_deterministic = layout.has_deterministic
        self._sample_fn = self.sample
        if self._check and _concrete(model_args, kwargs):
            # concrete even when MCMC calls init under pmap (chain_method="parallel")
            with jax.ensure_compile_time_eval():
                terms = check_conjugate(model, model_args, kwargs, layout)
        else:
            terms = conjugate_terms(model, model_args, kwargs, layout)

        def init_one(key, params):
            key, key_z = jax.random.split(key)
            if params:
                z = layout.ravel(params).astype(terms.loc.dtype)
            else:
                noise = jax.random.normal(key_z, terms.loc.shape, terms.loc.dtype)
                z = terms.loc + terms.scale_tril @ noise
            omega = jnp.zeros_like(terms.b)
            return PolyaGammaGibbsState(self._z(layout, z, omega), omega, terms, key)

        if is_prng_key(rng_key):
            return init_one(rng_key, init_params)
        return jax.vmap(init_one)(rng_key, init_params)

    def _sample_one(self, state: PolyaGammaGibbsState) -> PolyaGammaGibbsState:
        layout = self._layout
        key, key_sweep = jax.random.split(state.rng_key)
        z, omega = polya_gamma_sweep(key_sweep, layout.ravel(state.z), state.terms, layout.unit_b)
        return state._replace(z=self._z(layout, z, omega), omega=omega, rng_key=key)

    @full_precision
    def sample(self, state, model_args, model_kwargs):
        if self._layout is None:
            raise ValueError("PolyaGammaGibbs: call init before sample")
        if is_prng_key(state.rng_key):
            return self._sample_one(state)
        return jax.vmap(self._sample_one)(state)

    @full_precision
    def refresh(self, state, model_args, model_kwargs):
        """Recompute the conjugate terms against the current values of the other blocks."""
        kwargs = {} if model_kwargs is None else model_kwargs
        terms = conjugate_terms(self._augmented(), model_args, kwargs, self._layout)
        if is_prng_key(state.rng_key):
            return state._replace(terms=terms)
        num_chains = state.rng_key.shape[0]
        return state._replace(
            terms=jax.tree.map(lambda x: jnp.broadcast_to(x, (num_chains, *x.shape)), terms)
        )

    def wrap_model(self, wrapper):
        kernel = copy.copy(self)
        kernel._model = wrapper(self._model)
        kernel._layout = None
        kernel._sample_fn = None
        return kernel

    def get_constrain_fn(self, model_args, model_kwargs):
        return lambda z: z

    def postprocess_fn(self, model_args, model_kwargs):
        """The latent values as they are, plus the model's ``deterministic`` sites."""
        kwargs = {} if model_kwargs is None else model_kwargs
        model = self._model
        if not self._has_deterministic:
            return lambda z: z

        def fn(z):
            seeded = handlers.seed(handlers.substitute(model, data=z), jax.random.key(0))
            tr = handlers.trace(seeded).get_trace(*model_args, **kwargs)
            det = {k: s["value"] for k, s in tr.items() if s["type"] == "deterministic"}
            return {**z, **det}

        return fn

    def gibbs_fn(self, *model_args, **model_kwargs) -> Callable:
        """An update for ``numpyro.infer.HMCGibbs(NUTS(model), gibbs_fn=..., gibbs_sites=...)``.

        The returned callable draws the Gaussian ``gibbs_sites`` exactly given the current
        values of the other sites (one Pólya-gamma sweep). The conjugate structure is read off
        the model at each call; ``init`` of a standalone kernel is where it is checked.

        :param model_args: the model's positional arguments (as passed to ``mcmc.run``).
        :param model_kwargs: the model's keyword arguments.
        """
        model = self._augmented(conditioned(self._model))

        @full_precision
        def update(rng_key, gibbs_sites, hmc_sites):
            kwargs = with_conditioning(model_kwargs, hmc_sites)
            layout = block_layout(model, model_args, kwargs)
            if set(layout.names) != set(gibbs_sites):
                raise ValueError(
                    f"PolyaGammaGibbs.gibbs_fn: the Gaussian block is {list(layout.names)} "
                    f"but HMCGibbs passed gibbs_sites {sorted(gibbs_sites)}"
                )
            terms = conjugate_terms(model, model_args, kwargs, layout)
            z, _ = polya_gamma_sweep(rng_key, layout.ravel(gibbs_sites), terms, layout.unit_b)
            return layout.unravel(z)

        return update
