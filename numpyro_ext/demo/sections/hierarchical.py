"""Collapsed Pólya-gamma Gibbs for a hierarchical logistic model, against NUTS.

Eight groups share a population scale on their intercepts and a common slope:
``tau ~ HalfNormal(1)``, ``a_g ~ N(0, tau^2)``, ``b ~ N(0, 1)``, ``y ~ Bernoulli(a_g + b x)``.
:class:`numpyro_ext.infer.CollapsedPolyaGammaGibbs` slice-samples ``tau`` with the Gaussian
coefficients integrated out given the Pólya-gamma auxiliaries, then draws them exactly. Both
samplers are converted with :func:`numpyro_ext.arviz.from_mcmc` and summarised with arviz-stats;
the figure overlays their posteriors of ``tau``.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from numpyro_ext.demo.registry import Context, section

__all__ = ["hierarchical_data", "hierarchical_model", "plot_scale_posteriors"]


def hierarchical_data(seed: int = 0, groups: int = 8, per_group: int = 25):
    """``(group, x, y)``: intercepts ``a_g ~ N(0, 1)``, slope 0.8, ``x ~ N(0, 1)``."""
    rng = np.random.default_rng(seed)
    group = np.repeat(np.arange(groups), per_group)
    x = rng.normal(size=group.size)
    a = rng.normal(0.0, 1.0, groups)
    y = (rng.uniform(size=x.size) < 1 / (1 + np.exp(-(a[group] + 0.8 * x)))).astype(float)
    return jnp.asarray(group), jnp.asarray(x), jnp.asarray(y)


def hierarchical_model(groups: int = 8, centred: bool = True):
    """``tau ~ HalfNormal(1)``, ``a ~ N(0, tau^2)`` (``groups`` of them), ``b ~ N(0, 1)``,
    logits ``a[group] + b x``; non-centred: ``a = tau a_raw``, ``a_raw ~ N(0, 1)``."""

    def model(group, x, y=None):
        tau = numpyro.sample("tau", dist.HalfNormal(1.0))
        if centred:
            a = numpyro.sample("a", dist.Normal(0.0, tau).expand([groups]).to_event(1))
        else:
            a_raw = numpyro.sample("a_raw", dist.Normal(0.0, 1.0).expand([groups]).to_event(1))
            a = numpyro.deterministic("a", tau * a_raw)
        b = numpyro.sample("b", dist.Normal(0.0, 1.0))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("y", dist.Bernoulli(logits=a[group] + b * x), obs=y)

    return model


def plot_scale_posteriors(trees: dict):
    """Histograms of the posterior of ``tau``, one per sampler."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, dt in trees.items():
        ax.hist(np.ravel(dt.posterior["tau"]), bins=60, density=True, histtype="step", label=name)
    ax.set(xlabel="tau", title="Population scale of the intercepts")
    ax.legend()
    return fig


@section("hierarchical", "Collapsed Pólya-gamma Gibbs vs NUTS (hierarchical logistic)", order=31)
def run(ctx: Context) -> None:
    import arviz_stats as azs
    from numpyro.infer import MCMC, NUTS

    from numpyro_ext.arviz import from_mcmc
    from numpyro_ext.infer import CollapsedPolyaGammaGibbs

    args = hierarchical_data(ctx.seed)
    model = hierarchical_model()
    print(f"  data: 8 groups x 25 points, {int(args[2].sum())} positives")
    draws = ctx.pick(2000, 500)
    trees = {}
    for i, (name, kernel) in enumerate(
        (("collapsed PG Gibbs", CollapsedPolyaGammaGibbs(model)), ("NUTS", NUTS(model)))
    ):
        mcmc = MCMC(kernel, num_warmup=draws // 2, num_samples=draws, num_chains=2,
                    chain_method="vectorized", progress_bar=False)  # fmt: skip
        start = time.perf_counter()
        mcmc.run(jax.random.PRNGKey(ctx.seed + i), *args)
        jax.block_until_ready(mcmc.get_samples())
        seconds = time.perf_counter() - start
        trees[name] = from_mcmc(mcmc, model_args=args)
        print(f"\n  {name}: {draws} draws x 2 chains, mcmc.run took {seconds:.2f} s")
        print(azs.summary(trees[name], var_names=["tau", "a", "b"]).to_string())
    ctx.savefig(plot_scale_posteriors(trees), "scale_posteriors")
