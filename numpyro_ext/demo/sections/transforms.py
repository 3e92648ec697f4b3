"""Bijectors and flows: the banana distribution and a flow guide fitted to it.

The banana of the Bijector API write-up is ``Banana()`` applied to a correlated Gaussian, as a
NumPyro ``TransformedDistribution``: its density is contoured and sampled. Then the banana is
used as an unnormalised posterior (a flat prior and the Gaussian potential at
\\(G^{-1}(x)\\)) and fitted by SVI with ``AutoNormal`` and with
:class:`~numpyro_ext.guides.AutoFlow` (scanned spline couplings). \\(G\\) is volume preserving,
so the evidence is the Gaussian's normaliser, \\(\\log Z = \\log 2\\pi + \\tfrac12 \\log(1 -
\\rho^2)\\): each guide's gap \\(\\log Z - \\mathrm{ELBO} = \\mathrm{KL}(q \\| p)\\) is printed and
its draws are plotted over the contours.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import optax

from numpyro_ext.demo.registry import Context, section

__all__ = ["LOG_Z", "RHO", "banana_contours", "banana_model", "elbo_draws", "fit", "run"]

RHO = 0.95
LOG_Z = float(np.log(2 * np.pi) + 0.5 * np.log1p(-(RHO**2)))


def banana_model():
    """The banana as an unnormalised posterior: flat prior, Gaussian potential at G^-1(x).

    Its log-evidence is :data:`LOG_Z` (``G`` has unit Jacobian determinant).
    """
    import numpyro.distributions as dist
    from numpyro.distributions import constraints

    from numpyro_ext.transforms import Banana

    x = numpyro.sample("x", dist.ImproperUniform(constraints.real_vector, (), (2,)))
    u = Banana().inverse(x)
    quadratic = (u[0] ** 2 - 2 * RHO * u[0] * u[1] + u[1] ** 2) / (1 - RHO**2)
    numpyro.factor("banana", -0.5 * quadratic)


def fit(guide, steps: int, seed: int = 0, num_particles: int = 16, lr: float = 1e-2):
    """SVI with Adam on a cosine-decayed learning rate; returns the fitted params.

    Every guide of the comparison gets the same optimiser, steps and particles.
    """
    from numpyro.infer import SVI, Trace_ELBO

    optim = optax.adam(optax.cosine_decay_schedule(lr, steps))
    svi = SVI(banana_model, guide, optim, Trace_ELBO(num_particles=num_particles))
    return svi.run(jax.random.key(seed), steps, progress_bar=False).params


def elbo_draws(guide, params, n: int = 10_000, seed: int = 1):
    """``log p~(x) - log q(x)`` for ``n`` guide draws (their mean is the ELBO), and the draws."""
    from numpyro.infer.util import log_density

    def one(key):
        seeded = numpyro.handlers.substitute(numpyro.handlers.seed(guide, key), params)
        trace = numpyro.handlers.trace(seeded).get_trace()
        log_q = sum(
            s["fn"].log_prob(s["value"]).sum() for s in trace.values() if s["type"] == "sample"
        )
        x = trace["x"]["value"]
        log_p, _ = log_density(banana_model, (), {}, {"x": x})
        return log_p - log_q, x

    return jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(seed), n))


def banana_contours(ax, grid: int = 200) -> float:
    """Draw the banana density contours on ``ax``; return the density mass inside the window."""
    from numpyro_ext.transforms import banana_distribution

    x1, x2 = np.linspace(-3.5, 3.5, grid), np.linspace(-12, 3, grid)
    y = jnp.stack(jnp.meshgrid(x1, x2, indexing="xy"), -1)
    density = np.exp(np.asarray(banana_distribution(RHO).log_prob(y)))
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

    draws = banana_distribution(RHO).sample(jax.random.key(ctx.seed), (ctx.pick(4000, 1000),))
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharex=True, sharey=True)
    mass = banana_contours(axes[0])
    axes[0].scatter(*np.asarray(draws).T, s=2, alpha=0.3)
    axes[0].set_title("banana: samples over density contours")
    print(f"  banana density summed on the plotted grid: {mass:.4f} (mass inside the window)")

    steps = ctx.pick(2000, 300)
    guides = {
        "AutoNormal": AutoNormal(banana_model),
        "AutoFlow": AutoFlow(banana_model, num_layers=ctx.pick(4, 2), hidden=(16, 16)),
    }
    for ax, (name, guide) in zip(axes[1:], guides.items(), strict=True):
        with ctx.timed(f"{name}: {steps} SVI steps"):
            params = fit(guide, steps, ctx.seed, num_particles=ctx.pick(16, 4))
        values, x = elbo_draws(guide, params, ctx.pick(10_000, 1000))
        elbo, se = float(values.mean()), float(values.std() / np.sqrt(values.size))
        print(f"  {name}: ELBO = {elbo:.3f} ± {se:.3f}, gap to log Z = {LOG_Z - elbo:.3f}")
        banana_contours(ax)
        ax.scatter(*np.asarray(x).T, s=2, alpha=0.3, color="C1")
        ax.set_title(f"{name}: log Z - ELBO = {LOG_Z - elbo:.3f}")
        if name == "AutoFlow":
            print(summary(from_dict({"posterior": {"x": np.asarray(x)[None]}}), kind="stats"))
    ctx.savefig(fig, "banana_flow_guide")
