"""GP classification on a 2-D set with a Bernoulli likelihood and a sparse variational guide.

The two-moons data (scikit-learn) are classified by a GP with a Matérn-5/2 kernel whose
lengthscale is a *latent* site with a log-normal prior: an ``AutoNormal`` guides the
lengthscale and :class:`numpyro_ext.guides.SparseGP` (M = 20 k-means inducing inputs) guides
``f``, both in one ``AutoGuideList``. The figure shows the predictive probability
:math:`E_{q(f)}[\\sigma(f)]` (probit approximation) with the data and the inducing inputs.

Run: ``python examples/gp_classification.py --out examples/figures``
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
from numpyro import handlers
from numpyro.infer import SVI, TraceMeanField_ELBO
from numpyro.infer.autoguide import AutoGuideList, AutoNormal
from sklearn.datasets import make_moons

from numpyro_ext.distributions import GaussianProcess
from numpyro_ext.gp import Matern52
from numpyro_ext.guides import SparseGP


def model(X, y=None):
    ell = numpyro.sample("ell", dist.LogNormal(0.0, 1.0))
    f = numpyro.sample("f", GaussianProcess(Matern52(4.0, ell), X))
    numpyro.sample("y", dist.Bernoulli(logits=f), obs=y)


def main(out: Path, steps: int) -> None:
    x, labels = make_moons(300, noise=0.2, random_state=0)
    X, y = jnp.asarray(x), jnp.asarray(labels)
    guide = AutoGuideList(model)
    guide.append(AutoNormal(handlers.block(model, hide=["f"])))
    guide.append(SparseGP(model, num_inducing=20))
    svi = SVI(model, guide, optax.adam(0.03), TraceMeanField_ELBO())
    result = svi.run(jax.random.key(0), steps, X, y, progress_bar=False)
    p = result.params
    ell = float(guide[0].median(p)["ell"])
    print(f"final loss {float(result.losses[-1]):.2f}; lengthscale (posterior median) {ell:.3f}")

    g = np.linspace(-2.0, 3.0, 80), np.linspace(-1.5, 2.0, 70)
    grid = jnp.asarray(np.stack(np.meshgrid(*g), -1).reshape(-1, 2))
    # the kernel's lengthscale is latent: passing the guide list plugs in its posterior median
    mean, var = guide[1].predict(p, grid, values=guide)
    prob = jax.scipy.stats.norm.cdf(mean / jnp.sqrt(1 + jnp.pi * var / 8))
    train_mean, _ = guide[1].predict(p, X, values=guide)
    print(f"training accuracy {float(jnp.mean((train_mean > 0) == y)):.3f}")

    fig, ax = plt.subplots(figsize=(6, 4.5))
    cs = ax.contourf(*g, np.asarray(prob).reshape(70, 80), levels=20, cmap="RdBu_r", alpha=0.7)
    fig.colorbar(cs, label="P(y = 1)")
    ax.scatter(x[:, 0], x[:, 1], c=labels, cmap="RdBu_r", s=10, edgecolors="k", linewidths=0.3)
    Z = np.asarray(p["auto_f_Z"])
    ax.plot(Z[:, 0], Z[:, 1], "k*", ms=9, label="inducing inputs")
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title("Sparse GP classification (Bernoulli, M = 20)")
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "gp_classification.png", dpi=110, bbox_inches="tight")
    print(f"figure: {out / 'gp_classification.png'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples/figures"))
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    main(args.out, args.steps)
