"""Forward-KL amortised posterior estimation, checked against an exact posterior.

The simulator is the normal model with unknown mean and variance under its conjugate
normal-inverse-gamma prior,

    sigma2 ~ InverseGamma(a0, b0),  mu | sigma2 ~ N(m0, sigma2 / k0),  x_1..x_n ~ N(mu, sigma2),

whose posterior is normal-inverse-gamma again: exact, but not Gaussian (sigma2 is skewed, mu's
spread scales with sigma and its marginal is a Student t). ``AmortizedPosterior`` trains
q(theta | x) on 50 000 prior-predictive simulations, once with a full-rank Gaussian and once with
the default conditional neural spline flow over the unconstrained (log sigma2, mu); the encoder
reads the sample's mean and log standard deviation (sufficient for this model) through an MLP.
Training uses the estimator's defaults otherwise: standardised parameters and data, 10 % of the
simulations held out, early stopping after 20 epochs without improvement.

Checks, with the exact posterior as reference:

- the expected forward KL, E_x KL(p(theta | x) || q(theta | x)), over fresh simulations;
- calibration on 2000 fresh simulations: coverage of central credible intervals against their
  nominal level with binomial error bars, and simulation-based-calibration rank histograms;
- the amortised posterior against the exact one for an observed data set: the ten paired
  differences in hours of sleep of Student (1908) (Cushny & Peebles' soporific trial).

    python examples/amortized_posterior_estimation.py --out examples/figures
"""

import argparse
import time
from pathlib import Path

import arviz_stats as azs
import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import numpyro
import numpyro.distributions as dist
from arviz_base import from_dict
from flax import nnx

from numpyro_ext.amortization import ConditionalFlowFamily, FullRankNormalFamily
from numpyro_ext.infer import AmortizedPosterior, coverage
from numpyro_ext.infer.posterior_estimation import default_spline_flow

# Extra hours of sleep with drug 2 minus drug 1, ten patients (Student 1908, R's `sleep`).
SLEEP = np.array([1.2, 2.4, 1.3, 1.3, 0.0, 1.0, 1.8, 0.8, 4.6, 1.4])
A0, B0, M0, K0 = 3.0, 3.0, 0.0, 0.25
N_OBS = SLEEP.size


def model(x=None):
    sigma2 = numpyro.sample("sigma2", dist.InverseGamma(A0, B0))
    mu = numpyro.sample("mu", dist.Normal(M0, jnp.sqrt(sigma2 / K0)))
    with numpyro.plate("obs", N_OBS):
        numpyro.sample("x", dist.Normal(mu, jnp.sqrt(sigma2)), obs=x)


def exact_posterior(x):
    """Normal-inverse-gamma update: ``(a_n, b_n, m_n, k_n)`` for each data set ``(..., n)``."""
    n, mean = x.shape[-1], x.mean(-1)
    k_n = K0 + n
    m_n = (K0 * M0 + n * mean) / k_n
    a_n = A0 + n / 2
    b_n = B0 + 0.5 * ((x - mean[..., None]) ** 2).sum(-1) + K0 * n * (mean - M0) ** 2 / (2 * k_n)
    return a_n, b_n, m_n, k_n


def exact_log_density(sigma2, mu, x):
    """``log p(sigma2, mu | x)``."""
    a_n, b_n, m_n, k_n = exact_posterior(x)
    return dist.InverseGamma(a_n, b_n).log_prob(sigma2) + dist.Normal(
        m_n, jnp.sqrt(sigma2 / k_n)
    ).log_prob(mu)


def exact_sample(key, x, num):
    a_n, b_n, m_n, k_n = exact_posterior(x)
    k1, k2 = jax.random.split(key)
    sigma2 = dist.InverseGamma(a_n, b_n).sample(k1, (num,))
    return {"sigma2": sigma2, "mu": dist.Normal(m_n, jnp.sqrt(sigma2 / k_n)).sample(k2)}


class SummaryEncoder(nnx.Module):
    """MLP on the sample's mean and log standard deviation (permutation invariant)."""

    def __init__(self, n_out: int, hidden: int = 64, *, rngs: nnx.Rngs):
        self.hidden1 = nnx.Linear(2, hidden, rngs=rngs)
        self.hidden2 = nnx.Linear(hidden, hidden, rngs=rngs)
        # A zero read-out starts every family at its x-independent initial density.
        self.out = nnx.Linear(hidden, n_out, kernel_init=nnx.initializers.zeros, rngs=rngs)

    def __call__(self, x):
        s = jnp.stack([x.mean(-1), jnp.log(x.std(-1))], -1)
        return self.out(nnx.gelu(self.hidden2(nnx.gelu(self.hidden1(s)))))


def train(family, key, num_simulations, max_epochs):
    encoder = SummaryEncoder(family.output_size(2), rngs=nnx.Rngs(0))
    npe = AmortizedPosterior(model, encoder, observed="x", family=family)
    start = time.perf_counter()
    fit = npe.fit(key, num_simulations=num_simulations, max_epochs=max_epochs)
    seconds = time.perf_counter() - start
    return npe, fit, seconds


def expected_kl(npe, params, key, num=5000):
    """Mean and standard error of ``KL(p(theta | x) || q(theta | x))`` over ``x ~ p(x)``."""
    theta, x = npe.simulate(key, num)
    latents = npe.unflatten(theta)
    gap = exact_log_density(latents["sigma2"], latents["mu"], x) - npe.log_prob(params, latents, x)
    return float(gap.mean()), float(gap.std() / np.sqrt(num))


def plot_calibration(results, num_draws, num_datasets):
    levels = np.concatenate([np.linspace(0.05, 0.95, 19), [0.99]])
    names = ["log sigma2", "mu"]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for (label, ranks), colour in zip(results.items(), ["C0", "C3"], strict=True):
        observed, nominal = (np.asarray(a) for a in coverage(ranks, num_draws, levels))
        se = np.sqrt(nominal * (1 - nominal) / num_datasets)
        for j, name in enumerate(names):
            ax = axes[0, j]
            ax.errorbar(nominal, observed[:, j] - nominal, yerr=2 * se, fmt="o", ms=3,
                        color=colour, capsize=2, label=label)  # fmt: skip
            ax.set_title(f"coverage of central intervals, {name}")
            ax.set_xlabel("nominal level")
            ax.set_ylabel("observed - nominal (2 s.e. bars)")
            ax.axhline(0, color="k", lw=0.8)
            ax.legend(fontsize=8)
    bins, expected = 20, num_datasets / 20
    band = 2.58 * np.sqrt(num_datasets * (1 / bins) * (1 - 1 / bins))
    for j, name in enumerate(names):
        ax = axes[1, j]
        ax.axhspan(expected - band, expected + band, color="0.85", label="99 % band (uniform)")
        for (label, ranks), colour in zip(results.items(), ["C0", "C3"], strict=True):
            counts, edges = np.histogram(np.asarray(ranks[:, j]), bins, (0, num_draws + 1))
            ax.stairs(counts, edges, color=colour, label=label)
        ax.set_title(f"SBC ranks of {name} among {num_draws} draws")
        ax.set_xlabel("rank")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_observed(fits, x_obs, key):
    """Exact and amortised posteriors for one data set, in (mu, sigma)."""
    mu = np.linspace(-0.5, 3.6, 200)
    sigma = np.linspace(0.5, 2.6, 200)
    mm, ss = np.meshgrid(mu, sigma)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    colours = {"exact": "k", "full-rank Gaussian": "C0", "conditional flow": "C3"}
    styles = {"exact": "-", "full-rank Gaussian": "--", "conditional flow": ":"}
    x = jnp.asarray(x_obs)[None]
    densities = {"exact": exact_log_density(ss**2, mm, x_obs)}
    draws = {"exact": exact_sample(key, x_obs, 20_000)}
    for label, (npe, params) in fits.items():
        grid = {"sigma2": jnp.asarray(ss**2).ravel(), "mu": jnp.asarray(mm).ravel()}
        x_rep = jnp.broadcast_to(x, (grid["mu"].size, x_obs.size))
        densities[label] = npe.log_prob(params, grid, x_rep).reshape(mm.shape)
        sample = npe.sample_posterior(key, params, x, (20_000,))
        draws[label] = {k: v[:, 0] for k, v in sample.items()}
    for label, logp in densities.items():
        # p(mu, sigma) = p(mu, sigma2) * 2 sigma; contours at 1, 2, 3 "sigmas" below the mode.
        logp = np.asarray(logp) + np.log(2 * ss)
        levels = logp.max() - np.array([4.5, 2.0, 0.5])
        axes[0].contour(mm, ss, logp, levels=levels, colors=colours[label],
                        linestyles=styles[label])  # fmt: skip
        axes[0].plot([], [], color=colours[label], ls=styles[label], label=label)
    axes[0].set_xlabel("mu (hours)")
    axes[0].set_ylabel("sigma (hours)")
    axes[0].set_title("joint posterior, sleep data (log density\n0.5, 2 and 4.5 below its mode)")
    axes[0].legend(fontsize=8)
    a_n, b_n, m_n, k_n = exact_posterior(x_obs)
    t = dist.StudentT(2 * a_n, m_n, jnp.sqrt(b_n / (a_n * k_n)))
    axes[1].plot(mu, np.exp(t.log_prob(mu)), "k", label="exact (Student t)")
    sig_density = np.exp(dist.InverseGamma(a_n, b_n).log_prob(sigma**2)) * 2 * sigma
    axes[2].plot(sigma, sig_density, "k", label="exact")
    for label in fits:
        axes[1].hist(np.asarray(draws[label]["mu"]), 80, range=(mu[0], mu[-1]), density=True,
                     histtype="step", color=colours[label], label=label)  # fmt: skip
        s = np.sqrt(np.asarray(draws[label]["sigma2"]))
        axes[2].hist(s, 80, range=(sigma[0], sigma[-1]), density=True, histtype="step",
                     color=colours[label], label=label)  # fmt: skip
    axes[1].set_xlabel("mu (hours)")
    axes[1].set_title("marginal of mu")
    axes[2].set_xlabel("sigma (hours)")
    axes[2].set_title("marginal of sigma")
    for ax in axes[1:]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def main(out: Path, num_simulations: int, max_epochs: int, num_datasets: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    keys = jax.random.split(jax.random.key(0), 4)
    families = {
        "full-rank Gaussian": FullRankNormalFamily(init_scale=1.0),
        "conditional flow": ConditionalFlowFamily(context_dim=16, flow=default_spline_flow),
    }
    fits, ranks = {}, {}
    num_draws = 99
    for label, family in families.items():
        npe, fit, seconds = train(family, keys[0], num_simulations, max_epochs)
        print(f"{label}: trained on {num_simulations} simulations, {fit.num_epochs} epochs "
              f"(best {fit.best_epoch}), {seconds:.1f} s; validation loss "
              f"{float(fit.validation_losses[fit.best_epoch]):.3f}")  # fmt: skip
        kl, se = expected_kl(npe, fit.params, keys[1])
        print(f"  E_x KL(exact || q) over 5000 fresh simulations: {kl:.4f} +- {se:.4f} nats")
        ranks[label] = npe.rank_statistics(
            keys[2], fit.params, num_datasets=num_datasets, num_draws=num_draws
        )
        observed, nominal = coverage(ranks[label], num_draws, [0.5, 0.8, 0.95])
        se = np.sqrt(nominal * (1 - nominal) / num_datasets)
        for level, obs, nom, s in zip([0.5, 0.8, 0.95], observed, nominal, se, strict=True):
            print(f"  {level:.0%} intervals: coverage log sigma2 {float(obs[0]):.3f}, "
                  f"mu {float(obs[1]):.3f} (nominal {float(nom):.3f} +- {2 * s:.3f})")  # fmt: skip
        fits[label] = (npe, fit.params)

    npe, params = fits["conditional flow"]
    x_obs = jnp.asarray(SLEEP)
    draws = npe.sample_posterior(keys[3], params, x_obs[None], (4000,))
    posterior = {"mu": draws["mu"][None, :, 0], "sigma": jnp.sqrt(draws["sigma2"][None, :, 0])}
    tree = from_dict({"posterior": {k: np.asarray(v) for k, v in posterior.items()}})
    exact = exact_sample(keys[3], x_obs, 200_000)
    print("sleep data, conditional-flow posterior (exact mean / sd: "
          f"mu {float(exact['mu'].mean()):.3f} / {float(exact['mu'].std()):.3f}, sigma "
          f"{float(jnp.sqrt(exact['sigma2']).mean()):.3f} / "
          f"{float(jnp.sqrt(exact['sigma2']).std()):.3f}):")  # fmt: skip
    print(azs.summary(tree, kind="stats", round_to=3).to_string())

    plot_calibration(ranks, num_draws, num_datasets).savefig(
        out / "npe_calibration.png", dpi=110, bbox_inches="tight"
    )
    plot_observed(fits, SLEEP, keys[3]).savefig(
        out / "npe_sleep_posterior.png", dpi=110, bbox_inches="tight"
    )
    plt.close("all")
    print(f"figures in {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples/figures"))
    parser.add_argument("--simulations", type=int, default=50_000)
    parser.add_argument("--epochs", type=int, default=500, help="at most; early stopping")
    parser.add_argument("--datasets", type=int, default=2000, help="for calibration")
    args = parser.parse_args()
    main(args.out, args.simulations, args.epochs, args.datasets)
