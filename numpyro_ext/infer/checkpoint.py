"""Save the state of a long SVI or MCMC run to disk and resume it in another process.

NumPyro can already continue a run from its state: ``svi.run(key, n, *args,
init_state=state)`` for SVI and ``mcmc.post_warmup_state = state`` then
``mcmc.run(state.rng_key, *args)`` for MCMC, and the continued run draws exactly what the
uninterrupted run would have. Two things are missing to do that across processes:

- a file format. :func:`save_checkpoint` writes the state pytree (``SVIState``, ``HMCState``,
  the states of :class:`~numpyro_ext.infer.PolyaGammaGibbs` and
  :class:`~numpyro_ext.infer.CollapsedPolyaGammaGibbs`, ...) with every array moved to the host
  and typed PRNG keys stored as their raw data, atomically (a crash while writing leaves the
  previous checkpoint in place); :func:`load_checkpoint` reads it back;
- the SVI wiring. A fresh ``SVI`` object has no optimiser or constraint functions until
  ``svi.init`` runs, so ``svi.run(..., init_state=state)`` in a new process fails with
  "'NoneType' object is not callable". :func:`restore_svi` runs ``svi.init`` with the model's
  arguments and hands back the loaded state.

A checkpoint is a pickle: load only files you wrote yourself.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["load_checkpoint", "restore_svi", "save_checkpoint"]

_FORMAT = "numpyro_ext.checkpoint"
_VERSION = 1


@dataclass(frozen=True)
class _TypedKey:
    """A typed PRNG key array stored as its raw data and implementation name."""

    data: np.ndarray
    impl: str


def _to_host(leaf: Any) -> Any:
    if isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        impl = str(jax.random.key_impl(leaf))
        return _TypedKey(np.asarray(jax.random.key_data(leaf)), impl)
    if isinstance(leaf, jax.Array | np.ndarray | np.generic):
        return np.asarray(leaf)
    return leaf


def _to_device(leaf: Any) -> Any:
    if isinstance(leaf, _TypedKey):
        return jax.random.wrap_key_data(leaf.data, impl=leaf.impl)
    if isinstance(leaf, np.ndarray | np.generic):
        return jnp.asarray(leaf)
    return leaf


def save_checkpoint(path: str | os.PathLike, state: Any) -> None:
    """Write a run's state (any pytree of arrays) to ``path``, atomically.

    :param path: file to write; its directory must exist. An existing file is replaced only
        once the new one is complete.
    :param state: the state: ``svi_result.state`` or the ``svi_state`` of ``svi.update``,
        ``mcmc.last_state``, or any pytree of arrays and picklable containers.

    >>> import tempfile, pathlib, jax.numpy as jnp
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "state.ckpt"
    >>> save_checkpoint(path, {"step": jnp.array(3)})
    >>> load_checkpoint(path)["step"].item()
    3
    """
    path = Path(path)
    host = jax.tree.map(_to_host, jax.block_until_ready(state))
    payload = {"format": _FORMAT, "version": _VERSION, "state": host}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike) -> Any:
    """Read a state written by :func:`save_checkpoint`, with its arrays back on the device.

    :param path: the checkpoint file.
    :return: the state pytree, with the containers it was saved with.
    """
    with open(path, "rb") as f:
        payload = pickle.load(f)
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise ValueError(f"load_checkpoint: {str(path)!r} is not a numpyro_ext checkpoint")
    if payload["version"] > _VERSION:
        raise ValueError(
            f"load_checkpoint: {str(path)!r} has format version {payload['version']}; this "
            f"numpyro_ext reads up to version {_VERSION}"
        )
    return jax.tree.map(_to_device, payload["state"], is_leaf=lambda x: isinstance(x, _TypedKey))


def restore_svi(svi: Any, state: Any, *args: Any, **kwargs: Any) -> Any:
    """Prepare a fresh ``SVI`` object to continue from a saved state.

    Runs ``svi.init`` (which wires the optimiser and the constraint transforms into ``svi``)
    with the model's arguments, checks that the saved state has the structure a fresh one
    would have (same parameters, shapes and optimiser), and returns the saved state, ready for
    ``svi.run(key, num_steps, *args, init_state=state)`` or ``svi.update(state, *args)``.

    :param svi: a ``numpyro.infer.SVI`` built like the one that was saved.
    :param state: an ``SVIState``, or the path of a checkpoint holding one.
    :param args: the model's positional arguments.
    :param kwargs: the model's keyword arguments.
    :return: the saved ``SVIState``.
    """
    if isinstance(state, str | os.PathLike):
        state = load_checkpoint(state)
    fresh = svi.init(state.rng_key, *args, **kwargs)
    expected = jax.tree.structure(fresh.optim_state)
    if jax.tree.structure(state.optim_state) != expected:
        raise ValueError(
            "restore_svi: the saved optimiser state does not match this SVI object's (different "
            f"parameters or optimiser); saved {jax.tree.structure(state.optim_state)}, "
            f"expected {expected}"
        )
    for saved, new in zip(
        jax.tree.leaves(state.optim_state), jax.tree.leaves(fresh.optim_state), strict=True
    ):
        if jnp.shape(saved) != jnp.shape(new):
            raise ValueError(
                "restore_svi: a saved parameter or optimiser array has shape "
                f"{jnp.shape(saved)}, this SVI object's has {jnp.shape(new)}"
            )
    return state
