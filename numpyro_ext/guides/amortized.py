"""Amortised guides: an encoder network maps each datum to its local posterior.

For a model with local latents :math:`z_i` inside a named plate (one per datum :math:`x_i`), a
mean-field guide such as ``AutoNormal`` keeps separate parameters for every :math:`z_i`. An
amortised guide instead shares one encoder :math:`f_\\phi` across the plate,

.. math::

    q_\\phi(z_i \\mid x_i) = q\\bigl(z_i;\\ f_\\phi(x_i)\\bigr),

so the number of parameters does not grow with the data and the guide applies to data it never
saw (Kingma & Welling 2014; Rezende, Mohamed & Wierstra 2014; Gershman & Goodman 2014).

How the guide finds its inputs: ``inputs`` names an argument of the model (``"x"``) or is a
function ``inputs_fn(*args, **kwargs)`` returning an array (or pytree of arrays) whose leading
axis runs over the plate.

Which data the guide covers: the guide follows the model's plate at the arguments it is called
with. It reads the plate's size ``N`` and subsample size ``B`` from an abstract (shape-only)
run of the model, cached per argument shapes, and opens the same plate. With ``B < N`` the
guide's plate draws the minibatch indices, the model replays them, and the guide encodes
``inputs[idx]`` when the inputs span the plate (leading size ``N``) or the inputs as given when
the caller passed the minibatch itself (leading size ``B``); without subsampling it encodes all
``N`` inputs. Any other leading size is an error naming the plate and the argument.
``create_plates`` overrides the plate, as in NumPyro's autoguides.

Constrained local latents are guided in the unconstrained space of ``biject_to(support)``
(positive, simplex, ordered, ...). Global latents (outside the plate) belong to another guide:
combine them with :class:`numpyro.infer.autoguide.AutoGuideList`, hiding the global sites from
the amortised part with ``numpyro.handlers.block(model, hide=[...])``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to
from numpyro.distributions.util import sum_rightmost
from numpyro.infer.autoguide import AutoGuide
from numpyro.infer.util import helpful_support_errors
from numpyro.primitives import Messenger

from numpyro_ext.amortization import (
    ConditionalFlowFamily,
    DiagonalNormalFamily,
    FullRankNormalFamily,
    _encoder_kind,
    as_encoder,
)

__all__ = [
    "AmortizedFlow",
    "AmortizedGuide",
    "AmortizedMultivariateNormal",
    "AmortizedNormal",
]


@dataclass(frozen=True)
class _LocalSite:
    """Where one local site lives in the flat per-datum latent vector."""

    event_shape: tuple[int, ...]
    offset: int
    size: int
    batch_ndim: int
    transform: Any


class AmortizedGuide(AutoGuide):
    """Base of the amortised guides: ``q(z_i | x_i) = family(encoder(x_i))`` over a plate.

    All local latent sites of the plate are flattened (in their unconstrained spaces) into one
    vector of size ``D`` per datum; the encoder maps each datum's inputs to the
    ``family.output_size(D)`` numbers that parametrise the conditional density of that vector.
    The default guide samples the vector as an auxiliary site and hands each model site a
    ``Delta`` with the log-Jacobian of ``biject_to``, as NumPyro's ``AutoContinuous`` does.

    Posterior summaries are per datum. ``sample_posterior``, ``median``, ``quantiles`` and
    ``get_posterior`` take the model's arguments after ``params`` (as ``sample_posterior`` does
    for every AutoGuide) and describe the local latents of the data those arguments hold;
    called with ``params`` alone, as :class:`~numpyro.infer.autoguide.AutoGuideList` calls
    ``median`` and ``quantiles``, they describe the data the guide was initialised with (the
    arguments of ``svi.init``), as ``AutoNormal`` does for its per-datum parameters.

    Extension points for subclasses: ``family`` maps an encoder output ``h`` (one row per
    datum) to the distribution of the flat unconstrained latent; :meth:`encode` runs the
    encoder on a batch of inputs; :meth:`_sample_local` is called inside the guide's plate with
    ``h`` and must sample every local site (its default samples ``family(h)`` and unpacks it);
    :meth:`unpack_latent` maps flat unconstrained draws to ``{site: constrained value}``.

    :param model: a NumPyro model whose latent sites all lie in the plate ``plate``.
    :param encoder: an ``nnx.Module``, ``eqx.Module`` or ``apply(params, x)`` (see
        :func:`as_encoder`), mapping a batch of inputs to ``(B, family.output_size(D))``.
    :param plate: name of the model's plate over data.
    :param inputs: name of the model argument holding the per-datum inputs, or a function
        ``inputs_fn(*args, **kwargs)`` returning them (leading axis over the plate).
    :param family: maps the encoder output to the per-datum distribution.
    :param encoder_params: initial parameters when ``encoder`` is a plain function.
    :param batched: see :func:`as_encoder`.
    :param prefix: prefix of the parameter names; the encoder is ``{prefix}_encoder$params``.
    :param create_plates: optional ``create_plates(*args, **kwargs)`` returning the plate.
    :param num_quantile_samples: draws used by :meth:`quantiles` when the family has no
        closed-form marginal quantiles (flows).
    """

    def __init__(
        self,
        model: Callable,
        encoder: Any,
        *,
        plate: str,
        inputs: str | Callable,
        family: Callable,
        encoder_params: Any = None,
        batched: bool | None = None,
        prefix: str = "amortized",
        create_plates: Callable | None = None,
        num_quantile_samples: int = 4000,
    ) -> None:
        _encoder_kind(encoder)
        if not isinstance(plate, str):
            raise ValueError(f"plate must be the name of a model plate; got {plate!r}")
        if isinstance(inputs, str):
            _check_argument(model, inputs)
        elif not callable(inputs):
            raise ValueError(
                "inputs must name a model argument or be a function inputs_fn(*args, **kwargs); "
                f"got {type(inputs).__name__}"
            )
        self.encoder = encoder
        self.plate = plate
        self.inputs = inputs
        self.family = family
        self.encoder_params = encoder_params
        self.batched = batched
        self.num_quantile_samples = num_quantile_samples
        self._local: dict[str, _LocalSite] = {}
        self._plate_sizes: dict[Any, tuple[int, int | None]] = {}
        self._init_inputs: Any = None
        self.latent_size = 0
        super().__init__(model, prefix=prefix, create_plates=create_plates)

    # ----- prototype -------------------------------------------------------------------------

    def _setup_prototype(self, *args, **kwargs) -> None:
        if numpyro.prng_key() is None:
            # AutoGuide's setup draws initial values; outside a seed handler use a fixed key.
            handlers.seed(super()._setup_prototype, jax.random.key(0))(*args, **kwargs)
        else:
            super()._setup_prototype(*args, **kwargs)
        # Deterministic sites belong to the model (Predictive recomputes them); AutoGuideList
        # refuses sub-guides whose prototype exposes them.
        self.prototype_trace = type(self.prototype_trace)(
            (name, site)
            for name, site in self.prototype_trace.items()
            if site["type"] != "deterministic"
        )
        try:
            self._check_prototype(args, kwargs)
        except Exception:
            self.prototype_trace = None
            raise

    def _check_prototype(self, args: tuple, kwargs: dict) -> None:
        if self.plate not in self._prototype_frame_full_sizes:
            raise ValueError(
                f"{type(self).__name__}: the model has no plate {self.plate!r} (if you blocked "
                "the model with expose=..., block with hide=[global sites] instead so the "
                "plate stays visible)"
            )
        local, offset = {}, 0
        for name, site in self.prototype_trace.items():
            if site["type"] != "sample" or site["is_observed"]:
                continue
            local[name] = self._layout(name, site, offset)
            offset += local[name].size
        if not local:
            raise ValueError(
                f"{type(self).__name__}: the model has no latent site in plate {self.plate!r}; "
                "there is nothing to guide"
            )
        self._local, self.latent_size = local, offset
        x = self._inputs(args, kwargs)
        if not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(x)):
            self._init_inputs = (args, kwargs)

    def _layout(self, name: str, site: dict, offset: int) -> _LocalSite:
        frames = [f for f in site["cond_indep_stack"] if f.name == self.plate]
        others = [f.name for f in site["cond_indep_stack"] if f.name != self.plate]
        if not frames:
            raise ValueError(
                f"{type(self).__name__}: latent site {name!r} is outside plate {self.plate!r}; "
                "amortised guides cover local latents only. Guide it with another AutoGuide in "
                f"an AutoGuideList and pass numpyro.handlers.block(model, hide=[{name!r}]) here"
            )
        if others:
            raise ValueError(
                f"{type(self).__name__}: local site {name!r} is also in plates {others}; only "
                f"plate {self.plate!r} is supported (put per-datum structure in the event shape)"
            )
        if site["fn"].support.is_discrete:
            raise ValueError(
                f"{type(self).__name__}: local site {name!r} is discrete "
                f"({site['fn'].support}); enumerate or marginalise it in the model"
            )
        with helpful_support_errors(site):
            transform = biject_to(site["fn"].support)
        shape = jnp.shape(self._init_locs[name])
        event_dim = site["fn"].event_dim + len(shape) - jnp.ndim(site["value"])
        event_shape = tuple(shape[len(shape) - event_dim :])
        real = site["fn"].support is constraints.real or (
            isinstance(site["fn"].support, constraints.independent)
            and site["fn"].support.base_constraint is constraints.real
        )
        return _LocalSite(
            event_shape=event_shape,
            offset=offset,
            size=math.prod(event_shape),
            batch_ndim=-frames[0].dim,
            transform=None if real else transform,
        )

    def _require_prototype(self) -> None:
        if self.prototype_trace is None:
            raise ValueError(
                f"{type(self).__name__}: the guide has not been initialised; run svi.init "
                "(or call the guide once under a seed) before asking for its posterior"
            )

    # ----- data and plate --------------------------------------------------------------------

    def _inputs(self, args: tuple, kwargs: dict) -> Any:
        if callable(self.inputs):
            x = self.inputs(*args, **kwargs)
        else:
            bound = inspect.signature(_unwrap(self.model)).bind_partial(*args, **kwargs)
            x = bound.arguments.get(self.inputs)
        if x is None:
            raise ValueError(
                f"{type(self).__name__}: the inputs {self._inputs_name} for plate "
                f"{self.plate!r} are None; the guide needs the per-datum inputs to encode"
            )
        sizes = {jnp.shape(leaf)[0] if jnp.ndim(leaf) else None for leaf in jax.tree.leaves(x)}
        if len(sizes) != 1 or None in sizes:
            raise ValueError(
                f"{type(self).__name__}: inputs {self._inputs_name} must share one leading "
                f"axis over plate {self.plate!r}; got leading sizes {sorted(sizes, key=str)}"
            )
        return x

    @property
    def _inputs_name(self) -> str:
        return repr(self.inputs) if isinstance(self.inputs, str) else "returned by inputs_fn"

    def _model_plate(self, args: tuple, kwargs: dict) -> tuple[int, int]:
        """``(size, subsample_size)`` of the model's plate at these arguments.

        Read from one abstract run of the model (no FLOPs), cached per argument shapes.
        """
        leaves, treedef = jax.tree.flatten((args, kwargs))
        is_array = [hasattr(leaf, "shape") and hasattr(leaf, "dtype") for leaf in leaves]
        signature = (
            treedef,
            *((tuple(leaf.shape), str(leaf.dtype)) if arr else _hashable(leaf)
              for leaf, arr in zip(leaves, is_array, strict=True)),
        )  # fmt: skip
        if signature in self._plate_sizes:
            return self._plate_sizes[signature]
        found = {}

        def run(arrays):
            it = iter(arrays)
            pairs = zip(leaves, is_array, strict=True)
            rebuilt = [next(it) if arr else leaf for leaf, arr in pairs]
            a, k = jax.tree.unflatten(treedef, rebuilt)
            with handlers.block():
                tr = handlers.trace(handlers.seed(self.model, jax.random.key(0))).get_trace(
                    *a, **k
                )
            if self.plate in tr:
                size, sub = tr[self.plate]["args"][:2]
                found["sizes"] = (size, size if sub is None else sub)

        arrays = [leaf for leaf, arr in zip(leaves, is_array, strict=True) if arr]
        try:
            jax.eval_shape(run, arrays)
        except jax.errors.ConcretizationTypeError:
            run(arrays)  # the model branches on values: run it on the values themselves
        if "sizes" not in found:
            raise ValueError(
                f"{type(self).__name__}: the model opens no plate {self.plate!r} when called "
                "with these arguments"
            )
        self._plate_sizes[signature] = found["sizes"]
        return found["sizes"]

    def _open_plate(self, args: tuple, kwargs: dict) -> numpyro.plate:
        if self.create_plates is not None:
            return self._create_plates(*args, **kwargs)[self.plate]
        size, sub = self._model_plate(args, kwargs)
        dim = self._prototype_frames[self.plate].dim
        return numpyro.plate(self.plate, size, subsample_size=sub, dim=dim)

    def _check_size(self, x: Any, size: int, sub: int) -> int:
        n = jax.tree.leaves(x)[0].shape[0]
        if n not in (size, sub):
            expected = f"{size}" if sub == size else f"{size} (all data) or {sub} (a minibatch)"
            raise ValueError(
                f"{type(self).__name__}: inputs {self._inputs_name} have leading size {n} but "
                f"the model's plate {self.plate!r} has size {expected} at these arguments"
            )
        return n

    def _data_args(self, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if args or kwargs:
            return args, kwargs
        self._require_prototype()
        if self._init_inputs is None:
            raise ValueError(
                f"{type(self).__name__}: pass the model arguments of the data whose local "
                "latents you want (the guide was initialised under jit, so it kept no data)"
            )
        return self._init_inputs

    # ----- the guide -------------------------------------------------------------------------

    def encode(self, x: Any) -> jax.Array:
        """The encoder output ``h`` for a batch of inputs, shape ``(batch, output_size)``.

        Registers the encoder's parameters; call it inside the guide (or under
        ``handlers.substitute(data=params)``).
        """
        fn = as_encoder(self.encoder, f"{self.prefix}_encoder", self.encoder_params, self.batched)
        h = fn(x)
        width = self.family.output_size(self.latent_size)
        if jnp.ndim(h) != 2 or h.shape[-1] != width:
            raise ValueError(
                f"{type(self).__name__}: encoder output must have shape (batch, {width}) "
                f"({type(self.family).__name__} over {self.latent_size} local latent "
                f"dimensions); got {jnp.shape(h)}"
            )
        return h

    def _conditional(self, x: Any) -> dist.Distribution:
        return self.family(self.encode(x), self.latent_size)

    def __call__(self, *args, **kwargs) -> dict[str, jax.Array]:
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        x = self._inputs(args, kwargs)
        plate = self._open_plate(args, kwargs)
        n = self._check_size(x, plate.size, plate.subsample_size)
        with plate as idx:
            if n != plate.subsample_size:
                x = jax.tree.map(lambda leaf: leaf[idx], x)
            return self._sample_local(self.encode(x))

    def _batch_shape(self, batch: int) -> tuple[int, ...]:
        ndim = next(iter(self._local.values())).batch_ndim
        return (batch,) + (1,) * (ndim - 1)

    def _sample_local(self, h: jax.Array) -> dict[str, jax.Array]:
        """Sample every local site inside the plate, given the encoder output ``h``."""
        h = h.reshape(self._batch_shape(h.shape[0]) + h.shape[-1:])
        latent = numpyro.sample(
            f"_{self.prefix}_latent",
            self.family(h, self.latent_size),
            infer={"is_auxiliary": True},
        )
        result = {}
        for name, unconstrained in self._unpack(latent).items():
            site = self._local[name]
            event_dim = self.prototype_trace[name]["fn"].event_dim
            if site.transform is None:
                value, log_density = unconstrained, 0.0
            else:
                value = site.transform(unconstrained)
                if numpyro.get_mask() is False:
                    log_density = 0.0
                else:
                    log_density = -site.transform.log_abs_det_jacobian(unconstrained, value)
                    log_density = sum_rightmost(
                        log_density, jnp.ndim(log_density) - jnp.ndim(value) + event_dim
                    )
            delta = dist.Delta(value, log_density=log_density, event_dim=event_dim)
            result[name] = numpyro.sample(name, delta)
        return result

    def _unpack(self, flat: jax.Array) -> dict[str, jax.Array]:
        batch = flat.shape[:-1]
        return {
            name: flat[..., s.offset : s.offset + s.size].reshape(batch + s.event_shape)
            for name, s in self._local.items()
        }

    def unpack_latent(self, flat: jax.Array) -> dict[str, jax.Array]:
        """Map flat unconstrained latents ``(..., n, D)`` to ``{site: constrained value}``."""
        flat = flat.reshape(flat.shape[:-2] + self._batch_shape(flat.shape[-2]) + flat.shape[-1:])
        return {
            name: self._local[name].transform(u) if self._local[name].transform else u
            for name, u in self._unpack(flat).items()
        }

    # ----- posterior summaries ---------------------------------------------------------------

    def get_posterior(self, params: dict, *args, **kwargs) -> dist.Distribution:
        """The per-datum distribution of the flat unconstrained latent for the given data.

        :param params: the guide's parameters (``svi.get_params(state)``).
        :param args: the model's arguments holding the data (default: those of ``svi.init``).
        :return: a distribution with batch shape ``(n,)`` over the ``n`` data in ``args`` and
            event shape ``(latent_size,)``.
        """
        self._require_prototype()
        args, kwargs = self._data_args(args, kwargs)
        x = self._inputs(args, kwargs)
        if self.create_plates is None:
            self._check_size(x, *self._model_plate(args, kwargs))
        q = handlers.substitute(self._conditional, data=params)
        return q(x)

    def sample_posterior(self, rng_key, params, *args, sample_shape=(), **kwargs):
        """Draw the local latents of every datum the inputs in ``args`` hold.

        Inputs of the plate's full size give draws for all data (the plate is not subsampled);
        inputs of the subsample size are taken as the minibatch itself.

        :param rng_key: PRNG key.
        :param params: the guide's parameters.
        :param args: the model's arguments (default: those of ``svi.init``).
        :param sample_shape: leading shape of the draws.
        :return: ``{site: array of shape sample_shape + (n,) + site shape}``.
        """
        q = self.get_posterior(params, *args, **kwargs)
        return self.unpack_latent(q.sample(rng_key, tuple(sample_shape)))

    def median(self, params: dict, *args, **kwargs) -> dict[str, jax.Array]:
        """Per-datum latents at the unconstrained location, pushed through ``biject_to``.

        :param params: the guide's parameters.
        :param args: the model's arguments (default: those of ``svi.init``).
        :return: ``{site: array of shape (n,) + site shape}``.
        """
        return self.unpack_latent(self._location(self.get_posterior(params, *args, **kwargs)))

    def _location(self, q: dist.Distribution) -> jax.Array:
        return q.mean

    def quantiles(self, params: dict, quantiles, *args, **kwargs) -> dict[str, jax.Array]:
        """Per-datum marginal quantiles of each unconstrained coordinate, through ``biject_to``.

        Exact for the Gaussian families (as NumPyro's ``AutoNormal``); for flows they are the
        empirical quantiles of ``num_quantile_samples`` draws with a fixed key.

        :param params: the guide's parameters.
        :param quantiles: probabilities in ``(0, 1)``.
        :param args: the model's arguments (default: those of ``svi.init``).
        :return: ``{site: array of shape (len(quantiles), n) + site shape}``.
        """
        probs = jnp.asarray(quantiles)
        if probs.ndim != 1 or not bool(jnp.all((probs > 0) & (probs < 1))):
            raise ValueError(
                f"{type(self).__name__}.quantiles: quantiles must be a list of probabilities "
                f"in (0, 1); got {quantiles!r}"
            )
        q = self.get_posterior(params, *args, **kwargs)
        if isinstance(q, dist.MultivariateNormal):
            marginal = dist.Normal(q.loc, jnp.sqrt(jnp.diagonal(q.covariance_matrix, 0, -2, -1)))
        elif isinstance(q, dist.Independent) and isinstance(q.base_dist, dist.Normal):
            marginal = q.base_dist
        else:
            marginal = None
        if marginal is not None:
            flat = marginal.icdf(probs.reshape((-1,) + (1,) * marginal.loc.ndim))
        else:
            draws = q.sample(jax.random.key(0), (self.num_quantile_samples,))
            flat = jnp.quantile(draws, probs.astype(draws.dtype), axis=0)
        return self.unpack_latent(flat)


class AmortizedNormal(AmortizedGuide):
    """Amortised diagonal Gaussian guide: ``q(z_i | x_i) = N(mu(x_i), diag sigma(x_i)^2)``.

    Each local site gets its own ``Normal`` (a ``TransformedDistribution`` through
    ``biject_to`` for constrained sites), like ``AutoNormal`` but with parameters computed by
    the encoder, so ``TraceMeanField_ELBO`` uses the analytic KL where NumPyro has one. The
    encoder output has ``2 D`` columns: ``D`` locations, then ``D`` pre-softplus scales.

    :param model: the model; see :class:`AmortizedGuide` for the other arguments.
    :param init_scale: the scale an all-zero encoder output gives.

    >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
    >>> from numpyro.infer import SVI, Trace_ELBO
    >>> import optax
    >>> def model(x):
    ...     with numpyro.plate("data", x.shape[0]):
    ...         z = numpyro.sample("z", dist.Normal(0, 1))
    ...         numpyro.sample("x", dist.Normal(z, 1), obs=x)
    >>> apply = lambda p, x: x[:, None] * p["w"] + p["b"]
    >>> params = {"w": jnp.zeros(2), "b": jnp.zeros(2)}
    >>> guide = AmortizedNormal(model, apply, plate="data", inputs="x", encoder_params=params)
    >>> svi = SVI(model, guide, optax.adam(0.05), Trace_ELBO())
    >>> result = svi.run(jax.random.key(0), 500, jnp.linspace(-2, 2, 9), progress_bar=False)
    >>> x_new = jnp.ones(3)
    >>> draws = guide.sample_posterior(jax.random.key(1), result.params, x_new, sample_shape=(4,))
    >>> draws["z"].shape
    (4, 3)
    """

    def __init__(self, model: Callable, encoder: Any, *, init_scale: float = 0.1, **kwargs):
        super().__init__(model, encoder, family=DiagonalNormalFamily(init_scale), **kwargs)

    def _sample_local(self, h: jax.Array) -> dict[str, jax.Array]:
        loc, scale = self.family.loc_scale(h, self.latent_size)
        batch = self._batch_shape(h.shape[0])
        locs = self._unpack(loc.reshape(batch + loc.shape[-1:]))
        scales = self._unpack(scale.reshape(batch + scale.shape[-1:]))
        result = {}
        for name, site in self._local.items():
            fn = dist.Normal(locs[name], scales[name]).to_event(len(site.event_shape))
            if site.transform is not None:
                fn = dist.TransformedDistribution(fn, site.transform)
            result[name] = numpyro.sample(name, fn)
        return result


class AmortizedMultivariateNormal(AmortizedGuide):
    """Amortised full-rank Gaussian guide: ``q(z_i | x_i) = N(mu(x_i), L(x_i) L(x_i)^T)``.

    The Gaussian covers all local sites of one datum jointly (their unconstrained values
    concatenated), so correlations between them are kept. The encoder output has
    ``D + D (D + 1) / 2`` columns (see :class:`FullRankNormalFamily`).

    :param model: the model; see :class:`AmortizedGuide` for the other arguments.
    :param init_scale: the diagonal of the Cholesky factor an all-zero encoder output gives.

    >>> import jax.numpy as jnp, numpyro, numpyro.distributions as dist
    >>> def model(x):
    ...     with numpyro.plate("data", x.shape[0]):
    ...         z = numpyro.sample("z", dist.Normal(0, 1).expand([2]).to_event(1))
    ...         numpyro.sample("x", dist.Normal(z.sum(-1), 1), obs=x)
    >>> params = {"w": jnp.zeros((1, 5)), "b": jnp.zeros(5)}
    >>> guide = AmortizedMultivariateNormal(
    ...     model, lambda p, x: x[:, None] @ p["w"] + p["b"], plate="data", inputs="x",
    ...     encoder_params=params)
    >>> FullRankNormalFamily().output_size(2)
    5
    """

    def __init__(self, model: Callable, encoder: Any, *, init_scale: float = 0.1, **kwargs):
        super().__init__(model, encoder, family=FullRankNormalFamily(init_scale), **kwargs)


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return ("id", id(value))
    return value


def _unwrap(fn: Callable) -> Callable:
    while isinstance(fn, Messenger) and fn.fn is not None:
        fn = fn.fn
    return fn


def _check_argument(model: Callable, name: str) -> None:
    try:
        parameters = inspect.signature(_unwrap(model)).parameters
    except (TypeError, ValueError):
        return
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    if name not in parameters and not takes_kwargs:
        raise ValueError(
            f"inputs={name!r} is not an argument of the model; its arguments are "
            f"{list(parameters)} (or pass inputs=inputs_fn(*args, **kwargs))"
        )


class AmortizedFlow(AmortizedGuide):
    """Amortised conditional-flow guide: ``z_i = T(eps; encoder(x_i))``, ``eps ~ N(0, I)``.

    All local sites of a datum are modelled jointly (unconstrained and concatenated) by a
    conditional normalising flow whose context is the encoder output (see
    :class:`ConditionalFlowFamily`); non-Gaussian, multi-modal or skewed local posteriors are
    within reach. The encoder output has ``context_dim`` columns; the flow's weights are stored
    as ``"{prefix}_flow$params"``.

    :param model: the model; see :class:`AmortizedGuide` for the other arguments.
    :param context_dim: width of the encoder output.
    :param flow: optional builder ``(key, dim, context_dim) -> conditional bijector``.

    >>> import jax.numpy as jnp, numpyro, numpyro.distributions as dist
    >>> def model(x):
    ...     with numpyro.plate("data", x.shape[0]):
    ...         z = numpyro.sample("z", dist.Normal(0, 1).expand([2]).to_event(1))
    ...         numpyro.sample("x", dist.Normal(z.sum(-1), 1), obs=x)
    >>> guide = AmortizedFlow(model, lambda p, x: x[:, None] * p, plate="data", inputs="x",
    ...                       context_dim=4, encoder_params=jnp.ones(4))
    """

    def __init__(
        self,
        model: Callable,
        encoder: Any,
        *,
        context_dim: int,
        flow: Callable | None = None,
        prefix: str = "amortized",
        **kwargs,
    ):
        family = ConditionalFlowFamily(context_dim, flow, name=f"{prefix}_flow")
        super().__init__(model, encoder, family=family, prefix=prefix, **kwargs)

    def _location(self, q: dist.Distribution) -> jax.Array:
        # The image of the base distribution's median (zero): what NumPyro's autoguides call
        # the median of a flow; the marginal medians are ``quantiles(params, [0.5])``.
        point = q.base_dist.mean
        for transform in q.transforms:
            point = transform(point)
        return point
