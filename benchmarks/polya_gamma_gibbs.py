"""Effective samples per second: PolyaGammaGibbs against NumPyro NUTS, and draws per second
against a hand-written NumPy + ``polyagamma`` Gibbs loop.

Every MCMC kernel is warmed up through ``numpyro.infer.MCMC``, then its post-warmup transitions
run as one jitted ``lax.scan`` over ``kernel.sample``, compiled ahead of time
(``jit(...).lower(...).compile()``, reported separately) and timed with ``harness.time_call``.
ESS is arviz-stats' bulk ESS of those draws (over all chains), per scalar of the reported sites
(constrained, deterministic sites included); the tables give the minimum (with the parameter it
belongs to) and the median over the parameters, each divided by the sampling time of all
chains. The samplers run different numbers of transitions where one of them is much slower per
transition; each count gives an ESS of at least a hundred or so. Everything runs in JAX's
default float32 (the NumPy loop in float64).

Every NUTS row is NumPyro's NUTS as a competent user sets it up: 1000 warmup steps (500 on the
200-dimensional GP), default settings (diagonal mass matrix) and ``dense_mass=True`` (a full
mass matrix, the fix for a correlated posterior). Warmup time is not charged to any sampler.

Models: (a) logistic regression on scikit-learn's breast-cancer data (569 x 30, standardised;
the model of :mod:`numpyro_ext.demo.sections.logistic_regression`); (b) a Bernoulli GLM with 100
observations, 9 filter coefficients under a strongly correlated smoothness prior plus an offset;
(c) GP classification of 200 points in 2-D with a squared-exponential GaussianProcess prior over
the function values (fixed hyperparameters); (d) a hierarchical logistic model (8 group
intercepts with a HalfNormal population scale, a common slope, 25 observations a group) by
CollapsedPolyaGammaGibbs (the scale slice-sampled with the coefficients integrated out) and by a
``numpyro.infer.Gibbs`` composite (PolyaGammaGibbs for the coefficients, NUTS for the scale),
against NUTS; (e) the same model with 40 groups of 5 observations, where the data say little
about each intercept (the funnel regime of the centred parameterisation), centred and
non-centred (``a = tau a_raw``, ``a_raw ~ N(0, 1)``) for both CollapsedPolyaGammaGibbs and
NUTS; its ratios divide by the better NUTS row; (glm) a Bernoulli GLM with 100 observations and
10 coefficients under a correlated but well-conditioned smoothness prior (AR(1), correlation 0.9
between neighbours, condition number about 19), the regression users fit most often.

The ``sweep`` table times one PolyaGammaGibbs sweep (inside a jitted ``lax.scan``) against the
cost of its unavoidable parts, measured the same way in the same process, interleaved, minimum
over seven rounds: the ``n`` Pólya-gamma draws (``PolyaGamma(b, c).sample``), one ``d x d``
Cholesky factorisation and the Gram product ``A^T W Omega A`` (``n d^2`` multiply-adds, which
no exact sweep can skip while ``Omega`` changes), for unit ``b`` (Bernoulli) and ``b = 3``
(Binomial), one chain and eight vectorised chains. The ``rerun`` table
measures what ``MCMC.run`` costs per call beyond sampling (it compiles its collection loop on
every call).

The last table compares draws per second with a NumPy loop on (a), for one chain and for eight
chains (vectorised in both implementations: one ``chain_method="vectorized"`` kernel, and
batched NumPy linear algebra with one ``random_polyagamma`` call per sweep, on one BLAS thread).

    python benchmarks/polya_gamma_gibbs.py                  # about four minutes on two CPU cores
    python benchmarks/polya_gamma_gibbs.py --cases d,e      # a subset: a, b, c, d, e, loop
    python benchmarks/polya_gamma_gibbs.py --chains 256     # vectorised chains (for a GPU)

With ``--chains N`` (N > 1) every ESS table runs N chains with ``chain_method="vectorized"``
(ESS over all chains, ESS/s = ESS / wall time of all chains) and the NumPy-loop table compares
N chains, the NumPy loop batched over the N chains.
"""

from __future__ import annotations

import argparse
import subprocess
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

from numpyro_ext.demo.sections.hierarchical import hierarchical_data, hierarchical_model
from numpyro_ext.demo.sections.logistic_regression import load_breast_cancer, logistic_regression
from numpyro_ext.distributions import GaussianProcess, PolyaGamma
from numpyro_ext.gp import SquaredExponential
from numpyro_ext.infer import CollapsedPolyaGammaGibbs, PolyaGammaGibbs

NUM_CHAINS_VECTORISED = 8
CASES = ("sweep", "rerun", "glm", "a", "b", "c", "d", "e", "loop")
NUTS_WARMUP = 1000


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


hierarchical = hierarchical_model(8)


def correlated_glm_data(seed: int = 1, n: int = 100, d: int = 10, rho: float = 0.9):
    """Inputs, responses and the AR(1) prior covariance ``rho^|i - j|`` of the GLM case."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    idx = np.arange(d)
    cov = rho ** np.abs(idx[:, None] - idx[None, :])
    true = np.linalg.cholesky(cov) @ rng.normal(size=d) * 0.7
    y = (rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-(X @ true)))).astype(float)
    return jnp.asarray(X), jnp.asarray(y), jnp.asarray(cov)


def correlated_glm(X, y, cov):
    """``beta ~ N(0, K)`` with ``K_ij = 0.9^|i - j|``, ``y ~ Bernoulli(logits = X beta)``."""
    beta = numpyro.sample("beta", dist.MultivariateNormal(jnp.zeros(X.shape[1]), cov))
    with numpyro.plate("data", X.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=X @ beta), obs=y)


def _nuts_rows(model, warmup, draws, **kwargs):
    return [
        ("NUTS", NUTS(model, **kwargs), (warmup, draws)),
        ("NUTS dense_mass", NUTS(model, dense_mass=True, **kwargs), (warmup, draws)),
    ]


def _flat(z: dict, names) -> tuple[jax.Array, list[str]]:
    """``(..., parameters)`` of the sites ``names`` of draws ``z`` (leading axes kept)."""
    leaves, labels = [], []
    for k in names:
        v = jnp.asarray(z[k])
        lead = v.shape[:2]
        size = int(np.prod(v.shape[2:]))
        leaves.append(v.reshape(*lead, size))
        labels += [k] if v.ndim == 2 else [f"{k}[{i}]" for i in range(size)]
    return jnp.concatenate(leaves, -1), labels


def compiled_transitions(kernel, args, num_warmup: int, num_draws: int, num_chains: int = 1):
    """Warm up with MCMC, then compile a scan of ``num_draws`` transitions once.

    :return: ``(run, postprocess, compile_seconds)``; ``run()`` gives the raw draws of
        ``state.z``, shape ``(num_draws, chains, ...)``, and the number of divergent transitions
        (NUTS); ``postprocess`` maps them to the model's constrained and deterministic sites.
    """
    mcmc = MCMC(kernel, num_warmup=num_warmup, num_samples=1, num_chains=num_chains,
                chain_method="vectorized", progress_bar=False)  # fmt: skip
    mcmc.warmup(jax.random.key(0), *args)
    state = mcmc.post_warmup_state

    def run(state):
        def step(s, _):
            s = kernel.sample(s, args, {})
            z = s.z if num_chains > 1 else jax.tree.map(lambda v: v[None], s.z)
            return s, (z, jnp.sum(getattr(s, "diverging", False)))

        return jax.lax.scan(step, state, None, length=num_draws)[1]

    start = time.perf_counter()
    compiled = jax.jit(run).lower(state).compile()
    seconds = time.perf_counter() - start
    post = kernel.postprocess_fn(args, {})
    postprocess = jax.jit(jax.vmap(jax.vmap(post)))
    return (lambda: compiled(state)), postprocess, seconds


def ess(draws) -> np.ndarray:
    """Bulk ESS per parameter of ``(draws, parameters)`` or ``(draws, chains, parameters)``."""
    d = np.asarray(draws)
    d = d[:, None] if d.ndim == 2 else d
    return np.atleast_1d(arviz_stats.ess(d, chain_axis=1, draw_axis=0))


def compare_ess(title, rows, args, num_chains=1, names=None, reference=None, repeats=2):
    """One table: ESS/s of each row ``(label, kernel, (warmup, draws))``.

    :param names: the reported sites (``None``: those of the first kernel's state).
    :param reference: the label the ratio columns divide by (``None``: the NUTS row with the
        highest min ESS/s).
    :return: ``{label: (draws per second of all chains, min ESS/s)}``.
    """
    chains = f"{num_chains} chain" + ("s, vectorised" if num_chains > 1 else "")
    if reference is None and any(label == "NUTS" for label, _, _ in rows):
        reference = "NUTS"
    table = Table(
        f"{title}: ESS/s after compilation ({chains}; ratios to {reference or 'the best NUTS'})",
        ["sampler", "draws", "compile (s)", "time (s)", "min ESS (parameter)", "median ESS",
         "min ESS/s", "median ESS/s", "ratio min ESS/s", "ratio median ESS/s", "divergent"],
    )  # fmt: skip
    results = {}
    for label, kernel, (num_warmup, num_draws) in rows:
        run, postprocess, compile_s = compiled_transitions(
            kernel, args, num_warmup, num_draws, num_chains
        )
        draws = []
        timing = time_call(lambda run=run, draws=draws: draws.append(run()) or draws[-1],
                           repeats=repeats)  # fmt: skip
        z, divergent = draws[-1]
        if names is None:
            names = sorted(z)
        flat, labels = _flat(postprocess(z), names)
        e = ess(flat)
        divergent = int(divergent.sum()) if "NUTS" in label and "Gibbs" not in label else "-"
        results[label] = (num_draws, compile_s, timing.median, e, labels[int(np.argmin(e))],
                          divergent)  # fmt: skip
    if reference is None:
        nuts = [k for k in results if k.startswith("NUTS")]
        reference = max(nuts, key=lambda k: results[k][3].min() / results[k][2])
    ref_min = results[reference][3].min() / results[reference][2]
    ref_median = np.median(results[reference][3]) / results[reference][2]
    out = {}
    for label, (n, compile_s, t, e, worst, divergent) in results.items():
        table.add(label, n, compile_s, t, f"{e.min():.0f} ({worst})", np.median(e),
                  e.min() / t, np.median(e) / t, e.min() / t / ref_min,
                  np.median(e) / t / ref_median, divergent)  # fmt: skip
        out[label] = (num_chains * n / t, e.min() / t)
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


def compare_numpy_loop(num_chains: int = 1):
    X, y, _ = load_breast_cancer()
    Xd = np.concatenate([np.ones((X.shape[0], 1)), np.asarray(X)], 1)
    precision = np.diag(np.r_[1.0 / 25.0, np.full(X.shape[1], 4.0)])
    table = Table(
        "Breast cancer: PG Gibbs draws/s (all chains), ours (jitted scan) vs NumPy + polyagamma",
        ["implementation", "chains", "draws per chain", "time (s)", "draws/s",
         "ratio (ours / NumPy)"],
    )  # fmt: skip
    counts = (1, NUM_CHAINS_VECTORISED) if num_chains == 1 else (num_chains,)
    for chains in counts:
        n_ours, n_numpy = (1000, 300) if chains == 1 else (300, 100)
        run, _, _ = compiled_transitions(
            PolyaGammaGibbs(logistic_regression), (X, y), 100, n_ours, chains
        )
        t_ours = time_call(run, repeats=2).median
        # one BLAS thread: at these sizes (569 x 31) more threads only add synchronisation, and
        # on an oversubscribed machine OpenBLAS's spinning threads slow the loop down
        with threadpool_limits(1):
            numpy_gibbs(Xd, y, precision, 5, chains)  # first-call costs out of the timing
            t_numpy = time_call(
                lambda n=n_numpy, chains=chains: numpy_gibbs(Xd, y, precision, n, chains),
                repeats=2,
            ).median
        ours, numpy_rate = chains * n_ours / t_ours, chains * n_numpy / t_numpy
        table.add("numpyro_ext PolyaGammaGibbs", chains, n_ours, t_ours, ours, ours / numpy_rate)
        table.add("NumPy + polyagamma loop", chains, n_numpy, t_numpy, numpy_rate, 1.0)
    table.print()


def hierarchical_tables(cases, num_chains: int) -> None:
    if "d" in cases:
        rows = [("CollapsedPolyaGammaGibbs", CollapsedPolyaGammaGibbs(hierarchical), (500, 2000))]
        if num_chains == 1:  # numpyro's Gibbs takes a single random key (no vectorised chains)
            composite = Gibbs(
                [(PolyaGammaGibbs(hierarchical), ["a", "b"]), (NUTS(hierarchical), None)]
            )
            rows.append(("Gibbs(PolyaGammaGibbs, NUTS)", composite, (500, 2000)))
        rows += _nuts_rows(hierarchical, NUTS_WARMUP, 2000)
        compare_ess(
            "(d) Hierarchical logistic, 8 groups x 25 (scale tau, intercepts a, slope b)",
            rows,
            hierarchical_data(),
            num_chains,
            names=["tau", "a", "b"],
            reference="NUTS",
        )
    if "e" in cases:
        centred, non_centred = hierarchical_model(40), hierarchical_model(40, centred=False)
        compare_ess(
            "(e) Hierarchical logistic, 40 groups x 5 (funnel regime), centred (c) and "
            "non-centred (nc); ratios to the better NUTS",
            [
                ("CollapsedPolyaGammaGibbs (c)", CollapsedPolyaGammaGibbs(centred), (500, 2000)),
                (
                    "CollapsedPolyaGammaGibbs (nc)",
                    CollapsedPolyaGammaGibbs(non_centred),
                    (500, 2000),
                ),
                ("NUTS (c)", NUTS(centred), (NUTS_WARMUP, 2000)),
                ("NUTS (nc)", NUTS(non_centred), (NUTS_WARMUP, 2000)),
                ("NUTS dense_mass (nc)", NUTS(non_centred, dense_mass=True), (NUTS_WARMUP, 2000)),
            ],
            hierarchical_data(groups=40, per_group=5),
            num_chains,
            names=["tau", "a", "b"],
        )


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _compiled_scan(step, carry, length: int):
    """A precompiled jitted scan running ``step`` ``length`` times; returns a thunk."""

    def run(carry, key):
        keys = jax.random.split(key, length)
        return jax.lax.scan(lambda c, k: (step(k, c), None), carry, keys)[0]

    compiled = jax.jit(run).lower(carry, jax.random.key(0)).compile()
    jax.block_until_ready(compiled(carry, jax.random.key(1)))  # first call out of the timing
    return lambda: compiled(carry, jax.random.key(1))


def _interleaved_minimum(thunks, length: int, rounds: int = 7) -> list[float]:
    """Seconds per step of each thunk: ``rounds`` rounds, one call of each per round, minimum
    over rounds (on a machine loaded by others the minimum is the least disturbed call)."""
    best = [float("inf")] * len(thunks)
    for _ in range(rounds):
        for i, thunk in enumerate(thunks):
            start = time.perf_counter()
            jax.block_until_ready(thunk())
            best[i] = min(best[i], (time.perf_counter() - start) / length)
    return best


def _binomial_regression(trials):
    def model(X, y):
        beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
        if trials is None:
            numpyro.sample("y", dist.Bernoulli(logits=X @ beta), obs=y)
        else:
            numpyro.sample("y", dist.Binomial(trials, logits=X @ beta), obs=y)

    return model


def _sweep_row(X, y, trials, chains: int) -> tuple[float, float, float, float]:
    """Seconds per sweep, per ``n`` PG draws, per ``d x d`` Cholesky and per Gram product
    ``A^T W Omega A`` (all chains)."""
    n, d = X.shape
    kernel = PolyaGammaGibbs(_binomial_regression(trials))
    keys = jax.random.key(0) if chains == 1 else jax.random.split(jax.random.key(0), chains)
    state = kernel.init(keys, 0, None, (X, y), {})
    # at least 20 sweeps a call: the state (the n x d design and A among it) is copied into the
    # loop once per call, which a 5-sweep scan at n = 10^4, d = 100 would charge at 10% a sweep
    length = max(20, min(200, 2_000_000 // (n * d * chains)))
    sweep = _compiled_scan(lambda k, s: kernel.sample(s, (X, y), {}), state, length)
    b = 1.0 if trials is None else trials
    # the tilts of a posterior-like state: |psi| of order 1, as in the sweep
    tilts = jnp.asarray(np.random.default_rng(1).normal(size=(chains, n)), X.dtype)

    def draws(k, c):
        return c + 1e-6 * PolyaGamma(b, c).sample(k)

    pg = _compiled_scan(draws, tilts, length)
    eye = jnp.broadcast_to(jnp.eye(d, dtype=X.dtype), (chains, d, d))

    def chol(k, P):
        return P + 1e-6 * jnp.linalg.cholesky(P)

    chol_thunk = _compiled_scan(chol, 2.0 * eye, length)
    A = state.terms.whitened

    @jax.vmap
    def gram_one(w):
        return jnp.sum(A.T @ (w[:, None] * A))

    def gram(k, w):
        with jax.default_matmul_precision("highest"):  # as in the sweep
            return w + 1e-9 * gram_one(w)[:, None]

    gram_thunk = _compiled_scan(gram, jnp.abs(tilts) + 0.1, length)
    return tuple(_interleaved_minimum([sweep, pg, chol_thunk, gram_thunk], length))


def sweep_table(sizes=((100, 10), (10_000, 100), (1_000, 30), (100, 100))) -> None:
    """One sweep of PolyaGammaGibbs against its Pólya-gamma draws plus one Cholesky."""
    table = Table(
        "PolyaGammaGibbs sweep against its parts (jitted scans, compile excluded)",
        ["n", "d", "b", "chains", "sweep (us)", "PG draws (us)", "d x d Cholesky (us)",
         "Gram product (us)", "sweep / (draws + Cholesky)",
         "sweep / (draws + Cholesky + Gram)"],
    )  # fmt: skip
    rng = np.random.default_rng(0)
    for n, d in sizes:
        X = jnp.asarray(rng.normal(size=(n, d)) / np.sqrt(d), jnp.float32)
        for trials in (None, 3.0):
            y = rng.binomial(1 if trials is None else 3, 0.5, size=n)
            y = jnp.asarray(y, jnp.float32)
            for chains in (1, NUM_CHAINS_VECTORISED):
                sweep, pg, ch, gram = _sweep_row(X, y, trials, chains)
                row = (n, d, "1" if trials is None else "3", chains, sweep * 1e6, pg * 1e6,
                       ch * 1e6, gram * 1e6, sweep / (pg + ch),
                       sweep / (pg + ch + gram))  # fmt: skip
                table.add(*row)
                print(*row, flush=True)
    table.print()


def rerun_table() -> None:
    """What ``MCMC.run`` costs per call beyond sampling: it compiles its loop on every call."""
    args = correlated_glm_data()
    table = Table(
        "MCMC.run wall time per call, PolyaGammaGibbs on (glm), 1000 draws",
        ["call", "wall (s)", "of which sampling (s)"],
    )
    run, _, _ = compiled_transitions(PolyaGammaGibbs(correlated_glm), args, 10, 1000)
    sampling = time_call(run, repeats=3).median
    mcmc = MCMC(PolyaGammaGibbs(correlated_glm), num_warmup=10, num_samples=1000,
                progress_bar=False)  # fmt: skip
    for label in ("first run", "second run, same MCMC object",
                  "third run, post_warmup_state = last_state"):  # fmt: skip
        if label.startswith("third"):
            mcmc.post_warmup_state = mcmc.last_state
        start = time.perf_counter()
        mcmc.run(jax.random.key(0), *args)
        jax.block_until_ready(mcmc.get_samples())
        table.add(label, time.perf_counter() - start, sampling)
    table.print()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=1, help="vectorised chains per sampler")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated subset")
    options = parser.parse_args()
    cases = set(options.cases.split(","))
    if cases - set(CASES):
        parser.error(f"unknown cases {sorted(cases - set(CASES))}; choose from {CASES}")
    n = options.chains
    start = time.perf_counter()
    X, y, _ = load_breast_cancer()
    print(f"load: {uptime()}")
    if "sweep" in cases:
        sweep_table()
    if "rerun" in cases:
        rerun_table()
    if "glm" in cases:
        compare_ess(
            "(glm) Bernoulli GLM, 100 x 10, AR(1) prior (correlation 0.9, well conditioned)",
            [("PolyaGammaGibbs", PolyaGammaGibbs(correlated_glm), (300, 2000)),
             *_nuts_rows(correlated_glm, NUTS_WARMUP, 1000)],
            correlated_glm_data(),
            n,
            repeats=3,
        )  # fmt: skip
    if "a" in cases:
        compare_ess(
            "(a) Breast-cancer logistic regression (31 coefficients)",
            [("PolyaGammaGibbs", PolyaGammaGibbs(logistic_regression), (300, 1000)),
             *_nuts_rows(logistic_regression, NUTS_WARMUP, 1000)],
            (X, y),
            n,
        )  # fmt: skip
    if "b" in cases:
        compare_ess(
            "(b) Bernoulli filter GLM, near-singular smoothness prior (10 coefficients)",
            [("PolyaGammaGibbs", PolyaGammaGibbs(filter_glm), (300, 1000)),
             *_nuts_rows(filter_glm, NUTS_WARMUP, 400)],
            filter_glm_data(),
            n,
        )  # fmt: skip
    if "c" in cases:
        # NUTS from a prior draw: the default uniform(-2, 2) start has a potential of ~1e7 under
        # this nearly singular 200 x 200 covariance
        compare_ess(
            "(c) GP classification, 200 points in 2-D (200 latent function values)",
            [("PolyaGammaGibbs", PolyaGammaGibbs(gp_classification), (100, 500)),
             *_nuts_rows(gp_classification, 500, 100, init_strategy=init_to_sample)],
            gp_classification_data(),
            n,
            repeats=1,
        )  # fmt: skip
    hierarchical_tables(cases, n)
    if "loop" in cases:
        compare_numpy_loop(n)
    print(environment())
    print(f"load: {uptime()}")
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
