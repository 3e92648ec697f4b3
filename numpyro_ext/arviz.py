"""Bridges from NumPyro inference results to ArviZ DataTrees.

:func:`from_svi` takes a fitted guide (any guide NumPyro's ``Predictive`` can run: AutoGuides,
the guides of this library, hand-written guides) and :func:`from_mcmc` an ``MCMC`` object (any
kernel, ours included). Both return a ``DataTree`` with the groups ArviZ expects:

- ``posterior``: the latent sites and the model's deterministic sites;
- ``posterior_predictive``: fresh draws of every observed site given each posterior draw;
- ``log_likelihood``: the pointwise log-density of each observed site (what PSIS-LOO needs);
- ``observed_data``: the observed values;
- ``sample_stats`` (MCMC only): divergences, acceptance rates, step sizes, log density.

Dimensions are named after the model's plates unless ``dims`` says otherwise. The result works
with arviz-stats and arviz-plots 0.x (Python 3.11) and 1.x alike: only ``arviz_base.from_dict``
is used. Draws are vectorised with ``vmap`` (NumPyro's ``parallel=True``), so memory grows
with draws times data size; pass fewer ``num_samples`` for very large data.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import jax
import numpy as np
from arviz_base import from_dict
from jax import random
from numpyro import handlers
from numpyro.infer import Predictive
from numpyro.infer.util import log_likelihood as pointwise_log_likelihood
from numpyro.primitives import Messenger

__all__ = ["from_mcmc", "from_svi"]

_STAT_NAMES = {
    "diverging": "diverging",
    "accept_prob": "acceptance_rate",
    "num_steps": "n_steps",
    "adapt_state.step_size": "step_size",
}


def from_svi(
    guide: Callable,
    params: Mapping[str, Any],
    *,
    model_args: Sequence = (),
    model_kwargs: Mapping[str, Any] | None = None,
    num_samples: int = 1000,
    model: Callable | None = None,
    coords: Mapping[str, Sequence] | None = None,
    dims: Mapping[str, Sequence[str]] | None = None,
    rng_key: jax.Array | None = None,
    sample_dims: Sequence[str] = ("chain", "draw"),
):
    """Convert a fitted guide into an ArviZ ``DataTree``.

    With ``k_guide, k_model = jax.random.split(rng_key)``, the posterior draws are exactly
    ``guide.sample_posterior(k_guide, params, *model_args, sample_shape=(num_samples,),
    **model_kwargs)`` when
    the guide has ``sample_posterior`` (AutoGuides and the guides of this library), and
    ``Predictive(guide, params=params, num_samples=num_samples)(k_guide, *model_args)``
    otherwise. The model then supplies deterministic sites, posterior-predictive draws (with
    ``k_model``), pointwise log-likelihoods and observed data.

    Independent guide draws are stored as one chain (``sample_dims=("chain", "draw")``) so that
    every arviz-stats function works with its defaults; pass ``sample_dims=("sample",)`` for
    the single ``sample`` dimension of ``arviz_base.from_numpyro_svi``.

    :param guide: the fitted guide.
    :param params: the fitted parameters, e.g. ``svi_result.params``.
    :param model_args: the model's positional arguments, observed data included, as given to
        ``svi.run`` (the names follow ``arviz_base.from_numpyro_svi``; the model's arguments
        never mix with this function's own options, so a model argument may be called
        ``model``, ``dims`` or ``rng_key``).
    :param model_kwargs: the model's keyword arguments.
    :param num_samples: number of posterior draws.
    :param model: the model; defaults to ``guide.model``.
    :param coords: coordinate values for named dimensions.
    :param dims: dimension names per variable; plate names are used where not given.
    :param rng_key: PRNG key (``jax.random.PRNGKey(0)`` if omitted).
    :param sample_dims: ``("chain", "draw")`` or ``("sample",)``.
    :return: a ``DataTree`` with posterior, posterior_predictive, log_likelihood and
        observed_data groups.
    :raises ValueError: if ``params`` do not fit the guide, or the guide or the model fail at
        ``model_args`` (data of another shape than the fit's).

    >>> import jax, numpyro, numpyro.distributions as dist, optax
    >>> from numpyro.infer import SVI, Trace_ELBO
    >>> from numpyro.infer.autoguide import AutoNormal
    >>> from numpyro_ext.arviz import from_svi
    >>> def model(y=None):
    ...     mu = numpyro.sample("mu", dist.Normal(0, 10))
    ...     with numpyro.plate("obs", 3):
    ...         numpyro.sample("y", dist.Normal(mu, 1), obs=y)
    >>> y = jax.numpy.array([0.5, 1.0, 1.5])
    >>> guide = AutoNormal(model)
    >>> svi = SVI(model, guide, optax.adam(0.1), Trace_ELBO())
    >>> result = svi.run(jax.random.PRNGKey(0), 300, y=y, progress_bar=False)
    >>> dt = from_svi(guide, result.params, model_kwargs={"y": y}, num_samples=200)
    >>> sorted(dt.children)
    ['log_likelihood', 'observed_data', 'posterior', 'posterior_predictive']
    >>> dt.log_likelihood["y"].dims
    ('chain', 'draw', 'obs')
    """
    model = _model_of(guide, model, "from_svi")
    model_args, model_kwargs = _model_arguments("from_svi", model_args, model_kwargs)
    if num_samples < 1:
        raise ValueError(f"from_svi: num_samples must be a positive integer, got {num_samples}")
    _check_params(guide, params, model_args, model_kwargs)
    rng_key = random.PRNGKey(0) if rng_key is None else rng_key
    guide_key, model_key = random.split(rng_key)
    with _at_these_arguments("from_svi", "the guide"):
        if hasattr(guide, "sample_posterior"):
            draws = guide.sample_posterior(
                guide_key, params, *model_args, sample_shape=(num_samples,), **model_kwargs
            )
        else:
            draws = Predictive(guide, params=params, num_samples=num_samples)(
                guide_key, *model_args, **model_kwargs
            )
    sample_dims = tuple(sample_dims)
    if sample_dims == ("chain", "draw"):
        draws = jax.tree.map(lambda x: x[None], draws)
    elif sample_dims != ("sample",):
        raise ValueError(
            f"from_svi: sample_dims must be ('chain', 'draw') or ('sample',), got {sample_dims}"
        )
    return _to_datatree(
        "from_svi", model, draws, model_key, model_args, model_kwargs, coords, dims, sample_dims
    )


def from_mcmc(
    mcmc,
    *,
    model_args: Sequence = (),
    model_kwargs: Mapping[str, Any] | None = None,
    model: Callable | None = None,
    coords: Mapping[str, Sequence] | None = None,
    dims: Mapping[str, Sequence[str]] | None = None,
    rng_key: jax.Array | None = None,
):
    """Convert a finished ``numpyro.infer.MCMC`` run into an ArviZ ``DataTree``.

    Posterior draws are ``mcmc.get_samples(group_by_chain=True)`` (deterministic sites
    included); the model is re-run at ``model_args`` and ``model_kwargs``, the arguments
    given to ``mcmc.run`` (NumPyro keeps them only in private attributes, so they are passed
    again), to add posterior-predictive draws, pointwise log-likelihoods and observed data.
    Extra fields
    recorded by the run (``diverging``, ``accept_prob``, ``num_steps``, ``potential_energy``)
    become ``sample_stats``.

    :param mcmc: an ``MCMC`` object after ``run``.
    :param model_args: the model's positional arguments, as given to ``mcmc.run``.
    :param model_kwargs: the model's keyword arguments, as given to ``mcmc.run``.
    :param model: the model; defaults to ``mcmc.sampler.model``.
    :param coords: coordinate values for named dimensions.
    :param dims: dimension names per variable; plate names are used where not given.
    :param rng_key: PRNG key for the posterior-predictive draws.
    :return: a ``DataTree`` with posterior, posterior_predictive, log_likelihood,
        observed_data and sample_stats groups.

    >>> import jax, numpyro, numpyro.distributions as dist
    >>> from numpyro.infer import MCMC, NUTS
    >>> from numpyro_ext.arviz import from_mcmc
    >>> def model(y=None):
    ...     mu = numpyro.sample("mu", dist.Normal(0, 10))
    ...     with numpyro.plate("obs", 3):
    ...         numpyro.sample("y", dist.Normal(mu, 1), obs=y)
    >>> mcmc = MCMC(NUTS(model), num_warmup=100, num_samples=100, progress_bar=False)
    >>> y = jax.numpy.array([0.5, 1.0, 1.5])
    >>> mcmc.run(jax.random.PRNGKey(0), y=y)
    >>> dt = from_mcmc(mcmc, model_kwargs={"y": y})
    >>> dt.posterior["mu"].shape
    (1, 100)
    """
    if not hasattr(mcmc, "get_samples") or not hasattr(mcmc, "sampler"):
        raise ValueError(f"from_mcmc: expected a numpyro.infer.MCMC object, got {type(mcmc)}")
    if mcmc.last_state is None:
        raise ValueError("from_mcmc: the MCMC object has no samples; call mcmc.run(...) first")
    model = _model_of(mcmc.sampler, model, "from_mcmc")
    model_args, model_kwargs = _model_arguments("from_mcmc", model_args, model_kwargs)
    draws = mcmc.get_samples(group_by_chain=True)
    rng_key = random.PRNGKey(0) if rng_key is None else rng_key
    tree = _to_datatree(
        "from_mcmc",
        model,
        draws,
        rng_key,
        model_args,
        model_kwargs,
        coords,
        dims,
        ("chain", "draw"),
        sample_stats=_sample_stats(mcmc),
    )
    return tree


def _model_of(owner, model, caller: str) -> Callable:
    model = model if model is not None else getattr(owner, "model", None)
    if model is None:
        raise ValueError(
            f"{caller}: cannot find the model on {type(owner).__name__}; pass model=..."
        )
    return model


def _model_arguments(caller: str, args, kwargs) -> tuple[tuple, dict]:
    if isinstance(args, Mapping) or not isinstance(args, Sequence):
        raise ValueError(
            f"{caller}: model_args must be a tuple of the model's positional arguments; got "
            f"{type(args).__name__} (pass keyword arguments as model_kwargs={{...}})"
        )
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise ValueError(f"{caller}: model_kwargs must be a dict; got {type(kwargs).__name__}")
    return tuple(args), dict(kwargs or {})


@contextmanager
def _at_these_arguments(caller: str, what: str):
    """Turn a shape or type failure of the guide or model into a ValueError that says why."""
    try:
        yield
    except (TypeError, IndexError) as error:
        raise ValueError(
            f"{caller}: {what} fails at the given model arguments ({type(error).__name__}: "
            f"{error}); pass the data in the shape of the fit (model_args/model_kwargs as "
            "given to svi.run or mcmc.run)"
        ) from error


def _check_params(guide, params, model_args, model_kwargs) -> None:
    """Raise if ``params`` lacks a parameter of ``guide`` or has one of the wrong shape."""
    if not isinstance(params, Mapping):
        raise ValueError(
            f"from_svi: params must be a dict (svi_result.params), got {type(params)}"
        )
    with _at_these_arguments("from_svi", "the guide"):
        with handlers.block(), handlers.trace() as tr, handlers.seed(rng_seed=0):
            guide(*model_args, **model_kwargs)
    expected = {name: site["value"] for name, site in tr.items() if site["type"] == "param"}
    missing = sorted(set(expected) - set(params))
    if missing:
        raise ValueError(
            f"from_svi: params do not match the guide: missing {missing}; "
            f"params has {sorted(params)}. Were they fitted with another guide or model?"
        )
    for name, init in expected.items():
        if np.shape(params[name]) != np.shape(init):
            raise ValueError(
                f"from_svi: param {name!r} has shape {np.shape(params[name])} but the guide "
                f"expects {np.shape(init)}; were the params fitted on other data?"
            )


def _to_datatree(
    caller, model, draws, rng_key, args, kwargs, coords, dims, sample_dims, sample_stats=None
):
    batch_ndims = len(sample_dims)
    # Bind the keyword arguments so that none can collide with NumPyro's own parameter names
    # (``model`` in ``log_likelihood``, ``rng_key`` in ``Predictive``).
    model = functools.partial(model, **kwargs) if kwargs else model
    kwargs = {}
    with _at_these_arguments(caller, "the model"):
        trace = _model_trace(model, draws, batch_ndims, args, kwargs)
    observed = {
        name: np.asarray(site["value"])
        for name, site in trace.items()
        if site["type"] == "sample" and site["is_observed"]
    }
    if not observed:
        raise ValueError(
            f"{caller}: the model has no observed site when called with these arguments; "
            "pass the observed data in model_args or model_kwargs as when fitting"
        )
    latent = [
        name
        for name, site in trace.items()
        if site["type"] == "sample" and not site["is_observed"]
    ]
    deterministic = [name for name, site in trace.items() if site["type"] == "deterministic"]
    predictive = Predictive(
        _ResampleObserved(model, sites=set(observed)),
        posterior_samples={k: v for k, v in draws.items() if k in latent},
        batch_ndims=batch_ndims,
        return_sites=latent + deterministic + list(observed),
        parallel=True,
    )
    predicted = predictive(rng_key, *args, **kwargs)
    posterior = {
        name: np.asarray(draws[name] if name in draws else predicted[name])
        for name in latent + deterministic
    }
    groups = {
        "posterior": posterior,
        "posterior_predictive": {name: np.asarray(predicted[name]) for name in observed},
        "log_likelihood": {
            name: np.asarray(value)
            for name, value in pointwise_log_likelihood(
                model, posterior, *args, batch_ndims=batch_ndims, parallel=True, **kwargs
            ).items()
        },
        "observed_data": observed,
    }
    if sample_stats:
        groups["sample_stats"] = sample_stats
    return from_dict(
        groups,
        sample_dims=list(sample_dims),
        coords=dict(coords or {}),
        dims={**_plate_dims(trace), **dict(dims or {})},
    )


def _model_trace(model, draws, batch_ndims, args, kwargs):
    """One run of the model at the first posterior draw: site names, plates, observed values."""
    first = jax.tree.map(lambda x: x[(0,) * batch_ndims], draws)
    with handlers.block(), handlers.trace() as tr:
        handlers.seed(handlers.substitute(model, first), rng_seed=0)(*args, **kwargs)
    return tr


class _ResampleObserved(Messenger):
    """Treat the named observed sites as unobserved, so that they are drawn afresh."""

    def __init__(self, fn, sites):
        self.sites = sites
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] == "sample" and msg["name"] in self.sites:
            msg["value"] = None
            msg["is_observed"] = False


def _plate_dims(trace) -> dict[str, list[str]]:
    """Name each site's leading batch dimensions after the plates that hold it."""
    dims = {}
    for name, site in trace.items():
        if site["type"] not in ("sample", "deterministic"):
            continue
        frames = sorted(site.get("cond_indep_stack", []), key=lambda f: f.dim)
        if frames:
            dims[name] = [f.name for f in frames]
    return dims


def _sample_stats(mcmc) -> dict[str, np.ndarray]:
    fields = mcmc.get_extra_fields(group_by_chain=True)
    stats = {
        new: np.asarray(fields[old])
        for old, new in _STAT_NAMES.items()
        if old in fields and not isinstance(fields[old], dict | tuple)
    }
    if "potential_energy" in fields:
        stats["lp"] = -np.asarray(fields["potential_energy"])
    return stats
