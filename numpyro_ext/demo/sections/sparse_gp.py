"""Sparse variational GP on the Snelson data: inducing points before/after, predictive bands.

Fits :class:`numpyro_ext.guides.SparseGP` (SVGP, whitened, ``TraceMeanField_ELBO``) with kernel
hyperparameters and noise as ``numpyro.param`` sites, plots the predictive band with the
inducing inputs where they started and where they ended, summarises posterior draws of ``f`` at
a few inputs with ArviZ, and prints the collapsed (Titsias) bound next to the exact evidence at
the fitted hyperparameters.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from jax.scipy.stats import multivariate_normal
from numpyro.distributions import constraints
from numpyro.infer import SVI, TraceMeanField_ELBO

from numpyro_ext.demo.registry import Context, section
from numpyro_ext.distributions import GaussianProcess
from numpyro_ext.gp import SquaredExponential, collapsed_elbo
from numpyro_ext.guides import SparseGP

__all__ = ["load_snelson", "run"]

DATA = Path(__file__).resolve().parents[3] / "examples" / "data" / "snelson"


def load_snelson() -> tuple[np.ndarray, np.ndarray]:
    """The 200 Snelson training points (a synthetic stand-in if the repo data is absent)."""
    if (DATA / "train_inputs").exists():
        return np.loadtxt(DATA / "train_inputs"), np.loadtxt(DATA / "train_outputs")
    x = np.sort(np.random.default_rng(0).uniform(0.0, 6.0, 200))
    return x, np.sin(2 * x) + 0.3 * np.random.default_rng(1).normal(size=200)


def model(X, y=None):
    var = numpyro.param("var", 1.0, constraint=constraints.positive)
    ell = numpyro.param("ell", 1.0, constraint=constraints.positive)
    noise = numpyro.param("noise", 0.5, constraint=constraints.positive)
    f = numpyro.sample("f", GaussianProcess(SquaredExponential(var, ell), X))
    numpyro.sample("y", dist.Normal(f, noise), obs=y)


@section("sparse_gp", "Sparse variational GP (SVGP) on the Snelson data", order=50)
def run(ctx: Context) -> None:
    import arviz_base as azb
    import arviz_stats as azs
    import matplotlib.pyplot as plt

    x, y = load_snelson()
    X, Y = jnp.asarray(x[:, None]), jnp.asarray(y)
    M, steps = 12, ctx.pick(2500, 400)
    guide = SparseGP(model, num_inducing=M, init_inducing="subset")
    svi = SVI(model, guide, optax.adam(0.03), TraceMeanField_ELBO())
    key = jax.random.key(ctx.seed)
    with ctx.timed(f"SVI, {steps} steps, N={len(x)}, M={M}"):
        result = svi.run(key, steps, X, Y, progress_bar=False)
    p = result.params
    Z0, Z = np.asarray(guide.inducing.Z).ravel(), np.asarray(p["auto_f_Z"]).ravel()
    var, ell, noise = float(p["var"]), float(p["ell"]), float(p["noise"])
    print(f"  fitted: variance={var:.3f} lengthscale={ell:.3f} noise sd={noise:.3f}")

    kernel = SquaredExponential(var, ell)
    bound = collapsed_elbo(kernel, X, Y, p["auto_f_Z"], noise**2)
    exact = multivariate_normal.logpdf(
        Y, jnp.zeros_like(Y), kernel(X) + noise**2 * jnp.eye(len(x))
    )
    print(f"  final SVI loss (-ELBO, 1 draw): {float(result.losses[-1]):.2f}")
    print(f"  collapsed bound at fitted Z: {float(bound):.3f}")
    print(f"  exact log evidence:          {float(exact):.3f}")

    xs = jnp.linspace(x.min() - 1, x.max() + 1, 300)[:, None]
    mean, fvar = guide.predict(p, xs)
    sd = np.sqrt(np.asarray(fvar) + noise**2)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot(x, y, "k.", ms=3, alpha=0.5, label="data")
    ax.plot(xs[:, 0], mean, "C0", label="q(f) mean")
    ax.fill_between(
        xs[:, 0], mean - 2 * sd, mean + 2 * sd, color="C0", alpha=0.2, label="±2 sd (y)"
    )
    lo = float(np.min(y)) - 0.6
    ax.plot(Z0, np.full(M, lo), "x", color="C3", label="Z before")
    ax.plot(Z, np.full(M, lo - 0.25), "|", color="C2", ms=12, label="Z after")
    ax.set_title(f"SVGP, M={M}: ELBO bound {float(bound):.1f} vs exact {float(exact):.1f}")
    ax.legend(loc="upper right", fontsize=7, ncol=3)
    ctx.savefig(fig, "sparse_gp_snelson")

    at = jnp.array([[1.0], [3.0], [5.0]])
    draws = guide.sample_posterior(jax.random.fold_in(key, 1), p, at, sample_shape=(2, 500))
    tree = azb.from_dict({"posterior": {"f": np.asarray(draws["f"])}})
    print(azs.summary(tree, kind="stats"))
