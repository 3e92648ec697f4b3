"""Effective samples per second: PolyaGammaGibbs against NumPyro NUTS, and draws per second
against a hand-written NumPy + ``polyagamma`` Gibbs loop.

Both MCMC kernels are warmed up through ``numpyro.infer.MCMC`` (one chain), then their
post-warmup transitions run as one jitted ``lax.scan`` over ``kernel.sample``, compiled ahead of
time (``jit(...).lower(...).compile()``, reported separately) and timed with
``harness.time_call``. ESS is arviz-stats' bulk ESS of those draws, per scalar parameter; the
tables give the minimum (with the parameter it belongs to) and the median over the parameters,
each divided by the sampling time. The samplers run different numbers of transitions where one
of them is much slower per transition; each count gives an ESS of at least a hundred or so.

Models: (a) logistic regression on scikit-learn's breast-cancer data (569 x 30, standardised;
the model of :mod:`numpyro_ext.demo.sections.logistic_regression`); (b) a Bernoulli GLM with 100
observations, 9 filter coefficients under a strongly correlated smoothness prior plus an offset;
(c) GP classification of 200 points in 2-D with a squared-exponential GaussianProcess prior over
the function values (fixed hyperparameters); (d) a hierarchical logistic model (8 group
intercepts with a HalfNormal population scale, a common slope) by a ``numpyro.infer.Gibbs``
composite, PolyaGammaGibbs for the coefficients and NUTS for the scale, against NUTS on all.

The last table compares draws per second with a NumPy loop on (a), for one chain and for eight
chains (vectorised in both implementations: one ``chain_method="vectorized"`` kernel, and
batched NumPy linear algebra with one ``random_polyagamma`` call per sweep, on one BLAS thread).

    python benchmarks/polya_gamma_gibbs.py          # about three minutes on two CPU cores
"""

from __future__ import annotations

import time

import arviz_stats
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from harness import Table, environment, time_call
from numpyro.infer import MCMC, NUTS, Gibbs, init_to_sample
from threadpoolctl import threadpool_limits

from numpyro_ext.demo.sections.logistic_regression import load_breast_cancer, logistic_regression
from numpyro_ext.distributions import GaussianProcess
from numpyro_ext.gp import SquaredExponential
from numpyro_ext.infer import PolyaGammaGibbs

NUM_CHAINS_VECTORISED = 8


def filter_glm_data(seed: int = 0, n: int = 100, lags: int = 9):
    """Lagged inputs of a white-noise signal and Bernoulli responses of a smooth filter."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=n + lags)
    X = np.stack([u[lags - k : lags - k + n] for k in range(lags)], -1)
    true = np.exp(-0.5 * ((np.arange(lags) - 3.0) / 1.5) ** 2)
    y = (rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-(X @ true - 0.5)))).astype(float)
    lag = np.arange(lags)
    cov = np.exp(-0.5 * ((lag[:, None] - lag[None, :]) / 3.0) ** 2) + 1e-6 * np.eye(lags)
    return jnp.asarray(X), jnp.asarray(y), jnp.asarray(cov)


def filter_glm(X, y, cov):
    """``y ~ Bernoulli(logits = b0 + X w)``, ``w ~ N(0, K)`` (smooth, correlation ~0.95)."""
    b0 = numpyro.sample("b0", dist.Normal(0.0, 2.0))
    w = numpyro.sample("w", dist.MultivariateNormal(jnp.zeros(X.shape[1]), cov))
    with numpyro.plate("data", X.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=b0 + X @ w), obs=y)


def gp_classification_data(seed: int = 0, n: int = 200):
    """Two interleaved half-moons-like classes in 2-D."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2.0, 2.0, size=(n, 2))
    p = 1.0 / (1.0 + np.exp(-3.0 * np.sin(1.5 * X[:, 0]) * np.cos(X[:, 1])))
    return jnp.asarray(X), jnp.asarray((rng.uniform(size=n) < p).astype(float))


def gp_classification(X, y):
    """``f ~ GP(0, SE(variance 2, lengthscale 0.8))``, ``y ~ Bernoulli(logits = f)``."""
    f = numpyro.sample("f", GaussianProcess(SquaredExponential(2.0, 0.8), X))
    with numpyro.plate("data", X.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=f), obs=y)


def hierarchical_data(seed: int = 0, groups: int = 8, per_group: int = 25):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), per_group)
    x = rng.normal(size=g.size)
    a = rng.normal(0.0, 1.0, groups)
    y = (rng.uniform(size=x.size) < 1 / (1 + np.exp(-(a[g] + 0.8 * x)))).astype(float)
    return jnp.asarray(g), jnp.asarray(x), jnp.asarray(y)


def hierarchical(g, x, y):
    """``tau ~ HalfNormal(1)``, ``a ~ N(0, tau^2)``, ``b ~ N(0, 1)``, logits ``a[g] + b x``."""
    tau = numpyro.sample("tau", dist.HalfNormal(1.0))
    a = numpyro.sample("a", dist.Normal(0.0, tau).expand([8]).to_event(1))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=a[g] + b * x), obs=y)


def _flat_names(z: dict) -> list[str]:
    names = []
    for k in sorted(z):
        size = int(np.prod(np.shape(z[k])))
        names += [k] if size == 1 and np.ndim(z[k]) == 0 else [f"{k}[{i}]" for i in range(size)]
    return names


def compiled_transitions(kernel, args, num_warmup: int, num_draws: int, num_chains: int = 1):
    """Warm up with MCMC, then compile a scan of ``num_draws`` transitions once.

    :return: ``(run, names, compile_seconds)``; ``run()`` gives draws of shape
        ``(num_draws, [chains,] parameters)`` and the number of divergent transitions (NUTS).
    """
    mcmc = MCMC(kernel, num_warmup=num_warmup, num_samples=1, num_chains=num_chains,
                chain_method="vectorized", progress_bar=False)  # fmt: skip
    mcmc.warmup(jax.random.key(0), *args)
    state = mcmc.post_warmup_state
    batch = () if num_chains == 1 else (num_chains,)

    def flat(z):
        return jnp.concatenate([jnp.reshape(z[k], (*batch, -1)) for k in sorted(z)], -1)

    def run(state):
        def step(s, _):
            s = kernel.sample(s, args, {})
            return s, (flat(s.z), jnp.sum(getattr(s, "diverging", False)))

        return jax.lax.scan(step, state, None, length=num_draws)[1]

    start = time.perf_counter()
    compiled = jax.jit(run).lower(state).compile()
    seconds = time.perf_counter() - start
    z0 = jax.tree.map(lambda v: v[0], state.z) if num_chains > 1 else state.z
    return (lambda: compiled(state)), _flat_names(z0), seconds


def ess(draws) -> np.ndarray:
    """Bulk ESS per parameter of ``(draws, parameters)`` or ``(draws, chains, parameters)``."""
    d = np.asarray(draws)
    d = d[:, None] if d.ndim == 2 else d
    return np.atleast_1d(arviz_stats.ess(d, chain_axis=1, draw_axis=0))


def compare_ess(
    title, model, args, pg_kernel=None, pg=(300, 1000), nuts=(300, 1000), repeats=2, **nuts_kwargs
):
    """One table: ESS/s of PolyaGammaGibbs (or a composite) and NUTS; ``(warmup, draws)`` each.

    :return: ``{sampler: (draws per second, min ESS/s)}``.
    """
    table = Table(
        f"{title}: ESS/s after compilation (1 chain)",
        ["sampler", "draws", "compile (s)", "time (s)", "min ESS (parameter)", "median ESS",
         "min ESS/s", "median ESS/s", "ratio min ESS/s", "ratio median ESS/s", "divergent"],
    )  # fmt: skip
    pg_kernel = PolyaGammaGibbs(model) if pg_kernel is None else pg_kernel
    rows = {}
    for name, kernel, (num_warmup, num_draws) in (
        ("PolyaGammaGibbs", pg_kernel, pg),
        ("NUTS", NUTS(model, **nuts_kwargs), nuts),
    ):
        run, names, compile_s = compiled_transitions(kernel, args, num_warmup, num_draws)
        draws = []
        timing = time_call(lambda run=run, draws=draws: draws.append(run()) or draws[-1],
                           repeats=repeats)  # fmt: skip
        e = ess(draws[-1][0])
        divergent = int(draws[-1][1].sum()) if name == "NUTS" else "-"
        rows[name] = (num_draws, compile_s, timing.median, e, names[int(np.argmin(e))], divergent)
    nuts_min = rows["NUTS"][3].min() / rows["NUTS"][2]
    nuts_median = np.median(rows["NUTS"][3]) / rows["NUTS"][2]
    out = {}
    for name, (n, compile_s, t, e, worst, divergent) in rows.items():
        table.add(name, n, compile_s, t, f"{e.min():.0f} ({worst})", np.median(e),
                  e.min() / t, np.median(e) / t, e.min() / t / nuts_min,
                  np.median(e) / t / nuts_median, divergent)  # fmt: skip
        out[name] = (n / t, e.min() / t)
    table.print()
    return out


def numpy_gibbs(X, y, prior_precision, num_draws: int, num_chains: int = 1, seed: int = 0):
    """Hand-written loop: ``omega ~ PG(1, X beta)`` by ``polyagamma``, then ``beta | omega``.

    Chains are batched: one ``random_polyagamma`` call and batched NumPy linear algebra a sweep.
    """
    from polyagamma import random_polyagamma

    rng = np.random.default_rng(seed)
    X, kappa = np.asarray(X, float), np.asarray(y, float) - 0.5
    Xk = X.T @ kappa
    beta = np.zeros((num_chains, X.shape[1]))
    out = np.empty((num_draws, num_chains, X.shape[1]))
    for t in range(num_draws):
        omega = random_polyagamma(1.0, beta @ X.T, random_state=rng)  # (chains, n)
        P = prior_precision + (X.T * omega[:, None, :]) @ X  # one BLAS product per chain
        L = np.linalg.cholesky(P)
        mean = np.linalg.solve(P, np.broadcast_to(Xk, beta.shape)[..., None])[..., 0]
        noise = rng.normal(size=beta.shape)[..., None]
        beta = mean + np.linalg.solve(np.swapaxes(L, -1, -2), noise)[..., 0]
        out[t] = beta
    return out


def compare_numpy_loop(pg_draws_per_second: float):
    X, y, _ = load_breast_cancer()
    Xd = np.concatenate([np.ones((X.shape[0], 1)), np.asarray(X)], 1)
    precision = np.diag(np.r_[1.0 / 25.0, np.full(X.shape[1], 4.0)])
    table = Table(
        "Breast cancer: PG Gibbs draws/s (all chains), ours (jitted scan) vs NumPy + polyagamma",
        ["implementation", "chains", "draws per chain", "time (s)", "draws/s",
         "ratio (ours / NumPy)"],
    )  # fmt: skip
    c = NUM_CHAINS_VECTORISED
    run, _, _ = compiled_transitions(PolyaGammaGibbs(logistic_regression), (X, y), 100, 300, c)
    t_ours = time_call(run, repeats=2).median
    rates = {}
    # one BLAS thread: at these sizes (569 x 31) more threads only add synchronisation, and on an
    # oversubscribed machine OpenBLAS's spinning threads slow the loop down several-fold
    with threadpool_limits(1):
        for chains, n in ((1, 300), (c, 100)):
            numpy_gibbs(Xd, y, precision, 5, chains)  # first-call costs out of the timing
            t = time_call(lambda n=n, chains=chains: numpy_gibbs(Xd, y, precision, n, chains),
                          repeats=2).median  # fmt: skip
            rates[chains] = (n, t, chains * n / t)
    ours = {
        1: (1000, 1000 / pg_draws_per_second, pg_draws_per_second),
        c: (300, t_ours, c * 300 / t_ours),
    }
    for chains in (1, c):
        n, t, rate = ours[chains]
        table.add("numpyro_ext PolyaGammaGibbs", chains, n, t, rate, rate / rates[chains][2])
        n, t, rate = rates[chains]
        table.add("NumPy + polyagamma loop", chains, n, t, rate, 1.0)
    table.print()


def main():
    start = time.perf_counter()
    X, y, _ = load_breast_cancer()
    rates = compare_ess(
        "(a) Breast-cancer logistic regression (31 coefficients)", logistic_regression, (X, y)
    )
    compare_ess(
        "(b) Bernoulli filter GLM, correlated prior (10 coefficients)",
        filter_glm,
        filter_glm_data(),
        nuts=(300, 400),
    )
    compare_ess(
        "(c) GP classification, 200 points in 2-D (200 latent function values)",
        gp_classification,
        gp_classification_data(),
        pg=(100, 500),
        nuts=(100, 100),
        repeats=1,
        # from a prior draw: the default uniform(-2, 2) start has a potential of ~1e7 under this
        # nearly singular 200 x 200 covariance, and NUTS's short warmup may not get away from it
        init_strategy=init_to_sample,
    )
    composite = Gibbs([(PolyaGammaGibbs(hierarchical), ["a", "b"]), (NUTS(hierarchical), None)])
    compare_ess(
        "(d) Hierarchical logistic, Gibbs(PG for a, b; NUTS for tau) vs NUTS",
        hierarchical,
        hierarchical_data(),
        pg_kernel=composite,
        pg=(500, 2000),
        nuts=(500, 2000),
    )
    compare_numpy_loop(rates["PolyaGammaGibbs"][0])
    print(environment())
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
