"""Pólya-gamma Gibbs sampling for Bayesian logistic regression, checked against NUTS.

Model: ``y_n ~ Bernoulli(sigmoid(x_n^T beta))``, ``beta ~ N(0, 2^2 I)``. With
``omega_n | beta ~ PG(1, x_n^T beta)`` (Polson, Scott & Windle 2013) the conditional of ``beta``
is Gaussian: ``beta | omega, y ~ N(V X^T kappa, V)``, ``V = (X^T Omega X + I / 4)^-1``,
``kappa = y - 1/2``. The whole chain is one ``lax.scan``; every step draws ``N`` exact
Pólya-gamma variates with :class:`numpyro_ext.distributions.PolyaGamma`. The local-variational
fit of :func:`numpyro_ext.infer.polya_gamma_local_vi` (the Jaakkola-Jordan bound, in closed
form) is printed beside both; its means land within 0.1 posterior sds of NUTS here, its sds are
smaller (the bound is known to underestimate the posterior variance).

Run: ``python examples/polya_gamma_logistic.py --out examples/figures``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import arviz_stats as azs
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS

from numpyro_ext.arviz import from_mcmc
from numpyro_ext.distributions import PolyaGamma
from numpyro_ext.infer import polya_gamma_local_vi

PRIOR_SD = 2.0


def make_data(key, n=400, d=4):
    """Synthetic design with an intercept column and known coefficients."""
    k_x, k_y = jax.random.split(key)
    X = jnp.concatenate([jnp.ones((n, 1)), jax.random.normal(k_x, (n, d - 1))], axis=1)
    beta = jnp.array([-0.5, 1.5, -1.0, 0.5])[:d]
    y = jax.random.bernoulli(k_y, jax.nn.sigmoid(X @ beta)).astype(X.dtype)
    return X, y, beta


def gibbs(key, X, y, num_samples=3000, warmup=500):
    """Pólya-gamma Gibbs sampler; returns ``num_samples`` draws of ``beta`` after ``warmup``."""
    kappa = y - 0.5
    prior_precision = jnp.eye(X.shape[1]) / PRIOR_SD**2

    def step(beta, key):
        k_omega, k_beta = jax.random.split(key)
        omega = PolyaGamma(1.0, X @ beta).sample(k_omega)
        precision = X.T @ (omega[:, None] * X) + prior_precision
        chol = jnp.linalg.cholesky(precision)
        mean = jax.scipy.linalg.cho_solve((chol, True), X.T @ kappa)
        noise = jax.random.normal(k_beta, mean.shape)
        beta = mean + jax.scipy.linalg.solve_triangular(chol.T, noise, lower=False)
        return beta, beta

    keys = jax.random.split(key, num_samples + warmup)
    _, draws = jax.lax.scan(step, jnp.zeros(X.shape[1]), keys)
    return draws[warmup:]


def model(X, y=None):
    beta = numpyro.sample("beta", dist.Normal(0.0, PRIOR_SD).expand([X.shape[1]]).to_event(1))
    numpyro.sample("y", dist.Bernoulli(logits=X @ beta), obs=y)


def main(out: Path) -> None:
    import matplotlib.pyplot as plt

    X, y, truth = make_data(jax.random.key(0))
    run = jax.jit(gibbs)
    run(jax.random.key(1), X, y).block_until_ready()
    start = time.perf_counter()
    pg = np.asarray(run(jax.random.key(2), X, y).block_until_ready())
    pg_time = time.perf_counter() - start

    mcmc = MCMC(NUTS(model), num_warmup=500, num_samples=3000, progress_bar=False)
    start = time.perf_counter()
    mcmc.run(jax.random.key(3), X, y)
    nuts = np.asarray(mcmc.get_samples()["beta"])
    nuts_time = time.perf_counter() - start

    print(
        f"Pólya-gamma Gibbs: {pg_time:.2f} s for 3000 draws;"
        f" NUTS: {nuts_time:.2f} s (compile included)"
    )
    print(azs.summary(from_mcmc(mcmc, model_args=(X, y)), var_names=["beta"]).to_string())

    # local-variational fit: q(beta) Gaussian, q(omega_n) = PG(1, c_n), by coordinate ascent
    fit = polya_gamma_local_vi(model, X, y)
    print(f"local-VI bound after {len(fit.elbo)} steps: {float(fit.elbo[-1]):.3f}")
    lvi_sd = np.sqrt(np.diag(np.asarray(fit.scale_tril @ fit.scale_tril.T)))
    print(
        f"{'coef':>5s} {'truth':>7s} {'PG mean':>8s} {'PG sd':>7s}"
        f" {'NUTS mean':>10s} {'NUTS sd':>8s} {'LVI mean':>9s} {'LVI sd':>7s} {'LVI err/sd':>10s}"
    )
    for j in range(X.shape[1]):
        err = (float(fit.loc[j]) - nuts[:, j].mean()) / nuts[:, j].std()
        print(
            f"{j:5d} {float(truth[j]):7.3f} {pg[:, j].mean():8.3f} {pg[:, j].std():7.3f}"
            f" {nuts[:, j].mean():10.3f} {nuts[:, j].std():8.3f}"
            f" {float(fit.loc[j]):9.3f} {lvi_sd[j]:7.3f} {err:10.3f}"
        )

    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, X.shape[1], figsize=(3.2 * X.shape[1], 3))
    for j, ax in enumerate(axes):
        ax.hist(pg[:, j], bins=50, density=True, alpha=0.5, label="PG Gibbs")
        ax.hist(nuts[:, j], bins=50, density=True, alpha=0.5, label="NUTS")
        ax.axvline(float(truth[j]), color="k", lw=1)
        ax.set_title(f"beta[{j}]")
    axes[0].legend()
    path = out / "polya_gamma_logistic.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    print(f"figure: {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples/figures"))
    main(parser.parse_args().out)
