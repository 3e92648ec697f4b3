"""Forward-KL amortised posterior estimation from a NumPyro model's own simulations.

Draw pairs :math:`(\\theta_j, x_j)` from the model's prior predictive and fit a conditional
density :math:`q_\\phi(\\theta \\mid x)` by maximum likelihood,

.. math::

    \\max_\\phi\\ \\frac1M \\sum_j \\log q_\\phi(\\theta_j \\mid x_j)
        \\;=\\; \\min_\\phi\\ \\mathbb{E}_{p(x)}\\,\\mathrm{KL}\\bigl(p(\\theta\\mid x)\\,\\|\\,
        q_\\phi(\\theta\\mid x)\\bigr) + \\text{const},

the forward (mass-covering) KL averaged over data sets (Papamakarios & Murray 2016, "Fast
epsilon-free inference"; Greenberg, Nonnenmacher & Macke 2019; Radev et al. 2020, BayesFlow).
Once trained, conditioning on any observed :math:`x` costs one encoder call: no MCMC, no
likelihood evaluations. The latents are learnt in the unconstrained space of
``biject_to(support)`` and pushed back when sampled.

The defaults follow sbi's neural posterior estimation (Tejero-Cantero et al. 2020): a
conditional neural spline flow (Durkan et al. 2019) over the parameters, parameters (in the
unconstrained space) and data standardised by their simulated mean and standard deviation,
and training by epochs on 90 % of the simulations, stopping once the log density of the other
10 % has not improved for 20 epochs and keeping the parameters that were best on them.

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

from numpyro_ext.amortization import ConditionalFlowFamily, as_encoder

__all__ = ["AmortizedPosterior", "PosteriorFit", "coverage", "default_spline_flow"]

#: Key of the standardisation statistics in the parameters returned by ``fit``.
STANDARDIZATION = "standardization"


@dataclass(frozen=True)
class PosteriorFit:
    """Result of :meth:`AmortizedPosterior.fit`.

    :param params: trained parameters (those of the best validation epoch), with the
        standardisation statistics under ``"standardization"`` when ``standardize=True``.
    :param losses: training loss (negative mean log density in the standardised space) per
        epoch.
    :param validation_losses: the same on the held-out simulations, per epoch (NaN without a
        validation split).
    :param best_epoch: the epoch whose parameters were kept (0-based).
    :param num_epochs: epochs run before stopping.
    """

    params: dict
    losses: jax.Array
    validation_losses: jax.Array
    best_epoch: int
    num_epochs: int


def default_spline_flow(key, dim: int, context_dim: int):
    """sbi's default conditional density: 5 spline couplings, 50 hidden units, 10 bins.

    :param key: PRNG key of the initial weights.
    :param dim: parameter dimension (>= 2).
    :param context_dim: width of the (embedded) data.
    :return: a conditional :class:`~numpyro_ext.transforms.Scan` flow, identity at
        initialisation.
    """
    from numpyro_ext.transforms import neural_spline_flow

    return neural_spline_flow(
        key, dim, num_layers=5, hidden=(50, 50), num_bins=10, boundary=4.0,
        context_dim=context_dim,
    )  # fmt: skip


@dataclass(frozen=True)
class _Latent:
    shape: tuple[int, ...]
    unconstrained_shape: tuple[int, ...]
    offset: int
    size: int
    transform: Any


class AmortizedPosterior:
    """Neural posterior estimation: ``q(theta | x) = family(encoder(x))`` fitted on simulations.

    ``theta`` is the latent sites named in ``parameters`` (by default every latent site;
    flattened and unconstrained, in trace order) and ``x`` the value of the site ``observed``.
    Latent sites not named in ``parameters`` are the simulator's own randomness: simulated and
    integrated out, not estimated. Simulation calls the model with the arguments given to
    :meth:`fit`, so those must leave ``observed`` unobserved (``obs=None``).

    Defaults (sbi's): no encoder (the flattened, standardised data are the context), a
    conditional neural spline flow (:func:`default_spline_flow`; it needs two or more
    parameter dimensions), standardisation, and early stopping on a 10 % validation split.

    :param model: a NumPyro model that samples the data site ``observed`` when not given it.
    :param encoder: ``None`` (identity on the flattened data), or an ``nnx.Module``,
        ``eqx.Module`` or ``apply(params, x)`` (see :func:`~numpyro_ext.amortization.as_encoder`)
        mapping a batch of data sets ``(B, ...)`` to ``(B, family.output_size(D))``.
    :param observed: name of the data site.
    :param parameters: names of the latent sites to estimate; ``None`` for all of them.
    :param family: the conditional density; by default a conditional spline flow whose context
        width is the encoder's output width.
    :param encoder_params: initial parameters when ``encoder`` is a plain function.
    :param batched: see :func:`~numpyro_ext.amortization.as_encoder`.
    :param standardize: standardise the unconstrained parameters and the data by their mean and
        standard deviation over the training simulations (stored in ``fit.params``).
    :param name: NumPyro name of the encoder parameters.

    >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
    >>> def model(x=None):
    ...     mu = numpyro.sample("mu", dist.Normal(0, 1).expand([2]).to_event(1))
    ...     noise = numpyro.sample("noise", dist.Normal(0, 1).expand([2]).to_event(1))
    ...     numpyro.sample("x", dist.Normal(mu + noise, 1).to_event(1), obs=x)
    >>> npe = AmortizedPosterior(model, observed="x", parameters=["mu"])
    >>> fit = npe.fit(jax.random.key(0), num_simulations=500, max_epochs=5)
    >>> fit.losses.shape, fit.validation_losses.shape
    ((5,), (5,))
    >>> npe.sample_posterior(jax.random.key(1), fit.params, jnp.ones((1, 2)), (100,))["mu"].shape
    (100, 1, 2)
    """

    def __init__(
        self,
        model: Callable,
        encoder: Any = None,
        *,
        observed: str,
        parameters: Sequence[str] | None = None,
        family: Callable | None = None,
        encoder_params: Any = None,
        batched: bool | None = None,
        standardize: bool = True,
        name: str = "posterior_encoder",
    ) -> None:
        if isinstance(parameters, str):
            raise ValueError(
                "AmortizedPosterior: parameters must be a list of site names, got the string "
                f"{parameters!r} (write [{parameters!r}])"
            )
        if parameters is not None and not list(parameters):
            raise ValueError(
                "AmortizedPosterior: parameters is empty; name at least one latent sample site "
                "to estimate (None estimates every latent site)"
            )
        self.model = model
        self.encoder = encoder
        self.observed = observed
        self.parameters = None if parameters is None else list(parameters)
        self.family = family
        self.encoder_params = encoder_params
        self.batched = batched
        self.standardize = standardize
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
        latent_sites = [
            name
            for name, site in tr.items()
            if site["type"] == "sample" and not site["is_observed"] and name != self.observed
        ]
        if not latent_sites:
            sites = [name for name, site in tr.items() if site["type"] == "sample"]
            raise ValueError(
                "AmortizedPosterior: the model has no latent sample site to estimate (its "
                f"sample sites are {sites}, all observed or the data site {self.observed!r}); "
                "the parameters must be drawn by numpyro.sample without obs"
            )
        if self.parameters is not None:
            unknown = [p for p in self.parameters if p not in latent_sites]
            if unknown:
                raise ValueError(
                    f"AmortizedPosterior: parameters {unknown} are not latent sample sites of "
                    f"the model; its latent sites are {latent_sites}"
                )
            latent_sites = [name for name in latent_sites if name in self.parameters]
        latents, offset = {}, 0
        for name in latent_sites:
            site = tr[name]
            if site["fn"].support.is_discrete:
                raise ValueError(
                    f"AmortizedPosterior: latent site {name!r} is discrete "
                    f"({site['fn'].support}); name the continuous sites to estimate in "
                    "`parameters`"
                )
            transform = biject_to(site["fn"].support)
            shape = jnp.shape(site["value"])
            u_shape = tuple(transform.inverse_shape(shape))
            latents[name] = _Latent(shape, u_shape, offset, math.prod(u_shape), transform)
            offset += latents[name].size
        if offset == 0:
            raise ValueError(
                f"AmortizedPosterior: the parameter sites {list(latents)} have no elements "
                "(shape with a zero); there is nothing to estimate"
            )
        self._latents, self.latent_size = latents, offset

    def _require_latents(self, caller: str) -> dict[str, _Latent]:
        if self._latents is None:
            raise ValueError(
                f"AmortizedPosterior.{caller}: the parameter sites are not known yet; call "
                "fit (or simulate) first"
            )
        return self._latents

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
        sites = self._require_latents("flatten")
        missing = [name for name in sites if name not in latents]
        if missing:
            raise ValueError(
                f"AmortizedPosterior.flatten: latents lack the parameter sites {missing}; "
                f"expected values for {list(sites)}, got {list(latents)}"
            )
        parts = []
        for name, site in sites.items():
            u = site.transform.inv(latents[name])
            parts.append(u.reshape((*u.shape[: u.ndim - len(site.unconstrained_shape)], -1)))
        return jnp.concatenate(parts, -1)

    def unflatten(self, flat: jax.Array) -> dict[str, jax.Array]:
        """Flat unconstrained ``(..., D)`` to constrained latents ``{site: (...) + shape}``."""
        self._require_latents("unflatten")
        batch = flat.shape[:-1]
        return {
            name: site.transform(
                flat[..., site.offset : site.offset + site.size].reshape(
                    batch + site.unconstrained_shape
                )
            )
            for name, site in self._latents.items()
        }

    def _encode(self, x: jax.Array) -> jax.Array:
        if self.encoder is None:
            return x.reshape((x.shape[0], -1))
        return as_encoder(self.encoder, self.name, self.encoder_params, self.batched)(x)

    def _default_family(self, x: jax.Array) -> Callable:
        if self.latent_size == 1:
            raise ValueError(
                "AmortizedPosterior: the default flow needs >= 2 parameter dimensions and the "
                "model has one; pass family=FullRankNormalFamily() and an encoder with "
                "family.output_size(1) = 2 outputs"
            )
        encode = handlers.seed(self._encode, 0)
        width = jax.eval_shape(encode, x[:1]).shape[-1]
        return ConditionalFlowFamily(context_dim=width, flow=default_spline_flow)

    def _conditional(self, x: jax.Array) -> dist.Distribution:
        if self.family is None:
            self.family = self._default_family(x)
        h = self._encode(x)
        width = self.family.output_size(self.latent_size)
        if jnp.ndim(h) != 2 or h.shape[-1] != width:
            raise ValueError(
                f"AmortizedPosterior: encoder output must have shape (batch, {width}) "
                f"({type(self.family).__name__} over {self.latent_size} latent dimensions); "
                f"got {jnp.shape(h)}"
            )
        return self.family(h, self.latent_size)

    def init_params(self, x: jax.Array) -> dict:
        """Initial parameters (the encoder's and the family's), traced on data sets ``x``."""
        tr = handlers.trace(handlers.seed(self._conditional, 0)).get_trace(jnp.asarray(x))
        return {k: v["value"] for k, v in tr.items() if v["type"] == "param"}

    def conditional(self, params: dict, x: jax.Array) -> dist.Distribution:
        """``q(theta | x)`` over the flat unconstrained latents, batch shape ``(n,)``.

        :param params: trained parameters (``fit.params``); standardisation statistics in
            them are applied to ``x`` and undone on ``theta``.
        :param x: a batch of data sets ``(n,) + data shape``.
        """
        self._require_latents("conditional")
        x = jnp.asarray(x)
        stats = params.get(STANDARDIZATION)
        if stats is not None:
            x = (x - stats["x_loc"]) / stats["x_scale"]
        q = handlers.substitute(self._conditional, data=params)(x)
        if stats is None:
            return q
        return _unstandardize(q, stats["theta_loc"], stats["theta_scale"])

    def fit(
        self,
        rng_key,
        *args,
        num_simulations: int = 10_000,
        batch_size: int = 200,
        learning_rate: float = 5e-4,
        optimizer: optax.GradientTransformation | None = None,
        validation_fraction: float = 0.1,
        stop_after_epochs: int = 20,
        max_epochs: int = 2000,
        num_steps: int | None = None,
        **kwargs,
    ) -> PosteriorFit:
        """Simulate from the prior predictive and maximise ``mean log q(theta_j | x_j)``.

        Training runs by epochs (a fresh shuffle of the training simulations each, minibatches
        of ``batch_size``); after each epoch the loss on the held-out ``validation_fraction``
        of the simulations is recorded, training stops once it has not improved for
        ``stop_after_epochs`` epochs, and the parameters of the best epoch are returned.

        :param rng_key: PRNG key.
        :param args: model arguments for simulation (leaving the data site unobserved).
        :param num_simulations: number of simulations (training plus validation).
        :param batch_size: minibatch size.
        :param learning_rate: Adam's learning rate when ``optimizer`` is not given.
        :param optimizer: an optax optimiser; default ``optax.adam(learning_rate)``.
        :param validation_fraction: share of the simulations held out; ``0`` trains for the
            whole budget and returns the last parameters.
        :param stop_after_epochs: patience of the early stopping, in epochs.
        :param max_epochs: most epochs to run.
        :param num_steps: most optimiser steps in all (rounded up to whole epochs); ``None``
            for no limit beyond ``max_epochs``.
        :param kwargs: model keyword arguments for simulation.
        :return: the trained parameters and the training curves.
        """
        if min(num_simulations, batch_size, max_epochs, stop_after_epochs) < 1:
            raise ValueError(
                "AmortizedPosterior.fit: num_simulations, batch_size, max_epochs and "
                f"stop_after_epochs must be positive; got {num_simulations}, {batch_size}, "
                f"{max_epochs}, {stop_after_epochs}"
            )
        if num_steps is not None and num_steps < 1:
            raise ValueError(f"AmortizedPosterior.fit: num_steps must be >= 1, got {num_steps}")
        if not 0 <= validation_fraction < 1:
            raise ValueError(
                "AmortizedPosterior.fit: validation_fraction must lie in [0, 1), got "
                f"{validation_fraction}"
            )
        num_val = round(validation_fraction * num_simulations)
        if validation_fraction > 0 and not 1 <= num_val < num_simulations:
            raise ValueError(
                f"AmortizedPosterior.fit: validation_fraction {validation_fraction} of "
                f"{num_simulations} simulations leaves {num_val} for validation"
            )
        num_train = num_simulations - num_val
        batch_size = min(batch_size, num_train)
        sim_key, step_key = jax.random.split(rng_key)
        theta, x = self.simulate(sim_key, num_simulations, *args, **kwargs)
        _check_simulations(theta, x)
        train, val = (theta[:num_train], x[:num_train]), (theta[num_train:], x[num_train:])
        stats = _statistics(*train) if self.standardize else None
        if stats is not None:
            train, val = _standardize(train, stats), _standardize(val, stats)
        params = self.init_params(train[1][:batch_size])
        steps_per_epoch = num_train // batch_size
        if num_steps is not None:
            max_epochs = min(max_epochs, -(-num_steps // steps_per_epoch))
        optimizer = optax.adam(learning_rate) if optimizer is None else optimizer
        params, losses, val_losses, best, epochs = _train(
            self._loss, params, train, val, optimizer, step_key, max_epochs, batch_size,
            stop_after_epochs,
        )  # fmt: skip
        epochs = int(epochs)
        if stats is not None:
            params = {**params, STANDARDIZATION: stats}
        return PosteriorFit(params, losses[:epochs], val_losses[:epochs], int(best), epochs)

    def _loss(self, params: dict, theta: jax.Array, x: jax.Array) -> jax.Array:
        """Negative mean log density in the space the family is trained in."""
        q = handlers.substitute(self._conditional, data=params)(x)
        return -q.log_prob(theta).mean()

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


def _check_simulations(theta: jax.Array, x: jax.Array) -> None:
    for name, value in (("parameters", theta), ("data", x)):
        bad = ~jnp.isfinite(value).reshape((value.shape[0], -1)).all(-1)
        if bool(bad.any()):
            raise ValueError(
                f"AmortizedPosterior.fit: {int(bad.sum())} of {value.shape[0]} simulations "
                f"have non-finite {name} (NaN or inf); fix the simulator or its prior"
            )


def _statistics(theta: jax.Array, x: jax.Array) -> dict:
    """Mean and standard deviation of each parameter and each data entry (sbi's z-score)."""

    def loc_scale(a):
        scale = a.std(0)
        return a.mean(0), jnp.where(scale > 1e-14, scale, 1.0)

    theta_loc, theta_scale = loc_scale(theta)
    x_loc, x_scale = loc_scale(x)
    return {"theta_loc": theta_loc, "theta_scale": theta_scale, "x_loc": x_loc, "x_scale": x_scale}


def _standardize(pair: tuple, stats: dict) -> tuple:
    theta, x = pair
    return (
        (theta - stats["theta_loc"]) / stats["theta_scale"],
        (x - stats["x_loc"]) / stats["x_scale"],
    )


def _unstandardize(q: dist.Distribution, loc: jax.Array, scale: jax.Array) -> dist.Distribution:
    """The law of ``loc + scale * z`` for ``z ~ q``; in closed form for the Gaussian families."""
    if isinstance(q, dist.MultivariateNormal):
        tril = scale[:, None] * q.scale_tril
        return dist.MultivariateNormal(loc + scale * q.loc, scale_tril=tril)
    if isinstance(q, dist.Independent) and isinstance(q.base_dist, dist.Normal):
        base = q.base_dist
        return dist.Normal(loc + scale * base.loc, scale * base.scale).to_event(1)
    return _Affine(q, loc, scale)


class _Affine(dist.Distribution):
    """``loc + scale * z`` for ``z ~ q`` over vectors (``q`` any distribution, e.g. a flow)."""

    support = dist.constraints.real_vector

    def __init__(self, q: dist.Distribution, loc: jax.Array, scale: jax.Array):
        self.q, self.loc, self.scale = q, loc, scale
        super().__init__(batch_shape=q.batch_shape, event_shape=q.event_shape)

    def sample(self, key, sample_shape=()):
        return self.loc + self.scale * self.q.sample(key, sample_shape)

    def log_prob(self, value):
        z = (value - self.loc) / self.scale
        return self.q.log_prob(z) - jnp.sum(jnp.log(self.scale))


def _train(loss, params, train, val, optimizer, rng_key, max_epochs, batch_size, patience):
    """Epochs of minibatch optimisation with early stopping on the validation loss.

    One compiled ``while_loop`` over epochs, each a ``scan`` over a fresh shuffle of the
    training set; the parameters of the best validation epoch ride along in the carry.
    """
    theta, x = train
    n = theta.shape[0]
    steps = n // batch_size
    has_val = val[0].shape[0] > 0

    def epoch(carry):
        k, p, state, best_p, best_val, best_k, key, losses, val_losses = carry
        key, perm_key = jax.random.split(key)
        order = jax.random.permutation(perm_key, n)[: steps * batch_size].reshape(steps, -1)

        def step(c, idx):
            p, state = c
            value, grad = jax.value_and_grad(loss)(p, theta[idx], x[idx])
            updates, state = optimizer.update(grad, state, p)
            return (optax.apply_updates(p, updates), state), value

        (p, state), values = jax.lax.scan(step, (p, state), order)
        val_loss = loss(p, *val) if has_val else jnp.asarray(jnp.nan, losses.dtype)
        better = (val_loss < best_val) if has_val else jnp.asarray(True)
        best_p = jax.tree.map(lambda new, old: jnp.where(better, new, old), p, best_p)
        best_val = jnp.where(better, val_loss, best_val)
        best_k = jnp.where(better, k, best_k)
        losses = losses.at[k].set(values.mean())
        val_losses = val_losses.at[k].set(val_loss)
        return k + 1, p, state, best_p, best_val, best_k, key, losses, val_losses

    def going(carry):
        k, best_k = carry[0], carry[5]
        return (k < max_epochs) & (k - best_k <= patience)

    @jax.jit
    def run(p, key):
        curve = jnp.full(max_epochs, jnp.nan, theta.dtype)
        k0 = jnp.asarray(0)
        init = (k0, p, optimizer.init(p), p, jnp.asarray(jnp.inf, theta.dtype), k0, key)
        k, _, _, best_p, _, best_k, _, losses, val_losses = jax.lax.while_loop(
            going, epoch, (*init, curve, curve)
        )
        return best_p, losses, val_losses, best_k, k

    return run(params, rng_key)


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
