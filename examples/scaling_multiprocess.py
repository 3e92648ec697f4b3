"""Multi-host scale-out on one machine: N local processes under ``jax.distributed``.

The launcher starts ``--processes`` copies of this script, each with ``--devices`` simulated CPU
devices (``JAX_NUM_CPU_DEVICES``), a coordinator on ``localhost`` at a free port, and its
process id. Every worker calls ``jax.distributed.initialize`` before any computation, builds one
mesh over the devices of all processes, and then runs two programs unchanged from the
single-process ones:

- data-parallel SVI: an amortised linear-Gaussian latent model (``AmortizedNormal``), each
  process loading only its own rows of every minibatch (:func:`numpyro_ext.infer.local_rows`)
  and feeding them to :func:`numpyro_ext.infer.shard_batch`, which assembles the global batch
  with ``jax.make_array_from_process_local_data``;
- sharded chains: ``PolyaGammaGibbs`` on a logistic regression with the vectorised chains split
  over every device of every process (:func:`numpyro_ext.infer.chain_keys`).

Process 0 prints the losses, the fitted parameters and a digest of the draws as JSON; the
single-process run (``--processes 1``) prints the same numbers to rounding, which
tests/test_sharding.py checks. On a cluster the launcher is the job scheduler's: only
``worker()`` is needed there, with the coordinator address of the first host.

    python examples/scaling_multiprocess.py --processes 2 --devices 2
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys

import numpy as np

N, B, D, Z = 64, 8, 5, 2  # rows, minibatch, observed and latent dimensions


def data(seed: int = 0) -> np.ndarray:
    """The full data set; every process can generate it, each loads only its rows."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(Z, D))
    return rng.normal(size=(N, Z)) @ W + 0.3 * rng.normal(size=(N, D))


def svi_program(mesh, steps: int = 3, seed: int = 0) -> dict:
    """``steps`` data-parallel SVI steps; returns the losses and the final parameters."""
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    import optax
    from numpyro.infer import SVI, Trace_ELBO

    from numpyro_ext.guides import AmortizedNormal
    from numpyro_ext.infer import local_rows, replicate, shard_batch

    def model(x, n_total):
        W = numpyro.param("W", 0.1 * jnp.ones((Z, D)))
        with numpyro.plate("data", n_total, subsample_size=x.shape[0]):
            z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([Z]).to_event(1))
            numpyro.sample("x", dist.Normal(z @ W, 0.5).to_event(1), obs=x)

    def encoder(p, x):
        return x @ p["A"] + p["b"]

    enc_params = {"A": 0.01 * jnp.ones((D, 2 * Z)), "b": jnp.zeros(2 * Z)}
    guide = AmortizedNormal(model, encoder, plate="data", inputs="x", encoder_params=enc_params)
    svi = SVI(model, guide, optax.adam(0.05), Trace_ELBO())
    X = data(seed)
    rows = local_rows(B, mesh)  # this process's rows of each global minibatch
    state = replicate(svi.init(jax.random.key(seed), X[:B][rows], N), mesh)
    update = jax.jit(svi.update, static_argnums=2)
    losses = []
    for t in range(steps):
        batch = X[t * B : (t + 1) * B]
        state, loss = update(state, shard_batch(batch[rows], mesh), N)
        losses.append(float(loss))
    params = jax.tree.map(lambda a: np.asarray(a).tolist(), svi.get_params(state))
    return {"losses": losses, "params": params}


def chains_program(mesh, num_chains: int = 8, seed: int = 0) -> dict:
    """Pólya-gamma Gibbs chains split over the mesh; returns the draws of every chain."""
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from jax.experimental import multihost_utils
    from numpyro.infer import MCMC

    from numpyro_ext.infer import PolyaGammaGibbs, chain_keys

    def model(x, y):
        beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        numpyro.sample("y", dist.Bernoulli(logits=x @ beta), obs=y)

    t = jnp.linspace(-2, 2, 20)
    x, y = jnp.stack([jnp.ones(20), t], -1), (t + 0.3 * jnp.sin(7 * t) > 0).astype(float)
    mcmc = MCMC(
        PolyaGammaGibbs(model),
        num_warmup=10,
        num_samples=20,
        num_chains=num_chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(chain_keys(jax.random.key(seed), num_chains, mesh), x, y)
    beta = mcmc.get_samples(group_by_chain=True)["beta"]
    beta = multihost_utils.process_allgather(beta, tiled=True)  # every chain, on every process
    return {"beta": np.asarray(beta).tolist()}


def worker(process_id: int, num_processes: int, port: int, steps: int) -> None:
    """One process: join the distributed runtime, then run both programs."""
    import jax

    jax.config.update("jax_enable_x64", True)
    jax.distributed.initialize(
        coordinator_address=f"localhost:{port}",
        num_processes=num_processes,
        process_id=process_id,
    )
    from numpyro_ext.infer import data_mesh

    result = {
        "svi": svi_program(data_mesh(), steps),
        "chains": chains_program(data_mesh(axis="chains")),
        "devices": jax.device_count(),
        "local_devices": jax.local_device_count(),
    }
    if jax.process_index() == 0:
        print("RESULT " + json.dumps(result), flush=True)
    jax.distributed.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def launch(processes: int, devices: int, steps: int, timeout: float = 600) -> dict:
    """Start the workers, wait for them all, and return process 0's result."""
    port = free_port()
    env = dict(os.environ, JAX_NUM_CPU_DEVICES=str(devices), JAX_PLATFORMS="cpu")
    # collectives of simulated devices can stall on XLA:CPU's shared pool when devices outnumber
    # cores; single-threaded Eigen avoids it
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_cpu_multi_thread_eigen=false".strip()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--worker",
                str(i),
                "--processes",
                str(processes),
                "--port",
                str(port),
                "--steps",
                str(steps),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    outs = [p.communicate(timeout=timeout) for p in procs]
    for i, (p, (_, err)) in enumerate(zip(procs, outs, strict=True)):
        if p.returncode:
            raise RuntimeError(f"worker {i} exited with {p.returncode}:\n{err[-3000:]}")
    line = next(ln for ln in outs[0][0].splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--devices", type=int, default=2, help="simulated CPU devices each")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.worker, args.processes, args.port, args.steps)
    else:
        result = launch(args.processes, args.devices, args.steps)
        print(f"{args.processes} processes x {args.devices} devices = {result['devices']}")
        print("SVI losses:", [round(v, 6) for v in result["svi"]["losses"]])
        beta = np.asarray(result["chains"]["beta"])
        print(f"Pólya-gamma Gibbs: {beta.shape[0]} chains x {beta.shape[1]} draws,")
        print("  posterior mean of beta:", np.round(beta.mean((0, 1)), 4).tolist())
