"""Bijectors and flows: the banana distribution and a flow guide fitted to it.

The banana of the Bijector API write-up is ``Banana()`` applied to a correlated Gaussian, as a
NumPyro ``TransformedDistribution``: its density is contoured and sampled. Then the banana is
used as a posterior and fitted by SVI with ``AutoNormal`` and with
:class:`~numpyro_ext.guides.AutoFlow` (scanned spline couplings); their ELBOs (log Z = 0, so
ELBO = -KL) are printed and the guide draws are plotted over the contours.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import optax

from numpyro_ext.demo.registry import Context, section

__all__ = ["banana_contours", "banana_model", "elbo_draws", "fit", "run"]


def banana_model():
    """A model whose posterior is the banana distribution."""
    from numpyro_ext.transforms import banana_distribution

    numpyro.sample("x", banana_distribution())


def fit(guide, steps: int, seed: int = 0):
    """SVI with Adam (1e-2) and a 4-particle Trace_ELBO; returns the fitted params."""
    from numpyro.infer import SVI, Trace_ELBO

    svi = SVI(banana_model, guide, optax.adam(1e-2), Trace_ELBO(num_particles=4))
    return svi.run(jax.random.key(seed), steps, progress_bar=False).params


def elbo_draws(guide, params, n: int = 4000, seed: int = 1):
    """``log p(x) - log q(x)`` for ``n`` guide draws, and the draws themselves."""
    from numpyro_ext.transforms import banana_distribution

    def one(key):
        seeded = numpyro.handlers.substitute(numpyro.handlers.seed(guide, key), params)
        trace = numpyro.handlers.trace(seeded).get_trace()
        log_q = sum(
            s["fn"].log_prob(s["value"]).sum() for s in trace.values() if s["type"] == "sample"
        )
        x = trace["x"]["value"]
        return banana_distribution().log_prob(x) - log_q, x

    return jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(seed), n))


def banana_contours(ax, grid: int = 200) -> float:
    """Draw the banana density contours on ``ax``; return the density mass inside the window."""
    from numpyro_ext.transforms import banana_distribution

    x1, x2 = np.linspace(-3.5, 3.5, grid), np.linspace(-12, 3, grid)
    y = jnp.stack(jnp.meshgrid(x1, x2, indexing="xy"), -1)
    density = np.exp(np.asarray(banana_distribution().log_prob(y)))
    ax.contour(x1, x2, density, levels=8, cmap="Greys")
    return (x1[1] - x1[0]) * (x2[1] - x2[0]) * density.sum()


@section("transforms", "Bijectors and flows: the banana and a flow guide", order=40)
def run(ctx: Context) -> None:
    import matplotlib.pyplot as plt
    from arviz_base import from_dict
    from arviz_stats import summary
    from numpyro.infer.autoguide import AutoNormal

    from numpyro_ext.guides import AutoFlow
    from numpyro_ext.transforms import banana_distribution

    draws = banana_distribution().sample(jax.random.key(ctx.seed), (ctx.pick(4000, 1000),))
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharex=True, sharey=True)
    mass = banana_contours(axes[0])
    axes[0].scatter(*np.asarray(draws).T, s=2, alpha=0.3)
    axes[0].set_title("banana: samples over density contours")
    print(f"  banana density summed on the plotted grid: {mass:.4f} (mass inside the window)")

    steps = ctx.pick(1500, 300)
    guides = {
        "AutoNormal": AutoNormal(banana_model),
        "AutoFlow": AutoFlow(banana_model, num_layers=4, hidden=ctx.pick((16, 16), (8,))),
    }
    for ax, (name, guide) in zip(axes[1:], guides.items(), strict=True):
        with ctx.timed(f"{name}: {steps} SVI steps"):
            params = fit(guide, steps, ctx.seed)
        values, x = elbo_draws(guide, params, ctx.pick(4000, 1000))
        se = float(values.std() / np.sqrt(values.size))
        print(f"  {name}: ELBO = {float(values.mean()):.3f} ± {se:.3f} (log Z = 0)")
        banana_contours(ax)
        ax.scatter(*np.asarray(x).T, s=2, alpha=0.3, color="C1")
        ax.set_title(f"{name}: ELBO {float(values.mean()):.3f}")
        if name == "AutoFlow":
            print(summary(from_dict({"posterior": {"x": np.asarray(x)[None]}}), kind="stats"))
    ctx.savefig(fig, "banana_flow_guide")
