"""Scale-out: SVI step time and MCMC transitions per second against the number of devices.

Each device count runs in its own subprocess with ``JAX_NUM_CPU_DEVICES`` set before JAX starts
(1, 2 and 4 simulated CPU devices). Simulated CPU devices share the machine's cores, so these
figures show what sharding costs (partitioning, the all-reduce of the gradient, the transfers),
not a speed-up; on several real devices the per-device work divides by the device count.

What is timed, compile excluded:

- SVI: one ``jax.jit(svi.update)`` step of an amortised VAE (``AmortizedNormal``, 64 binary
  pixels, MLP encoder and decoder, minibatch 256 of N = 10,000) and of an SVGP (``SparseGP``,
  32 inducing points, minibatch 256), the minibatch coming from host memory each step: placed
  with ``shard_batch`` (sharded path) or ``jnp.asarray`` (plain path); median of the repeats;
- MCMC: ``MCMC.run`` of 8 vectorised chains (``PolyaGammaGibbs`` on a 10-coefficient logistic
  regression with 500 rows; ``NUTS`` beside it), keys from ``chain_keys`` (sharded) or
  ``jax.random.split`` (plain); ``MCMC.run`` recompiles its collection loop on every call, so
  each path runs with 200 and with 600 draws after the same warm-up and the difference of the
  two wall times (compile and warm-up cancel) gives the time of 400 transitions per chain.

At one device the sharded and plain paths run interleaved in the same process; their ratio is
the overhead of the sharded path, which should stay within 5 %.

    python benchmarks/scaling.py [--devices 1 2 4] [--repeats 15]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

N, B, PIXELS, HIDDEN, LATENT = 10_000, 256, 64, 64, 2
CHAINS, WARMUP, DRAWS = 8, 50, 200


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
    sharded_state = replicate(state, mesh)
    count = iter(range(10**9))

    def sharded():
        *arrays, n = batches[next(count) % 4]
        return update(sharded_state, *shard_batch(tuple(arrays), mesh), n)

    def unsharded():
        *arrays, n = batches[next(count) % 4]
        return plain_update(state, *(jnp.asarray(a) for a in arrays), n)

    thunks = {"sharded": sharded, "plain": unsharded} if plain else {"sharded": sharded}
    return _interleaved(thunks, repeats)


def mcmc_rates(mesh, repeats: int, plain: bool) -> dict:
    """Transitions per second of 8 vectorised chains, compile excluded by differencing.

    ``MCMC.run`` recompiles its loop on every call, so each path runs with ``DRAWS`` and with
    ``3 * DRAWS`` draws (same warm-up): the compile and the warm-up cancel in the difference of
    the two times, which is the time of ``2 * DRAWS`` transitions of every chain.
    """
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import MCMC, NUTS

    from numpyro_ext.infer import PolyaGammaGibbs, chain_keys

    def model(x, y):
        beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([10]).to_event(1))
        numpyro.sample("y", dist.Bernoulli(logits=x @ beta), obs=y)

    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 10))
    y = (rng.random(500) < 1 / (1 + np.exp(-x @ rng.normal(size=10) / 2))) * 1.0
    x, y = jnp.asarray(x), jnp.asarray(y)
    options = {"num_chains": CHAINS, "chain_method": "vectorized", "progress_bar": False}
    out = {}
    for name, kernel in [("PolyaGammaGibbs", PolyaGammaGibbs), ("NUTS", NUTS)]:
        keys = {"sharded": lambda: chain_keys(jax.random.key(0), CHAINS, mesh)}
        if plain:
            keys["plain"] = lambda: jax.random.split(jax.random.key(0), CHAINS)
        seconds = {path: [] for path in keys}
        for _ in range(repeats):
            for path, make in keys.items():
                times = []
                for draws in (DRAWS, 3 * DRAWS):
                    mcmc = MCMC(kernel(model), num_warmup=WARMUP, num_samples=draws, **options)
                    start = time.perf_counter()
                    mcmc.run(make(), x, y)
                    jax.block_until_ready(mcmc.get_samples())
                    times.append(time.perf_counter() - start)
                seconds[path].append(times[1] - times[0])
        for path, ts in seconds.items():
            # a loaded machine can make compile noise exceed the sampling time: no figure then
            median = statistics.median(ts)
            out[f"{name} {path}"] = CHAINS * 2 * DRAWS / median if median > 0 else None
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
    result["mcmc"] = mcmc_rates(data_mesh(axis="chains"), 2, plain)
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


def _rate(value):
    return value if value is not None else "not measured: compile noise exceeded sampling"


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
        ["devices", "PolyaGammaGibbs", "NUTS"],
    )
    for r in results:
        svi.add(r["devices"], 1e3 * r["vae"]["sharded"], 1e3 * r["svgp"]["sharded"])
        mcmc.add(
            r["devices"], *(_rate(r["mcmc"][f"{k} sharded"]) for k in ["PolyaGammaGibbs", "NUTS"])
        )
    svi.add("GPU", "not measured: no accelerator", "not measured: no accelerator")
    mcmc.add("GPU", "not measured: no accelerator", "not measured: no accelerator")
    svi.print()
    mcmc.print()
    one = next((r for r in results if r["devices"] == 1), None)
    if one is not None:
        overhead = Table(
            "Sharded path at one device against the plain path (same process, interleaved)",
            ["workload", "plain", "sharded", "sharded / plain"],
        )
        for name, key in [("VAE step (ms)", "vae"), ("SVGP step (ms)", "svgp")]:
            p, s = one[key]["plain"], one[key]["sharded"]
            overhead.add(name, 1e3 * p, 1e3 * s, s / p)
        for name in ["PolyaGammaGibbs", "NUTS"]:
            p, s = one["mcmc"][f"{name} plain"], one["mcmc"][f"{name} sharded"]
            ratio = p / s if p and s else "-"
            overhead.add(f"{name} (transitions/s)", _rate(p), _rate(s), ratio)
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
