"""Fit the banana posterior with AutoNormal, AutoIAFNormal and a spline-coupling flow guide.

The banana of the Bijector API write-up (``Banana()`` applied to N(0, [[1, .95], [.95, 1]]))
is used as the posterior of a one-site model. It is normalised, so each guide's ELBO is
-KL(q || p); the script prints the ELBOs with Monte Carlo standard errors and an ArviZ summary
of the flow guide's draws, and saves the draws over the density contours.

    python examples/banana_flow_guide.py --steps 3000 --out examples/figures
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import matplotlib.pyplot as plt
import numpy as np
from arviz_base import from_dict
from arviz_stats import summary
from numpyro.infer.autoguide import AutoIAFNormal, AutoNormal

from numpyro_ext.demo.sections.transforms import banana_contours, banana_model, elbo_draws, fit
from numpyro_ext.guides import AutoFlow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=Path("examples/figures"))
    args = parser.parse_args()

    guides = {
        "AutoNormal": AutoNormal(banana_model),
        "AutoIAFNormal": AutoIAFNormal(banana_model, num_flows=3),
        "AutoFlow (spline couplings)": AutoFlow(banana_model, num_layers=6, hidden=(32, 32)),
    }
    fig, axes = plt.subplots(1, len(guides), figsize=(5 * len(guides), 4.2), sharey=True)
    for ax, (name, guide) in zip(axes, guides.items(), strict=True):
        params = fit(guide, args.steps)
        values, x = elbo_draws(guide, params, 10_000)
        mean, se = float(values.mean()), float(values.std() / np.sqrt(values.size))
        print(f"{name:>28}: ELBO = {mean:.3f} ± {se:.3f}  (log Z = 0)")
        banana_contours(ax)
        ax.scatter(*np.asarray(x[:3000]).T, s=2, alpha=0.3, color="C1")
        ax.set_title(f"{name}\nELBO {mean:.3f}")
    print(summary(from_dict({"posterior": {"x": np.asarray(x)[None]}}), kind="stats"))
    print("exact: mean (0, -2), sd (1, 1.73)")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "banana_flow_guide.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    print(f"figure: {path}")


if __name__ == "__main__":
    jax.config.update("jax_platform_name", "cpu")
    main()
