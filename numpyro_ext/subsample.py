"""Subsampled (minibatch) models: indices a plate hands out stay inside the data they index.

In a minibatch model

.. code-block:: python

    with numpyro.plate("data", N, subsample_size=B) as idx:
        numpyro.sample("y", dist.Bernoulli(logits=X[idx] @ beta), obs=y[idx])

the plate draws ``B`` indices from ``range(N)``. When ``N`` exceeds the length of ``X`` or ``y``,
JAX does not raise: a gather clamps an out-of-range index to the last element, so the model
trains without complaint on repeated copies of the last datum, with the likelihood scaled by
the wrong ``N / B``. :func:`check_subsample` runs the model once per subsampled plate with that
plate's largest indices (``N - B, ..., N - 1``) under :mod:`jax.experimental.checkify`'s index
checks, and raises an error naming the plate when any array is indexed out of range.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import jax.numpy as jnp
from jax.experimental import checkify
from numpyro import handlers

__all__ = ["check_subsample"]


def _subsampled_plates(model: Callable, args: tuple, kwargs: dict) -> dict[str, tuple[int, int]]:
    with handlers.block():
        tr = handlers.trace(handlers.seed(model, 0)).get_trace(*args, **kwargs)
    plates = {}
    for name, site in tr.items():
        if site["type"] == "plate":
            size, sub = site["args"][:2]
            if sub is not None and sub != size:
                plates[name] = (int(size), int(sub))
    return plates


def _index_error(model: Callable, args: tuple, kwargs: dict, indices: dict) -> str | None:
    """The first out-of-range index of one run of the model with these plate indices."""

    def run():
        with handlers.block():
            fn = handlers.substitute(handlers.seed(model, 0), data=indices)
            tr = handlers.trace(fn).get_trace(*args, **kwargs)
        return {name: site["value"] for name, site in tr.items() if site["type"] == "sample"}

    err, _ = checkify.checkify(run, errors=checkify.index_checks)()
    return err.get()


def check_subsample(model: Callable, *args, **kwargs) -> dict[str, tuple[int, int]]:
    """Raise when a subsampled plate's indices fall outside the arrays the model indexes.

    For each plate with ``subsample_size < size``, the model is run (under a fixed seed,
    effects blocked) with that plate's indices set to its last ``subsample_size`` indices and
    the other plates' to their first ones; :func:`jax.experimental.checkify.checkify` with
    ``index_checks`` reports any gather out of range. A plate whose ``size`` exceeds the
    length of an array it indexes fails here, whichever of its indices a random minibatch
    would have drawn. Call it once on the arguments you train with; it costs one compiled run
    of the model per subsampled plate.

    :param model: a NumPyro model.
    :param args: positional arguments of the model.
    :param kwargs: keyword arguments of the model.
    :return: ``{plate: (size, subsample_size)}`` for the subsampled plates checked.
    :raises IndexError: naming the plate, its size and the array indexed out of range.

    >>> import jax.numpy as jnp, numpyro, numpyro.distributions as dist
    >>> def model(y, size):
    ...     with numpyro.plate("data", size, subsample_size=5) as idx:
    ...         numpyro.sample("y", dist.Normal(0, 1), obs=y[idx])
    >>> check_subsample(model, jnp.zeros(20), 20)
    {'data': (20, 5)}
    >>> check_subsample(model, jnp.zeros(20), 30)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    IndexError: check_subsample: plate 'data' (size 30, subsample_size 5) indexes out of range: ...
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plates = _subsampled_plates(model, args, kwargs)
    first = {name: jnp.arange(sub) for name, (_, sub) in plates.items()}
    message = _index_error(model, args, kwargs, first)
    if message is not None:
        raise IndexError(
            f"check_subsample: the model indexes out of range even with every plate at its "
            f"first indices (plates {plates}): {message.strip()}"
        )
    for name, (size, sub) in plates.items():
        message = _index_error(model, args, kwargs, {**first, name: jnp.arange(size - sub, size)})
        if message is not None:
            raise IndexError(
                f"check_subsample: plate {name!r} (size {size}, subsample_size {sub}) indexes "
                f"out of range: {message.strip()} The plate's size must be the length of the "
                f"data it indexes, e.g. numpyro.plate({name!r}, len(y), subsample_size={sub})"
            )
    return plates
