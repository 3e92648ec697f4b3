"""from_svi against arviz-base's from_numpyro_svi on the breast-cancer logistic regression.

Both convert the same fitted AutoNormal guide with the same number of draws. arviz-base returns
posterior, log_likelihood and observed_data; ``from_svi`` adds posterior_predictive, so a third
row times arviz-base plus a ``Predictive`` call for the same groups.
"""

import argparse

import jax
import optax
from arviz_base import from_numpyro_svi
from harness import Table, environment, time_call
from numpyro.infer import SVI, Predictive, Trace_ELBO
from numpyro.infer.autoguide import AutoNormal

from numpyro_ext.arviz import from_svi
from numpyro_ext.demo.sections.logistic_regression import load_breast_cancer, logistic_regression


def main(num_samples: int, repeats: int) -> None:
    X, y, _ = load_breast_cancer()
    guide = AutoNormal(logistic_regression)
    svi = SVI(logistic_regression, guide, optax.adam(0.02), Trace_ELBO())
    result = svi.run(jax.random.PRNGKey(0), 2000, X, y, progress_bar=False)
    key = jax.random.PRNGKey(1)

    def ours():
        return from_svi(
            guide, result.params, model_args=(X, y), num_samples=num_samples, rng_key=key
        )

    def anchor():
        return from_numpyro_svi(svi, svi_result=result, model_args=(X, y), num_samples=num_samples)

    def anchor_with_predictive():
        dt = anchor()
        Predictive(logistic_regression, guide=guide, params=result.params,
                   num_samples=num_samples)(key, X)  # fmt: skip
        return dt

    t_ours = time_call(ours, repeats=repeats)
    t_anchor = time_call(anchor, repeats=repeats)
    t_anchor_pp = time_call(anchor_with_predictive, repeats=repeats)
    table = Table(
        f"ArviZ conversion, logistic regression (N={X.shape[0]}, D={X.shape[1]}), "
        f"{num_samples} draws",
        ["converter", "groups", "first call (s)", "median (s)", "ratio ours/anchor"],
    )
    table.add("numpyro_ext.arviz.from_svi", "post, pp, ll, obs", t_ours.first, t_ours.median, 1.0)
    table.add(
        "arviz_base.from_numpyro_svi", "post, ll, obs", t_anchor.first, t_anchor.median,
        t_ours.median / t_anchor.median,
    )  # fmt: skip
    table.add(
        "arviz_base.from_numpyro_svi + Predictive", "post, pp, ll, obs", t_anchor_pp.first,
        t_anchor_pp.median, t_ours.median / t_anchor_pp.median,
    )  # fmt: skip
    table.print()
    print(f"_{environment()}_\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    main(args.num_samples, args.repeats)
