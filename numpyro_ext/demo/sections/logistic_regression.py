"""Bayesian logistic regression on the breast-cancer data: NUTS and SVI, both through ArviZ.

The data are scikit-learn's Wisconsin breast-cancer set (569 tumours, 30 features),
standardised. The model is ``y ~ Bernoulli(logits = alpha + X beta)`` with ``beta ~ N(0, 0.5^2)``
and ``alpha ~ N(0, 5^2)``. NUTS and SVI with ``AutoNormal`` are each converted with
:mod:`numpyro_ext.arviz`, summarised and compared with arviz-stats (ESS, R-hat, PSIS-LOO) and
plotted side by side with arviz-plots.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax

from numpyro_ext.demo.registry import Context, section

__all__ = ["load_breast_cancer", "logistic_regression", "plot_coefficients", "run"]


def load_breast_cancer() -> tuple[jax.Array, jax.Array, list[str]]:
    """Standardised features, 0/1 labels (1 = benign) and feature names, in JAX's default dtype."""
    from sklearn.datasets import load_breast_cancer as load

    data = load()
    X = (data.data - data.data.mean(0)) / data.data.std(0)
    names = [str(n).replace(" ", "_") for n in data.feature_names]
    X = jnp.asarray(X)
    return X, jnp.asarray(data.target, X.dtype), names


def logistic_regression(X, y=None):
    """``y ~ Bernoulli(sigmoid(alpha + X beta))``, ``beta ~ N(0, 0.25 I)``, ``alpha ~ N(0, 25)``.

    The prior on the standardised coefficients keeps the nearly separable data from pushing
    logits to the hundreds, where pointwise log-likelihoods round to zero.
    """
    beta = numpyro.sample("beta", dist.Normal(0.0, 0.5).expand([X.shape[1]]).to_event(1))
    alpha = numpyro.sample("alpha", dist.Normal(0.0, 5.0))
    with numpyro.plate("tumour", X.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=alpha + X @ beta), obs=y)


def plot_coefficients(trees: dict, names: list[str], prob: float = 0.89):
    """Forest plot of ``beta`` under several posteriors: mean and central ``prob`` interval.

    Posteriors may have different numbers of chains and draws (MCMC against guide draws), so
    each is flattened over its sample dimensions before summarising.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.28 * len(names) + 1.5))
    rows = np.arange(len(names))
    offsets = np.linspace(-0.25, 0.25, len(trees))
    for offset, (label, dt) in zip(offsets, trees.items(), strict=True):
        beta = dt.posterior["beta"].values.reshape(-1, len(names))
        lo, hi = np.quantile(beta, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
        ax.hlines(rows + offset, lo, hi, lw=1.5, color=ax.plot([], [])[0].get_color())
        ax.plot(
            beta.mean(0), rows + offset, "o", ms=3, label=label, color=ax.lines[-1].get_color()
        )
    ax.axvline(0, color="0.7", lw=0.8)
    ax.set_yticks(rows, names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"coefficient (mean and {prob:.0%} interval)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


@section("logistic_regression", "Logistic regression: NUTS and SVI through ArviZ", order=10)
def run(ctx: Context) -> None:
    # Nearly separable data: in float32 some pointwise log-likelihoods round to exactly 0 and
    # PSIS-LOO's tail fit breaks down, so this section runs in float64.
    with jax.enable_x64(True):
        _fit_and_compare(ctx)


def _fit_and_compare(ctx: Context) -> None:
    import arviz_plots as azp
    import arviz_stats as azs
    from numpyro.infer import MCMC, NUTS, SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoNormal

    from numpyro_ext.arviz import from_mcmc, from_svi

    X, y, names = load_breast_cancer()
    print(f"  data: {X.shape[0]} tumours x {X.shape[1]} standardised features")
    dims = {"beta": ["feature"]}
    coords = {"feature": names}
    key_mcmc, key_svi, key_draws = jax.random.split(jax.random.PRNGKey(ctx.seed), 3)

    draws = ctx.pick(1000, 300)
    mcmc = MCMC(
        NUTS(logistic_regression),
        num_warmup=draws,
        num_samples=draws,
        num_chains=2,
        chain_method="vectorized",
        progress_bar=not ctx.quick,
    )
    with ctx.timed("NUTS, 2 chains"):
        mcmc.run(key_mcmc, X, y, extra_fields=("diverging", "potential_energy"))
    dt_nuts = from_mcmc(mcmc, model_args=(X, y), dims=dims, coords=coords)

    guide = AutoNormal(logistic_regression)
    svi = SVI(logistic_regression, guide, optax.adam(0.02), Trace_ELBO())
    with ctx.timed("SVI with AutoNormal"):
        result = svi.run(key_svi, ctx.pick(4000, 1500), X, y, progress_bar=not ctx.quick)
    print(f"  final ELBO: {-float(np.mean(result.losses[-100:])):.1f}")
    with ctx.timed("from_svi"):
        dt_svi = from_svi(
            guide, result.params, model_args=(X, y), num_samples=2 * draws, rng_key=key_draws,
            dims=dims, coords=coords,
        )  # fmt: skip

    var_names = ["alpha", "beta"]
    coords_shown = {"feature": names[:6]}
    print("\n  NUTS posterior (first six coefficients), ESS and R-hat:")
    print(azs.summary(dt_nuts, var_names=var_names, coords=coords_shown).to_string())
    print("\n  SVI (AutoNormal) posterior:")
    print(azs.summary(dt_svi, var_names=var_names, coords=coords_shown, kind="stats").to_string())
    print(f"\n  divergences: {int(dt_nuts.sample_stats['diverging'].sum())}")
    print("\n  PSIS-LOO comparison:")
    print(azs.compare({"NUTS": dt_nuts, "SVI AutoNormal": dt_svi}).to_string())

    ctx.savefig(plot_coefficients({"NUTS": dt_nuts, "SVI AutoNormal": dt_svi}, names), "forest")
    ctx.savefig(azp.plot_ppc_dist(dt_nuts, kind="ecdf", backend="matplotlib"), "ppc_nuts")
