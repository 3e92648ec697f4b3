"""Bayesian logistic regression on the breast-cancer data, three ways, analysed with ArviZ.

NUTS, SVI with AutoNormal (mean field) and SVI with AutoMultivariateNormal (full rank) are fitted
to scikit-learn's Wisconsin breast-cancer data (569 tumours, 30 standardised features). Each
result is converted with numpyro_ext.arviz and compared by PSIS-LOO; the figures show the
posteriors side by side and a posterior-predictive check.

    python examples/breast_cancer_logistic.py --out examples/figures
"""

import argparse
from pathlib import Path

import arviz_plots as azp
import arviz_stats as azs
import jax
import matplotlib.pyplot as plt
import numpy as np
import optax
from numpyro.infer import MCMC, NUTS, SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoMultivariateNormal, AutoNormal

from numpyro_ext.arviz import from_mcmc, from_svi
from numpyro_ext.demo.sections.logistic_regression import (
    load_breast_cancer,
    logistic_regression,
    plot_coefficients,
)

jax.config.update("jax_enable_x64", True)  # PSIS-LOO needs resolvable near-zero log-likelihoods


def fit_svi(guide, X, y, key, steps=5000):
    svi = SVI(logistic_regression, guide, optax.adam(0.01), Trace_ELBO())
    result = svi.run(key, steps, X, y)
    print(f"{type(guide).__name__}: ELBO {-np.mean(result.losses[-200:]):.1f}")
    return result.params


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    X, y, names = load_breast_cancer()
    kw = {"dims": {"beta": ["feature"]}, "coords": {"feature": names}}
    keys = jax.random.split(jax.random.PRNGKey(0), 3)

    mcmc = MCMC(NUTS(logistic_regression), num_warmup=1000, num_samples=1000, num_chains=4,
                chain_method="vectorized")  # fmt: skip
    mcmc.run(keys[0], X, y, extra_fields=("diverging", "potential_energy"))
    trees = {"NUTS": from_mcmc(mcmc, model_args=(X, y), **kw)}
    for name, guide_cls, key in [
        ("AutoNormal", AutoNormal, keys[1]),
        ("AutoMultivariateNormal", AutoMultivariateNormal, keys[2]),
    ]:
        guide = guide_cls(logistic_regression)
        params = fit_svi(guide, X, y, key)
        trees[name] = from_svi(guide, params, model_args=(X, y), num_samples=4000, **kw)

    print(azs.summary(trees["NUTS"], var_names=["alpha", "beta"]).to_string())
    print(azs.compare(trees).to_string())

    plot_coefficients(trees, names).savefig(out / "breast_cancer_forest.png", dpi=110)
    pc = azp.plot_ppc_dist(trees["NUTS"], kind="ecdf")
    pc.savefig(out / "breast_cancer_ppc.png")
    plt.close("all")
    print(f"figures in {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("examples/figures"))
    main(parser.parse_args().out)
