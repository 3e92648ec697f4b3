"""Sparse GPs: SVGP step, collapsed bound and cholesky_update against GPJax and plain JAX.

Three tables, every entry timed in this process after compilation (median of repeats):

1. One SVGP optimisation step (minibatch B, M inducing points, whitened, Gaussian likelihood,
   Adam): ``SVI.update`` with :class:`numpyro_ext.guides.SparseGP` and ``TraceMeanField_ELBO``;
   a hand-written jitted JAX SVGP step (same math, same minibatch sampler); GPJax's
   ``WhitenedVariationalGaussian`` + ``objectives.elbo`` step as ``gpjax.fit`` runs it.
2. One evaluation (value and gradient) of the collapsed bound: ours vs GPJax's
   ``collapsed_elbo``.
3. ``cholesky_update(L, U)`` against a fresh ``cholesky(L L^T + U U^T)``.

Run: ``python benchmarks/sparse_gp.py``
"""

from __future__ import annotations

import equinox as eqx
import gpjax as gpx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from gpjax.fit import get_batch
from harness import Table, environment, time_call
from jax.scipy.linalg import solve_triangular
from numpyro.distributions import constraints
from numpyro.infer import SVI, TraceMeanField_ELBO

from numpyro_ext.distributions import GaussianProcess
from numpyro_ext.gp import SquaredExponential, collapsed_elbo
from numpyro_ext.guides import SparseGP
from numpyro_ext.linalg import cholesky_update

jax.config.update("jax_enable_x64", True)


def data(n):
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, (n, 1))
    return jnp.asarray(x), jnp.asarray(np.sin(2 * x[:, 0]) + 0.3 * rng.normal(size=n))


def model(X, y=None, batch_size=None):
    var = numpyro.param("var", 1.0, constraint=constraints.positive)
    ell = numpyro.param("ell", 1.0, constraint=constraints.positive)
    noise = numpyro.param("noise", 0.5, constraint=constraints.positive)
    plate = numpyro.plate("data", X.shape[0], subsample_size=batch_size)
    with plate as idx:
        pass
    f = numpyro.sample("f", GaussianProcess(SquaredExponential(var, ell), X[idx]))
    with plate:
        numpyro.sample("y", dist.Normal(f, noise), obs=y[idx])


def ours_step(X, y, Z, B):
    guide = SparseGP(model, inducing=Z)
    svi = SVI(model, guide, optax.adam(1e-2), TraceMeanField_ELBO())
    state = svi.init(jax.random.key(0), X, y, batch_size=B)
    update = jax.jit(lambda s: svi.update(s, X, y, batch_size=B)[0])
    return lambda: update(state)


def handwritten_step(X, y, Z, B):
    """Plain JAX SVGP (whitened, one reparametrised draw per point), Adam on raw arrays."""
    N, M = X.shape[0], Z.shape[0]
    params = {
        "log_var": jnp.zeros(()),
        "log_ell": jnp.zeros(()),
        "log_noise": jnp.log(0.5),
        "Z": Z,
        "q_mu": jnp.zeros(M),
        "q_sqrt_raw": jnp.zeros(M * (M + 1) // 2),
    }
    tril = jnp.tril_indices(M)

    def loss(p, key):
        k_idx, k_eps = jax.random.split(key)
        idx = jax.random.choice(k_idx, N, (B,), replace=False)
        Xb, yb = X[idx], y[idx]
        var, ell, noise = jnp.exp(p["log_var"]), jnp.exp(p["log_ell"]), jnp.exp(p["log_noise"])

        def k(A, C):
            d2 = jnp.sum(A**2, 1)[:, None] + jnp.sum(C**2, 1)[None] - 2 * A @ C.T
            return var * jnp.exp(-0.5 * jnp.maximum(d2, 0.0) / ell**2)

        R = jnp.zeros((M, M)).at[tril].set(p["q_sqrt_raw"])
        R = R - jnp.diag(jnp.diag(R)) + jnp.diag(jnp.exp(jnp.diag(R)))
        L = jnp.linalg.cholesky(k(p["Z"], p["Z"]) + 1e-6 * jnp.eye(M))
        A = solve_triangular(L, k(p["Z"], Xb), lower=True)
        mean = A.T @ p["q_mu"]
        fvar = var - jnp.sum(A**2, 0) + jnp.sum((R.T @ A) ** 2, 0)
        f = mean + jnp.sqrt(jnp.maximum(fvar, 1e-30)) * jax.random.normal(k_eps, (B,))
        loglik = jnp.sum(jax.scipy.stats.norm.logpdf(yb, f, noise)) * N / B
        kl = 0.5 * (
            jnp.sum(R**2) + jnp.sum(p["q_mu"] ** 2) - M - 2 * jnp.sum(jnp.log(jnp.diag(R)))
        )
        return kl - loglik

    opt = optax.adam(1e-2)
    state = (params, opt.init(params), jax.random.key(0))

    @jax.jit
    def step(state):
        p, o, key = state
        key, sub = jax.random.split(key)
        g = jax.grad(loss)(p, sub)
        upd, o = opt.update(g, o, p)
        return optax.apply_updates(p, upd), o, key

    return lambda: step(state)


def gpjax_posterior(var=1.0, ell=1.0, sd=0.5):
    prior = gpx.gps.Prior(
        mean_function=gpx.mean_functions.Zero(),
        kernel=gpx.kernels.RBF(lengthscale=ell, variance=var),
        jitter=1e-6,
    )
    return prior * gpx.likelihoods.Gaussian(obs_stddev=sd)


def gpjax_step(X, y, Z, B):
    D = gpx.Dataset(X=X, y=y[:, None])
    q = gpx.variational_families.WhitenedVariationalGaussian(
        model=gpjax_posterior(), inducing_inputs=Z
    )
    opt = optax.adam(1e-2)
    state = (q, opt.init(eqx.filter(q, eqx.is_array)), jax.random.key(0))

    def loss(q, batch):
        return -gpx.objectives.elbo(q, batch)

    @eqx.filter_jit
    def step(state):
        q, o, key = state
        key, sub = jax.random.split(key)
        batch = get_batch(D, B, sub)
        g = eqx.filter_grad(loss)(q, batch)
        upd, o = opt.update(g, o, eqx.filter(q, eqx.is_array))
        return eqx.apply_updates(q, upd), o, key

    return lambda: step(state)


def svgp_table():
    t = Table(
        "SVGP: one optimisation step (float64, whitened, Adam), ms",
        [
            "N",
            "B",
            "M",
            "numpyro_ext",
            "hand-written JAX",
            "GPJax",
            "ours / hand-written",
            "ours / GPJax",
        ],
    )
    for N, B, M in [(10_000, 256, 32), (10_000, 256, 128), (10_000, 1024, 64)]:
        X, y = data(N)
        Z = X[:M]
        ours = time_call(ours_step(X, y, Z, B), repeats=30).median * 1e3
        hand = time_call(handwritten_step(X, y, Z, B), repeats=30).median * 1e3
        theirs = time_call(gpjax_step(X, y, Z, B), repeats=30).median * 1e3
        t.add(N, B, M, ours, hand, theirs, ours / hand, ours / theirs)
    t.print()


def ours_bound(X, y):
    return lambda h: collapsed_elbo(SquaredExponential(h[0], h[1]), X, y, h[2], h[3])


def gpjax_bound(D):
    return lambda q: gpx.objectives.collapsed_elbo(q, D)


def collapsed_table():
    t = Table(
        "Collapsed (SGPR) bound: value and gradient w.r.t. hyperparameters and Z, ms",
        ["N", "M", "numpyro_ext", "GPJax", "ours / GPJax"],
    )
    for N, M in [(1000, 32), (5000, 64), (5000, 256)]:
        X, y = data(N)
        Z = X[:M]
        D = gpx.Dataset(X=X, y=y[:, None])
        ours = jax.jit(jax.value_and_grad(ours_bound(X, y)))
        h = (1.0, 1.0, Z, 0.25)
        q = gpx.variational_families.CollapsedVariationalGaussian(
            model=gpjax_posterior(), inducing_inputs=Z
        )
        theirs = eqx.filter_jit(eqx.filter_value_and_grad(gpjax_bound(D)))
        np.testing.assert_allclose(ours(h)[0], theirs(q)[0], rtol=1e-8)
        a = time_call(lambda h=h, f=ours: f(h), repeats=15).median * 1e3
        b = time_call(lambda q=q, f=theirs: f(q), repeats=15).median * 1e3
        t.add(N, M, a, b, a / b)
    t.print()


def update_table():
    t = Table(
        "cholesky_update(L, U) vs fresh cholesky(L L^T + U U^T), ms",
        ["N", "rank M", "cholesky_update", "fresh Cholesky", "update / fresh"],
    )
    fresh = jax.jit(lambda L, U: jnp.linalg.cholesky(L @ L.T + U @ U.T))
    update = jax.jit(cholesky_update)
    for N, M in [(100, 1), (100, 8), (400, 1), (400, 8)]:
        G = jax.random.normal(jax.random.key(0), (N, N))
        L = jnp.linalg.cholesky(G @ G.T / N + jnp.eye(N))
        U = jax.random.normal(jax.random.key(1), (N, M))
        np.testing.assert_allclose(update(L, U), fresh(L, U), rtol=1e-6, atol=1e-8)
        a = time_call(lambda L=L, U=U: update(L, U), repeats=7).median * 1e3
        b = time_call(lambda L=L, U=U: fresh(L, U), repeats=7).median * 1e3
        t.add(N, M, a, b, a / b)
    t.print()


if __name__ == "__main__":
    import sys

    print(environment(), "\n")
    tables = {"svgp": svgp_table, "collapsed": collapsed_table, "update": update_table}
    for name in sys.argv[1:] or tables:
        tables[name]()
