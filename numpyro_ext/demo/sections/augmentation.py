"""Pólya-gamma augmentation: exact Gibbs for a polynomial-basis logistic regression.

128 points on a line, positives drawn from ``N(1, 1)`` and negatives from ``N(0, 2^2)``; the
classifier is ``y ~ Bernoulli(logits = Phi(x) beta)`` with the degree-3 basis
``Phi(x) = (1, x, x^2, x^3)`` and prior precision 2 (``beta ~ N(0, I / 2)``). The same model is
sampled by :class:`numpyro_ext.infer.PolyaGammaGibbs` and by NUTS, both converted with
:func:`numpyro_ext.arviz.from_mcmc`, summarised with arviz-stats and compared in effective
samples per second; the figure shows the posterior class probability and decision boundary.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from numpyro_ext.demo.registry import Context, section

__all__ = ["ess_per_second", "plot_decision_boundary", "polynomial_data", "polynomial_logistic"]

PRIOR_PRECISION = 2.0


def polynomial_data(seed: int = 0, n: int = 128, degree: int = 3):
    """``(x, Phi, y)``: half positive from ``N(1, 1)``, half negative from ``N(0, 2^2)``."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(1.0, 1.0, n // 2), rng.normal(0.0, 2.0, n - n // 2)])
    y = np.concatenate([np.ones(n // 2), np.zeros(n - n // 2)])
    return jnp.asarray(x), polynomial_basis(jnp.asarray(x), degree), jnp.asarray(y)


def polynomial_basis(x, degree: int = 3):
    """``(1, x, ..., x^degree)`` as columns."""
    return jnp.stack([x**k for k in range(degree + 1)], -1)


def polynomial_logistic(Phi, y=None):
    """``y ~ Bernoulli(logits = Phi beta)``, ``beta ~ N(0, I / 2)`` (prior precision 2)."""
    beta = numpyro.sample(
        "beta", dist.Normal(0.0, PRIOR_PRECISION**-0.5).expand([Phi.shape[1]]).to_event(1)
    )
    with numpyro.plate("data", Phi.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=Phi @ beta), obs=y)


def ess_per_second(dt, seconds: float, var_name: str = "beta") -> tuple[float, float]:
    """``(min, median)`` over the parameters of arviz-stats' bulk ESS divided by ``seconds``."""
    import arviz_stats as azs

    ess = np.asarray(azs.ess(dt, var_names=[var_name])[var_name]).ravel()
    return float(ess.min() / seconds), float(np.median(ess) / seconds)


def plot_decision_boundary(x, y, draws, degree: int = 3):
    """Posterior mean and 90 % band of ``P(y = 1 | x)`` with the data and the boundary."""
    import matplotlib.pyplot as plt

    grid = jnp.linspace(float(x.min()) - 0.5, float(x.max()) + 0.5, 300)
    prob = jax.nn.sigmoid(draws.reshape(-1, draws.shape[-1]) @ polynomial_basis(grid, degree).T)
    mean = prob.mean(0)
    lo, hi = jnp.quantile(prob, jnp.array([0.05, 0.95]), axis=0)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.fill_between(grid, lo, hi, alpha=0.3, label="90 % band")
    ax.plot(grid, mean, label="posterior mean P(y=1|x)")
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    crossings = np.asarray(grid)[np.flatnonzero(np.diff(np.sign(np.asarray(mean) - 0.5)))]
    for c in crossings:
        ax.axvline(c, color="k", lw=0.8, ls="--")
    ax.plot(x, y + 0.02 * np.random.default_rng(0).normal(size=len(x)), "o", ms=3, alpha=0.5)
    ax.set(xlabel="x", ylabel="P(y = 1)", title="Pólya-gamma Gibbs: decision boundary (dashed)")
    ax.legend(loc="center right", fontsize=8)
    return fig


@section("augmentation", "Pólya-gamma Gibbs vs NUTS (polynomial logistic regression)", order=30)
def run(ctx: Context) -> None:
    import arviz_stats as azs
    from numpyro.infer import MCMC, NUTS

    from numpyro_ext.arviz import from_mcmc
    from numpyro_ext.infer import PolyaGammaGibbs

    x, Phi, y = polynomial_data(ctx.seed)
    print(f"  data: {len(y)} points, degree-3 basis, prior precision {PRIOR_PRECISION}")
    draws = ctx.pick(2000, 500)
    key_pg, key_nuts = jax.random.split(jax.random.PRNGKey(ctx.seed))
    results = {}
    for name, kernel, key in (
        ("PG Gibbs", PolyaGammaGibbs(polynomial_logistic), key_pg),
        ("NUTS", NUTS(polynomial_logistic), key_nuts),
    ):
        mcmc = MCMC(
            kernel,
            num_warmup=draws // 2,
            num_samples=draws,
            num_chains=2,
            chain_method="vectorized",
            progress_bar=False,
        )
        start = time.perf_counter()
        mcmc.run(key, Phi, y)
        jax.block_until_ready(mcmc.get_samples())
        seconds = time.perf_counter() - start
        dt = from_mcmc(mcmc, model_args=(Phi, y))
        results[name] = (dt, seconds, mcmc.get_samples()["beta"])
        print(f"\n  {name}: {draws} draws x 2 chains, mcmc.run took {seconds:.2f} s")
        print(azs.summary(dt, var_names=["beta"]).to_string())
    print("\n  ESS per second of mcmc.run, compilation included (min / median over beta);")
    print("  benchmarks/polya_gamma_gibbs.py times the samplers after compilation:")
    for name, (dt, seconds, _) in results.items():
        low, mid = ess_per_second(dt, seconds)
        print(f"    {name:9s} {low:10.0f} / {mid:10.0f}")
    ctx.savefig(plot_decision_boundary(x, y, results["PG Gibbs"][2]), "decision_boundary")
