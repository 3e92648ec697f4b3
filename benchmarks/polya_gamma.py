"""Pólya-gamma sampling: numpyro_ext against the `polyagamma` C package (default, "hybrid").

Throughput (draws per second) of PG(b, c), c ~ N(0, 3^2), for b in {1, 2.5, 50, 1000}: ours
(`sample_polya_gamma` under `jit`, the compiled CPU sampler on CPU) and polyagamma's default,
timed alternately in the same process, both on one thread, compile time excluded (reported
apart as "ours first call"). The pure-JAX sampler (the path used on GPUs) is timed too for
b <= 2.5. Then the accuracy row: mean and variance errors of each sampler at b = 3.5, c = 1
against the closed forms, in units of their Monte Carlo standard errors (variance SE from the
fourth cumulant).

polyagamma's default picks its method by b: Devroye (exact) for b = 1, its alternate sampler
for non-integer b < 8 (biased at small c, zoj613/polyagamma#133), the saddle-point
approximation for 25 <= b <= 50 and a normal approximation for b > 50. Ours is exact at every b,
with work linear in b.
"""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from harness import Table, environment
from polyagamma import random_polyagamma

from numpyro_ext.distributions import PolyaGamma, sample_polya_gamma

CASES = [(1.0, 1_000_000), (2.5, 300_000), (50.0, 30_000), (1000.0, 3_000)]
REFERENCE_METHOD = {1.0: "devroye", 2.5: "alternate", 50.0: "saddle (approx.)"}
REPEATS = 7


def _timed(fn) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def interleaved(fns: dict, repeats: int = REPEATS) -> tuple[dict, dict]:
    """First-call time of each function, then the median of ``repeats`` alternating calls."""
    first = {name: _timed(fn) for name, fn in fns.items()}
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(_timed(fn))
    return first, {name: statistics.median(t) for name, t in times.items()}


def throughput(table: Table, b: float, n: int, seed: int) -> None:
    c = np.random.default_rng(seed).normal(0.0, 3.0, n)
    c_jax = jnp.asarray(c)
    keys = iter(jax.random.split(jax.random.key(seed), 4 * REPEATS))
    rng = np.random.default_rng(seed)
    # c is an argument, not a closed-over constant, so XLA does not constant-fold over it.
    ours = jax.jit(lambda key, c: sample_polya_gamma(key, b, c))
    fns = {
        "ours": lambda: ours(next(keys), c_jax),
        "ref": lambda: random_polyagamma(b, c, random_state=rng),
    }
    if b <= 2.5:
        pure = jax.jit(lambda key, c: sample_polya_gamma(key, b, c, implementation="jax"))
        fns["jax"] = lambda: pure(next(keys), c_jax)
    first, median = interleaved(fns)
    table.add(
        f"PG({b:g}, c), n = {n:.0e}",
        n / median["ours"] / 1e6,
        n / median["ref"] / 1e6,
        median["ref"] / median["ours"],
        REFERENCE_METHOD.get(b, "normal (approx.)"),
        n / median["jax"] / 1e6 if "jax" in median else "-",
        first["ours"],
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
        f"Pólya-gamma draws/s, float64, c ~ N(0, 3²): ours on {jax.default_backend()}, "
        "polyagamma on CPU, one thread each",
        [
            "case",
            "ours (M/s)",
            "polyagamma (M/s)",
            "ours / polyagamma (draws/s)",
            "polyagamma method",
            "ours, pure JAX (M/s)",
            "ours first call (s)",
        ],
    )
    for i, (b, n) in enumerate(CASES):
        throughput(speed, b, n, i)
    if jax.default_backend() != "cpu":  # an accelerator needs more work per call to be busy
        throughput(speed, 1.0, 10_000_000, 10)
        throughput(speed, 50.0, 1_000_000, 11)
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
