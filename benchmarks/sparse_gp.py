"""Sparse GPs: SVGP step, collapsed bound and cholesky_update against GPJax and plain JAX.

Every entry is timed in this process, float64 throughout, each call blocked until its result is
ready. Compilation (the first call) is reported in its own table; the step times are the median
of many calls, taken in interleaved rounds (ours, baseline, GPJax, ours, ...) so that a change
in the load of a shared machine hits every column alike.

1. One SVGP optimisation step on a minibatch (B of N points, M inducing inputs, whitened,
   Gaussian likelihood): value and gradient of the negative ELBO plus an Adam update, for

   - ``SVI.update`` with :class:`numpyro_ext.guides.SparseGP` and ``TraceMeanField_ELBO``;
   - a hand-written jitted JAX SVGP with the same math and parametrisation (exp for positive
     parameters, exp on the diagonal of q_sqrt, analytic KL, one reparametrised draw of f per
     point, which is the estimator NumPyro's ELBO uses);
   - the same hand-written SVGP with the closed-form Gaussian expectation instead of the draw;
   - GPJax's ``WhitenedVariationalGaussian`` and ``objectives.elbo`` (closed-form expectation).

   All four receive the same minibatch as an argument: choosing it is left out of the timing
   (NumPyro's CPU subsampler is a B-step Fisher-Yates scan, GPJax's ``get_batch`` samples with
   replacement; timing them would compare samplers, not SVGP code).
2. ``Trace_ELBO`` against ``TraceMeanField_ELBO`` for growing B: the former evaluates the
   model's GP density at the sampled f, a B x B Cholesky, by construction.
3. One value-and-gradient of the collapsed (SGPR) bound with respect to the kernel
   hyperparameters, noise and Z: ours, a hand-written jitted JAX version, GPJax.
4. ``cholesky_update(L, U)`` against a fresh ``cholesky(L L^T + U U^T)``.
5. One SOLVE-GP and one ODVGP step (``SVI.update`` with ``TraceMeanField_ELBO``, one draw of f
   per point) against SVGP with ``M_u + M_v`` inducing points and against hand-written jitted
   JAX versions of the same bounds and parametrisation.
6. Spherical activation features' ``Kuf`` (and its gradient in ``Z``) against an RBF
   ``Kuf`` with the same number of inducing variables.

Run: ``python benchmarks/sparse_gp.py [svgp] [elbo] [collapsed] [update] [orthogonal]
[spherical] [compile]``
"""

from __future__ import annotations

import math
import os
import statistics
import sys
from functools import partial

import equinox as eqx
import gpjax as gpx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from harness import Table, environment, time_call
from jax.scipy.linalg import solve_triangular
from numpyro.distributions import constraints
from numpyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO

from numpyro_ext.distributions import GaussianProcess
from numpyro_ext.gp import (
    ArcCosine,
    InducingPoints,
    SphericalActivationFeatures,
    SquaredExponential,
    collapsed_elbo,
)
from numpyro_ext.guides import ODVGP, SOLVEGP, SparseGP
from numpyro_ext.linalg import cholesky_update

jax.config.update("jax_enable_x64", True)

JITTER = 1e-6
COMPILE = Table("Compilation: first call (trace + compile + run), s", ["what", "shape", "s"])


def interleaved(fns: dict, rounds: int = 5, repeats: int = 10) -> dict:
    """``(median, min)`` milliseconds per call of each ``fn()``, timed in alternating rounds.

    On a quiet machine the two agree; on a loaded one the minimum is the better estimate of
    the cost of the work itself (the noise only ever adds time).
    """
    times = {name: [] for name in fns}
    for r in range(rounds):
        for name, fn in fns.items():
            timing = time_call(fn, repeats=repeats)
            if r == 0:
                COMPILE.add(name, "", timing.first)
            times[name] += timing.times
    return {name: (1e3 * statistics.median(t), 1e3 * min(t)) for name, t in times.items()}


def cell(ms) -> str:
    """``median (min)`` in milliseconds."""
    return f"{ms[0]:.3g} ({ms[1]:.3g})"


def ratio(a, b) -> str:
    """Ratio of medians (ratio of minima)."""
    return f"{a[0] / b[0]:.3g} ({a[1] / b[1]:.3g})"


def data(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, (n, 1))
    return jnp.asarray(x), jnp.asarray(np.sin(2 * x[:, 0]) + 0.3 * rng.normal(size=n))


def model(X, y, N):
    """SVGP regression on one minibatch (X, y) of a data set of N points."""
    var = numpyro.param("var", 1.0, constraint=constraints.positive)
    ell = numpyro.param("ell", 1.0, constraint=constraints.positive)
    noise = numpyro.param("noise", 0.5, constraint=constraints.positive)
    f = numpyro.sample("f", GaussianProcess(SquaredExponential(var, ell), X))
    with numpyro.plate("data", N, subsample_size=X.shape[0]):
        numpyro.sample("y", dist.Normal(f, noise), obs=y)


def ours_step(Xb, yb, N, Z, elbo=None):
    guide = SparseGP(model, inducing=Z, jitter=JITTER)
    svi = SVI(model, guide, optax.adam(1e-2), elbo or TraceMeanField_ELBO())
    state = svi.init(jax.random.key(0), Xb, yb, N)
    update = jax.jit(lambda s, X, y: svi.update(s, X, y, N))
    return lambda: update(state, Xb, yb)


def _sqexp(var, ell, A, C):
    d2 = jnp.sum(A**2, 1)[:, None] + jnp.sum(C**2, 1)[None] - 2 * A @ C.T
    return var * jnp.exp(-0.5 * jnp.maximum(d2, 0.0) / ell**2)


def handwritten_step(Xb, yb, N, Z, closed_form=False):
    """Plain JAX SVGP (whitened), Adam on unconstrained arrays; one draw or closed form."""
    B, M = Xb.shape[0], Z.shape[0]
    params = {
        "log_var": jnp.zeros(()),
        "log_ell": jnp.zeros(()),
        "log_noise": jnp.log(0.5),
        "Z": Z,
        "q_mu": jnp.zeros(M),
        "q_sqrt_raw": jnp.zeros(M * (M + 1) // 2),
    }
    tril = jnp.tril_indices(M)

    def loss(p, key, X, y):
        var, ell, noise = jnp.exp(p["log_var"]), jnp.exp(p["log_ell"]), jnp.exp(p["log_noise"])
        R = jnp.zeros((M, M)).at[tril].set(p["q_sqrt_raw"])
        R = R - jnp.diag(jnp.diag(R)) + jnp.diag(jnp.exp(jnp.diag(R)))
        L = jnp.linalg.cholesky(_sqexp(var, ell, p["Z"], p["Z"]) + JITTER * jnp.eye(M))
        A = solve_triangular(L, _sqexp(var, ell, p["Z"], X), lower=True)
        mean = A.T @ p["q_mu"]
        fvar = jnp.maximum(var - jnp.sum(A**2, 0) + jnp.sum((R.T @ A) ** 2, 0), JITTER)
        if closed_form:
            r2 = (y - mean) ** 2 + fvar
            loglik = jnp.sum(-0.5 * math.log(2 * math.pi) - jnp.log(noise) - r2 / (2 * noise**2))
        else:
            f = mean + jnp.sqrt(fvar) * jax.random.normal(key, (B,))
            loglik = jnp.sum(jax.scipy.stats.norm.logpdf(y, f, noise))
        kl = 0.5 * (
            jnp.sum(R**2) + jnp.sum(p["q_mu"] ** 2) - M - 2 * jnp.sum(jnp.log(jnp.diag(R)))
        )
        return kl - loglik * N / B

    opt = optax.adam(1e-2)
    state = (params, opt.init(params), jax.random.key(0))

    @jax.jit
    def step(state, X, y):
        p, o, key = state
        key, sub = jax.random.split(key)
        value, g = jax.value_and_grad(loss)(p, sub, X, y)
        upd, o = opt.update(g, o, p)
        return (optax.apply_updates(p, upd), o, key), value

    return lambda: step(state, Xb, yb)


def gpjax_posterior(var=1.0, ell=1.0, sd=0.5):
    prior = gpx.gps.Prior(
        mean_function=gpx.mean_functions.Zero(),
        kernel=gpx.kernels.RBF(lengthscale=ell, variance=var),
        jitter=JITTER,
    )
    return prior * gpx.likelihoods.Gaussian(obs_stddev=sd)


def gpjax_step(Xb, yb, N, Z):
    batch = gpx.Dataset(X=Xb, y=yb[:, None], n_total=N)
    q = gpx.variational_families.WhitenedVariationalGaussian(
        model=gpjax_posterior(), inducing_inputs=Z
    )
    opt = optax.adam(1e-2)
    state = (q, opt.init(eqx.filter(q, eqx.is_array)))

    def loss(q, batch):
        return -gpx.objectives.elbo(q, batch)

    @eqx.filter_jit
    def step(state, batch):
        q, o = state
        value, g = eqx.filter_value_and_grad(loss)(q, batch)
        upd, o = opt.update(g, o, eqx.filter(q, eqx.is_array))
        return (eqx.apply_updates(q, upd), o), value

    return lambda: step(state, batch)


def svgp_table():
    t = Table(
        "SVGP: one step (value_and_grad + Adam, float64, whitened), ms: median (min)",
        [
            "N",
            "B",
            "M",
            "numpyro_ext",
            "hand-written (1 draw)",
            "hand-written (closed form)",
            "GPJax",
            "ours / hand-written (1 draw)",
            "ours / GPJax",
        ],
    )
    N = 10_000
    X, y = data(N)
    for B, M in [(256, 32), (256, 128), (1024, 64), (4096, 128)]:
        Xb, yb, Z = X[:B], y[:B], X[B : B + M]
        fns = {
            "ours": ours_step(Xb, yb, N, Z),
            "hand": handwritten_step(Xb, yb, N, Z),
            "hand_cf": handwritten_step(Xb, yb, N, Z, closed_form=True),
            "gpjax": gpjax_step(Xb, yb, N, Z),
        }
        ms = interleaved(fns, rounds=8, repeats=25)
        for row in COMPILE.rows[-4:]:
            row[1] = f"SVGP B={B} M={M}"
        row = [cell(ms[k]) for k in ("ours", "hand", "hand_cf", "gpjax")]
        t.add(N, B, M, *row, ratio(ms["ours"], ms["hand"]), ratio(ms["ours"], ms["gpjax"]))
    t.print()


def elbo_table():
    t = Table(
        "SparseGP step under Trace_ELBO vs TraceMeanField_ELBO (M = 32), ms: median (min)",
        ["B", "TraceMeanField_ELBO", "Trace_ELBO", "Trace / MeanField"],
    )
    N = 10_000
    X, y = data(N)
    for B in [256, 1024, 2048]:
        Xb, yb, Z = X[:B], y[:B], X[B : B + 32]
        fns = {
            "ours TraceMeanField_ELBO": ours_step(Xb, yb, N, Z),
            "ours Trace_ELBO": ours_step(Xb, yb, N, Z, Trace_ELBO()),
        }
        ms = interleaved(fns, rounds=3, repeats=5)
        for row in COMPILE.rows[-2:]:
            row[1] = f"B={B} M=32"
        a, b = ms["ours TraceMeanField_ELBO"], ms["ours Trace_ELBO"]
        t.add(B, cell(a), cell(b), ratio(b, a))
    t.print()


def handwritten_bound(X, y):
    """Plain JAX SGPR bound (Titsias 2009, GPflow's evaluation), as a function of h."""
    N = X.shape[0]

    def bound(h):
        var, ell, Z, s2 = h
        M = Z.shape[0]
        L = jnp.linalg.cholesky(_sqexp(var, ell, Z, Z) + JITTER * jnp.eye(M))
        A = solve_triangular(L, _sqexp(var, ell, Z, X), lower=True) / jnp.sqrt(s2)
        LB = jnp.linalg.cholesky(jnp.eye(M) + A @ A.T)
        c = solve_triangular(LB, A @ y, lower=True) / jnp.sqrt(s2)
        return (
            -0.5 * N * jnp.log(2 * jnp.pi * s2)
            - jnp.sum(jnp.log(jnp.diag(LB)))
            - 0.5 * (y @ y / s2 - c @ c)
            - 0.5 * (N * var / s2 - jnp.sum(A**2))
        )

    return bound


def ours_bound(X, y):
    return lambda h: collapsed_elbo(SquaredExponential(h[0], h[1]), X, y, h[2], h[3])


def gpjax_bound(D):
    return lambda q: gpx.objectives.collapsed_elbo(q, D)


def collapsed_table():
    t = Table(
        "Collapsed (SGPR) bound: value and gradient w.r.t. hyperparameters, noise and Z, "
        "ms: median (min)",
        ["N", "M", "numpyro_ext", "hand-written", "GPJax", "ours / hand-written", "ours / GPJax"],
    )
    for N, M in [(1000, 32), (5000, 64), (5000, 256)]:
        X, y = data(N)
        Z = X[:M]
        D = gpx.Dataset(X=X, y=y[:, None])
        h = (1.0, 1.0, Z, 0.25)
        ours = jax.jit(jax.value_and_grad(ours_bound(X, y)))
        hand = jax.jit(jax.value_and_grad(handwritten_bound(X, y)))
        q = gpx.variational_families.CollapsedVariationalGaussian(
            model=gpjax_posterior(), inducing_inputs=Z
        )
        theirs = eqx.filter_jit(eqx.filter_value_and_grad(gpjax_bound(D)))
        np.testing.assert_allclose(ours(h)[0], theirs(q)[0], rtol=1e-8)
        np.testing.assert_allclose(ours(h)[0], hand(h)[0], rtol=1e-10)
        fns = {"ours": partial(ours, h), "hand": partial(hand, h), "gpjax": partial(theirs, q)}
        ms = interleaved(fns, rounds=6, repeats=7)
        for row in COMPILE.rows[-3:]:
            row[1] = f"collapsed N={N} M={M}"
        row = [cell(ms[k]) for k in ("ours", "hand", "gpjax")]
        t.add(N, M, *row, ratio(ms["ours"], ms["hand"]), ratio(ms["ours"], ms["gpjax"]))
    t.print()


def update_table():
    t = Table(
        "cholesky_update(L, U) vs fresh cholesky(L L^T + U U^T), ms: median (min)",
        ["N", "rank M", "cholesky_update", "fresh Cholesky", "update / fresh"],
    )
    fresh = jax.jit(lambda L, U: jnp.linalg.cholesky(L @ L.T + U @ U.T))
    update = jax.jit(cholesky_update)
    for N, M in [(50, 1), (100, 1), (100, 8), (400, 1), (400, 8), (400, 32), (1000, 8), (2000, 8)]:
        G = jax.random.normal(jax.random.key(0), (N, N))
        L = jnp.linalg.cholesky(G @ G.T / N + jnp.eye(N))
        U = jax.random.normal(jax.random.key(1), (N, M))
        np.testing.assert_allclose(update(L, U), fresh(L, U), rtol=1e-6, atol=1e-8)
        fns = {
            "cholesky_update": lambda L=L, U=U: update(L, U),
            "fresh cholesky": lambda L=L, U=U: fresh(L, U),
        }
        ms = interleaved(fns, rounds=8, repeats=5)
        for row in COMPILE.rows[-2:]:
            row[1] = f"N={N} M={M}"
        a, b = ms["cholesky_update"], ms["fresh cholesky"]
        t.add(N, M, cell(a), cell(b), ratio(a, b))
    t.print()


def orth_ours_step(cls, Xb, yb, N, Zu, Zv):
    second = {"inducing_v": Zv} if cls is SOLVEGP else {"inducing_gamma": Zv}
    guide = cls(model, inducing=Zu, jitter=JITTER, **second)
    svi = SVI(model, guide, optax.adam(1e-2), TraceMeanField_ELBO())
    state = svi.init(jax.random.key(0), Xb, yb, N)
    update = jax.jit(lambda s, X, y: svi.update(s, X, y, N))
    return lambda: update(state, Xb, yb)


def _lower(raw, M):
    R = jnp.zeros((M, M)).at[jnp.tril_indices(M)].set(raw)
    return R - jnp.diag(jnp.diag(R)) + jnp.diag(jnp.exp(jnp.diag(R)))


def _whitened_kl(m, R):
    return 0.5 * (jnp.sum(R**2) + jnp.sum(m**2) - m.shape[0] - 2 * jnp.sum(jnp.log(jnp.diag(R))))


def orth_handwritten_step(kind, Xb, yb, N, Zu, Zv):
    """Plain JAX SOLVE-GP or ODVGP (whitened), one draw of f per point, Adam."""
    B, Mu, Mv = Xb.shape[0], Zu.shape[0], Zv.shape[0]
    params = {
        "log_var": jnp.zeros(()),
        "log_ell": jnp.zeros(()),
        "log_noise": jnp.log(0.5),
        "Zu": Zu,
        "Zv": Zv,
        "m_u": jnp.zeros(Mu),
        "R_u": jnp.zeros(Mu * (Mu + 1) // 2),
    }
    if kind == "solve":
        params |= {"m_v": jnp.zeros(Mv), "R_v": jnp.zeros(Mv * (Mv + 1) // 2)}
    else:
        params |= {"a": jnp.zeros(Mv)}

    def loss(p, key, X, y):
        var, ell, noise = jnp.exp(p["log_var"]), jnp.exp(p["log_ell"]), jnp.exp(p["log_noise"])
        Ru = _lower(p["R_u"], Mu)
        Lu = jnp.linalg.cholesky(_sqexp(var, ell, p["Zu"], p["Zu"]) + JITTER * jnp.eye(Mu))
        Au = solve_triangular(Lu, _sqexp(var, ell, p["Zu"], X), lower=True)
        Bm = solve_triangular(Lu, _sqexp(var, ell, p["Zu"], p["Zv"]), lower=True)
        Cvf = _sqexp(var, ell, p["Zv"], X) - Bm.T @ Au
        Kvv = _sqexp(var, ell, p["Zv"], p["Zv"])
        fvar = var - jnp.sum(Au**2, 0) + jnp.sum((Ru.T @ Au) ** 2, 0)
        mean = Au.T @ p["m_u"]
        kl = _whitened_kl(p["m_u"], Ru)
        if kind == "solve":
            Rv = _lower(p["R_v"], Mv)
            Lc = jnp.linalg.cholesky(Kvv - Bm.T @ Bm + JITTER * jnp.eye(Mv))
            Av = solve_triangular(Lc, Cvf, lower=True)
            mean = mean + Av.T @ p["m_v"]
            fvar = fvar - jnp.sum(Av**2, 0) + jnp.sum((Rv.T @ Av) ** 2, 0)
            kl = kl + _whitened_kl(p["m_v"], Rv)
        else:
            a = p["a"]
            mean = mean + Cvf.T @ a
            kl = kl + 0.5 * (a @ (Kvv @ a) - jnp.sum((Bm @ a) ** 2))
        f = mean + jnp.sqrt(jnp.maximum(fvar, JITTER)) * jax.random.normal(key, (B,))
        return kl - jnp.sum(jax.scipy.stats.norm.logpdf(y, f, noise)) * N / B

    opt = optax.adam(1e-2)
    state = (params, opt.init(params), jax.random.key(0))

    @jax.jit
    def step(state, X, y):
        p, o, key = state
        key, sub = jax.random.split(key)
        value, g = jax.value_and_grad(loss)(p, sub, X, y)
        upd, o = opt.update(g, o, p)
        return (optax.apply_updates(p, upd), o, key), value

    return lambda: step(state, Xb, yb)


def orthogonal_table():
    cols = ["SOLVE-GP", "hand SOLVE-GP", "ODVGP", "hand ODVGP", "SVGP (M_u + M_v)"]
    t = Table(
        "Orthogonal guides: one step (value_and_grad + Adam, float64, N = 10000), "
        "ms: median (min)",
        [
            "B",
            "M_u",
            "M_v",
            *cols,
            "SOLVE / hand",
            "ODVGP / hand",
            "SOLVE / SVGP",
            "ODVGP / SVGP",
        ],
    )
    N = 10_000
    X, y = data(N)
    for B, Mu, Mv in [(256, 32, 32), (256, 64, 64), (1024, 64, 64)]:
        Xb, yb = X[:B], y[:B]
        Zu, Zv = X[B : B + Mu], X[B + Mu : B + Mu + Mv]
        fns = {
            "SOLVE-GP": orth_ours_step(SOLVEGP, Xb, yb, N, Zu, Zv),
            "hand SOLVE-GP": orth_handwritten_step("solve", Xb, yb, N, Zu, Zv),
            "ODVGP": orth_ours_step(ODVGP, Xb, yb, N, Zu, Zv),
            "hand ODVGP": orth_handwritten_step("odvgp", Xb, yb, N, Zu, Zv),
            "SVGP (M_u + M_v)": ours_step(Xb, yb, N, jnp.concatenate([Zu, Zv])),
        }
        ms = interleaved(fns, rounds=6, repeats=20)
        for row in COMPILE.rows[-5:]:
            row[1] = f"B={B} M_u={Mu} M_v={Mv}"
        t.add(
            B,
            Mu,
            Mv,
            *[cell(ms[k]) for k in cols],
            ratio(ms["SOLVE-GP"], ms["hand SOLVE-GP"]),
            ratio(ms["ODVGP"], ms["hand ODVGP"]),
            ratio(ms["SOLVE-GP"], ms["SVGP (M_u + M_v)"]),
            ratio(ms["ODVGP"], ms["SVGP (M_u + M_v)"]),
        )
    t.print()


def _kuf_fns(X, L, Zs, Zp):
    ac, se = ArcCosine(1.0, 1.0, 1), SquaredExponential(1.0, 1.0)

    def sph(Z):
        return SphericalActivationFeatures(Z, "relu", L).Kuf(ac, X)

    def rbf(Z):
        return InducingPoints(Z).Kuf(se, X)

    fs, fr = jax.jit(sph), jax.jit(rbf)
    gs = jax.jit(jax.value_and_grad(lambda Z: jnp.sum(sph(Z) ** 2)))
    gr = jax.jit(jax.value_and_grad(lambda Z: jnp.sum(rbf(Z) ** 2)))
    return {
        "sph": lambda: fs(Zs),
        "rbf": lambda: fr(Zp),
        "gsph": lambda: gs(Zs),
        "grbf": lambda: gr(Zp),
    }


def spherical_table():
    t = Table(
        "Kuf at equal M (float64): spherical ReLU features (truncation L) vs RBF inducing "
        "points; forward and value_and_grad in Z, ms: median (min)",
        ["N", "d", "M", "L", "spherical", "RBF", "spherical / RBF", "grad sph.", "grad RBF"],
    )
    rng = np.random.default_rng(0)
    for N, d, M, L in [(1024, 8, 128, 10), (1024, 8, 256, 10), (1024, 8, 128, 20)]:
        X = jnp.asarray(rng.normal(size=(N, d)))
        Zs, Zp = jnp.asarray(rng.normal(size=(M, d + 1))), jnp.asarray(rng.normal(size=(M, d)))
        fns = _kuf_fns(X, L, Zs, Zp)
        ms = interleaved(fns, rounds=6, repeats=20)
        for row in COMPILE.rows[-4:]:
            row[1] = f"Kuf N={N} M={M} L={L}"
        t.add(N, d, M, L, cell(ms["sph"]), cell(ms["rbf"]), ratio(ms["sph"], ms["rbf"]),
              cell(ms["gsph"]), cell(ms["grbf"]))  # fmt: skip
    t.print()


if __name__ == "__main__":
    print(environment(), f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}", "\n")
    tables = {
        "svgp": svgp_table,
        "elbo": elbo_table,
        "collapsed": collapsed_table,
        "update": update_table,
        "orthogonal": orthogonal_table,
        "spherical": spherical_table,
        "compile": COMPILE.print,
    }
    for name in sys.argv[1:] or tables:
        tables[name]()
