"""Scale-out: SVI step time and MCMC transitions per second against the number of devices.

Each device count runs in its own subprocess with ``JAX_NUM_CPU_DEVICES`` set before JAX starts
(1, 2 and 4 simulated CPU devices). Simulated CPU devices share the machine's cores, so these
figures show what sharding costs (partitioning, the all-reduce of the gradient, the transfers),
not a speed-up; on several real devices the per-device work divides by the device count.

What is timed, compile excluded:

- SVI: one ``jax.jit(svi.update)`` step of an amortised VAE (``AmortizedNormal``, 64 binary
  pixels, MLP encoder and decoder, minibatch 256 of N = 10,000) and of an SVGP (``SparseGP``,
  32 inducing points, minibatch 256), the minibatch coming from host memory (NumPy) each step:
  through ``shard_batch`` with replicated state (sharded path), handed to the jitted step as it
  is (plain path, what a one-device program does), or through ``jnp.asarray`` first (a second
  plain variant); median of the repeats;
- MCMC: 8 vectorised chains (``PolyaGammaGibbs`` on a 10-coefficient logistic regression with
  500 rows; ``NUTS`` beside it), warmed up by ``MCMC.warmup`` (500 steps, keys from
  ``chain_keys``), then 200 post-warm-up transitions as one ``lax.scan`` of ``kernel.sample``
  (every chain in one call) compiled ahead of time (``MCMC.run`` recompiles its collection loop
  on every call, which would swamp the sampling time); sharded keys put the Pólya-gamma chain
  state on the ``"chains"`` axis, and ``shard_batch`` places NUTS's adapted state there
  (sharded path); ``jax.random.split`` keys keep it on one device (plain path); median of the
  repeats.

At one device the sharded and plain paths run interleaved in the same process; their ratio is
the overhead of the sharded path, which should stay within 5 %.

    python benchmarks/scaling.py [--devices 1 2 4] [--repeats 15]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

N, B, PIXELS, HIDDEN, LATENT = 10_000, 256, 64, 64, 2
CHAINS, WARMUP, DRAWS = 8, 500, 200


def _mlp_params(key, sizes):
    import jax

    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {"w": jax.random.normal(k, (a, b)) / np.sqrt(a), "b": jax.numpy.zeros(b)}
        for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def _mlp(params, x):
    import jax

    for layer in params[:-1]:
        x = jax.nn.tanh(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def vae():
    """``(model, guide, elbo, make_batch)`` of the amortised VAE."""
    import jax
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import Trace_ELBO

    from numpyro_ext.guides import AmortizedNormal

    decoder0 = _mlp_params(jax.random.key(1), [LATENT, HIDDEN, PIXELS])

    def model(x, n_total):
        decoder = numpyro.param("decoder", decoder0)
        with numpyro.plate("data", n_total, subsample_size=x.shape[0]):
            z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([LATENT]).to_event(1))
            numpyro.sample("x", dist.Bernoulli(logits=_mlp(decoder, z)).to_event(1), obs=x)

    encoder0 = _mlp_params(jax.random.key(2), [PIXELS, HIDDEN, 2 * LATENT])
    guide = AmortizedNormal(model, _mlp, plate="data", inputs="x", encoder_params=encoder0)
    rng = np.random.default_rng(0)
    return model, guide, Trace_ELBO(), lambda: ((rng.random((B, PIXELS)) < 0.3) * 1.0, N)


def svgp():
    """``(model, guide, elbo, make_batch)`` of the minibatch SVGP."""
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.distributions import constraints
    from numpyro.infer import TraceMeanField_ELBO

    from numpyro_ext.distributions import GaussianProcess
    from numpyro_ext.gp import SquaredExponential
    from numpyro_ext.guides import SparseGP

    def model(X, y, n_total):
        ell = numpyro.param("ell", 1.0, constraint=constraints.positive)
        noise = numpyro.param("noise", 0.5, constraint=constraints.positive)
        data = numpyro.plate("data", n_total, subsample_size=X.shape[0])
        f = numpyro.sample("f", GaussianProcess(SquaredExponential(1.0, ell), X))
        with data:
            numpyro.sample("y", dist.Normal(f, noise), obs=y)

    guide = SparseGP(model, inducing=jnp.linspace(-3, 3, 32)[:, None])
    rng = np.random.default_rng(0)

    def make_batch():
        X = rng.uniform(-3, 3, (B, 1))
        return X, np.sin(2 * X[:, 0]) + 0.2 * rng.normal(size=B), N

    return model, guide, TraceMeanField_ELBO(), make_batch


def _interleaved(thunks: dict, repeats: int) -> dict:
    """Median seconds of each thunk, calls alternating so load drifts hit all alike."""
    import jax

    for thunk in thunks.values():
        jax.block_until_ready(thunk())  # compile and warm up, out of the timing
    times = {name: [] for name in thunks}
    for _ in range(repeats):
        for name, thunk in thunks.items():
            start = time.perf_counter()
            jax.block_until_ready(thunk())
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def svi_step_times(problem, mesh, repeats: int, plain: bool) -> dict:
    import jax
    import jax.numpy as jnp
    import optax
    from numpyro.infer import SVI

    from numpyro_ext.infer import replicate, shard_batch

    model, guide, elbo, make_batch = problem()
    svi = SVI(model, guide, optax.adam(1e-3), elbo)
    batches = [make_batch() for _ in range(4)]
    state = svi.init(jax.random.key(0), *batches[0])
    static = len(batches[0])
    # one jitted step per path: alternating input shardings on one jit would time its dispatch
    update = jax.jit(lambda s, *a: svi.update(s, *a), static_argnums=static)
    plain_update = jax.jit(lambda s, *a: svi.update(s, *a), static_argnums=static)
    asarray_update = jax.jit(lambda s, *a: svi.update(s, *a), static_argnums=static)
    sharded_state = replicate(state, mesh)
    count = iter(range(10**9))

    def sharded():
        *arrays, n = batches[next(count) % 4]
        return update(sharded_state, *shard_batch(tuple(arrays), mesh), n)

    def unsharded():
        *arrays, n = batches[next(count) % 4]
        return plain_update(state, *arrays, n)

    def unsharded_asarray():
        *arrays, n = batches[next(count) % 4]
        return asarray_update(state, *(jnp.asarray(a) for a in arrays), n)

    thunks = {"sharded": sharded}
    if plain:
        thunks |= {"plain": unsharded, "plain asarray": unsharded_asarray}
    return _interleaved(thunks, repeats)


def mcmc_rates(mesh, repeats: int, plain: bool) -> dict:
    """Transitions per second of ``CHAINS`` vectorised chains after warm-up, compile excluded.

    ``MCMC.warmup`` adapts the kernel, then the post-warm-up transitions run as one jitted
    ``lax.scan`` of ``DRAWS`` ``kernel.sample`` steps over all chains, compiled ahead of time
    (``MCMC.run`` recompiles its collection loop on every call). Keys from ``chain_keys`` put
    the chain state on the ``"chains"`` axis (sharded path); split keys keep it on one device.
    """
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import MCMC, NUTS

    from numpyro_ext.infer import PolyaGammaGibbs, chain_keys, shard_batch

    def model(x, y):
        beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([10]).to_event(1))
        numpyro.sample("y", dist.Bernoulli(logits=x @ beta), obs=y)

    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 10))
    y = (rng.random(500) < 1 / (1 + np.exp(-x @ rng.normal(size=10) / 2))) * 1.0
    args = (jnp.asarray(x), jnp.asarray(y))
    out = {}
    for name, make_kernel in [("PolyaGammaGibbs", PolyaGammaGibbs), ("NUTS", NUTS)]:
        keys = {"sharded": chain_keys(jax.random.key(0), CHAINS, mesh)}
        if plain:
            keys["plain"] = jax.random.split(jax.random.key(0), CHAINS)
        thunks = {}
        for path, chain_key in keys.items():
            kernel = make_kernel(model)  # one per path: init binds the kernel to its chains
            mcmc = MCMC(kernel, num_warmup=WARMUP, num_samples=1, num_chains=CHAINS,
                        chain_method="vectorized", progress_bar=False)  # fmt: skip
            mcmc.warmup(chain_key, *args)
            state = mcmc.post_warmup_state
            if name == "NUTS" and path == "sharded":
                # HMC's initialisation gathers the chains onto one device: split the adapted
                # state (a leading chain axis on every leaf) over the mesh before sampling
                state = shard_batch(state, mesh)
            # initialised with batched keys, the kernel samples all chains in one call
            step = functools.partial(kernel.sample, model_args=args, model_kwargs={})

            def run(s, step=step):
                return jax.lax.scan(lambda c, _: (step(c), None), s, None, length=DRAWS)[0]

            thunks[path] = functools.partial(jax.jit(run).lower(state).compile(), state)
            if path == "sharded":
                sharding = jax.tree.leaves(state.z)[0].sharding
                out[f"{name} state"] = str(getattr(sharding, "spec", "one device"))
        for path, seconds in _interleaved(thunks, repeats).items():
            out[f"{name} {path}"] = CHAINS * DRAWS / seconds
    return out


def child(repeats: int) -> None:
    import jax

    jax.config.update("jax_enable_x64", False)
    from numpyro_ext.infer import data_mesh

    n = jax.device_count()
    plain = n == 1
    result = {"devices": n, "platform": jax.default_backend()}
    result["vae"] = svi_step_times(vae, data_mesh(), repeats, plain)
    result["svgp"] = svi_step_times(svgp, data_mesh(), repeats, plain)
    result["mcmc"] = mcmc_rates(data_mesh(axis="chains"), 5, plain)
    print("RESULT " + json.dumps(result), flush=True)


def run_child(devices: int, repeats: int) -> dict:
    env = dict(os.environ, JAX_NUM_CPU_DEVICES=str(devices), JAX_PLATFORMS="cpu")
    # collectives of simulated devices can stall on XLA:CPU's shared pool when devices outnumber
    # cores; single-threaded Eigen avoids it
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_cpu_multi_thread_eigen=false".strip()
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, __file__, "--child", "--repeats", str(repeats)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def main(devices: list[int], repeats: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from harness import Table, environment

    load = os.getloadavg()
    results = [run_child(n, repeats) for n in devices]
    print(f"{environment()}; {os.cpu_count()} cores; load average {load[0]:.1f} at the start\n")
    svi = Table(
        "SVI step time (ms, median, compile excluded) against simulated CPU devices",
        ["devices", "VAE (AmortizedNormal) step", "SVGP (SparseGP) step"],
    )
    mcmc = Table(
        f"MCMC, {CHAINS} vectorised chains: transitions/s (after warm-up, compile excluded)",
        ["devices", "PolyaGammaGibbs", "NUTS", "chain state after warm-up (PG; NUTS)"],
    )
    for r in results:
        svi.add(r["devices"], 1e3 * r["vae"]["sharded"], 1e3 * r["svgp"]["sharded"])
        kernels = ["PolyaGammaGibbs", "NUTS"]
        state = "; ".join(r["mcmc"][f"{k} state"] for k in kernels)
        mcmc.add(r["devices"], *(r["mcmc"][f"{k} sharded"] for k in kernels), state)
    svi.add("GPU", "not measured: no accelerator", "not measured: no accelerator")
    mcmc.add("GPU", "not measured: no accelerator", "not measured: no accelerator", "-")
    svi.print()
    mcmc.print()
    one = next((r for r in results if r["devices"] == 1), None)
    if one is not None:
        overhead = Table(
            "Sharded path at one device against the plain path (same process, interleaved)",
            ["workload", "plain", "sharded", "cost ratio sharded / plain", "plain, jnp.asarray"],
        )
        for name, key in [("VAE step (ms)", "vae"), ("SVGP step (ms)", "svgp")]:
            p, s, a = (one[key][k] for k in ("plain", "sharded", "plain asarray"))
            overhead.add(name, 1e3 * p, 1e3 * s, s / p, 1e3 * a)
        for name in ["PolyaGammaGibbs", "NUTS"]:
            p, s = one["mcmc"][f"{name} plain"], one["mcmc"][f"{name} sharded"]
            overhead.add(f"{name} (transitions/s)", p, s, p / s, "-")
        overhead.print()
    print(
        "Simulated CPU devices share the same cores: these rows show the cost of sharding, "
        "not a speed-up.\n"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.repeats)
    else:
        main(args.devices, args.repeats)
