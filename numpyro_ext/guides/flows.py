"""A normalising-flow autoguide over the model's unconstrained latent space.

:class:`AutoFlow` is an :class:`~numpyro.infer.autoguide.AutoContinuous` guide, like NumPyro's
``AutoIAFNormal``: all latent sites are flattened into one unconstrained vector :math:`z` and

.. math::

    z = \\mu + \\sigma \\odot f(\\varepsilon), \\qquad \\varepsilon \\sim \\mathcal N(0, I),

with :math:`f` any flow from :mod:`numpyro_ext.transforms` started at the identity, so the
guide starts as ``AutoNormal`` would (``loc`` from ``init_loc_fn``, scale ``init_scale``). The
default flow is a neural spline flow (Durkan et al. 2019) whose couplings also shift and scale
(``affine=True``): splines bend mass only inside ``[-boundary, boundary]``, the affine part
moves and stretches it, which a curved posterior (a banana, a funnel's neck) needs. The flow
parameters are one NumPyro param (a pytree) ``{prefix}_flow``; with a
:class:`~numpyro_ext.transforms.Scan` flow the layers are traced once, so deep stacks compile
as fast as shallow ones.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints
from numpyro.infer.autoguide import AutoContinuous
from numpyro.infer.initialization import init_to_uniform

from numpyro_ext.transforms import Affine, Bijector, neural_spline_flow

__all__ = ["AutoFlow"]


class AutoFlow(AutoContinuous):
    """Flow guide: standard normal pushed through ``flow`` and an elementwise affine map.

    :param model: a NumPyro model.
    :param prefix: prefix of the guide's param sites.
    :param init_loc_fn: per-site initialisation of the location.
    :param flow: ``flow(key, latent_dim) -> Bijector`` giving the initial flow (its array
        leaves are the trained parameters); default a neural spline flow.
    :param num_layers: layers of the default flow.
    :param hidden: conditioner widths of the default flow.
    :param num_bins: spline bins of the default flow.
    :param boundary: spline half-width of the default flow.
    :param affine: whether the default flow's couplings also shift and scale.
    :param init_scale: initial scale :math:`\\sigma`.
    :param seed: seed of the flow's initial weights.
    :param num_quantile_samples: draws behind :meth:`quantiles` (a flow has no closed-form
        marginal quantiles).

    ``median`` is the image of the base distribution's median (zero) through the flow and the
    affine map, and ``quantiles`` are the per-coordinate empirical quantiles of
    ``num_quantile_samples`` draws with a fixed key, both pushed through ``biject_to`` of each
    site's support.

    >>> import numpyro, numpyro.distributions as dist, optax, jax
    >>> from numpyro.infer import SVI, Trace_ELBO
    >>> def model():
    ...     numpyro.sample("x", dist.Normal(0, 1).expand([2]).to_event(1))
    >>> guide = AutoFlow(model, num_layers=2, hidden=(8,))
    >>> svi = SVI(model, guide, optax.adam(1e-2), Trace_ELBO())
    >>> svi.run(jax.random.key(0), 10, progress_bar=False).params["auto_loc"].shape
    (2,)
    """

    def __init__(
        self,
        model: Callable,
        *,
        prefix: str = "auto",
        init_loc_fn: Callable = init_to_uniform,
        flow: Callable[..., Bijector] | None = None,
        num_layers: int = 4,
        hidden: tuple[int, ...] = (32, 32),
        num_bins: int = 8,
        boundary: float = 4.0,
        affine: bool = True,
        init_scale: float = 0.1,
        seed: int = 0,
        num_quantile_samples: int = 4000,
    ) -> None:
        if init_scale <= 0:
            raise ValueError(f"AutoFlow: init_scale must be > 0, got {init_scale}")
        self._flow_fn = flow
        self._flow_options = dict(
            num_layers=num_layers,
            hidden=hidden,
            num_bins=num_bins,
            boundary=boundary,
            affine=affine,
        )
        self._init_scale = init_scale
        self._seed = seed
        self.num_quantile_samples = num_quantile_samples
        super().__init__(model, prefix=prefix, init_loc_fn=init_loc_fn)

    def _setup_prototype(self, *args, **kwargs):
        super()._setup_prototype(*args, **kwargs)
        key = jax.random.key(self._seed)
        if self._flow_fn is None:
            if self.latent_dim < 2:
                raise ValueError(
                    "AutoFlow: the default spline-coupling flow needs >= 2 latent dimensions, "
                    f"got latent dim = {self.latent_dim}. Consider using AutoDiagonalNormal "
                    "instead (or pass flow=)"
                )
            flow = neural_spline_flow(key, self.latent_dim, **self._flow_options)
        else:
            flow = self._flow_fn(key, self.latent_dim)
        if not isinstance(flow, Bijector):
            raise ValueError(
                f"AutoFlow: flow(key, latent_dim) must return a Bijector, got {type(flow)}"
            )
        leaves, self._flow_treedef = jax.tree.flatten(flow)
        self._flow_init = [jnp.asarray(leaf, self._init_latent.dtype) for leaf in leaves]

    def _flow(self) -> Bijector:
        leaves = numpyro.param(f"{self.prefix}_flow", self._flow_init)
        return jax.tree.unflatten(self._flow_treedef, leaves)

    def _get_posterior(self):
        loc = numpyro.param(f"{self.prefix}_loc", self._init_latent)
        scale = numpyro.param(
            f"{self.prefix}_scale",
            jnp.full(self.latent_dim, self._init_scale, self._init_latent.dtype),
            constraint=constraints.softplus_positive,
        )
        return dist.TransformedDistribution(
            self.get_base_dist(), [self._flow(), Affine(loc, scale)]
        )

    def get_base_dist(self):
        return dist.Normal(jnp.zeros(self.latent_dim), 1.0).to_event(1)

    def median(self, params: dict) -> dict:
        """The image of the base median (zero) through the flow, in each site's support.

        :param params: the guide's parameters.
        :return: ``{site: value}``.
        """
        posterior = self.get_posterior(params)
        zero = jnp.zeros(self.latent_dim, self._init_latent.dtype)
        for transform in posterior.transforms:
            zero = transform(zero)
        return self._unpack_and_constrain(zero, params)

    def quantiles(self, params: dict, quantiles) -> dict:
        """Per-coordinate quantiles of the unconstrained latent (Monte Carlo, fixed key).

        :param params: the guide's parameters.
        :param quantiles: probabilities in ``(0, 1)``.
        :return: ``{site: array of shape (len(quantiles),) + site shape}``.
        """
        probs = jnp.asarray(quantiles, self._init_latent.dtype)
        if probs.ndim != 1 or not bool(jnp.all((probs > 0) & (probs < 1))):
            raise ValueError(
                f"AutoFlow.quantiles: quantiles must be a list of probabilities in (0, 1); "
                f"got {quantiles!r}"
            )
        draws = self.get_posterior(params).sample(jax.random.key(0), (self.num_quantile_samples,))
        return self._unpack_and_constrain(jnp.quantile(draws, probs, axis=0), params)
