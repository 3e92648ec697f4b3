"""Orthogonal inducing sets and spherical activation features on the Snelson data.

SOLVE-GP with 5 + 5 inducing points beside SVGP with 5 and with 10 (same model, same objective,
minibatches of 20), then an SVGP on the arc-cosine kernel with ReLU activation features whose
posterior mean is printed as a one-hidden-layer network.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from numpyro.distributions import constraints
from numpyro.infer import SVI, TraceMeanField_ELBO

from numpyro_ext.demo.registry import Context, section
from numpyro_ext.demo.sections.sparse_gp import load_snelson
from numpyro_ext.distributions import GaussianProcess
from numpyro_ext.gp import (
    ArcCosine,
    SphericalActivationFeatures,
    SquaredExponential,
    network_weights,
)
from numpyro_ext.guides import SOLVEGP, SparseGP

__all__ = ["run"]


def _model(X, y=None, batch_size=None, kernel="se"):
    var = numpyro.param("var", 1.0, constraint=constraints.positive)
    if kernel == "se":
        ell = numpyro.param("ell", 1.0, constraint=constraints.positive)
        k = SquaredExponential(var, ell)
    else:
        k = ArcCosine(var, numpyro.param("bias", 1.0, constraint=constraints.positive), 1)
    noise = numpyro.param("noise", 0.5, constraint=constraints.positive)
    data = numpyro.plate("data", X.shape[0], subsample_size=batch_size)
    with data as idx:
        pass
    f = numpyro.sample("f", GaussianProcess(k, X[idx]))
    with data:
        numpyro.sample("y", dist.Normal(f, noise), obs=None if y is None else y[idx])


def _elbo(guide, params, X, Y, kernel="se"):
    """The bound at the fitted parameters, averaged over 200 draws (full data)."""
    keys = jax.random.split(jax.random.key(7), 200)
    loss = TraceMeanField_ELBO().loss
    losses = jax.vmap(lambda k: loss(k, params, _model, guide, X, Y, None, kernel))(keys)
    return -float(jnp.mean(losses))


@section("orthogonal_gp", "Orthogonal inducing sets (SOLVE-GP) and activation features", order=51)
def run(ctx: Context) -> None:
    import matplotlib.pyplot as plt

    x, y = load_snelson()
    X, Y = jnp.asarray(x[:, None]), jnp.asarray(y)
    steps = ctx.pick(3000, 150)
    Z10 = X[np.linspace(0, len(x) - 1, 10).astype(int)]
    guides = {
        "SVGP M=5": SparseGP(_model, inducing=Z10[::2]),
        "SVGP M=10": SparseGP(_model, inducing=Z10),
        "SOLVE-GP M=5+5": SOLVEGP(_model, inducing=Z10[::2], inducing_v=Z10[1::2]),
    }
    xs = jnp.linspace(x.min() - 1, x.max() + 1, 200)[:, None]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3), sharey=True)
    for ax, (name, guide) in zip(axes, guides.items(), strict=True):
        svi = SVI(_model, guide, optax.adam(0.02), TraceMeanField_ELBO())
        with ctx.timed(f"{name}: {steps} steps, batch 20"):
            p = svi.run(jax.random.key(ctx.seed), steps, X, Y, 20, progress_bar=False).params
        elbo = _elbo(guide, p, X, Y)
        print(f"  {name}: ELBO {elbo:.1f}")
        mean, var = guide.predict(p, xs)
        sd = np.sqrt(np.asarray(var) + float(p["noise"]) ** 2)
        ax.plot(x, y, "k.", ms=2, alpha=0.5)
        ax.plot(xs[:, 0], mean, "C0")
        ax.fill_between(xs[:, 0], mean - 2 * sd, mean + 2 * sd, color="C0", alpha=0.2)
        ax.set_title(f"{name}: ELBO {elbo:.1f}", fontsize=9)
    ctx.savefig(fig, "orthogonal_gp_snelson")

    rng = np.random.default_rng(ctx.seed)
    feats = SphericalActivationFeatures(jnp.asarray(rng.normal(size=(8, 2))), "relu", 8)
    guide = SparseGP(_model, inducing=feats)
    svi = SVI(_model, guide, optax.adam(0.02), TraceMeanField_ELBO())
    with ctx.timed(f"arc-cosine SVGP with 8 ReLU features: {steps} steps"):
        p = svi.run(jax.random.key(ctx.seed), steps, X, Y, None, "arccos", progress_bar=False)
    p = p.params
    fitted = SphericalActivationFeatures(p["auto_f_Z"], "relu", 8)
    net = network_weights(fitted, ArcCosine(p["var"], p["bias"], 1), p["auto_f_q_mu"])
    print(f"  ELBO {_elbo(guide, p, X, Y, 'arccos'):.1f}; the posterior mean as a network:")
    for w, b, beta in zip(net["W"][:, 0], net["b"], net["beta"], strict=True):
        print(f"    {float(beta):+8.3f} * phi({float(w):+.3f} x {float(b):+.3f})")
