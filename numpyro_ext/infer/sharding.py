"""Scale-out on JAX's own runtime: data-parallel SVI and sharded chains.

Nothing here replaces JAX: a one-axis device mesh, arrays placed on it with
:class:`jax.sharding.NamedSharding`, and the unchanged ``SVI.update`` / ``MCMC.run`` jitted over
those arrays. ``jax.jit`` propagates the input shardings through the program (GSPMD), so XLA
partitions every per-datum (or per-chain) computation over the devices and inserts the one
all-reduce a sum over the sharded axis needs; the step compiles once for a given batch shape.

Data-parallel SVI. A minibatch of ``B`` rows is split over the mesh axis ``"data"`` (leading
axis, ``P("data")``); parameters and optimiser state are replicated (``P()``). The loss is the
usual subsampled ELBO,

.. math::

    \\hat{\\mathcal{L}} = \\mathbb{E}_q\\Bigl[\\log p(\\theta) - \\log q(\\theta)
        + \\frac{N}{B} \\sum_{i \\in \\text{batch}} \\log p(x_i \\mid \\theta, z_i)
        + \\log p(z_i) - \\log q(z_i \\mid x_i)\\Bigr],

whose ``N / B`` factor the model's ``numpyro.plate("data", N, subsample_size=B)`` applies
whether or not the batch is sharded: sharding changes where the rows live, not the program.
Across processes (``jax.distributed.initialize``), each process passes its own rows and
:func:`shard_batch` assembles them into one global array with
:func:`jax.make_array_from_process_local_data`.

Sharded chains. ``MCMC(..., chain_method="vectorized")`` runs the chains as one vmapped
program; given a batch of per-chain keys sharded over a ``"chains"`` axis (:func:`chain_keys`),
that program runs partitioned over the devices, and the draws equal the unsharded ones for the
same keys.

Example (one device is enough to run it; with ``JAX_NUM_CPU_DEVICES=4`` set before JAX starts
the batch is split four ways):

>>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist, optax
>>> from numpyro.infer import SVI, Trace_ELBO
>>> from numpyro.infer.autoguide import AutoNormal
>>> def model(x, n_total):
...     loc = numpyro.sample("loc", dist.Normal(0.0, 10.0))
...     with numpyro.plate("data", n_total, subsample_size=x.shape[0]):
...         numpyro.sample("x", dist.Normal(loc, 1.0), obs=x)
>>> mesh = data_mesh()
>>> svi = SVI(model, AutoNormal(model), optax.adam(0.1), Trace_ELBO())
>>> x = jnp.arange(8.0)
>>> state = replicate(svi.init(jax.random.key(0), x, 1000), mesh)
>>> update = jax.jit(svi.update, static_argnums=2)
>>> for batch in shard_batches([x, x + 1.0], mesh):
...     state, loss = update(state, batch, 1000)
>>> loss.sharding.is_fully_replicated
True
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = ["chain_keys", "data_mesh", "local_rows", "replicate", "shard_batch", "shard_batches"]


def data_mesh(n_devices: int | None = None, axis: str = "data") -> Mesh:
    """A one-axis device mesh named ``axis`` over the first ``n_devices`` devices.

    Under ``jax.distributed`` the devices are those of every process (``jax.devices()``), so
    the default mesh spans all hosts. The axis type is ``Auto``: shardings propagate through
    ``jax.jit`` as GSPMD decides, and NumPyro's code runs unchanged.

    :param n_devices: how many devices; all of them when ``None``.
    :param axis: the mesh axis name, ``"data"`` for minibatches, ``"chains"`` for chains.
    :return: a :class:`jax.sharding.Mesh` of shape ``(n_devices,)``.
    """
    devices = jax.devices()
    n = len(devices) if n_devices is None else n_devices
    if not isinstance(n, int | np.integer) or not 1 <= n <= len(devices):
        raise ValueError(
            f"data_mesh: n_devices must be an integer in [1, {len(devices)}] "
            f"(the devices JAX sees), got {n_devices!r}"
        )
    return jax.make_mesh((int(n),), (axis,), (AxisType.Auto,), devices=devices[:n])


def _axis(mesh: Mesh, axis: str | None) -> str:
    if not isinstance(mesh, Mesh):
        raise TypeError(f"expected a jax.sharding.Mesh (see data_mesh), got {type(mesh).__name__}")
    if axis is None:
        return mesh.axis_names[0]
    if axis not in mesh.axis_names:
        raise ValueError(f"mesh has axes {mesh.axis_names}, not {axis!r}")
    return axis


def shard_batch(batch: Any, mesh: Mesh, axis: str | None = None) -> Any:
    """Split every array of ``batch`` over the mesh axis along its leading axis.

    Each leaf becomes a global ``jax.Array`` with ``NamedSharding(mesh, P(axis))``. In a single
    process ``batch`` holds the whole minibatch; under ``jax.distributed`` each process passes
    its own rows (``process_local_data``) and the leading sizes add up across processes
    (:func:`jax.make_array_from_process_local_data`).

    :param batch: a pytree of arrays, each with a leading axis over data (or chains) whose
        local size is a multiple of the number of this process's devices on the mesh.
    :param mesh: the mesh, e.g. :func:`data_mesh`.
    :param axis: the mesh axis to split over; the mesh's first axis by default.
    :return: the same pytree of sharded global arrays. On a one-device mesh in one process
        there is nothing to split and host (NumPy) leaves come back as they are: the jitted
        step places them with its other arguments, so the sharded program costs what the
        plain one does.
    """
    name = _axis(mesh, axis)
    sharding = _split(mesh, name)
    multi = jax.process_count() > 1
    local_devices = len(sharding.addressable_devices) if multi else mesh.shape[name]
    leaves = jax.tree.leaves(batch)
    if any(not np.shape(leaf) or np.shape(leaf)[0] % local_devices for leaf in leaves):
        _refuse(batch, local_devices, name)
    if multi:
        return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)
    if any(isinstance(leaf, jax.Array) for leaf in leaves):
        return jax.device_put(batch, sharding)
    if mesh.size == 1:
        # nothing to split: the jitted step places host rows with its other arguments
        return batch
    # jit's argument handling copies each device's rows straight to it, several times
    # faster than jax.device_put with the same sharding
    return _place(sharding)(batch)


@functools.lru_cache(maxsize=32)
def _split(mesh: Mesh, name: str) -> NamedSharding:
    return NamedSharding(mesh, P(name))


@functools.lru_cache(maxsize=32)
def _place(sharding: NamedSharding):
    return jax.jit(lambda tree: tree, in_shardings=sharding, out_shardings=sharding)


def _refuse(batch, local_devices: int, name: str):
    for path, leaf in jax.tree_util.tree_flatten_with_path(batch)[0]:
        shape = tuple(np.shape(leaf))
        if not shape or shape[0] % local_devices:
            where = jax.tree_util.keystr(path) or "batch"
            raise ValueError(
                f"shard_batch: {where} has shape {shape}; its leading axis must be a "
                f"multiple of the {local_devices} local devices on mesh axis {name!r}"
            )


def local_rows(n_rows: int, mesh: Mesh, axis: str | None = None) -> slice:
    """The rows of a global batch of ``n_rows`` that this process's devices hold.

    Under ``jax.distributed`` each process loads only these rows and passes them to
    :func:`shard_batch`; in a single process it is ``slice(0, n_rows)``.

    :param n_rows: the global (all-process) leading size of the batch.
    :param mesh: the mesh the batch is sharded over.
    :param axis: the mesh axis; the mesh's first axis by default.
    """
    sharding = _split(mesh, _axis(mesh, axis))
    index = sharding.addressable_devices_indices_map((n_rows,)).values()
    starts = [idx[0].indices(n_rows)[0] for idx in index]
    stops = [idx[0].indices(n_rows)[1] for idx in index]
    return slice(min(starts), max(stops))


def shard_batches(batches: Iterable[Any], mesh: Mesh, axis: str | None = None) -> Iterator[Any]:
    """Apply :func:`shard_batch` to each batch an iterable yields, lazily.

    Transfers are asynchronous, so on several devices the next batch is placed while the
    current step runs.
    """
    for batch in batches:
        yield shard_batch(batch, mesh, axis)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place a full copy of every array of ``tree`` on each device of ``mesh`` (``P()``).

    Use it for parameters and optimiser state (an ``SVIState``) and for data every shard
    needs. Under ``jax.distributed`` every process must pass the same values.
    """
    sharding = NamedSharding(mesh, P())
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def put(leaf):
        if jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key):
            impl = jax.random.key_impl(leaf)
            data = jax.make_array_from_process_local_data(sharding, jax.random.key_data(leaf))
            return jax.jit(lambda d: jax.random.wrap_key_data(d, impl=impl))(data)
        return jax.make_array_from_process_local_data(sharding, np.asarray(leaf))

    return jax.tree.map(put, tree)


def chain_keys(rng_key: jax.Array, num_chains: int, mesh: Mesh, axis: str | None = None):
    """``num_chains`` per-chain keys split from ``rng_key``, sharded over the mesh axis.

    Pass them to ``MCMC.run`` of an ``MCMC(..., num_chains=num_chains,
    chain_method="vectorized")``: the chains then run partitioned over the devices, and draw
    for draw they equal an unsharded run with ``jax.random.split(rng_key, num_chains)``.
    """
    if num_chains % mesh.shape[_axis(mesh, axis)]:
        raise ValueError(
            f"chain_keys: num_chains={num_chains} is not a multiple of the "
            f"{mesh.shape[_axis(mesh, axis)]} devices on the mesh"
        )
    keys = jax.random.split(rng_key, num_chains)
    if jax.process_count() == 1:
        return shard_batch(keys, mesh, axis)
    # every process computes all keys; each feeds the rows of its own devices
    sharding = _split(mesh, _axis(mesh, axis))
    data = jax.random.key_data(keys)
    impl = jax.random.key_impl(keys)
    glob = jax.make_array_from_callback(data.shape, sharding, lambda idx: np.asarray(data[idx]))
    return jax.jit(lambda d: jax.random.wrap_key_data(d, impl=impl))(glob)
