"""Forward-KL amortised posterior estimation from a NumPyro model's own simulations.

Draw pairs :math:`(\\theta_j, x_j)` from the model's prior predictive and fit a conditional
density :math:`q_\\phi(\\theta \\mid x)` by maximum likelihood,

.. math:: \\max_\\phi\\ \\frac1M \\sum_j \\log q_\\phi(\\theta_j \\mid x_j)
    \\;=\\; \\min_\\phi\\ \\mathbb{E}_{p(x)}\\,\\mathrm{KL}\\bigl(p(\\theta\\mid x)\\,\\|\\,
    q_\\phi(\\theta\\mid x)\\bigr) + \\text{const},

the forward (mass-covering) KL averaged over data sets (Papamakarios & Murray 2016, "Fast
epsilon-free inference"; Greenberg, Nonnenmacher & Macke 2019; Radev et al. 2020, BayesFlow).
Once trained, conditioning on any observed :math:`x` costs one encoder call: no MCMC, no
likelihood evaluations. The latents are learnt in the unconstrained space of
``biject_to(support)`` and pushed back when sampled.

Calibration is checked by simulation-based calibration (Talts et al. 2018): for fresh
simulations the rank of :math:`\\theta_j` among draws from :math:`q(\\cdot \\mid x_j)` is
uniform when :math:`q` is the true posterior, and central credible intervals then have their
nominal coverage.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
import optax
from numpyro import handlers
from numpyro.distributions.transforms import biject_to
from numpyro.infer import Predictive

from numpyro_ext.amortization import FullRankNormalFamily, as_encoder

__all__ = ["AmortizedPosterior", "PosteriorFit", "coverage"]


@dataclass(frozen=True)
class PosteriorFit:
    """Result of :meth:`AmortizedPosterior.fit`: trained parameters and the loss per step."""

    params: dict
    losses: jax.Array


@dataclass(frozen=True)
class _Latent:
    shape: tuple[int, ...]
    unconstrained_shape: tuple[int, ...]
    offset: int
    size: int
    transform: Any


class AmortizedPosterior:
    """Neural posterior estimation: ``q(theta | x) = family(encoder(x))`` fitted on simulations.

    ``theta`` is every latent site of ``model`` (flattened and unconstrained, in trace order)
    and ``x`` the value of the site ``observed``. Simulation calls the model with the arguments
    given to :meth:`fit`, so those must leave ``observed`` unobserved (``obs=None``).

    :param model: a NumPyro model that samples the data site ``observed`` when not given it.
    :param encoder: an ``nnx.Module``, ``eqx.Module`` or ``apply(params, x)`` (see
        :func:`~numpyro_ext.guides.as_encoder`) mapping a batch of data sets ``(B, ...)`` to
        ``(B, family.output_size(D))``.
    :param observed: name of the data site.
    :param family: the conditional density; default :class:`FullRankNormalFamily`.
    :param encoder_params: initial parameters when ``encoder`` is a plain function.
    :param batched: see :func:`~numpyro_ext.guides.as_encoder`.
    :param name: NumPyro name of the encoder parameters.

    >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
    >>> def model(x=None):
    ...     mu = numpyro.sample("mu", dist.Normal(0, 1))
    ...     numpyro.sample("x", dist.Normal(mu, 1).expand([4]).to_event(1), obs=x)
    >>> apply = lambda p, x: x @ p["w"] + p["b"]
    >>> npe = AmortizedPosterior(model, apply, observed="x",
    ...                          encoder_params={"w": jnp.zeros((4, 2)), "b": jnp.zeros(2)})
    >>> fit = npe.fit(jax.random.key(0), num_simulations=2000, num_steps=500, batch_size=128)
    >>> npe.sample_posterior(jax.random.key(1), fit.params, jnp.ones((1, 4)), (100,))["mu"].shape
    (100, 1)
    """

    def __init__(
        self,
        model: Callable,
        encoder: Any,
        *,
        observed: str,
        family: Callable | None = None,
        encoder_params: Any = None,
        batched: bool | None = None,
        name: str = "posterior_encoder",
    ) -> None:
        self.model = model
        self.encoder = encoder
        self.observed = observed
        self.family = FullRankNormalFamily(init_scale=1.0) if family is None else family
        self.encoder_params = encoder_params
        self.batched = batched
        self.name = name
        self._latents: dict[str, _Latent] | None = None
        self.latent_size = 0

    def _setup(self, args: tuple, kwargs: dict) -> None:
        if self._latents is not None:
            return
        tr = handlers.trace(handlers.seed(self.model, 0)).get_trace(*args, **kwargs)
        if self.observed not in tr or tr[self.observed]["type"] != "sample":
            raise ValueError(f"AmortizedPosterior: the model has no sample site {self.observed!r}")
        if tr[self.observed]["is_observed"]:
            raise ValueError(
                f"AmortizedPosterior: site {self.observed!r} is observed under the given model "
                "arguments; simulation needs it sampled (pass its data argument as None)"
            )
        latents, offset = {}, 0
        for name, site in tr.items():
            if site["type"] != "sample" or site["is_observed"] or name == self.observed:
                continue
            if site["fn"].support.is_discrete:
                raise ValueError(
                    f"AmortizedPosterior: latent site {name!r} is discrete ({site['fn'].support})"
                )
            transform = biject_to(site["fn"].support)
            shape = jnp.shape(site["value"])
            u_shape = tuple(transform.inverse_shape(shape))
            latents[name] = _Latent(shape, u_shape, offset, math.prod(u_shape), transform)
            offset += latents[name].size
        if not latents:
            raise ValueError("AmortizedPosterior: the model has no latent site to estimate")
        self._latents, self.latent_size = latents, offset

    @property
    def latent_names(self) -> list[str]:
        """Latent sites in the order of the flat vector (after the first simulation)."""
        return list(self._latents or {})

    def simulate(self, rng_key, num_simulations: int, *args, **kwargs):
        """Draw ``(theta, x)`` pairs from the prior predictive.

        :param rng_key: PRNG key.
        :param num_simulations: number of pairs.
        :return: ``(theta, x)``: unconstrained flat latents ``(M, D)`` and data ``(M, ...)``.
        """
        self._setup(args, kwargs)
        sites = [*self._latents, self.observed]
        draws = Predictive(self.model, num_samples=num_simulations, return_sites=sites)(
            rng_key, *args, **kwargs
        )
        return self.flatten({k: draws[k] for k in self._latents}), draws[self.observed]

    def flatten(self, latents: dict[str, jax.Array]) -> jax.Array:
        """Constrained latents ``{site: (n,) + shape}`` to the flat unconstrained ``(n, D)``."""
        parts = []
        for name, site in self._latents.items():
            u = site.transform.inv(latents[name])
            parts.append(u.reshape((*u.shape[: u.ndim - len(site.unconstrained_shape)], -1)))
        return jnp.concatenate(parts, -1)

    def unflatten(self, flat: jax.Array) -> dict[str, jax.Array]:
        """Flat unconstrained ``(..., D)`` to constrained latents ``{site: (...) + shape}``."""
        batch = flat.shape[:-1]
        return {
            name: site.transform(
                flat[..., site.offset : site.offset + site.size].reshape(
                    batch + site.unconstrained_shape
                )
            )
            for name, site in self._latents.items()
        }

    def _conditional(self, x: jax.Array) -> dist.Distribution:
        h = as_encoder(self.encoder, self.name, self.encoder_params, self.batched)(x)
        width = self.family.output_size(self.latent_size)
        if jnp.ndim(h) != 2 or h.shape[-1] != width:
            raise ValueError(
                f"AmortizedPosterior: encoder output must have shape (batch, {width}) "
                f"({type(self.family).__name__} over {self.latent_size} latent dimensions); "
                f"got {jnp.shape(h)}"
            )
        return self.family(h, self.latent_size)

    def init_params(self, x: jax.Array) -> dict:
        """Initial parameters (the encoder's), traced on a batch of data sets ``x``."""
        tr = handlers.trace(handlers.seed(self._conditional, 0)).get_trace(x)
        return {k: v["value"] for k, v in tr.items() if v["type"] == "param"}

    def conditional(self, params: dict, x: jax.Array) -> dist.Distribution:
        """``q(theta | x)`` over the flat unconstrained latents, batch shape ``(n,)``.

        :param params: trained parameters (``fit.params``).
        :param x: a batch of data sets ``(n,) + data shape``.
        """
        if self._latents is None:
            raise ValueError("AmortizedPosterior: fit or simulate before conditioning")
        return handlers.substitute(self._conditional, data=params)(x)

    def fit(
        self,
        rng_key,
        *args,
        num_simulations: int = 10_000,
        num_steps: int = 2_000,
        batch_size: int = 256,
        optimizer: optax.GradientTransformation | None = None,
        **kwargs,
    ) -> PosteriorFit:
        """Simulate from the prior predictive and maximise ``mean log q(theta_j | x_j)``.

        :param rng_key: PRNG key.
        :param args: model arguments for simulation (leaving the data site unobserved).
        :param num_simulations: size of the simulated training set.
        :param num_steps: optimiser steps, each on a minibatch drawn with replacement.
        :param batch_size: minibatch size.
        :param optimizer: an optax optimiser; default ``optax.adam(1e-3)``.
        :return: the trained parameters and per-step losses (negative mean log density).
        """
        if batch_size < 1 or num_simulations < 1 or num_steps < 1:
            raise ValueError(
                "AmortizedPosterior.fit: num_simulations, num_steps and batch_size must be "
                f"positive; got {num_simulations}, {num_steps}, {batch_size}"
            )
        sim_key, step_key = jax.random.split(rng_key)
        theta, x = self.simulate(sim_key, num_simulations, *args, **kwargs)
        params = self.init_params(x[:batch_size])
        optimizer = optax.adam(1e-3) if optimizer is None else optimizer
        params, losses = _train(self, params, theta, x, optimizer, step_key, num_steps, batch_size)
        return PosteriorFit(params=params, losses=losses)

    def log_prob(self, params: dict, latents: dict[str, jax.Array], x: jax.Array) -> jax.Array:
        """``log q(theta | x)`` at constrained latents, with the ``biject_to`` Jacobian.

        :param params: trained parameters.
        :param latents: ``{site: (n,) + shape}``.
        :param x: data sets ``(n,) + data shape``.
        :return: log densities, shape ``(n,)``.
        """
        flat = self.flatten(latents)
        logq = self.conditional(params, x).log_prob(flat)
        for name, site in self._latents.items():
            u = flat[..., site.offset : site.offset + site.size].reshape(
                flat.shape[:-1] + site.unconstrained_shape
            )
            ladj = site.transform.log_abs_det_jacobian(u, latents[name])
            logq = logq - ladj.reshape((*flat.shape[:-1], -1)).sum(-1)
        return logq

    def sample_posterior(
        self, rng_key, params: dict, x: jax.Array, sample_shape: Sequence[int] = ()
    ) -> dict[str, jax.Array]:
        """Draw latents given each data set in the batch ``x``.

        :param rng_key: PRNG key.
        :param params: trained parameters.
        :param x: data sets ``(n,) + data shape``.
        :param sample_shape: leading shape of the draws.
        :return: ``{site: sample_shape + (n,) + site shape}``.
        """
        flat = self.conditional(params, x).sample(rng_key, tuple(sample_shape))
        return self.unflatten(flat)

    def rank_statistics(
        self,
        rng_key,
        params: dict,
        *args,
        num_datasets: int = 1000,
        num_draws: int = 100,
        **kwargs,
    ) -> jax.Array:
        """Simulation-based calibration ranks (Talts et al. 2018).

        For fresh simulations ``(theta_j, x_j)`` the rank of each unconstrained coordinate of
        ``theta_j`` among ``num_draws`` draws of ``q(. | x_j)`` is uniform on
        ``{0, ..., num_draws}`` when ``q`` is the exact posterior.

        :param rng_key: PRNG key.
        :param params: trained parameters.
        :param args: model arguments for simulation.
        :param num_datasets: number of simulated data sets.
        :param num_draws: posterior draws per data set.
        :return: integer ranks, shape ``(num_datasets, D)``.
        """
        sim_key, draw_key = jax.random.split(rng_key)
        theta, x = self.simulate(sim_key, num_datasets, *args, **kwargs)
        draws = self.conditional(params, x).sample(draw_key, (num_draws,))
        return (draws < theta).sum(0)


def _train(estimator, params, theta, x, optimizer, rng_key, num_steps, batch_size):
    def loss(p, u, xb):
        return -estimator.conditional(p, xb).log_prob(u).mean()

    def step(carry, key):
        p, state = carry
        idx = jax.random.randint(key, (batch_size,), 0, theta.shape[0])
        value, grad = jax.value_and_grad(loss)(p, theta[idx], x[idx])
        updates, state = optimizer.update(grad, state, p)
        return (optax.apply_updates(p, updates), state), value

    @jax.jit
    def run(p, keys):
        (p, _), losses = jax.lax.scan(step, (p, optimizer.init(p)), keys)
        return p, losses

    return run(params, jax.random.split(rng_key, num_steps))


def coverage(
    ranks: jax.Array, num_draws: int, levels: Sequence[float]
) -> tuple[jax.Array, jax.Array]:
    """Coverage of central credible intervals, from SBC ranks.

    ``theta`` lies in the central ``level`` interval of the ``L = num_draws`` draws when
    ``|(r + 1/2) / (L + 1) - 1/2| < level / 2``. Under calibration ``r`` is uniform on
    ``{0, ..., L}``, which gives the nominal coverage of this discrete rule exactly.

    :param ranks: ranks ``(num_datasets, D)`` from :meth:`AmortizedPosterior.rank_statistics`.
    :param num_draws: the ``num_draws`` the ranks were computed with.
    :param levels: credible levels in ``(0, 1)``.
    :return: ``(observed, nominal)``: observed coverage ``(len(levels), D)`` and the exact
        nominal coverage ``(len(levels),)``.

    >>> import jax.numpy as jnp
    >>> observed, nominal = coverage(jnp.arange(100)[:, None], 99, [0.5, 0.9])
    >>> observed[:, 0], nominal
    (Array([0.5, 0.9], dtype=float32), Array([0.5, 0.9], dtype=float32))
    """
    levels = jnp.asarray(levels, dtype=float)
    if jnp.any((levels <= 0) | (levels >= 1)):
        raise ValueError(f"coverage: levels must lie in (0, 1); got {levels}")

    def inside(r):
        centred = jnp.abs((r + 0.5) / (num_draws + 1) - 0.5)
        return centred[None] < levels.reshape((-1,) + (1,) * jnp.ndim(r)) / 2

    observed = inside(jnp.asarray(ranks)).mean(1)
    nominal = inside(jnp.arange(num_draws + 1)).mean(1)
    return observed, nominal
