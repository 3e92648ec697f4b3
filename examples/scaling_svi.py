"""Data-parallel SVI: a VAE on the digits with every minibatch sharded over the devices.

The minibatches come from shuffled passes over scikit-learn's binarised digits (host memory);
``shard_batches`` places each one over a one-axis ``"data"`` mesh (``NamedSharding``, leading
axis), ``replicate`` copies the SVI state to every device, and the unchanged ``SVI.update``,
jitted once, runs partitioned by XLA: each device encodes, decodes and scores its rows, and the
gradient is summed across devices. The model's plate ``plate("data", N, subsample_size=B)``
scales the minibatch log-likelihood by ``N / B`` exactly as on one device.

The same steps then run on one device from the same keys. In float64 the two loss curves agree
to rounding; the figure shows both and their relative difference. Without a GPU the script
simulates four CPU devices (``JAX_NUM_CPU_DEVICES=4``, set before JAX starts); they share the
machine's cores, so the step times printed show the overhead of sharding, not a speed-up.

    python examples/scaling_svi.py --out examples/figures [--steps 500]
"""

import argparse
import os
from pathlib import Path

os.environ.setdefault("JAX_NUM_CPU_DEVICES", "4")  # before JAX starts; ignored by GPUs

# Simulated CPU devices run their collectives on XLA:CPU's shared thread pool; on a machine with
# fewer cores than devices an all-reduce can wait forever on devices queued behind it, which
# single-threaded Eigen avoids (observed with 4 devices on 2 cores).
os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"

import jax
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from numpyro_ext.demo.sections.amortized import load_binary_digits
from numpyro_ext.demo.sections.scaling import fit_svi, make_vae, minibatches, plot_svi
from numpyro_ext.infer import data_mesh


def main(out: Path, steps: int, batch_size: int) -> None:
    jax.config.update("jax_enable_x64", True)
    x_train = np.asarray(load_binary_digits()[0], dtype=np.float64)
    mesh = data_mesh()
    print(f"{len(x_train)} digits; mesh {dict(mesh.shape)} over {jax.devices()}")
    model, guide = make_vae()
    runs = {}
    for name, m in [("sharded", mesh), ("one device", None)]:
        batches = minibatches(x_train, batch_size, steps)
        runs[name] = fit_svi(model, guide, batches, len(x_train), m)
        losses, _, per_step = runs[name]
        print(f"{name}: final loss {losses[-1]:.1f}, {1e3 * per_step:.2f} ms per step")
    sharded, plain = runs["sharded"][0], runs["one device"][0]
    print(f"largest relative loss difference: {np.max(np.abs(sharded - plain) / plain):.1e}")
    leaves = jax.tree.leaves(runs["sharded"][1])
    print("parameters replicated:", all(leaf.sharding.is_fully_replicated for leaf in leaves))
    out.mkdir(parents=True, exist_ok=True)
    plot_svi(sharded, plain, len(mesh.devices)).savefig(
        out / "scaling_svi.png", dpi=120, bbox_inches="tight"
    )
    plt.close("all")
    print(f"figure in {out / 'scaling_svi.png'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples/figures"))
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    main(args.out, args.steps, args.batch_size)
