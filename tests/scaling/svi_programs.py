"""Tiny SVI problems for the sharding tests, each a model, a guide and one minibatch.

Run as a script (in a subprocess with several simulated devices), it takes one SVI step twice
from the same state on the same batch, once on one device and once with the batch sharded
over every device and the state replicated, then a second sharded step, and prints what
tests/scaling/test_sharding.py compares as JSON.
"""

from __future__ import annotations

import json
import logging

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from numpyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO

N, B, D, Z = 1000, 8, 3, 2  # data set size, minibatch, observed and latent dimensions


def _rows(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(B, D)), rng.normal(size=B)


def _latent_model(x, n_total):
    W = numpyro.param("W", 0.1 * jnp.ones((Z, D)))
    with numpyro.plate("data", n_total, subsample_size=x.shape[0]):
        z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([Z]).to_event(1))
        numpyro.sample("x", dist.Normal(z @ W, 0.5).to_event(1), obs=x)


def _encoder(p, x):
    return x @ p["A"] + p["b"]


def _gp_model(X, y, n_total):
    from numpyro.distributions import constraints

    from numpyro_ext.distributions import GaussianProcess
    from numpyro_ext.gp import SquaredExponential

    ell = numpyro.param("ell", 1.0, constraint=constraints.positive)
    noise = numpyro.param("noise", 0.5, constraint=constraints.positive)
    data = numpyro.plate("data", n_total, subsample_size=X.shape[0])
    f = numpyro.sample("f", GaussianProcess(SquaredExponential(1.0, ell), X))
    with data:
        numpyro.sample("y", dist.Normal(f, noise), obs=y)


def _global_model(x, n_total):
    loc = numpyro.sample("loc", dist.Normal(0.0, 3.0).expand([D]).to_event(1))
    with numpyro.plate("data", n_total, subsample_size=x.shape[0]):
        numpyro.sample("x", dist.Normal(loc, 1.0).to_event(1), obs=x)


def problems():
    """``name -> (model, guide, elbo, args)``: one per guide the sharded path must serve."""
    from numpyro_ext.guides import (
        ODVGP,
        SOLVEGP,
        AmortizedFlow,
        AmortizedNormal,
        AutoFlow,
        SparseGP,
    )

    x, y = _rows()
    enc = {"A": 0.1 * jnp.ones((D, 2 * Z)), "b": jnp.zeros(2 * Z)}
    ctx = {"A": 0.1 * jnp.ones((D, 4)), "b": jnp.zeros(4)}
    Zu = jnp.linspace(-1.0, 1.0, 4)[:, None] * jnp.ones(D)
    Zv = jnp.linspace(-0.5, 0.5, 3)[:, None] * jnp.ones(D)
    gp_args = (x, y, N)
    return {
        "AmortizedNormal": (
            _latent_model,
            AmortizedNormal(_latent_model, _encoder, plate="data", inputs="x", encoder_params=enc),
            Trace_ELBO(),
            (x, N),
        ),
        "AmortizedFlow": (
            _latent_model,
            AmortizedFlow(
                _latent_model,
                _encoder,
                plate="data",
                inputs="x",
                context_dim=4,
                encoder_params=ctx,
            ),
            Trace_ELBO(),
            (x, N),
        ),
        "SparseGP": (_gp_model, SparseGP(_gp_model, inducing=Zu), TraceMeanField_ELBO(), gp_args),
        "SOLVEGP": (
            _gp_model,
            SOLVEGP(_gp_model, inducing=Zu, inducing_v=Zv),
            TraceMeanField_ELBO(),
            gp_args,
        ),
        "ODVGP": (
            _gp_model,
            ODVGP(_gp_model, inducing=Zu, inducing_gamma=Zv),
            TraceMeanField_ELBO(),
            gp_args,
        ),
        "AutoFlow": (
            _global_model,
            AutoFlow(_global_model, num_layers=1, hidden=(4,)),
            Trace_ELBO(),
            (x, N),
        ),
    }


class _CompileCounter(logging.Handler):
    """Counts XLA compilations of ``jit(update)`` (``jax_log_compiles`` log records)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def emit(self, record):
        if record.getMessage().startswith("Compiling jit(update)"):
            self.count += 1


def compare(model, guide, elbo, args, mesh):
    """One step on one device and one sharded step from the same state; then a second."""
    from numpyro_ext.infer import replicate, shard_batch

    svi = SVI(model, guide, optax.sgd(1e-3), elbo)
    static = tuple(i + 1 for i, a in enumerate(args) if isinstance(a, int))
    state = svi.init(jax.random.key(0), *args)
    one, loss_one = jax.jit(svi.update, static_argnums=static)(state, *args)
    sharded_args = tuple(a if isinstance(a, int) else shard_batch(a, mesh) for a in args)
    counter = _CompileCounter()
    logging.getLogger("jax").addHandler(counter)
    jax.config.update("jax_log_compiles", True)
    update = jax.jit(svi.update, static_argnums=static)
    many, loss_many = update(replicate(state, mesh), *sharded_args)
    again, _ = update(many, *sharded_args)
    jax.config.update("jax_log_compiles", False)
    p1, p4 = svi.get_params(one), svi.get_params(many)
    diffs = jax.tree.leaves(jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), p1, p4))
    leaves = [*jax.tree.leaves(again.optim_state), loss_many]
    return {
        "loss_one": float(loss_one),
        "loss_many": float(loss_many),
        "param_max_abs_diff": max(diffs),
        "param_step_size": max(
            float(jnp.max(jnp.abs(a - b)))
            for a, b in zip(
                jax.tree.leaves(svi.get_params(state)), jax.tree.leaves(p1), strict=True
            )
        ),
        "replicated": all(leaf.sharding.is_fully_replicated for leaf in leaves),
        "batch_shards": len(sharded_args[0].addressable_shards),
        "compiles": counter.count,
    }


def closed_form_scaling(mesh):
    """The subsampled log-likelihood under sharding against ``N / B * sum log p(x_i)``.

    The model has no latent sites (the guide is empty), so the loss is exactly
    ``-N / B * sum_i log N(x_i | mu, 1)``; ``unscaled`` is the same model with a plate of the
    batch size, which must differ by the factor ``N / B`` (the negative control).
    """
    from numpyro_ext.infer import shard_batch

    def model(x, size, subsample):
        mu = numpyro.param("mu", 0.3)
        with numpyro.plate("data", size, subsample_size=subsample):
            numpyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    def guide(x, size, subsample):
        pass

    x = jnp.asarray(_rows()[1])
    exact = -N / B * float(jnp.sum(dist.Normal(0.3, 1.0).log_prob(x)))
    svi = SVI(model, guide, optax.sgd(0.0), Trace_ELBO())
    state = svi.init(jax.random.key(0), x, N, B)
    update = jax.jit(svi.update, static_argnums=(2, 3))
    _, scaled = update(state, shard_batch(x, mesh), N, B)
    _, unscaled = update(state, shard_batch(x, mesh), B, None)
    return {"exact": exact, "scaled": float(scaled), "unscaled": float(unscaled)}


if __name__ == "__main__":
    jax.config.update("jax_enable_x64", True)
    from numpyro_ext.infer import data_mesh, shard_batch

    mesh = data_mesh()
    out = {"devices": jax.device_count(), "scaling": closed_form_scaling(mesh)}
    try:  # six rows cannot be split over four devices
        shard_batch({"x": np.zeros((6, 2))}, mesh)
    except ValueError as error:
        out["refused"] = str(error)
    rows = np.arange(24.0).reshape(8, 3)
    host, device = shard_batch(rows, mesh), shard_batch(jnp.asarray(rows), mesh)
    out["placement"] = {
        kind: {
            "spec": str(a.sharding.spec),
            "shards": len(a.addressable_shards),
            "rows_per_shard": sorted({s.data.shape[0] for s in a.addressable_shards}),
            "equal": bool(np.array_equal(np.asarray(a), rows)),
        }
        for kind, a in (("host", host), ("device", device))
    }
    for name, (model, guide, elbo, args) in problems().items():
        out[name] = compare(model, guide, elbo, args, mesh)
    print("RESULT " + json.dumps(out), flush=True)
