"""Exact Pólya-gamma draws: histograms against the density, exact versus empirical moments.

For a few ``(b, c)`` (a non-integer ``b`` where the reference C package is biased among them),
draws from :class:`numpyro_ext.distributions.PolyaGamma` are histogrammed over the series density
and their mean and variance printed next to the closed forms, with the Monte Carlo standard
error, and the time the draws take (with the sampler used: the compiled one on CPU).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_ext.demo.registry import Context, section
from numpyro_ext.distributions import PolyaGamma
from numpyro_ext.distributions.polya_gamma_sampler import has_cpu_extension

__all__ = ["CASES", "run"]

CASES = [(1.0, 0.0), (3.5, 1.0), (0.3, 2.0), (7.3, 5.0)]


@section("polya_gamma", "Exact Pólya-gamma sampling", order=20)
def run(ctx: Context) -> None:
    import matplotlib.pyplot as plt

    n = ctx.pick(100_000, 20_000)
    b = jnp.asarray([case[0] for case in CASES])
    c = jnp.asarray([case[1] for case in CASES])
    d = PolyaGamma(b, c)
    sample = jax.jit(lambda key: d.sample(key, (n,)))
    key = jax.random.key(ctx.seed)
    compiled = jax.default_backend() == "cpu" and has_cpu_extension()
    print(f"  sampler: {'compiled CPU (XLA FFI)' if compiled else 'pure JAX'}")
    with ctx.timed(f"compile + first {n} x {len(CASES)} draws"):
        draws = np.asarray(sample(key).block_until_ready())
    with ctx.timed(f"{n} x {len(CASES)} draws (compiled)"):
        draws = np.asarray(sample(jax.random.fold_in(key, 1)).block_until_ready())

    mean, var = np.asarray(d.mean), np.asarray(d.variance)
    print(
        f"  {'b':>5s} {'c':>5s} {'exact mean':>11s} {'draws':>11s} {'z':>6s}"
        f" {'exact var':>11s} {'draws':>11s}"
    )
    for i, (bi, ci) in enumerate(CASES):
        m, v = draws[:, i].mean(), draws[:, i].var()
        z = (m - mean[i]) / np.sqrt(var[i] / n)
        print(f"  {bi:5.1f} {ci:5.1f} {mean[i]:11.5f} {m:11.5f} {z:6.2f} {var[i]:11.5f} {v:11.5f}")

    fig, axes = plt.subplots(1, len(CASES), figsize=(4 * len(CASES), 3.2))
    for i, ((bi, ci), ax) in enumerate(zip(CASES, axes, strict=True)):
        upper = np.quantile(draws[:, i], 0.995)
        ax.hist(draws[:, i], bins=80, range=(0, upper), density=True, alpha=0.5, label="draws")
        grid = jnp.linspace(upper / 400, upper, 400)
        density = jnp.exp(PolyaGamma(bi, ci).log_prob(grid))
        ax.plot(grid, density, "k", lw=1.2, label="density")
        ax.set_title(f"PG({bi:g}, {ci:g})")
        ax.set_xlabel("omega")
    axes[0].legend()
    ctx.savefig(fig, "polya_gamma_histograms")
