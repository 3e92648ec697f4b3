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
from numpyro.infer import MCMC, NUTS, Gibbs

from numpyro_ext.arviz import from_mcmc
from numpyro_ext.demo.sections.hierarchical import (
    hierarchical_data,
    hierarchical_model,
    plot_scale_posteriors,
)
from numpyro_ext.infer import CollapsedPolyaGammaGibbs, PolyaGammaGibbs

model = hierarchical_model(groups=8)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    args = hierarchical_data()
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
        trees[name] = from_mcmc(mcmc, model_args=args)
        print(f"\n{name}")
        print(azs.summary(trees[name], var_names=["tau", "a", "b"]).to_string())
    fig = plot_scale_posteriors(trees)
    fig.savefig(out / "pg_hierarchical_logistic.png", dpi=110, bbox_inches="tight")
    print(f"figure: {out / 'pg_hierarchical_logistic.png'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples/figures"))
    main(parser.parse_args().out)
