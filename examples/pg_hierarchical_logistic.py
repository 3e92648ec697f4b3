"""A hierarchical logistic model: collapsed Pólya-gamma Gibbs against NUTS.

Eight groups share a population scale tau on their intercepts; the slope is common:
``tau ~ HalfNormal(1)``, ``a_g ~ N(0, tau^2)``, ``b ~ N(0, 1)``, ``y ~ Bernoulli(a_g + b x)``.
Given the Pólya-gamma auxiliaries the coefficients (a, b) are Gaussian with affine logits, so
CollapsedPolyaGammaGibbs integrates them out to slice-sample tau, then draws them exactly. The
older composite (numpyro.infer.Gibbs: PolyaGammaGibbs for (a, b), NUTS for tau given them) is
shown too: its tau mixes more slowly because tau and the intercepts are tightly coupled. The
three are compared through numpyro_ext.arviz and arviz-stats (ess_bulk in the summaries).

    python examples/pg_hierarchical_logistic.py --out examples/figures
"""

import argparse
from pathlib import Path

import arviz_stats as azs
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS, Gibbs

from numpyro_ext.arviz import from_mcmc
from numpyro_ext.infer import CollapsedPolyaGammaGibbs, PolyaGammaGibbs

NUM_GROUPS = 8


def data(seed=0, per_group=25):
    rng = np.random.default_rng(seed)
    group = np.repeat(np.arange(NUM_GROUPS), per_group)
    x = rng.normal(size=group.size)
    a = rng.normal(0.0, 1.0, NUM_GROUPS)
    y = (rng.uniform(size=x.size) < 1 / (1 + np.exp(-(a[group] + 0.8 * x)))).astype(float)
    return jnp.asarray(group), jnp.asarray(x), jnp.asarray(y)


def model(group, x, y=None):
    tau = numpyro.sample("tau", dist.HalfNormal(1.0))
    a = numpyro.sample("a", dist.Normal(0.0, tau).expand([NUM_GROUPS]).to_event(1))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=a[group] + b * x), obs=y)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    args = data()
    kernels = {
        "collapsed PG Gibbs": CollapsedPolyaGammaGibbs(model),
        "PG Gibbs + NUTS": Gibbs([(PolyaGammaGibbs(model), ["a", "b"]), (NUTS(model), None)]),
        "NUTS": NUTS(model),
    }
    trees = {}
    for i, (name, kernel) in enumerate(kernels.items()):
        mcmc = MCMC(kernel, num_warmup=1000, num_samples=3000, num_chains=2,
                    chain_method="sequential", progress_bar=False)  # fmt: skip
        mcmc.run(jax.random.PRNGKey(i), *args)
        trees[name] = from_mcmc(mcmc)
        print(f"\n{name}")
        print(azs.summary(trees[name], var_names=["tau", "a", "b"]).to_string())
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, dt in trees.items():
        ax.hist(np.ravel(dt.posterior["tau"]), bins=60, density=True, histtype="step", label=name)
    ax.set(xlabel="tau", title="Population scale: collapsed PG Gibbs, Gibbs composite, NUTS")
    ax.legend()
    fig.savefig(out / "pg_hierarchical_logistic.png", dpi=110, bbox_inches="tight")
    print(f"figure: {out / 'pg_hierarchical_logistic.png'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples/figures"))
    main(parser.parse_args().out)
