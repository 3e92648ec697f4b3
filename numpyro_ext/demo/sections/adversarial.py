"""Adversarial Variational Bayes: an implicit guide on a banana-shaped posterior.

The model is ``theta ~ N(0, I_2)``, ``y ~ N(theta_2 + theta_1^2, 0.3^2)`` with ``y = 1``; its
posterior bends along a parabola. ``ImplicitGuide`` (a generator network fed with noise, trained
under SVI with ``AdversarialELBO``) is fitted beside ``AutoMultivariateNormal`` and both are
compared with NUTS by energy distance. Quick mode trains for fewer steps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
import optax

from numpyro_ext.demo.registry import Context, section


def banana(y=1.0):
    t1 = numpyro.sample("t1", dist.Normal(0.0, 1.0))
    t2 = numpyro.sample("t2", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Normal(t2 + t1**2, 0.3), obs=y)


def _energy_distance(a, b):
    def mean_dist(x, y):
        return jnp.mean(jnp.linalg.norm(x[:, None] - y[None], axis=-1))

    return 2 * mean_dist(a, b) - mean_dist(a, a) - mean_dist(b, b)


@section("adversarial", "Adversarial guides: an implicit posterior for a banana", order=45)
def run(ctx: Context) -> None:
    import matplotlib.pyplot as plt
    from numpyro.infer import MCMC, NUTS, SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoMultivariateNormal

    from numpyro_ext.guides import ImplicitGuide
    from numpyro_ext.infer import AdversarialELBO, adversarial_optimizer

    steps = ctx.pick(4000, 800)
    n = ctx.pick(2000, 500)
    mcmc = MCMC(NUTS(banana), num_warmup=500, num_samples=n, progress_bar=False)
    with ctx.timed("NUTS reference"):
        mcmc.run(jax.random.key(ctx.seed))
    ref = jnp.stack([mcmc.get_samples()["t1"], mcmc.get_samples()["t2"]], -1)

    implicit = ImplicitGuide(banana, hidden=ctx.pick((64, 64), (32, 32)), noise_dim=4)
    opt = adversarial_optimizer(optax.adam(optax.exponential_decay(3e-3, steps, 0.1)))
    with ctx.timed(f"ImplicitGuide: {steps} SVI steps"):
        res = SVI(banana, implicit, opt, AdversarialELBO(num_critic_draws=64)).run(
            jax.random.key(ctx.seed), steps, progress_bar=False
        )
    gauss = AutoMultivariateNormal(banana)
    with ctx.timed(f"AutoMultivariateNormal: {steps} SVI steps"):
        res_g = SVI(banana, gauss, optax.adam(1e-2), Trace_ELBO()).run(
            jax.random.key(ctx.seed), steps, progress_bar=False
        )
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), sharex=True, sharey=True)
    panels = [("NUTS", ref)]
    for name, guide, params in (
        ("AutoMultivariateNormal", gauss, res_g.params),
        ("ImplicitGuide", implicit, res.params),
    ):
        d = guide.sample_posterior(jax.random.key(1), params, sample_shape=(n,))
        draws = jnp.stack([d["t1"], d["t2"]], -1)
        print(f"  {name}: energy distance to NUTS = {float(_energy_distance(draws, ref)):.4f}")
        panels.append((name, draws))
    for ax, (name, draws) in zip(axes, panels, strict=True):
        ax.plot(draws[:, 0], draws[:, 1], ".", ms=2, alpha=0.4)
        ax.set_title(name)
    axes[0].set_xlabel("theta_1")
    axes[0].set_ylabel("theta_2")
    ctx.savefig(fig, "adversarial_banana")
