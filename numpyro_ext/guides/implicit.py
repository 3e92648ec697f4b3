"""Implicit guides: posteriors known only through a sampler, trained adversarially.

:class:`ImplicitGuide` covers the global latents of a model with
:math:`u = \\ell + g_\\phi(\\varepsilon)`, :math:`\\varepsilon \\sim N(0, I)`, in the
unconstrained space of ``biject_to`` (as ``AutoNormal`` does); :class:`AmortizedImplicit`
covers the local latents of a plate with :math:`u_i = g_\\phi(x_i, \\varepsilon_i)`. Neither
has a density, so they train with :class:`numpyro_ext.infer.AdversarialELBO`, which uses the
guide's critic network :math:`T_\\psi` in place of :math:`\\log q` (Mescheder, Nowozin & Geiger
2017). Networks are Flax NNX / Equinox modules or ``apply(params, x)`` functions (see
:func:`numpyro_ext.amortization.as_encoder`); by default both are small ELU MLPs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpyro
from numpyro import handlers
from numpyro.distributions.transforms import biject_to
from numpyro.infer.autoguide import AutoContinuous
from numpyro.infer.initialization import init_to_median

from numpyro_ext.amortization import _encoder_kind, as_encoder
from numpyro_ext.guides.amortized import AmortizedGuide
from numpyro_ext.infer.adversarial import ImplicitLatent

__all__ = ["AmortizedImplicit", "ImplicitGuide"]

_QUANTILE_DRAWS = 2000


def _mlp_init(key: jax.Array, sizes: Sequence[int], dtype, zero_last: bool) -> list[dict]:
    layers = []
    keys = jax.random.split(key, len(sizes) - 1)
    for i, (k, m, n) in enumerate(zip(keys, sizes[:-1], sizes[1:], strict=True)):
        last = i == len(sizes) - 2
        w = jax.random.normal(k, (m, n), dtype) * jnp.sqrt(1.0 / m).astype(dtype)
        layers.append(
            {"w": jnp.zeros_like(w) if (last and zero_last) else w, "b": jnp.zeros(n, dtype)}
        )
    return layers


def _mlp_apply(layers: list[dict], x: jax.Array) -> jax.Array:
    for layer in layers[:-1]:
        x = jax.nn.elu(x @ layer["w"] + layer["b"])
    return x @ layers[-1]["w"] + layers[-1]["b"]


def _default_generator(latent_dim: int, init_scale: float) -> Callable:
    def apply(params, h):
        return params["skip"] * h[..., -latent_dim:] + _mlp_apply(params["net"], h)

    return apply


def _critic_apply(params, h):
    return _mlp_apply(params, h)[..., 0]


def _flatten_rows(x: Any) -> jax.Array:
    leaves = jax.tree.leaves(x)
    return jnp.concatenate([jnp.reshape(leaf, (leaf.shape[0], -1)) for leaf in leaves], -1)


class _ImplicitNetworks:
    """The generator and critic of an implicit guide: user networks or default MLPs.

    Built from the default networks' options; :meth:`use` sets the user's networks.
    """

    def __init__(self, prefix, hidden, noise_dim, init_scale, seed):
        if init_scale <= 0:
            raise ValueError(f"init_scale must be positive, got {init_scale}")
        self.prefix = prefix
        self.hidden = tuple(hidden)
        self.noise_dim = noise_dim
        self.init_scale = init_scale
        self.seed = seed
        self._defaults: dict = {}
        self.use(None, None, None, None, None)

    def use(self, generator, critic, generator_params, critic_params, batched) -> None:
        """The user's networks (``None`` for a default MLP) and their initial parameters."""
        for net in (generator, critic):
            if net is not None:
                _encoder_kind(net)
        self.generator, self.critic = generator, critic
        self.generator_params, self.critic_params = generator_params, critic_params
        self.batched = batched

    def noise_width(self, latent_dim: int) -> int:
        return max(latent_dim, 2) if self.noise_dim is None else self.noise_dim

    def _default_params(self, what: str, width_in: int, latent_dim: int, dtype) -> Any:
        key = (what, width_in, latent_dim, jnp.dtype(dtype).name)
        if key not in self._defaults:
            k = jax.random.fold_in(jax.random.key(self.seed), 0 if what == "generator" else 1)
            if what == "generator":
                sizes = (width_in, *self.hidden, latent_dim)
                self._defaults[key] = {
                    "net": _mlp_init(k, sizes, dtype, zero_last=True),
                    "skip": jnp.full((latent_dim,), self.init_scale, dtype),
                }
            else:
                self._defaults[key] = _mlp_init(k, (width_in, *self.hidden, 1), dtype, False)
        return self._defaults[key]

    def generator_fn(self, width_in: int, latent_dim: int, dtype) -> Callable:
        if self.generator is None:
            if self.noise_width(latent_dim) < latent_dim:
                raise ValueError(
                    f"the default generator needs noise_dim >= the latent size {latent_dim}; "
                    f"got noise_dim={self.noise_dim}"
                )
            params = self._default_params("generator", width_in, latent_dim, dtype)
            return as_encoder(
                _default_generator(latent_dim, self.init_scale),
                f"{self.prefix}_generator",
                params,
                True,
            )
        return as_encoder(
            self.generator, f"{self.prefix}_generator", self.generator_params, self.batched
        )

    def critic_fn(self, width_in: int, dtype) -> Callable:
        if self.critic is None:
            params = self._default_params("critic", width_in, 0, dtype)
            return as_encoder(_critic_apply, f"{self.prefix}_critic", params, True)
        fn = as_encoder(self.critic, f"{self.prefix}_critic", self.critic_params, self.batched)

        def logits(h):
            out = fn(h)
            return out[..., 0] if out.ndim == 2 else out

        return logits


def _check_output(out: jax.Array, latent_dim: int, who: str) -> None:
    if out.ndim != 2 or out.shape[-1] != latent_dim:
        raise ValueError(
            f"{who}: the generator must map a batch of inputs to (batch, {latent_dim}) "
            f"(the number of unconstrained latent dimensions); got {out.shape}"
        )


class ImplicitGuide(AutoContinuous):
    """Implicit guide for the global latents of a model: :math:`u = \\ell + g_\\phi(\\varepsilon)`.

    All continuous latent sites are flattened into one unconstrained vector
    :math:`u \\in \\mathbb{R}^D` (constrained sites through ``biject_to``, as in
    ``AutoContinuous``); ``generator`` maps noise :math:`\\varepsilon \\sim N(0, I_m)` to a
    displacement from the learned location :math:`\\ell` (``{prefix}_loc``, initialised by
    ``init_loc_fn``). The default generator is
    :math:`s \\odot \\varepsilon_{1:D} + \\mathrm{MLP}(\\varepsilon)` with the MLP's last layer at
    zero, so training starts from :math:`N(\\ell, s^2 I)`, :math:`s` = ``init_scale``. The
    critic (``{prefix}_critic``) maps :math:`u` (or its normalised version, under adaptive
    contrast) to a logit. Train with :class:`~numpyro_ext.infer.AdversarialELBO`.

    ``median`` and ``quantiles`` are Monte Carlo estimates (``num_quantile_samples`` draws at a
    fixed key) of the
    coordinate-wise median / quantiles of :math:`u`, pushed through ``biject_to``: exact
    marginal quantiles of scalar constrained sites up to Monte Carlo error (the transforms are
    monotone), coordinates of the unconstrained vector for vector constraints.

    :param model: a NumPyro model (all latents continuous and global).
    :param generator: ``nnx.Module``, ``eqx.Module`` or ``apply(params, eps)``, ``(B, m) ->
        (B, D)``; ``None`` for the default MLP.
    :param critic: network ``(B, D) -> (B,)`` or ``(B, 1)``; ``None`` for the default MLP.
    :param noise_dim: width ``m`` of the noise (default ``max(D, 2)``).
    :param hidden: hidden widths of the default networks.
    :param generator_params: initial parameters of an ``apply`` generator.
    :param critic_params: initial parameters of an ``apply`` critic.
    :param init_scale: scale of the default generator's initial Gaussian.
    :param batched: see :func:`~numpyro_ext.amortization.as_encoder`.
    :param prefix: parameter-name prefix.
    :param init_loc_fn: initial location strategy.
    :param seed: seed of the default networks' initial weights.
    :param num_quantile_samples: draws behind ``median`` and ``quantiles``.

    >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
    >>> def model():
    ...     numpyro.sample("s", dist.LogNormal(0.0, 1.0))
    >>> from numpyro_ext.infer import AdversarialELBO, adversarial_optimizer
    >>> guide = ImplicitGuide(model, hidden=(8,))
    >>> svi = numpyro.infer.SVI(model, guide, adversarial_optimizer(), AdversarialELBO())
    >>> params = svi.get_params(svi.init(jax.random.key(0)))
    >>> guide.sample_posterior(jax.random.key(1), params, sample_shape=(3,))["s"].shape
    (3,)
    """

    def __init__(
        self,
        model: Callable,
        generator: Any = None,
        critic: Any = None,
        *,
        noise_dim: int | None = None,
        hidden: Sequence[int] = (64, 64),
        generator_params: Any = None,
        critic_params: Any = None,
        init_scale: float = 0.1,
        batched: bool | None = None,
        prefix: str = "implicit",
        init_loc_fn: Callable = init_to_median,
        seed: int = 0,
        num_quantile_samples: int = _QUANTILE_DRAWS,
    ) -> None:
        self.num_quantile_samples = num_quantile_samples
        self.networks = _ImplicitNetworks(prefix, hidden, noise_dim, init_scale, seed)
        self.networks.use(generator, critic, generator_params, critic_params, batched)
        super().__init__(model, prefix=prefix, init_loc_fn=init_loc_fn)

    def _get_posterior(self) -> ImplicitLatent:
        dim = self.latent_dim
        dtype = jnp.result_type(self._init_latent)
        noise = self.networks.noise_width(dim)
        loc = numpyro.param(f"{self.prefix}_loc", self._init_latent)
        gen = self.networks.generator_fn(noise, dim, dtype)
        self.networks.critic_fn(dim, dtype)  # registers the critic's parameters

        def generator(eps):
            flat = eps.reshape(-1, noise)
            out = gen(flat)
            _check_output(out, dim, type(self).__name__)
            return (loc + out).reshape((*eps.shape[:-1], dim))

        def log_ratio(u):
            t = self.networks.critic_fn(dim, dtype)(u.reshape(-1, dim))
            return t.reshape(u.shape[:-1])

        return ImplicitLatent(
            generator,
            noise,
            dim,
            log_ratio,
            sites=tuple(self._init_locs),
            pack=self._pack,
            dtype=dtype,
        )

    def _pack(self, values: dict) -> jax.Array:
        # the order of AutoContinuous's flat latent: that of the initial locations
        return jnp.concatenate(
            [
                jnp.reshape(
                    biject_to(self.prototype_trace[name]["fn"].support).inv(values[name]), -1
                )
                for name in self._init_locs
            ]
        )

    def _draws(self, params: dict) -> jax.Array:
        q = handlers.substitute(self._get_posterior, data=params)()
        return q.sample(jax.random.key(0), (self.num_quantile_samples,))

    def median(self, params: dict) -> dict[str, jax.Array]:
        """Monte Carlo coordinate-wise median of :math:`u`, pushed through ``biject_to``.

        :param params: the guide's parameters.
        """
        return self._unpack_and_constrain(jnp.median(self._draws(params), 0), params)

    def quantiles(self, params: dict, quantiles: Sequence[float]) -> dict[str, jax.Array]:
        """Monte Carlo coordinate-wise quantiles of :math:`u`, pushed through ``biject_to``.

        :param params: the guide's parameters.
        :param quantiles: levels in ``(0, 1)``.
        :return: ``{site: array of shape (len(quantiles),) + site shape}``.
        """
        q = jnp.quantile(self._draws(params), jnp.asarray(quantiles), axis=0)
        return self._unpack_and_constrain(q, params)

    def get_posterior(self, params: dict) -> ImplicitLatent:
        """The implicit distribution of the flat unconstrained latent (sampling only)."""
        return handlers.substitute(self._get_posterior, data=params)()


class _ImplicitFamily:
    """Reads the per-datum implicit distribution off the flattened inputs of a batch."""

    def __init__(self, guide: AmortizedImplicit) -> None:
        self.guide = guide

    def output_size(self, dim: int) -> int:  # the encoder is bypassed; kept for the protocol
        return dim

    def __call__(self, h: jax.Array, dim: int) -> ImplicitLatent:
        return self.guide._implicit(h, dim)


class AmortizedImplicit(AmortizedGuide):
    """Amortised implicit guide for local latents: :math:`u_i = g_\\phi([x_i, \\varepsilon_i])`.

    Per datum, the generator takes the datum's inputs (flattened) concatenated with noise
    :math:`\\varepsilon_i \\sim N(0, I_m)` and returns the unconstrained local latent; the
    critic takes :math:`[x_i, \\tilde u_i]`. Plate handling, subsampling with the ``N / B``
    scale, constrained sites and ``AutoGuideList`` use are those of
    :class:`~numpyro_ext.guides.AmortizedGuide`. The default generator is
    :math:`s \\odot \\varepsilon_{1:D} + \\mathrm{MLP}([x, \\varepsilon])` (last layer zero), so
    training starts from :math:`N(0, s^2 I)` for every datum.

    ``median(params, *args)`` and ``quantiles(params, quantiles, *args)`` take the data and
    are Monte Carlo estimates (``num_quantile_samples`` draws per datum, fixed key) pushed
    through ``biject_to``.

    :param model: a NumPyro model whose latents all lie in plate ``plate``.
    :param generator: network ``(B, d_x + m) -> (B, D)``; ``None`` for the default MLP.
    :param critic: network ``(B, d_x + D) -> (B,)`` or ``(B, 1)``; ``None`` for the default.
    :param plate: the model's plate over data.
    :param inputs: model argument name (or ``inputs_fn``) of the per-datum inputs.
    :param noise_dim: width ``m`` of the noise (default ``max(D, 2)``).
    :param hidden: hidden widths of the default networks.
    :param generator_params: initial parameters of an ``apply`` generator.
    :param critic_params: initial parameters of an ``apply`` critic.
    :param init_scale: scale of the default generator's initial Gaussian.
    :param batched: see :func:`~numpyro_ext.amortization.as_encoder`.
    :param prefix: parameter-name prefix.
    :param create_plates: as in :class:`~numpyro_ext.guides.AmortizedGuide`.
    :param seed: seed of the default networks' initial weights.
    :param num_quantile_samples: draws per datum behind ``median`` and ``quantiles``.

    >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
    >>> def model(x):
    ...     with numpyro.plate("data", x.shape[0]):
    ...         z = numpyro.sample("z", dist.Normal(0, 1).expand([2]).to_event(1))
    ...         numpyro.sample("x", dist.Normal(z.sum(-1), 1), obs=x)
    >>> guide = AmortizedImplicit(model, plate="data", inputs="x", hidden=(8,))
    >>> x = jnp.linspace(-1, 1, 5)
    >>> from numpyro_ext.infer import AdversarialELBO, adversarial_optimizer
    >>> svi = numpyro.infer.SVI(model, guide, adversarial_optimizer(), AdversarialELBO())
    >>> params = svi.get_params(svi.init(jax.random.key(0), x))
    >>> guide.sample_posterior(jax.random.key(1), params, x, sample_shape=(4,))["z"].shape
    (4, 5, 2)
    """

    def __init__(
        self,
        model: Callable,
        generator: Any = None,
        critic: Any = None,
        *,
        plate: str,
        inputs: str | Callable,
        noise_dim: int | None = None,
        hidden: Sequence[int] = (64, 64),
        generator_params: Any = None,
        critic_params: Any = None,
        init_scale: float = 0.1,
        batched: bool | None = None,
        prefix: str = "amortized",
        create_plates: Callable | None = None,
        seed: int = 0,
        num_quantile_samples: int = _QUANTILE_DRAWS,
    ) -> None:
        self.networks = _ImplicitNetworks(prefix, hidden, noise_dim, init_scale, seed)
        self.networks.use(generator, critic, generator_params, critic_params, batched)
        super().__init__(
            model,
            generator if generator is not None else _flatten_rows,
            plate=plate,
            inputs=inputs,
            family=_ImplicitFamily(self),
            encoder_params=generator_params,
            batched=batched,
            prefix=prefix,
            create_plates=create_plates,
            num_quantile_samples=num_quantile_samples,
        )

    def encode(self, x: Any) -> jax.Array:
        """The per-datum inputs, flattened: the generator itself takes ``(x_i, eps)``."""
        return _flatten_rows(x).astype(jnp.result_type(float))

    def _implicit(self, h: jax.Array, dim: int) -> ImplicitLatent:
        width = h.shape[-1]
        dtype = h.dtype
        noise = self.networks.noise_width(dim)
        gen = self.networks.generator_fn(width + noise, dim, dtype)
        self.networks.critic_fn(width + dim, dtype)  # registers the critic's parameters
        batch = h.shape[:-1]

        def generator(eps):
            ctx = jnp.broadcast_to(h, (*eps.shape[:-1], width))
            flat = jnp.concatenate([ctx, eps], -1).reshape(-1, width + noise)
            out = gen(flat)
            _check_output(out, dim, type(self).__name__)
            return out.reshape((*eps.shape[:-1], dim))

        def log_ratio(u):
            ctx = jnp.broadcast_to(h, (*u.shape[:-1], width))
            flat = jnp.concatenate([ctx, u], -1).reshape(-1, width + dim)
            return self.networks.critic_fn(width + dim, dtype)(flat).reshape(u.shape[:-1])

        return ImplicitLatent(
            generator,
            noise,
            dim,
            log_ratio,
            batch_shape=batch,
            sites=tuple(self._local),
            pack=self._pack,
            dtype=dtype,
        )

    def _pack(self, values: dict) -> jax.Array:
        parts = []
        for name, site in self._local.items():
            value = values[name]
            u = site.transform.inv(value) if site.transform is not None else value
            batch = u.shape[: u.ndim - len(site.event_shape)]
            parts.append(u.reshape((*batch[:1], math.prod(batch[1:]) * site.size)))
        return jnp.concatenate(parts, -1)

    def _draws(self, params: dict, args: tuple, kwargs: dict) -> jax.Array:
        q = self.get_posterior(params, *args, **kwargs)
        return q.sample(jax.random.key(0), (self.num_quantile_samples,))

    def median(self, params: dict, *args, **kwargs) -> dict[str, jax.Array]:
        """Monte Carlo coordinate-wise median of each datum's :math:`u_i`, through ``biject_to``.

        :param params: the guide's parameters.
        :return: ``{site: array of shape (n,) + site shape}``.
        """
        return self.unpack_latent(jnp.median(self._draws(params, args, kwargs), 0))

    def quantiles(self, params: dict, quantiles: Sequence[float], *args, **kwargs):
        """Monte Carlo coordinate-wise quantiles per datum, pushed through ``biject_to``.

        :param params: the guide's parameters.
        :param quantiles: levels in ``(0, 1)``.
        :return: ``{site: array of shape (len(quantiles), n) + site shape}``.
        """
        draws = self._draws(params, args, kwargs)
        return self.unpack_latent(jnp.quantile(draws, jnp.asarray(quantiles), axis=0))
