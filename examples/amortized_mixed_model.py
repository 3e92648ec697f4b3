"""Probabilistic PCA of the diabetes baseline measurements: global and local latents together.

Nine standardised baseline variables of scikit-learn's diabetes data (442 patients: age, body
mass index, blood pressure and six blood serum measurements) are explained by two factors,

    x_i = W z_i + eps_i,   z_i ~ N(0, I_2),   eps_i ~ N(0, sigma^2 I)

(probabilistic PCA, Tipping & Bishop 1999), with global loadings W, lower triangular with a
positive diagonal so that the rotation and signs of the factors are fixed (N(0, 1) and
half-normal priors), a global noise scale sigma ~ HalfNormal(1), and one local latent z_i per
patient. The guide treats them together: an ``AutoNormal`` for W and sigma inside an
``AutoGuideList``, next to an ``AmortizedMultivariateNormal`` whose encoder maps a patient's
measurements x_i to the Gaussian q(z_i | x_i). Given W and sigma the exact conditional
posterior of z_i is Gaussian with a mean linear in x_i, so a linear encoder is the right
family. 40 patients are held out and encoded without refitting.

Checks: the loadings against NUTS on the same model with z integrated out
(x_i ~ N(0, W W^T + sigma^2 I)), and the encoder's q(z_i | x_i) for the held-out patients
against the exact conditional posterior at the fitted W, sigma. The figures show the factor
scores coloured by disease progression one year later (which the model never sees) and a forest
plot of the loadings; ArviZ summaries come from ``numpyro_ext.arviz``.

    python examples/amortized_mixed_model.py --out examples/figures
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
import optax
from flax import nnx
from numpyro import handlers
from numpyro.infer import MCMC, NUTS, SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoGuideList, AutoNormal

from numpyro_ext.arviz import from_mcmc, from_svi
from numpyro_ext.guides import AmortizedMultivariateNormal, FullRankNormalFamily

# The first two variables anchor the factors: W[0, 1] = 0 and W[0, 0], W[1, 1] > 0, so
# factor 1 is the direction of s5 (log triglycerides) and factor 2 the part of s1 (total
# cholesterol) orthogonal to it.
FEATURES = ["s5", "s1", "age", "bmi", "bp", "s2", "s3", "s4", "s6"]
K = 2
GLOBALS = ["loadings_diag", "loadings_lower", "noise", "loadings"]


def load_diabetes(num_test: int = 40, seed: int = 0):
    """Standardised features (train statistics), disease progression, train/test split."""
    from sklearn.datasets import load_diabetes

    data = load_diabetes(scaled=False)
    x = data.data[:, [data.feature_names.index(f) for f in FEATURES]]
    order = np.random.default_rng(seed).permutation(len(x))
    test, train = order[:num_test], order[num_test:]
    mean, sd = x[train].mean(0), x[train].std(0)
    x = (x - mean) / sd
    return jnp.asarray(x[train]), jnp.asarray(x[test]), data.target[train], data.target[test]


def loadings_and_noise(p: int):
    """Sample the global latents and assemble the lower-triangular loadings ``(p, K)``."""
    diag = numpyro.sample("loadings_diag", dist.HalfNormal(1.0).expand([K]).to_event(1))
    rows, cols = np.tril_indices(p, -1, K)
    lower = numpyro.sample("loadings_lower", dist.Normal(0, 1).expand([rows.size]).to_event(1))
    loadings = jnp.zeros((p, K)).at[rows, cols].set(lower).at[np.arange(K), np.arange(K)].set(diag)
    loadings = numpyro.deterministic("loadings", loadings)
    noise = numpyro.sample("noise", dist.HalfNormal(1.0))
    return loadings, noise


def model(x):
    loadings, noise = loadings_and_noise(x.shape[1])
    with numpyro.plate("patients", x.shape[0]):
        z = numpyro.sample("z", dist.Normal(0, 1).expand([K]).to_event(1))
        numpyro.sample("x", dist.Normal(z @ loadings.T, noise).to_event(1), obs=x)


def marginal_model(x):
    """The same model with z_i integrated out, for NUTS."""
    loadings, noise = loadings_and_noise(x.shape[1])
    cov = loadings @ loadings.T + noise**2 * jnp.eye(x.shape[1])
    with numpyro.plate("patients", x.shape[0]):
        numpyro.sample("x", dist.MultivariateNormal(jnp.zeros(x.shape[1]), cov), obs=x)


def exact_conditional(loadings, noise, x):
    """Mean ``(n, K)`` and covariance ``(K, K)`` of ``p(z_i | x_i, W, sigma)``."""
    scaled = loadings / noise**2
    cov = jnp.linalg.inv(jnp.eye(K) + loadings.T @ scaled)
    return x @ scaled @ cov, cov


def fit_svi(x, steps: int, seed: int):
    guide = AutoGuideList(model)
    guide.append(AutoNormal(handlers.block(model, hide=["z", "loadings"]), init_scale=0.05))
    encoder = nnx.Linear(x.shape[1], FullRankNormalFamily().output_size(K), rngs=nnx.Rngs(seed))
    local = handlers.block(model, hide=GLOBALS)
    guide.append(AmortizedMultivariateNormal(local, encoder, plate="patients", inputs="x"))
    schedule = optax.exponential_decay(0.02, steps, 0.05)
    svi = SVI(model, guide, optax.adam(schedule), Trace_ELBO())
    result = svi.run(jax.random.key(seed), steps, x)
    return guide, result


def plot_scores(guide, params, x_train, x_test, y_train, y_test, exact_test):
    amortized = guide._guides[-1]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    z_train = np.asarray(amortized.median(params, x_train)["z"])
    z_test = np.asarray(amortized.median(params, x_test)["z"])
    vmin, vmax = np.min(y_train), np.max(y_train)
    points = axes[0].scatter(z_train[:, 0], z_train[:, 1], c=y_train, s=10, cmap="viridis",
                             vmin=vmin, vmax=vmax, label="training patients")  # fmt: skip
    axes[0].scatter(z_test[:, 0], z_test[:, 1], c=y_test, s=40, marker="X", cmap="viridis",
                    vmin=vmin, vmax=vmax, edgecolors="k", label="held-out patients")  # fmt: skip
    fig.colorbar(points, ax=axes[0], label="disease progression after one year")
    axes[0].set_xlabel("factor 1 (anchored on s5, log triglycerides)")
    axes[0].set_ylabel("factor 2 (anchored on s1, total cholesterol)")
    axes[0].set_title("encoder means of the factor scores")
    axes[0].legend(fontsize=8)
    mean, cov = exact_test
    sd = np.sqrt(np.diag(cov))
    for k in range(K):
        axes[1].errorbar(mean[:, k], z_test[:, k], xerr=sd[k], fmt="o", ms=3, alpha=0.7,
                         label=f"factor {k + 1}")  # fmt: skip
    lim = np.abs(z_test).max() * 1.1
    axes[1].plot([-lim, lim], [-lim, lim], "k", lw=0.8)
    axes[1].set_xlabel("exact E[z | x, W, sigma] at the fitted globals (bars: exact sd)")
    axes[1].set_ylabel("amortised encoder mean")
    axes[1].set_title("held-out patients: encoder vs exact conditional")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_loadings(trees):
    """Posterior means and 89 % intervals of the loadings, one panel per factor."""
    fig, axes = plt.subplots(1, K, figsize=(9, 4), sharey=True)
    y = np.arange(len(FEATURES))
    for offset, (label, tree) in zip([-0.15, 0.15], trees.items(), strict=True):
        draws = tree.posterior["loadings"].values.reshape(-1, len(FEATURES), K)
        low, high = np.quantile(draws, [0.055, 0.945], axis=0)
        for k, ax in enumerate(axes):
            mean = draws[..., k].mean(0)
            ax.errorbar(mean, y + offset, xerr=[mean - low[:, k], high[:, k] - mean], fmt="o",
                        ms=4, capsize=2, label=label)  # fmt: skip
    for k, ax in enumerate(axes):
        ax.axvline(0, color="k", lw=0.8)
        ax.set_title(f"loadings on factor {k + 1} (89 % intervals)")
    axes[0].set_yticks(y, FEATURES)
    axes[0].invert_yaxis()
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def main(out: Path, steps: int, seed: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    x_train, x_test, y_train, y_test = load_diabetes(seed=seed)
    print(f"{x_train.shape[0]} training and {x_test.shape[0]} held-out patients, "
          f"features {FEATURES}")  # fmt: skip
    kw = {
        "coords": {"feature": FEATURES, "factor": ["factor 1", "factor 2"]},
        "dims": {"loadings": ["feature", "factor"]},
    }

    start = time.perf_counter()
    guide, result = fit_svi(x_train, steps, seed)
    print(f"SVI: {steps} steps in {time.perf_counter() - start:.1f} s, "
          f"ELBO {-float(result.losses[-200:].mean()):.1f}")  # fmt: skip
    svi_tree = from_svi(guide, result.params, model_args=(x_train,), num_samples=2000, **kw)

    start = time.perf_counter()
    mcmc = MCMC(NUTS(marginal_model), num_warmup=500, num_samples=1000, num_chains=2,
                chain_method="vectorized", progress_bar=False)  # fmt: skip
    mcmc.run(jax.random.key(seed + 1), x_train)
    jax.block_until_ready(mcmc.get_samples())
    print(f"NUTS on the collapsed model: 2 x 1000 draws in {time.perf_counter() - start:.1f} s")
    nuts_tree = from_mcmc(mcmc, model_args=(x_train,), **kw)

    for name, tree in [("SVI (AutoNormal + amortised)", svi_tree), ("NUTS", nuts_tree)]:
        print(f"\n{name}:")
        print(azs.summary(tree, var_names=["loadings", "noise"], kind="stats").to_string())

    # The encoder against the exact conditional posterior of z at the fitted globals.
    medians = guide._guides[0].median(result.params)
    loadings = handlers.condition(handlers.seed(loadings_and_noise, 0), medians)(x_train.shape[1])
    exact_mean, exact_cov = exact_conditional(*loadings, x_test)
    q = guide._guides[-1].get_posterior(result.params, x_test)
    sd = jnp.sqrt(jnp.diag(exact_cov))
    error = float(jnp.sqrt(((q.mean - exact_mean) ** 2).mean(0)).max() / sd.min())
    print(f"\nheld-out patients: RMS of encoder mean - exact conditional mean = {error:.3f} "
          "exact posterior sd (worst factor)")  # fmt: skip
    print(
        f"exact conditional sd {np.asarray(sd).round(3)}, "
        f"encoder sd {np.asarray(jnp.sqrt(jnp.diagonal(q.covariance_matrix[0]))).round(3)}"
    )

    fig = plot_scores(guide, result.params, x_train, x_test, y_train, y_test,
                      (np.asarray(exact_mean), np.asarray(exact_cov)))  # fmt: skip
    fig.savefig(out / "mixed_model_scores.png", dpi=110, bbox_inches="tight")
    trees = {"SVI: AutoNormal + amortised": svi_tree, "NUTS, z integrated out": nuts_tree}
    plot_loadings(trees).savefig(out / "mixed_model_loadings.png", dpi=110, bbox_inches="tight")
    plt.close("all")
    print(f"figures in {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples/figures"))
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.out, args.steps, args.seed)
