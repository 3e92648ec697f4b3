"""Minibatched SVGP regression on 20 000 points.

A noisy 1-D function observed at N = 20 000 inputs is fitted by
:class:`numpyro_ext.guides.SparseGP` (M = 40 k-means inducing inputs) with minibatches of
B = 256: the GP site sits outside the data plate, the likelihood inside
``numpyro.plate("data", N, subsample_size=B)``, so NumPyro scales it by N / B while the KL
term is counted once. Kernel variance, lengthscale and noise are ``numpyro.param`` sites. The
figure shows the loss curve and the predictive band against the true function.

Runs in float64 (the usual choice for GPs); ``--float32`` runs the same fit in single precision,
which reaches the same loss.

Run: ``python examples/minibatch_sparse_gp.py --out examples/figures [--float32]``
"""

from __future__ import annotations

import argparse
import time
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
from numpyro.distributions import constraints
from numpyro.infer import SVI, TraceMeanField_ELBO

from numpyro_ext.distributions import GaussianProcess
from numpyro_ext.gp import Matern52
from numpyro_ext.guides import SparseGP


def truth(x):
    return np.sin(3 * x) + 0.5 * np.cos(7 * x) * np.exp(-0.1 * x**2)


def model(X, y=None, batch_size=None):
    var = numpyro.param("var", 1.0, constraint=constraints.positive)
    ell = numpyro.param("ell", 1.0, constraint=constraints.positive)
    noise = numpyro.param("noise", 1.0, constraint=constraints.positive)
    data = numpyro.plate("data", X.shape[0], subsample_size=batch_size)
    with data as idx:
        pass
    f = numpyro.sample("f", GaussianProcess(Matern52(var, ell), X[idx]))
    with data:
        numpyro.sample("y", dist.Normal(f, noise), obs=None if y is None else y[idx])


def main(out: Path, steps: int, n: int, float32: bool = False) -> None:
    jax.config.update("jax_enable_x64", not float32)
    rng = np.random.default_rng(0)
    x = rng.uniform(-4.0, 4.0, n)
    y = truth(x) + 0.3 * rng.normal(size=n)
    X, Y = jnp.asarray(x[:, None]), jnp.asarray(y)
    guide = SparseGP(model, num_inducing=40)
    svi = SVI(model, guide, optax.adam(0.01), TraceMeanField_ELBO())
    start = time.perf_counter()
    result = svi.run(jax.random.key(0), steps, X, Y, batch_size=256, progress_bar=False)
    elapsed = time.perf_counter() - start
    p = result.params
    losses = np.asarray(result.losses)
    print(
        f"N={n}, B=256, M=40, {X.dtype}: {steps} steps in {elapsed:.1f} s (compilation "
        f"included); mean loss of the last 200 steps {losses[-200:].mean():.0f}"
    )
    if not np.all(np.isfinite(losses)):
        raise RuntimeError(f"non-finite loss at step {np.flatnonzero(~np.isfinite(losses))[0]}")
    print(f"noise sd {float(p['noise']):.3f} (true 0.3), lengthscale {float(p['ell']):.3f}")
    xs = np.linspace(-4.5, 4.5, 400)
    mean, var = guide.predict(p, jnp.asarray(xs[:, None]))
    rmse = float(np.sqrt(np.mean((np.asarray(mean) - truth(xs)) ** 2)))
    print(f"RMSE of the posterior mean against the true function: {rmse:.3f}")

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.5))
    a1.plot(losses / n)
    a1.set_xlabel("step")
    a1.set_ylabel("-ELBO / N (one minibatch)")
    sub = rng.choice(n, 2000, replace=False)
    a2.plot(x[sub], y[sub], "k.", ms=1, alpha=0.3, label="data (2000 of N)")
    a2.plot(xs, truth(xs), "k--", lw=1, label="truth")
    sd = np.sqrt(np.asarray(var) + float(p["noise"]) ** 2)
    a2.plot(xs, mean, "C0", label="q(f) mean")
    a2.fill_between(xs, mean - 2 * sd, mean + 2 * sd, color="C0", alpha=0.2)
    Z = np.ravel(p["auto_f_Z"])
    a2.plot(Z, np.full_like(Z, y.min()), "|", color="C2", ms=10, label="inducing inputs")
    a2.legend(fontsize=7, loc="upper right")
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "minibatch_sparse_gp.png", dpi=110, bbox_inches="tight")
    print(f"figure: {out / 'minibatch_sparse_gp.png'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples/figures"))
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--float32", action="store_true", help="single precision")
    args = parser.parse_args()
    main(args.out, args.steps, args.n, args.float32)
