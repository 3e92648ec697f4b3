"""Sparse GP regression on the Snelson data: where the inducing points go, for several M.

For M in (4, 8, 16) an SVGP (:class:`numpyro_ext.guides.SparseGP`, whitened,
``TraceMeanField_ELBO``) is fitted with kernel variance, lengthscale and noise as
``numpyro.param`` sites. Each panel shows the data, the predictive band of ``y``, the inducing
inputs at initialisation (random subset, red crosses) and after training (green ticks), and the
title compares the collapsed (Titsias) bound at the fitted values with the exact evidence.

Run: ``python examples/snelson_sparse_gp.py --out examples/figures``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from jax.scipy.stats import multivariate_normal
from numpyro.distributions import constraints
from numpyro.infer import SVI, TraceMeanField_ELBO

from numpyro_ext.distributions import GaussianProcess
from numpyro_ext.gp import SquaredExponential, collapsed_elbo
from numpyro_ext.guides import SparseGP

DATA = Path(__file__).resolve().parent / "data" / "snelson"


def model(X, y=None):
    var = numpyro.param("var", 1.0, constraint=constraints.positive)
    ell = numpyro.param("ell", 1.0, constraint=constraints.positive)
    noise = numpyro.param("noise", 0.5, constraint=constraints.positive)
    f = numpyro.sample("f", GaussianProcess(SquaredExponential(var, ell), X))
    numpyro.sample("y", dist.Normal(f, noise), obs=y)


def main(out: Path, steps: int) -> None:
    x, y = np.loadtxt(DATA / "train_inputs"), np.loadtxt(DATA / "train_outputs")
    X, Y = jnp.asarray(x[:, None]), jnp.asarray(y)
    xs = jnp.linspace(x.min() - 1, x.max() + 1, 300)[:, None]
    sizes = (4, 8, 16)
    fig, axes = plt.subplots(len(sizes), 1, figsize=(8, 3 * len(sizes)), sharex=True)
    for ax, M in zip(axes, sizes, strict=True):
        guide = SparseGP(model, num_inducing=M, init_inducing="subset")
        svi = SVI(model, guide, optax.adam(0.03), TraceMeanField_ELBO())
        p = svi.run(jax.random.key(M), steps, X, Y, progress_bar=False).params
        kernel, noise = SquaredExponential(p["var"], p["ell"]), p["noise"]
        bound = collapsed_elbo(kernel, X, Y, p["auto_f_Z"], noise**2)
        K = kernel(X) + noise**2 * jnp.eye(len(x))
        exact = multivariate_normal.logpdf(Y, jnp.zeros_like(Y), K)
        mean, var = guide.predict(p, xs)
        sd = np.sqrt(np.asarray(var) + float(noise) ** 2)
        ax.plot(x, y, "k.", ms=3, alpha=0.5)
        ax.plot(xs[:, 0], mean, "C0")
        ax.fill_between(xs[:, 0], mean - 2 * sd, mean + 2 * sd, color="C0", alpha=0.2)
        lo = y.min() - 0.5
        ax.plot(np.ravel(guide.inducing.Z), np.full(M, lo), "x", color="C3", label="Z init")
        ax.plot(
            np.ravel(p["auto_f_Z"]),
            np.full(M, lo - 0.3),
            "|",
            color="C2",
            ms=12,
            label="Z trained",
        )
        ax.set_title(
            f"M={M}: collapsed bound {float(bound):.1f}, exact evidence {float(exact):.1f}"
        )
        ax.legend(loc="upper right", fontsize=7)
        print(
            f"M={M:2d}: bound {float(bound):8.2f}  exact {float(exact):8.2f}  "
            f"ell {float(p['ell']):.3f}  noise {float(noise):.3f}"
        )
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "snelson_sparse_gp.png", dpi=110, bbox_inches="tight")
    print(f"figure: {out / 'snelson_sparse_gp.png'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples/figures"))
    parser.add_argument("--steps", type=int, default=3000)
    args = parser.parse_args()
    main(args.out, args.steps)
