"""Amortised posterior estimation: the sbi-style defaults against the previous defaults, by C2ST.

Two sbibm tasks with exact reference posteriors:

- ``gaussian_linear``: theta ~ N(0, 0.1 I_10), x | theta ~ N(theta, 0.1 I_10); the posterior
  is N(x / 2, 0.05 I) in closed form.
- ``two_moons``: theta ~ U(-1, 1)^2, a ~ U(-pi/2, pi/2), r ~ N(0.1, 0.01^2),
  x = (r cos a + 0.25 - |theta_1 + theta_2| / sqrt 2, r sin a + (theta_2 - theta_1) / sqrt 2);
  exact posterior draws by sampling (a, r) and solving for theta (the map is volume-preserving),
  keeping solutions inside the prior box, as sbibm does.

Each estimator is trained on 10^4 simulations, then for each of a few observations (simulated
from the prior with a fixed seed) 2000 posterior draws are compared with 2000 exact draws by
the classifier two-sample test as sbi computes it (:func:`c2st`: inputs z-scored with the
reference draws' mean and standard deviation, scikit-learn's MLPClassifier with two ReLU layers
of 10 x dim, adam, early stopping on a validation split, 5-fold cross-validated accuracy).
0.5 is a perfect match, 1.0 a complete mismatch.

Configurations:

- ``default``: ``AmortizedPosterior(model, observed="x")`` with every default (conditional
  neural spline flow on the standardised data, standardisation, 10 % validation split with
  early stopping after 20 epochs, batch 200, Adam 5e-4);
- ``previous default``: the defaults before: a full-rank Gaussian read off an MLP encoder (two
  tanh layers of 50), no standardisation, no validation, 2000 steps of batch 256, Adam 1e-3;
- ``previous default flow``: the same training with the previous default conditional flow
  (3-layer affine MAF, context of 16 from the same MLP).

    python benchmarks/posterior_estimation.py [--observations 3] [--draws 2000]
        [--max-epochs 300] [--jobs 3]
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from sklearn.model_selection import KFold, cross_val_score
from sklearn.neural_network import MLPClassifier

from numpyro_ext.amortization import ConditionalFlowFamily, FullRankNormalFamily
from numpyro_ext.infer import AmortizedPosterior

NUM_SIMULATIONS = 10_000


def gaussian_linear(x=None):
    theta = numpyro.sample("theta", dist.Normal(0.0, math.sqrt(0.1)).expand([10]).to_event(1))
    numpyro.sample("x", dist.Normal(theta, math.sqrt(0.1)).to_event(1), obs=x)


def gaussian_linear_reference(key, x, n):
    return x / 2 + math.sqrt(0.05) * jax.random.normal(key, (n, 10))


def _moon_noise(key, shape):
    k1, k2 = jax.random.split(key)
    a = jax.random.uniform(k1, shape, minval=-math.pi / 2, maxval=math.pi / 2)
    r = 0.1 + 0.01 * jax.random.normal(k2, shape)
    return jnp.stack([r * jnp.cos(a) + 0.25, r * jnp.sin(a)], -1)


def two_moons(x=None):
    theta = numpyro.sample("theta", dist.Uniform(-1.0, 1.0).expand([2]).to_event(1))
    a = numpyro.sample("a", dist.Uniform(-math.pi / 2, math.pi / 2))
    r = numpyro.sample("r", dist.Normal(0.1, 0.01))
    p = jnp.stack([r * jnp.cos(a) + 0.25, r * jnp.sin(a)], -1)
    mean = p + jnp.stack(
        [-jnp.abs(theta[..., 0] + theta[..., 1]), theta[..., 1] - theta[..., 0]], -1
    ) / math.sqrt(2)
    # A deterministic simulator: a tiny observation noise keeps x a sample site.
    numpyro.sample("x", dist.Normal(mean, 1e-4).to_event(1), obs=x)


def two_moons_reference(key, x, n):
    draws, have = [], 0
    while have < n:
        key, k_noise, k_sign = jax.random.split(key, 3)
        q = x - _moon_noise(k_noise, (4 * n,))
        s = -math.sqrt(2) * q[:, 0]  # |theta_1 + theta_2|
        d = math.sqrt(2) * q[:, 1]  # theta_2 - theta_1
        sign = jnp.where(jax.random.bernoulli(k_sign, 0.5, (4 * n,)), 1.0, -1.0)
        total = sign * s
        theta = jnp.stack([(total - d) / 2, (total + d) / 2], -1)
        ok = (s >= 0) & jnp.all(jnp.abs(theta) < 1, -1)
        draws.append(np.asarray(theta[ok]))
        have += int(ok.sum())
    return np.concatenate(draws)[:n]


def c2st(reference, estimate, seed=1, folds=5):
    """Classifier two-sample test: cross-validated accuracy of an MLP classifier.

    The settings of sbi's ``c2st``: inputs z-scored by the reference draws, an
    MLP of two ReLU layers of ``10 x dim`` trained by adam, 5-fold accuracy. The classifier
    stops early on a 10 % validation split (50 epochs without improvement, at most 1000), as
    in sbi; sbibm's original trains on the training loss for up to 10 000 epochs, which costs
    minutes per observation on a loaded 2-core machine and overfits when the samples match.
    """
    reference, estimate = np.asarray(reference), np.asarray(estimate)
    loc, scale = reference.mean(0), reference.std(0)
    data = np.concatenate([(reference - loc) / scale, (estimate - loc) / scale])
    target = np.concatenate([np.zeros(len(reference)), np.ones(len(estimate))])
    dim = data.shape[1]
    clf = MLPClassifier(
        activation="relu", hidden_layer_sizes=(10 * dim, 10 * dim), max_iter=1000,
        solver="adam", early_stopping=True, n_iter_no_change=50, random_state=seed,
    )  # fmt: skip
    cv = KFold(n_splits=folds, shuffle=True, random_state=seed)
    return float(np.mean(cross_val_score(clf, data, target, cv=cv, scoring="accuracy")))


def _mlp(key, sizes):
    params = []
    keys = jax.random.split(key, len(sizes) - 1)
    for k, (m, n) in zip(keys, itertools.pairwise(sizes), strict=True):
        params.append({"w": jax.random.normal(k, (m, n)) / math.sqrt(m), "b": jnp.zeros(n)})
    params[-1]["w"] = params[-1]["w"] * 0.0  # start at the family's x-independent density
    return params


def _apply(params, x):
    h = x.reshape((x.shape[0], -1))
    for layer in params[:-1]:
        h = jnp.tanh(h @ layer["w"] + layer["b"])
    return h @ params[-1]["w"] + params[-1]["b"]


def estimators(model, data_dim, dim):
    key = jax.random.key(3)
    full_rank = FullRankNormalFamily(init_scale=1.0)
    flow = ConditionalFlowFamily(context_dim=16)
    previous = {"num_steps": 2000, "batch_size": 256, "learning_rate": 1e-3,
                "validation_fraction": 0.0}  # fmt: skip
    return {
        "default": (AmortizedPosterior(model, observed="x", parameters=["theta"]), {}),
        "previous default": (
            AmortizedPosterior(
                model, _apply, observed="x", parameters=["theta"], family=full_rank,
                encoder_params=_mlp(key, [data_dim, 50, 50, full_rank.output_size(dim)]),
                standardize=False,
            ),
            previous,
        ),
        "previous default flow": (
            AmortizedPosterior(
                model, _apply, observed="x", parameters=["theta"], family=flow,
                encoder_params=_mlp(key, [data_dim, 50, 50, 16]), standardize=False,
            ),
            previous,
        ),
    }  # fmt: skip


TASKS = {
    "gaussian_linear": (gaussian_linear, gaussian_linear_reference, 10, 10),
    "two_moons": (two_moons, two_moons_reference, 2, 2),
}


def run(task: str, label: str, num_observations: int, num_draws: int, max_epochs: int | None):
    """Fit one configuration on one task and score it on each observation."""
    model, reference, data_dim, dim = TASKS[task]
    npe = AmortizedPosterior(model, observed="x", parameters=["theta"])
    _, observations = npe.simulate(jax.random.key(100), num_observations)
    estimator, options = estimators(model, data_dim, dim)[label]
    if max_epochs is not None and label == "default":
        options = {**options, "max_epochs": max_epochs}
    start = time.perf_counter()
    fit = estimator.fit(jax.random.key(0), num_simulations=NUM_SIMULATIONS, **options)
    seconds = time.perf_counter() - start
    scores = []
    for j in range(num_observations):
        x = observations[j]
        ref = reference(jax.random.key(200 + j), x, num_draws)
        est = estimator.sample_posterior(
            jax.random.key(300 + j), fit.params, x[None], (num_draws,)
        )["theta"][:, 0]
        scores.append(c2st(ref, est))
    print(f"{task:16s} {label:22s} C2ST {np.mean(scores):.3f} {np.round(scores, 3)} "
          f"epochs {fit.num_epochs} fit {seconds:.0f} s", flush=True)  # fmt: skip
    return task, label, scores, fit.num_epochs, seconds


def main(
    num_observations: int,
    num_draws: int,
    configs: list[str],
    tasks: list[str],
    max_epochs: int | None = None,
    jobs: int = 1,
) -> None:
    todo = [(task, label) for task in TASKS if task in tasks for label in configs]
    args = (num_observations, num_draws, max_epochs)
    if jobs > 1:  # one process per configuration, `jobs` at a time
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(jobs, mp_context=context) as pool:
            futures = [pool.submit(run, task, label, *args) for task, label in todo]
            rows = [future.result() for future in futures]
    else:
        rows = [run(task, label, *args) for task, label in todo]
    print()
    print(f"C2ST at {NUM_SIMULATIONS} simulations, {num_draws} draws per observation, mean over "
          f"{num_observations} observations (0.5 = exact); default training capped at "
          f"{max_epochs or 2000} epochs; load average {os.getloadavg()[0]:.1f}\n")  # fmt: skip
    print("| task | configuration | C2ST (mean) | per observation | epochs | fit (s) |")
    print("|---|---|---|---|---|---|")
    for task, label, scores, epochs, seconds in rows:
        per = ", ".join(f"{s:.3f}" for s in scores)
        print(f"| {task} | {label} | {np.mean(scores):.3f} | {per} | {epochs} | {seconds:.0f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--observations", type=int, default=3)
    parser.add_argument("--draws", type=int, default=2000)
    configs = ["default", "previous default", "previous default flow"]
    parser.add_argument("--configs", nargs="*", default=configs)
    parser.add_argument("--tasks", nargs="*", default=list(TASKS))
    parser.add_argument("--max-epochs", type=int, default=None, help="cap of the default's fit")
    parser.add_argument("--jobs", type=int, default=1, help="configurations fitted at once")
    args = parser.parse_args()
    main(args.observations, args.draws, args.configs, args.tasks, args.max_epochs, args.jobs)
