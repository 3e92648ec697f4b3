"""A variational autoencoder on binarised 8x8 digits with ``AmortizedNormal`` and minibatches.

scikit-learn's digits (1797 images of 8x8 grey levels, thresholded at 8) are split 80/20. The
model is ``z_i ~ N(0, I_2)``, ``x_i | z_i ~ Bernoulli(logits=decoder(z_i))`` with a one-layer
MLP decoder; the guide is ``AmortizedNormal`` with an MLP encoder, so one line replaces the
hand-written encoder guide of NumPyro's examples/vae.py. Training draws minibatches through the
data plate's ``subsample_size``: the guide's plate draws the indices, the model replays them and
only the minibatch is encoded.

Held-out digits are scored by the ELBO and by the importance-weighted bound of Burda, Grosse &
Salakhutdinov (2016), ``RenyiELBO(alpha=0)`` with K particles, which tightens towards
``log p(x)`` as K grows. The figures show reconstructions of held-out digits and their
encodings in the 2-D latent space, coloured by the digit they show; an ArviZ summary gives the
posterior of the latents of three held-out digits.

    python examples/vae_digits.py --out examples/figures
"""

import argparse
import time
from pathlib import Path

import arviz_stats as azs
import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import optax
from numpyro.infer import SVI, Trace_ELBO

from numpyro_ext.arviz import from_svi
from numpyro_ext.demo.sections.amortized import (
    importance_weighted_bound,
    load_binary_digits,
    make_vae,
    plot_latent_space,
    plot_reconstructions,
)
from numpyro_ext.guides import AmortizedNormal


def main(out: Path, steps: int, batch_size: int, particles: int, seed: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    x_train, x_test, _, y_test = load_binary_digits(seed=seed)
    print(f"{x_train.shape[0]} training and {x_test.shape[0]} held-out digits, 64 pixels each")

    # model(x, subsample_size=None): z_i ~ N(0, I_2) and Bernoulli pixels inside plate "data";
    # the encoder is a Flax NNX MLP with 2 * 2 outputs (locations, pre-softplus scales).
    model, encoder = make_vae(z_dim=2, hidden=128, seed=seed)
    guide = AmortizedNormal(model, encoder, plate="data", inputs="x")

    svi = SVI(model, guide, optax.adam(3e-3), Trace_ELBO())
    start = time.perf_counter()
    result = svi.run(jax.random.key(seed), steps, x_train, subsample_size=batch_size)
    print(f"SVI: {steps} steps of {batch_size} digits in {time.perf_counter() - start:.1f} s")
    params = result.params

    # Both bounds per digit (nats); the encoder sees data it was not trained on.
    key = jax.random.key(seed + 1)
    for name, x in [("held-out", x_test), ("training", x_train[: x_test.shape[0]])]:
        elbo = importance_weighted_bound(model, guide, params, x, key, num_particles=1)
        iwae = importance_weighted_bound(model, guide, params, x, key, num_particles=particles)
        print(
            f"{name} digits: ELBO {float(elbo):.2f}, "
            f"importance-weighted bound (K={particles}) {float(iwae):.2f} nats/digit"
        )

    tree = from_svi(
        guide,
        params,
        model_args=(x_test[:3],),
        num_samples=2000,
        rng_key=key,
        dims={"z": ["digit", "latent"]},
    )
    print("posterior of the latents of three held-out digits:")
    print(azs.summary(tree, var_names=["z"], kind="stats").to_string())

    plot_reconstructions(model, guide, params, x_test).savefig(
        out / "vae_digits_reconstructions.png", dpi=120, bbox_inches="tight"
    )
    plot_latent_space(guide, params, x_test, y_test).savefig(
        out / "vae_digits_latent_space.png", dpi=120, bbox_inches="tight"
    )
    plt.close("all")
    print(f"figures in {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples/figures"))
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--particles", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.out, args.steps, args.batch_size, args.particles, args.seed)
