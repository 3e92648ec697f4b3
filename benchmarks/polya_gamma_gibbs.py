"""Effective samples per second: PolyaGammaGibbs against NumPyro NUTS, and draws per second
against a hand-written NumPy + ``polyagamma`` Gibbs loop.

Both MCMC kernels are warmed up through ``numpyro.infer.MCMC`` (one chain), then timed on the
same number of post-warmup transitions run as a jitted ``lax.scan`` over ``kernel.sample``
(compilation excluded, median of repeats). ESS is arviz-stats' bulk ESS of those draws, per
coefficient; the table gives the minimum and the median over the coefficients.

Models: (a) logistic regression on scikit-learn's breast-cancer data (569 x 30, standardised;
the model of :mod:`numpyro_ext.demo.sections.logistic_regression`); (b) a Bernoulli GLM with 100
observations, 9 filter coefficients under a strongly correlated smoothness prior plus an offset;
(c) GP classification of 200 points in 2-D with a squared-exponential GaussianProcess prior over
the function values (fixed hyperparameters); (d) a hierarchical logistic model (8 group
intercepts with a HalfNormal population scale, a common slope) by a ``numpyro.infer.Gibbs``
composite, PolyaGammaGibbs for the coefficients and NUTS for the scale, against NUTS on all.
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
from numpyro.infer import MCMC, NUTS, Gibbs

from numpyro_ext.demo.sections.logistic_regression import load_breast_cancer, logistic_regression
from numpyro_ext.infer import PolyaGammaGibbs

NUM_DRAWS = 1000
NUM_WARMUP = 300


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
    from numpyro_ext.distributions import GaussianProcess
    from numpyro_ext.gp import SquaredExponential

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


def draws_after_warmup(kernel, args, num_draws: int, seed: int = 0):
    """Warm up with MCMC; return ``(run, flat_draws)``, ``run()`` a jitted scan of transitions."""
    mcmc = MCMC(kernel, num_warmup=NUM_WARMUP, num_samples=1, progress_bar=False)
    mcmc.warmup(jax.random.key(seed), *args)
    state = mcmc.post_warmup_state

    @jax.jit
    def run(state):
        def step(s, _):
            s = kernel.sample(s, args, {})
            return s, jnp.concatenate([jnp.ravel(v) for v in jax.tree.leaves(s.z)])

        return jax.lax.scan(step, state, None, length=num_draws)[1]

    return (lambda: run(state)), run(state)


def ess(draws) -> np.ndarray:
    d = np.asarray(draws)
    return np.array([float(arviz_stats.ess(d[None, :, j])) for j in range(d.shape[1])])


def numpy_gibbs(X, y, prior_precision, num_draws: int, seed: int = 0):
    """Hand-written loop: ``omega ~ PG(1, X beta)`` by ``polyagamma``, then ``beta | omega``."""
    from polyagamma import random_polyagamma

    rng = np.random.default_rng(seed)
    X, kappa = np.asarray(X, float), np.asarray(y, float) - 0.5
    beta = np.zeros(X.shape[1])
    out = np.empty((num_draws, X.shape[1]))
    for t in range(num_draws):
        omega = random_polyagamma(1.0, X @ beta, random_state=rng)
        P = prior_precision + X.T @ (omega[:, None] * X)
        L = np.linalg.cholesky(P)
        mean = np.linalg.solve(L.T, np.linalg.solve(L, X.T @ kappa))
        beta = mean + np.linalg.solve(L.T, rng.normal(size=X.shape[1]))
        out[t] = beta
    return out


def compare_ess(title, model, args, pg_kernel=None, num_draws=NUM_DRAWS, repeats=3):
    table = Table(
        f"{title}: ESS/s after compilation ({num_draws} transitions, 1 chain)",
        ["sampler", "time (s)", "min ESS", "median ESS", "min ESS/s", "median ESS/s",
         "ratio min ESS/s (PG / NUTS)"],
    )  # fmt: skip
    rows = {}
    pg_kernel = PolyaGammaGibbs(model) if pg_kernel is None else pg_kernel
    for name, kernel in (("PolyaGammaGibbs", pg_kernel), ("NUTS", NUTS(model))):
        run, draws = draws_after_warmup(kernel, args, num_draws)
        t = time_call(run, repeats=repeats).median
        e = ess(draws)
        rows[name] = (t, e)
    base = rows["NUTS"][1].min() / rows["NUTS"][0]
    for name, (t, e) in rows.items():
        ratio = (e.min() / t) / base
        table.add(name, t, e.min(), np.median(e), e.min() / t, np.median(e) / t, ratio)
    table.print()


def compare_numpy_loop():
    X, y, _ = load_breast_cancer()
    Xd = jnp.concatenate([jnp.ones((X.shape[0], 1), X.dtype), X], 1)
    precision = np.diag(np.r_[1.0 / 25.0, np.full(X.shape[1], 4.0)])
    table = Table(
        "Breast cancer: PG Gibbs draws/s, ours (jitted scan) vs NumPy + polyagamma loop",
        ["implementation", "draws", "time (s)", "draws/s", "ratio (ours / NumPy)"],
    )
    run, _ = draws_after_warmup(PolyaGammaGibbs(logistic_regression), (X, y), NUM_DRAWS)
    ours = NUM_DRAWS / time_call(run, repeats=3).median
    n_np = 200
    start = time.perf_counter()
    numpy_gibbs(Xd, y, precision, n_np)
    numpy_rate = n_np / (time.perf_counter() - start)
    table.add("numpyro_ext PolyaGammaGibbs", NUM_DRAWS, NUM_DRAWS / ours, ours, ours / numpy_rate)
    table.add("NumPy + polyagamma loop", n_np, n_np / numpy_rate, numpy_rate, 1.0)
    table.print()


def main():
    X, y, _ = load_breast_cancer()
    compare_ess("(a) Breast-cancer logistic regression (31 coefficients)", logistic_regression,
                (X, y))  # fmt: skip
    compare_ess("(b) Bernoulli filter GLM, correlated prior (10 coefficients)", filter_glm,
                filter_glm_data())  # fmt: skip
    compare_ess(
        "(c) GP classification, 200 points in 2-D (200 latent function values)",
        gp_classification,
        gp_classification_data(),
        num_draws=300,
        repeats=1,
    )
    pg = Gibbs([(PolyaGammaGibbs(hierarchical), ["a", "b"]), (NUTS(hierarchical), None)])
    compare_ess(
        "(d) Hierarchical logistic, Gibbs(PG for a, b; NUTS for tau) vs NUTS",
        hierarchical,
        hierarchical_data(),
        pg_kernel=pg,
    )
    compare_numpy_loop()
    print(environment())


if __name__ == "__main__":
    main()
