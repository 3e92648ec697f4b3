"""Scaling out: a VAE trained with its minibatches sharded over devices, and sharded chains.

The tour process usually has one device, and JAX fixes the device count when it starts, so
the section runs its work in a child process with four simulated CPU devices
(``JAX_NUM_CPU_DEVICES=4``) and plots what the child returns: the SVI losses of the sharded
run against a one-device run of the same steps (the same numbers to rounding), and Pólya-gamma
Gibbs chains split over the four devices beside the unsharded chains from the same keys.
The helpers are shared with examples/scaling_svi.py and examples/scaling_chains.py.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np

from numpyro_ext.demo.registry import Context, section

__all__ = [
    "fit_svi",
    "logistic_chains",
    "make_vae",
    "minibatches",
    "plot_chains",
    "plot_svi",
    "run",
]


def _mlp(params, x):
    import jax

    for layer in params[:-1]:
        x = jax.nn.tanh(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def _mlp_params(seed: int, sizes: list[int]):
    rng = np.random.default_rng(seed)
    return [
        {"w": rng.normal(size=(a, b)) / np.sqrt(a), "b": np.zeros(b)}
        for a, b in itertools.pairwise(sizes)
    ]


def make_vae(pixels: int = 64, hidden: int = 64, latent: int = 2, seed: int = 0):
    """A Bernoulli VAE ``model(x, n_total)`` with an ``AmortizedNormal`` guide (MLPs).

    The data plate is ``numpyro.plate("data", n_total, subsample_size=x.shape[0])``: the
    caller passes the minibatch itself and the plate scales its log-likelihood by ``N / B``.
    """
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    from numpyro_ext.guides import AmortizedNormal

    decoder0 = _mlp_params(seed, [latent, hidden, pixels])

    def model(x, n_total):
        decoder = numpyro.param("decoder", decoder0)
        with numpyro.plate("data", n_total, subsample_size=x.shape[0]):
            z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([latent]).to_event(1))
            numpyro.sample("x", dist.Bernoulli(logits=_mlp(decoder, z)).to_event(1), obs=x)

    encoder0 = _mlp_params(seed + 1, [pixels, hidden, 2 * latent])
    encoder0 = [{k: jnp.asarray(v) for k, v in layer.items()} for layer in encoder0]
    guide = AmortizedNormal(model, _mlp, plate="data", inputs="x", encoder_params=encoder0)
    return model, guide


def minibatches(x: np.ndarray, batch_size: int, steps: int, seed: int = 0) -> Iterator:
    """``steps`` minibatches of ``batch_size`` rows from shuffled passes over ``x`` (host)."""
    rng = np.random.default_rng(seed)
    order = np.empty(0, dtype=int)
    for _ in range(steps):
        if len(order) < batch_size:
            order = np.concatenate([order, rng.permutation(len(x))])
        rows, order = order[:batch_size], order[batch_size:]
        yield x[rows]


def fit_svi(model, guide, batches, n_total: int, mesh=None, lr: float = 3e-3, seed: int = 0):
    """Run ``SVI.update`` over ``batches``; sharded over ``mesh`` when one is given.

    :return: ``(losses, params, seconds per step after the first)``.
    """
    import jax
    import jax.numpy as jnp
    import optax
    from numpyro.infer import SVI, Trace_ELBO

    from numpyro_ext.infer import replicate, shard_batches

    svi = SVI(model, guide, optax.adam(lr), Trace_ELBO())
    batches = iter(batches)
    first = next(batches)
    state = svi.init(jax.random.key(seed), first, n_total)
    update = jax.jit(svi.update, static_argnums=2)
    if mesh is not None:
        state = replicate(state, mesh)
        stream = shard_batches([first, *batches], mesh)
    else:
        stream = (jnp.asarray(b) for b in [first, *batches])
    losses, start = [], None
    for i, batch in enumerate(stream):
        state, loss = update(state, batch, n_total)
        losses.append(loss)
        if i == 0:
            jax.block_until_ready(loss)
            start = time.perf_counter()
    jax.block_until_ready(state)
    per_step = (time.perf_counter() - start) / max(len(losses) - 1, 1)
    return np.asarray(jnp.stack(losses)), svi.get_params(state), per_step


def logistic_chains(mesh=None, num_chains: int = 8, num_samples: int = 300, seed: int = 0):
    """Pólya-gamma Gibbs on a 3-coefficient logistic regression, chains vectorised.

    With ``mesh`` the per-chain keys (so the chains) are sharded over its devices.

    :return: ``(mcmc, model_args)`` after ``run``.
    """
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import MCMC

    from numpyro_ext.infer import PolyaGammaGibbs, chain_keys

    def model(x, y=None):
        beta = numpyro.sample("beta", dist.Normal(0.0, 2.0).expand([3]).to_event(1))
        numpyro.sample("y", dist.Bernoulli(logits=x @ beta), obs=y)

    rng = np.random.default_rng(seed)
    x = np.column_stack([np.ones(200), rng.normal(size=(200, 2))])
    y = (rng.random(200) < 1 / (1 + np.exp(-x @ np.array([-0.5, 1.5, -1.0])))) * 1.0
    args = (jnp.asarray(x), jnp.asarray(y))
    mcmc = MCMC(
        PolyaGammaGibbs(model),
        num_warmup=100,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    key = jax.random.key(seed)
    keys = jax.random.split(key, num_chains) if mesh is None else chain_keys(key, num_chains, mesh)
    mcmc.run(keys, *args)
    return mcmc, args


def plot_svi(sharded: np.ndarray, plain: np.ndarray, devices: int):
    """Loss curves of the sharded and the one-device run, and their difference."""
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.2))
    steps = np.arange(1, len(plain) + 1)
    ax.plot(steps, plain, "C0", lw=2.5, alpha=0.5, label="one device")
    ax.plot(steps, sharded, "C3", lw=0.8, label=f"batch sharded over {devices} devices")
    ax.set(xlabel="step", ylabel="loss (negative ELBO)", yscale="log")
    ax.legend(fontsize=8)
    bx.semilogy(steps, np.abs(sharded - plain) / np.abs(plain) + 1e-17, "k.", ms=2)
    bx.set(xlabel="step", ylabel="|relative difference| (1e-17: equal)", title="float64")
    fig.tight_layout()
    return fig


def plot_chains(beta_sharded: np.ndarray, beta_plain: np.ndarray, devices: int):
    """Traces of one coefficient coloured by the device that ran each chain, and a check."""
    import matplotlib.pyplot as plt

    chains = beta_sharded.shape[0]
    per_device = chains // devices
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.2))
    for c in range(chains):
        ax.plot(beta_sharded[c, :, 1], color=f"C{c // per_device}", lw=0.5, alpha=0.8)
    ax.set(xlabel="draw", ylabel="beta[1]", title=f"{chains} chains, colour = device")
    bx.plot(beta_plain.ravel(), beta_sharded.ravel(), "k.", ms=1)
    bx.set(xlabel="unsharded draws", ylabel="sharded draws (same keys)")
    fig.tight_layout()
    return fig


def _child(steps: int) -> dict:
    """Run in the child process: both runs of both modes on the simulated devices."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from numpyro_ext.demo.sections.amortized import load_binary_digits
    from numpyro_ext.infer import data_mesh

    x_train = np.asarray(load_binary_digits()[0], dtype=np.float64)
    model, guide = make_vae()
    out = {"devices": jax.device_count()}
    for name, mesh in [("sharded", data_mesh()), ("plain", None)]:
        batches = minibatches(x_train, 128, steps)
        losses, _, per_step = fit_svi(model, guide, batches, len(x_train), mesh)
        out[f"svi_{name}"], out[f"step_ms_{name}"] = losses.tolist(), 1e3 * per_step
    for name, mesh in [("sharded", data_mesh(axis="chains")), ("plain", None)]:
        mcmc, _ = logistic_chains(mesh, num_samples=100)
        out[f"beta_{name}"] = np.asarray(mcmc.get_samples(group_by_chain=True)["beta"]).tolist()
    return out


@section("scaling", "Scaling out: sharded SVI minibatches and sharded chains", order=90)
def run(ctx: Context) -> None:
    steps = ctx.pick(300, 40)
    env = dict(os.environ, JAX_NUM_CPU_DEVICES="4", JAX_PLATFORMS="cpu")
    # collectives of simulated devices can stall on XLA:CPU's shared pool when devices outnumber
    # cores; single-threaded Eigen avoids it
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_cpu_multi_thread_eigen=false".strip()
    command = [sys.executable, "-m", "numpyro_ext.demo.sections.scaling", str(steps)]
    with ctx.timed("child process with 4 simulated CPU devices"):
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"the scaling child process failed:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.splitlines()[-1])
    sharded, plain = np.asarray(out["svi_sharded"]), np.asarray(out["svi_plain"])
    print(f"  {out['devices']} devices; SVI: {steps} steps of 128 digits")
    print(f"  largest relative loss difference, sharded vs one device: "
          f"{np.max(np.abs(sharded - plain) / np.abs(plain)):.1e}")  # fmt: skip
    ms = out["step_ms_sharded"], out["step_ms_plain"]
    print(f"  step time: {ms[0]:.1f} ms sharded, {ms[1]:.1f} ms on one device "
          "(simulated devices share cores)")  # fmt: skip
    ctx.savefig(plot_svi(sharded, plain, out["devices"]), "scaling_svi")
    b4, b1 = np.asarray(out["beta_sharded"]), np.asarray(out["beta_plain"])
    print(f"  Pólya-gamma Gibbs, {b4.shape[0]} chains: largest draw difference sharded vs "
          f"unsharded {np.max(np.abs(b4 - b1)):.1e}")  # fmt: skip
    ctx.savefig(plot_chains(b4, b1, out["devices"]), "scaling_chains")


if __name__ == "__main__":
    print(json.dumps(_child(int(sys.argv[1]))))
