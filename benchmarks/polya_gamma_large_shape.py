"""Large Pólya-gamma shapes: exact draws against the truncated gamma series (approximate_above).

For each shape ``b`` (a negative-binomial row's count plus dispersion), times a vector of
``PG(b, c)`` draws, ``c ~ N(0, 2^2)``, by the exact sampler (``PolyaGamma``: ``ceil(b / 2)``
series pieces per draw, the compiled CPU sampler where built) and by
``sample_polya_gamma_large_shape`` (64 exact gamma terms and a normal remainder), both jitted,
compile excluded, median of 3, in the same process; and checks the approximation's accuracy:
mean and standard deviation of 20 000 draws at ``c = 1`` against the closed forms (z-scores),
and where exact draws are affordable a two-sample Kolmogorov-Smirnov test of 20 000
approximate against 20 000 exact draws.

    python benchmarks/polya_gamma_large_shape.py
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from numpyro_ext.distributions import PolyaGamma
from numpyro_ext.infer.polya_gamma_sweep import sample_polya_gamma_large_shape

SHAPES = [201.0, 1e3, 1e4, 1e5, 1e6]
EXACT_PIECES = 2e6  # exact draws timed per shape: this many series pieces in all
ACCURACY_DRAWS = 20_000
KS_UP_TO = 1e3  # exact reference draws for the KS test up to this shape


def _median_time(fn, *args, repeats=3):
    fn(*args).block_until_ready()  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args).block_until_ready()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    jax.config.update("jax_enable_x64", True)
    exact = jax.jit(lambda key, b, c: PolyaGamma(b, c).sample(key))
    approx = jax.jit(sample_polya_gamma_large_shape)
    rows = []
    for b in SHAPES:
        n = int(max(10, EXACT_PIECES / np.ceil(b / 2)))
        c = 2.0 * jax.random.normal(jax.random.key(0), (n,))
        bs = jnp.full(n, b)
        t_exact = _median_time(exact, jax.random.key(1), bs, c)
        t_approx = _median_time(approx, jax.random.key(1), bs, c)
        m = ACCURACY_DRAWS
        ones, bm = jnp.ones(m), jnp.full(m, b)
        draws = np.asarray(approx(jax.random.key(2), bm, ones))
        ref = PolyaGamma(b, 1.0)
        mean, sd = float(ref.mean), float(np.sqrt(ref.variance))
        z_mean = (draws.mean() - mean) / (sd / np.sqrt(m))
        z_sd = (draws.std() / sd - 1.0) / np.sqrt(1.0 / (2 * m))
        ks = "-"
        if b <= KS_UP_TO:
            ref_draws = np.asarray(exact(jax.random.key(3), bm, ones))
            result = stats.ks_2samp(draws, ref_draws)
            ks = f"{result.statistic:.4f} (p = {result.pvalue:.2f})"
        rows.append((b, n, t_exact / n * 1e6, t_approx / n * 1e6, z_mean, z_sd, ks))
        print(*rows[-1], flush=True)
    load = os.getloadavg()[0]
    print(
        f"\nfloat64, CPU, load average {load:.1f}; per-draw times from vectors of n draws "
        f"(exact: {EXACT_PIECES:.0e} series pieces in all), compile excluded, median of 3\n"
    )
    print(
        "| b | n timed | exact (µs/draw) | approx. (µs/draw) | speed-up | mean z | sd z "
        "| KS vs exact (20 000 each) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for b, n, te, ta, zm, zs, ks in rows:
        print(
            f"| {b:g} | {n} | {te:.4g} | {ta:.3g} | {te / ta:.3g} | {zm:+.2f} | {zs:+.2f} | {ks} |"
        )


if __name__ == "__main__":
    main()
