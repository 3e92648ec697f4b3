"""Fit the banana posterior with AutoNormal, AutoIAFNormal and a spline-coupling flow guide.

The banana of the Bijector API write-up (``Banana()`` applied to N(0, [[1, .95], [.95, 1]])) is
the posterior of a one-site model known only up to its normaliser: a flat prior on x and the
Gaussian potential at G^-1(x). G is volume preserving, so the log-evidence is known in closed
form, log Z = log(2 pi) + log(1 - rho^2) / 2, and each guide's gap log Z - ELBO is its
KL(q || p). All guides get the same optimiser (Adam, cosine-decayed from 1e-2), the same number
of steps and the same number of ELBO particles; the final ELBO is estimated from 10,000 fresh
draws with its Monte Carlo standard error. The two flows have the same depth and conditioner
widths. The script prints the table and an ArviZ summary of the flow guide's draws, and saves
the draws over the density contours.

    python examples/banana_flow_guide.py --steps 3000 --out examples/figures
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import matplotlib.pyplot as plt
import numpy as np
from arviz_base import from_dict
from arviz_stats import summary
from numpyro.infer.autoguide import AutoIAFNormal, AutoNormal

from numpyro_ext.demo.sections.transforms import (
    LOG_Z,
    banana_contours,
    banana_model,
    elbo_draws,
    fit,
)
from numpyro_ext.guides import AutoFlow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--particles", type=int, default=16, help="ELBO particles per step")
    parser.add_argument("--layers", type=int, default=4, help="flow layers (both flows)")
    parser.add_argument("--out", type=Path, default=Path("examples/figures"))
    args = parser.parse_args()

    hidden = (32, 32)
    guides = {
        "AutoNormal": AutoNormal(banana_model, init_scale=1.0),
        f"AutoIAFNormal ({args.layers} x IAF)": AutoIAFNormal(
            banana_model, num_flows=args.layers, hidden_dims=list(hidden)
        ),
        f"AutoFlow ({args.layers} x spline coupling)": AutoFlow(
            banana_model, num_layers=args.layers, hidden=hidden, init_scale=1.0
        ),
    }
    print(f"{args.steps} Adam steps, {args.particles} particles each; log Z = {LOG_Z:.4f}\n")
    print("| guide | ELBO | MC s.e. | log Z - ELBO | fit (s) |")
    print("|---|---|---|---|---|")
    fig, axes = plt.subplots(1, len(guides), figsize=(5 * len(guides), 4.2), sharey=True)
    for ax, (name, guide) in zip(axes, guides.items(), strict=True):
        start = time.perf_counter()
        params = fit(guide, args.steps, num_particles=args.particles)
        seconds = time.perf_counter() - start
        values, x = elbo_draws(guide, params, 10_000)
        elbo, se = float(values.mean()), float(values.std() / np.sqrt(values.size))
        print(f"| {name} | {elbo:.4f} | {se:.4f} | {LOG_Z - elbo:.4f} | {seconds:.0f} |")
        banana_contours(ax)
        ax.scatter(*np.asarray(x[:3000]).T, s=2, alpha=0.3, color="C1")
        ax.set_title(f"{name}\nlog Z - ELBO = {LOG_Z - elbo:.3f} ± {se:.3f}")
    print()
    print(summary(from_dict({"posterior": {"x": np.asarray(x)[None]}}), kind="stats"))
    print("exact: mean (0, -2), sd (1, 1.73)")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "banana_flow_guide.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    print(f"figure: {path}")


if __name__ == "__main__":
    jax.config.update("jax_platform_name", "cpu")
    main()
