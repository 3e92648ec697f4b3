"""Sharded chains: Pólya-gamma Gibbs with its vectorised chains split over the devices.

``MCMC(PolyaGammaGibbs(model), num_chains=16, chain_method="vectorized")`` runs the chains as
one vmapped program. Given per-chain keys sharded over a ``"chains"`` mesh axis
(``chain_keys``), that program runs partitioned: each device advances its own chains, and the
draws equal those of the unsharded run from the same keys. ``numpyro_ext.arviz.from_mcmc``
gathers the chains of every device into one ArviZ DataTree. NUTS runs beside it for the
posterior it should agree with, warmed up on one device and sampled with its adapted state split
over the devices by ``shard_batch``.

Without a GPU the script simulates four CPU devices (``JAX_NUM_CPU_DEVICES=4``, set before JAX
starts); they share the machine's cores, so the times show overhead, not a speed-up.

    python examples/scaling_chains.py --out examples/figures
"""

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("JAX_NUM_CPU_DEVICES", "4")  # before JAX starts; ignored by GPUs

# Simulated CPU devices run their collectives on XLA:CPU's shared thread pool; on a machine with
# fewer cores than devices an all-reduce can wait forever on devices queued behind it, which
# single-threaded Eigen avoids (observed with 4 devices on 2 cores).
os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"

import arviz_stats as azs
import jax
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from numpyro.infer import MCMC, NUTS

from numpyro_ext.arviz import from_mcmc
from numpyro_ext.demo.sections.scaling import logistic_chains, plot_chains
from numpyro_ext.infer import data_mesh, shard_batch


def main(out: Path, chains: int, draws: int) -> None:
    jax.config.update("jax_enable_x64", True)
    mesh = data_mesh(axis="chains")
    runs = {}
    for name, m in [("sharded", mesh), ("unsharded", None)]:
        start = time.perf_counter()
        runs[name] = logistic_chains(m, num_chains=chains, num_samples=draws)
        print(f"{name}: {time.perf_counter() - start:.1f} s (compilation included)")
    mcmc, args = runs["sharded"]
    beta = mcmc.get_samples(group_by_chain=True)["beta"]
    devices = {s.device.id for s in beta.addressable_shards}
    print(f"draws {beta.shape} held on devices {sorted(devices)}")
    plain = runs["unsharded"][0].get_samples(group_by_chain=True)["beta"]
    print(f"largest difference sharded vs unsharded: {float(np.max(np.abs(beta - plain))):.1e}")

    tree = from_mcmc(mcmc, model_args=args, coords={"coef": ["intercept", "x1", "x2"]},
                     dims={"beta": ["coef"]})  # fmt: skip
    print(azs.summary(tree, var_names=["beta"]).to_string())

    nuts = MCMC(NUTS(runs["sharded"][0].sampler.model), num_warmup=300, num_samples=draws,
                num_chains=chains, chain_method="vectorized", progress_bar=False)  # fmt: skip
    # HMC's initialisation gathers the chains onto one device: warm up there, then split the
    # adapted state over the mesh so that sampling runs partitioned
    nuts.warmup(jax.random.key(1), *args)
    nuts.post_warmup_state = shard_batch(nuts.post_warmup_state, mesh)
    nuts.run(nuts.post_warmup_state.rng_key, *args)
    nuts_tree = from_mcmc(nuts, model_args=args, coords={"coef": ["intercept", "x1", "x2"]},
                          dims={"beta": ["coef"]})  # fmt: skip
    print("NUTS beside it:")
    print(azs.summary(nuts_tree, var_names=["beta"], kind="stats").to_string())

    out.mkdir(parents=True, exist_ok=True)
    plot_chains(np.asarray(beta), np.asarray(plain), len(mesh.devices)).savefig(
        out / "scaling_chains.png", dpi=120, bbox_inches="tight"
    )
    plt.close("all")
    print(f"figure in {out / 'scaling_chains.png'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples/figures"))
    parser.add_argument("--chains", type=int, default=16)
    parser.add_argument("--draws", type=int, default=500)
    args = parser.parse_args()
    main(args.out, args.chains, args.draws)
