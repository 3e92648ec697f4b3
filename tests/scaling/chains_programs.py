"""Tiny Pólya-gamma Gibbs and NUTS runs for the sharding tests: unsharded and sharded chains.

Run as a script (in a subprocess with several simulated devices), it runs each kernel with 8
vectorised chains twice from the same per-chain keys, once as one program on one device and once
with the keys (hence the chains) sharded over every device, and prints the largest difference
between the two sets of draws as JSON, with the sharding of the draws.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC

NUM_CHAINS = 8


def logistic(x, y):
    beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    numpyro.sample("y", dist.Bernoulli(logits=x @ beta), obs=y)


def grouped(g, y):
    tau = numpyro.sample("tau", dist.HalfNormal(1.0))
    a = numpyro.sample("a", dist.Normal(0.0, tau).expand([3]).to_event(1))
    numpyro.sample("y", dist.Bernoulli(logits=a[g]), obs=y)


def problems():
    from numpyro_ext.infer import CollapsedPolyaGammaGibbs, PolyaGammaGibbs

    t = jnp.linspace(-2.0, 2.0, 20)
    x, y = jnp.stack([jnp.ones(20), t], -1), (t + 0.3 * jnp.sin(7 * t) > 0).astype(float)
    g = jnp.repeat(jnp.arange(3), 4)
    yg = jnp.array([0, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0, 1.0])
    return {
        "PolyaGammaGibbs": (PolyaGammaGibbs(logistic), (x, y)),
        "CollapsedPolyaGammaGibbs": (CollapsedPolyaGammaGibbs(grouped), (g, yg)),
    }


def compare(kernel, args, mesh):
    from numpyro_ext.infer import chain_keys

    mcmc = MCMC(
        kernel,
        num_warmup=5,
        num_samples=10,
        num_chains=NUM_CHAINS,
        chain_method="vectorized",
        progress_bar=False,
    )
    key = jax.random.key(0)
    mcmc.run(jax.random.split(key, NUM_CHAINS), *args)
    one = mcmc.get_samples(group_by_chain=True)
    mcmc.run(chain_keys(key, NUM_CHAINS, mesh), *args)
    many = mcmc.get_samples(group_by_chain=True)
    diff = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), one, many)
    spread = jax.tree.map(lambda a: float(jnp.std(a)), one)
    leaf = jax.tree.leaves(many)[0]
    return {
        "max_abs_diff": max(jax.tree.leaves(diff)),
        # negative control: the same draws with the chains in another order must differ
        "permuted_chains_diff": max(
            float(jnp.max(jnp.abs(a - jnp.roll(b, 1, axis=0))))
            for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(many), strict=True)
        ),
        "draw_sd": min(jax.tree.leaves(spread)),
        "shape": list(leaf.shape),
        "devices_holding_draws": len({s.device for s in leaf.addressable_shards}),
        "chains_per_device": leaf.addressable_shards[0].data.shape[0],
    }


def compare_nuts(args, mesh):
    """NUTS: warm-up on one device, then the post-warm-up state split over the devices.

    NumPyro's HMC initialisation gathers the chains onto one device, so ``shard_batch`` places
    the adapted state (every leaf has a leading chain axis) before sampling.
    """
    from numpyro.infer import NUTS

    from numpyro_ext.infer import shard_batch

    mcmc = MCMC(NUTS(logistic), num_warmup=20, num_samples=10, num_chains=NUM_CHAINS,
                chain_method="vectorized", progress_bar=False)  # fmt: skip
    mcmc.warmup(jax.random.split(jax.random.key(0), NUM_CHAINS), *args)
    state = mcmc.post_warmup_state
    mcmc.run(state.rng_key, *args)
    one = mcmc.get_samples(group_by_chain=True)["beta"]
    mcmc.post_warmup_state = shard_batch(state, mesh)
    mcmc.run(state.rng_key, *args)
    many = mcmc.get_samples(group_by_chain=True)["beta"]
    return {
        "max_abs_diff": float(jnp.max(jnp.abs(one - many))),
        "permuted_chains_diff": float(jnp.max(jnp.abs(one - jnp.roll(many, 1, axis=0)))),
        "draw_sd": float(jnp.std(one)),
        "devices_holding_draws": len({s.device for s in many.addressable_shards}),
        "chains_per_device": many.addressable_shards[0].data.shape[0],
    }


if __name__ == "__main__":
    jax.config.update("jax_enable_x64", True)
    from numpyro_ext.infer import data_mesh

    mesh = data_mesh(axis="chains")
    out = {"devices": jax.device_count()}
    for name, (kernel, args) in problems().items():
        out[name] = compare(kernel, args, mesh)
    out["NUTS"] = compare_nuts(problems()["PolyaGammaGibbs"][1], mesh)
    print("RESULT " + json.dumps(out), flush=True)
