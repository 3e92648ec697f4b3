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

from collections.abc import Callable, Iterable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from numpyro.infer.gibbs import conditioned, with_conditioning
from numpyro.util import is_prng_key

from numpyro_ext.infer.augmented_kernel import AugmentedModelKernel, concrete
from numpyro_ext.infer.conjugate_terms import (
    ConjugateTerms,
    check_conjugate,
    check_finite,
    conjugate_terms,
    full_precision,
)
from numpyro_ext.infer.gaussian_block import block_layout
from numpyro_ext.infer.polya_gamma_sweep import polya_gamma_sweep

__all__ = ["PolyaGammaGibbs", "PolyaGammaGibbsState"]


class PolyaGammaGibbsState(NamedTuple):
    """State of :class:`PolyaGammaGibbs`.

    :param z: the Gaussian latent sites (and the auxiliaries when requested), by name.
    :param omega: the flattened Pólya-gamma auxiliaries of the last sweep.
    :param terms: the model's conjugate terms, read once at ``init`` (refreshed when sibling
        blocks of ``numpyro.infer.Gibbs`` move); shared by vectorised chains.
    :param rng_key: the random key of the next sweep.
    """

    z: dict
    omega: jax.Array
    terms: ConjugateTerms
    rng_key: jax.Array


_SHARED_TERMS = PolyaGammaGibbsState(0, 0, None, 0)


class PolyaGammaGibbs(AugmentedModelKernel):
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
    :param approximate_above: ``None`` (default): every Pólya-gamma draw is exact, at a cost
        linear in its shape ``b`` (``ceil(b / 2)`` series pieces; ``init`` warns when a sweep
        would sum more than a million, e.g. negative-binomial counts near ``1e6``). A
        threshold ``>= 200``: shapes above it are drawn from the gamma series truncated after
        64 terms plus a normal remainder with the exact mean and variance, at a cost
        independent of ``b``; an approximation, indistinguishable from exact draws in the
        checks of the Pólya-gamma documentation (mean, sd, Laplace transform, KS test).

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

    def __init__(
        self,
        model: Callable,
        *,
        sites: Iterable[str] | None = None,
        auxiliaries: bool = False,
        check: bool = True,
        approximate_above: float | None = None,
    ):
        super().__init__(
            model, sites=sites, auxiliaries=auxiliaries, check=check,
            approximate_above=approximate_above,
        )  # fmt: skip

    @full_precision
    def init(self, rng_key, num_warmup, init_params, model_args, model_kwargs):
        kwargs = {} if model_kwargs is None else model_kwargs
        model = self._augmented()
        caller = "PolyaGammaGibbs"
        layout = block_layout(model, model_args, kwargs, caller)
        self._layout = layout
        self._has_deterministic = layout.has_deterministic
        self._sample_fn = self.sample
        if concrete(model_args, kwargs):
            # concrete even when MCMC calls init under pmap (chain_method="parallel")
            with jax.ensure_compile_time_eval():
                if self._check:
                    terms = check_conjugate(model, model_args, kwargs, layout, caller)
                else:
                    terms = jax.jit(
                        lambda: conjugate_terms(model, model_args, kwargs, layout, caller)
                    )()
                    check_finite(terms, layout, caller)
        else:
            terms = conjugate_terms(model, model_args, kwargs, layout, caller)
        self._threshold = self._shape_threshold(layout, terms.b)

        def init_one(key, params):
            key, key_z = jax.random.split(key)
            if params:
                z = layout.ravel(params).astype(terms.loc.dtype)
            else:
                noise = jax.random.normal(key_z, terms.loc.shape, terms.loc.dtype)
                z = terms.loc + terms.scale_tril @ noise
            omega = jnp.zeros_like(terms.b)
            return PolyaGammaGibbsState(self._outputs(z, omega), omega, terms, key)

        if is_prng_key(rng_key):
            return init_one(rng_key, init_params)
        # vectorised chains share the terms: one copy of the design, however many chains
        states = jax.vmap(lambda k, p: init_one(k, p)._replace(terms=None))(rng_key, init_params)
        return states._replace(terms=terms)

    def _sample_one(self, state: PolyaGammaGibbsState) -> PolyaGammaGibbsState:
        layout = self._layout
        key, key_sweep = jax.random.split(state.rng_key)
        z, omega = polya_gamma_sweep(
            key_sweep, layout.ravel(state.z), state.terms, layout.unit_b, self._threshold
        )
        return state._replace(z=self._outputs(z, omega), omega=omega, rng_key=key)

    @full_precision
    def sample(self, state, model_args, model_kwargs):
        self._require_init()
        if is_prng_key(state.rng_key):
            return self._sample_one(state)
        return jax.vmap(self._sample_one, in_axes=(_SHARED_TERMS,), out_axes=_SHARED_TERMS)(state)

    @full_precision
    def refresh(self, state, model_args, model_kwargs):
        """Recompute the conjugate terms against the current values of the other blocks."""
        kwargs = {} if model_kwargs is None else model_kwargs
        terms = conjugate_terms(
            self._augmented(), model_args, kwargs, self._require_init(), "PolyaGammaGibbs"
        )
        return state._replace(terms=terms)

    def gibbs_fn(self, *model_args, **model_kwargs) -> Callable:
        """An update for ``numpyro.infer.HMCGibbs(NUTS(model), gibbs_fn=..., gibbs_sites=...)``.

        The returned callable draws the Gaussian ``gibbs_sites`` exactly given the current
        values of the other sites (one Pólya-gamma sweep). The conjugate structure is read off
        the model at each call; ``init`` of a standalone kernel is where it is checked.

        :param model_args: the model's positional arguments (as passed to ``mcmc.run``).
        :param model_kwargs: the model's keyword arguments.
        """
        model = self._augmented(conditioned(self._model))
        caller = "PolyaGammaGibbs.gibbs_fn"

        @full_precision
        def update(rng_key, gibbs_sites, hmc_sites):
            kwargs = with_conditioning(model_kwargs, hmc_sites)
            layout = block_layout(model, model_args, kwargs, caller)
            if set(layout.names) != set(gibbs_sites):
                raise ValueError(
                    f"{caller}: the Gaussian block is {list(layout.names)} "
                    f"but HMCGibbs passed gibbs_sites {sorted(gibbs_sites)}"
                )
            terms = conjugate_terms(model, model_args, kwargs, layout, caller)
            z, _ = polya_gamma_sweep(
                rng_key, layout.ravel(gibbs_sites), terms, layout.unit_b,
                self._shape_threshold(layout, terms.b),
            )  # fmt: skip
            return layout.unravel(z)

        return update
