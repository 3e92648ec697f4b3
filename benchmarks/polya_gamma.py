"""Pólya-gamma sampling: numpyro_ext.PolyaGamma against the `polyagamma` C package (default).

Throughput for 1e6 draws of PG(1, c), c ~ N(0, 3^2), and 1e5 draws of PG(50, c), then the
accuracy row: mean and variance errors of each sampler at b = 3.5, c = 1 against the closed
forms, in units of their Monte Carlo standard errors (variance SE from the fourth moment).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from harness import Table, environment, time_call
from polyagamma import random_polyagamma

from numpyro_ext.distributions import PolyaGamma
from numpyro_ext.distributions.polya_gamma_sampler import sample_polya_gamma


def throughput(table: Table, b: float, n: int, seed: int) -> None:
    c = np.random.default_rng(seed).normal(0.0, 3.0, n)
    c_jax = jnp.asarray(c)
    # c is an argument, not a closed-over constant, so XLA does not constant-fold over it.
    ours = jax.jit(lambda key, c: sample_polya_gamma(key, b, c, c.shape))
    key = iter(jax.random.split(jax.random.key(seed), 64))
    t_ours = time_call(lambda: ours(next(key), c_jax), repeats=5)
    rng = np.random.default_rng(seed)
    t_ref = time_call(lambda: random_polyagamma(b, c, random_state=rng), repeats=5)
    table.add(
        f"PG({b:g}, c), n = {n:.0e}",
        n / t_ours.median / 1e6,
        n / t_ref.median / 1e6,
        t_ours.median / t_ref.median,
        t_ours.first,
    )


def accuracy(table: Table, b: float, c: float, n: int) -> None:
    d = PolyaGamma(b, c)
    mean, var = float(d.mean), float(d.variance)
    # Fourth central moment from the cumulants (autodiff of log Laplace transform).
    f = lambda t: -jnp.log(PolyaGamma(b, c).laplace_transform(t))  # noqa: E731
    k4 = float(jax.grad(jax.grad(jax.grad(jax.grad(f))))(0.0)) * -1.0
    mu4 = k4 + 3 * var**2
    ours = np.asarray(d.sample(jax.random.key(7), (n,)), dtype=np.float64)
    ref = random_polyagamma(b, c, size=n, random_state=np.random.default_rng(7))
    for name, x in (("numpyro_ext", ours), ("polyagamma (default)", ref)):
        se_mean, se_var = np.sqrt(var / n), np.sqrt((mu4 - var**2) / n)
        table.add(
            name,
            f"{(x.mean() - mean) / mean:+.2e}",
            f"{(x.mean() - mean) / se_mean:+.1f}",
            f"{(x.var() - var) / var:+.2e}",
            f"{(x.var() - var) / se_var:+.1f}",
        )


def main() -> None:
    jax.config.update("jax_enable_x64", True)
    speed = Table(
        f"Pólya-gamma draws/s, float64: ours on {jax.default_backend()}, polyagamma on CPU",
        [
            "case",
            "ours (M/s)",
            "polyagamma (M/s)",
            "time ratio ours/anchor",
            "ours first call (s)",
        ],
    )
    throughput(speed, 1.0, 1_000_000, 0)
    throughput(speed, 50.0, 100_000, 1)
    if jax.default_backend() != "cpu":  # an accelerator needs more work per call to be busy
        throughput(speed, 1.0, 10_000_000, 2)
        throughput(speed, 50.0, 1_000_000, 3)
    speed.print()
    acc = Table(
        "Accuracy at b = 3.5, c = 1 (n = 1e6): error vs closed form",
        ["sampler", "mean rel. error", "mean z", "variance rel. error", "variance z"],
    )
    accuracy(acc, 3.5, 1.0, 1_000_000)
    acc.print()
    print(environment())


if __name__ == "__main__":
    main()
