"""A variational autoencoder on binarised 8x8 digits with an ``AmortizedNormal`` guide.

The data are scikit-learn's digits (1797 images, 8x8, grey levels 0..16) thresholded at 8. The
model is ``z_i ~ N(0, I_2)``, ``x_i | z_i ~ Bernoulli(logits = decoder(z_i))`` with an MLP
decoder; the guide is ``AmortizedNormal`` with an MLP encoder, trained on minibatches through
the data plate's ``subsample_size``. Held-out digits are scored with the importance-weighted
bound (``RenyiELBO(alpha=0)``), which tightens towards ``log p(x)`` as particles grow.

The building blocks (data, networks, model, the hand-written guide NumPyro's examples/vae.py
would use) are shared with ``examples/vae_digits.py`` and ``benchmarks/amortized.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from numpyro.infer import SVI, RenyiELBO, Trace_ELBO

from numpyro_ext.demo.registry import Context, section
from numpyro_ext.guides.amortized import AmortizedNormal, DiagonalNormalFamily

__all__ = [
    "MLP",
    "hand_written_guide",
    "importance_weighted_bound",
    "load_binary_digits",
    "make_vae",
    "run",
]


def load_binary_digits(test_fraction: float = 0.2, seed: int = 0):
    """Binarised digits split into train and test: ``(x_train, x_test, y_train, y_test)``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data >= 8).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(test_fraction * len(x))
    test, train = order[:n_test], order[n_test:]
    y = digits.target
    return jnp.asarray(x[train]), jnp.asarray(x[test]), y[train], y[test]


def _nnx():
    from flax import nnx

    return nnx


class MLP:
    """Factory for a one-hidden-layer Flax NNX MLP (softplus hidden units)."""

    def __new__(cls, n_in: int, n_hidden: int, n_out: int, seed: int):
        nnx = _nnx()

        class _MLP(nnx.Module):
            def __init__(self, rngs):
                self.hidden = nnx.Linear(n_in, n_hidden, rngs=rngs)
                self.out = nnx.Linear(n_hidden, n_out, rngs=rngs)

            def __call__(self, x):
                return self.out(jax.nn.softplus(self.hidden(x)))

        return _MLP(nnx.Rngs(seed))


def make_vae(z_dim: int = 2, hidden: int = 128, n_pixels: int = 64, seed: int = 0):
    """The VAE model ``model(x, subsample_size=None)`` and an encoder with ``2 z_dim`` outputs."""
    from numpyro.contrib.module import nnx_module

    decoder = MLP(z_dim, hidden, n_pixels, seed)
    encoder = MLP(n_pixels, hidden, 2 * z_dim, seed + 1)

    def model(x, subsample_size=None):
        decode = nnx_module("decoder", decoder)
        with numpyro.plate("data", x.shape[0], subsample_size=subsample_size) as idx:
            z = numpyro.sample("z", dist.Normal(0, 1).expand([z_dim]).to_event(1))
            numpyro.sample("x", dist.Bernoulli(logits=decode(z)).to_event(1), obs=x[idx])

    return model, encoder


def hand_written_guide(encoder, z_dim: int = 2, init_scale: float = 0.1):
    """The guide one writes by hand (NumPyro's examples/vae.py style), same network and maths."""
    from numpyro.contrib.module import nnx_module

    family = DiagonalNormalFamily(init_scale)

    def guide(x, subsample_size=None):
        encode = nnx_module("amortized_encoder", encoder)
        with numpyro.plate("data", x.shape[0], subsample_size=subsample_size) as idx:
            loc, scale = family.loc_scale(encode(x[idx]), z_dim)
            numpyro.sample("z", dist.Normal(loc, scale).to_event(1))

    return guide


def importance_weighted_bound(model, guide, params, x, rng_key, num_particles: int = 100):
    """Importance-weighted bound per datum (nats), ``RenyiELBO(alpha=0)`` (Burda et al. 2016).

    With one particle it is the ELBO.
    """
    elbo = RenyiELBO(alpha=0.0, num_particles=num_particles) if num_particles > 1 else Trace_ELBO()
    loss = jax.jit(lambda p, k: elbo.loss(k, p, model, guide, x))
    return -loss(params, rng_key) / x.shape[0]


def fit_vae(
    num_steps: int, batch_size: int = 128, seed: int = 0, z_dim: int = 2, hidden: int = 128
):
    """Train the VAE with ``AmortizedNormal``; returns ``(model, guide, params, losses)``."""
    x_train = load_binary_digits()[0]
    model, encoder = make_vae(z_dim=z_dim, hidden=hidden, seed=seed)
    guide = AmortizedNormal(model, encoder, plate="data", inputs="x")
    svi = SVI(model, guide, optax.adam(3e-3), Trace_ELBO())
    result = svi.run(
        jax.random.key(seed), num_steps, x_train, subsample_size=batch_size, progress_bar=False
    )
    return model, guide, result.params, result.losses


def plot_reconstructions(model, guide, params, x, n: int = 10):
    """Originals (top) and decoded posterior means (bottom)."""
    import matplotlib.pyplot as plt
    from numpyro import handlers

    z = guide.median(params, x[:n])["z"]
    decoded = handlers.substitute(
        handlers.condition(handlers.seed(model, 0), {"z": z}), data=params
    )
    tr = handlers.trace(decoded).get_trace(x[:n])
    probs = jax.nn.sigmoid(tr["x"]["fn"].base_dist.logits)
    fig, axes = plt.subplots(2, n, figsize=(n, 2.2))
    for i in range(n):
        axes[0, i].imshow(np.asarray(x[i]).reshape(8, 8), cmap="gray_r")
        axes[1, i].imshow(np.asarray(probs[i]).reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
    for ax in axes.ravel():
        ax.set_axis_off()
    axes[0, 0].set_title("held-out digits / reconstructions", loc="left", fontsize=9)
    return fig


def plot_latent_space(guide, params, x, labels):
    """Posterior means of held-out digits in the 2-D latent space, coloured by digit."""
    import matplotlib.pyplot as plt

    z = np.asarray(guide.median(params, x)["z"])
    fig, ax = plt.subplots(figsize=(5, 4.5))
    points = ax.scatter(z[:, 0], z[:, 1], c=labels, cmap="tab10", s=8)
    fig.colorbar(points, ax=ax, label="digit")
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.set_title("encoder means of held-out digits")
    return fig


@section("amortized", "Amortised inference: a VAE on digits with AmortizedNormal", order=60)
def run(ctx: Context) -> None:
    from arviz_base import from_dict
    from arviz_stats import summary

    steps = ctx.pick(3000, 300)
    _, x_test, _, y_test = load_binary_digits()
    with ctx.timed(f"SVI, {steps} steps of 128 digits (compilation included)"):
        model, guide, params, losses = fit_vae(steps, seed=ctx.seed, hidden=ctx.pick(128, 64))
    print(f"  final training loss (minibatch, scaled to N): {float(losses[-50:].mean()):.1f}")
    key = jax.random.key(ctx.seed + 1)
    with ctx.timed("held-out bounds"):
        elbo = importance_weighted_bound(model, guide, params, x_test, key, 1)
        particles = ctx.pick(100, 10)
        iwae = importance_weighted_bound(model, guide, params, x_test, key, particles)
    print(
        f"  held-out ({x_test.shape[0]} digits): ELBO {float(elbo):.2f} nats/digit, "
        f"importance-weighted bound (K={particles}) {float(iwae):.2f}"
    )
    draws = guide.sample_posterior(key, params, x_test[:3], sample_shape=(500,))
    tree = from_dict({"posterior": {"z": np.asarray(draws["z"])[None]}})
    print(summary(tree, kind="stats"))
    ctx.savefig(plot_reconstructions(model, guide, params, x_test), "amortized_reconstructions")
    ctx.savefig(plot_latent_space(guide, params, x_test, y_test), "amortized_latent_space")
