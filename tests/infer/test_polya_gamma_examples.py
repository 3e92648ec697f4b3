"""Each Pólya-gamma example's model, on a small data set: PolyaGammaGibbs against NUTS.

The models and data generators are the examples' own (loaded from ``examples/``), so a change
to an example is tested here. NUTS runs on the un-augmented model; the two posteriors must agree
in every scalar's mean and standard deviation within ``K`` combined Monte Carlo standard errors,
each from arviz-stats (``mcse``, ESS-based, ``method="mean"`` / ``"sd"``) of its own run.
"""

import importlib.util
from pathlib import Path

import arviz_stats
import jax
import numpy as np
from numpyro.infer import MCMC, NUTS, Gibbs, HMCGibbs

from numpyro_ext.infer import PolyaGammaGibbs
from tests.infer.conftest import SHARES_HIERARCHICAL_REFERENCE

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# two-sided normal tail beyond 4.5 sigma: 7e-6 per comparison, < 1e-3 over all comparisons here
K = 4.5


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(kernel, args, seed, num_warmup, num_samples, num_chains=1):
    mcmc = MCMC(kernel, num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
                chain_method="vectorized", progress_bar=False)  # fmt: skip
    mcmc.run(jax.random.key(seed), *args)
    return mcmc.get_samples(group_by_chain=True)


def run_pg(model, args, seed, num_samples=1500, burn_in=50):
    """Two vectorised PolyaGammaGibbs chains. Gibbs needs no adaptation, so instead of a warmup
    phase (compiled separately by MCMC) the first ``burn_in`` draws are dropped."""
    samples = run(PolyaGammaGibbs(model), args, seed, 0, burn_in + num_samples, 2)
    return {k: v[:, burn_in:] for k, v in samples.items()}


def assert_same_posterior(samples, reference, names):
    """Means and sds of every scalar of ``names`` agree within ``K`` combined MCSEs."""
    for name in names:
        a, b = (np.asarray(s[name], float) for s in (samples, reference))
        a, b = (x.reshape(*x.shape[:2], -1) for x in (a, b))  # (chain, draw, scalar)
        for method, statistic in (("mean", np.mean), ("sd", np.std)):
            mcse = [np.atleast_1d(arviz_stats.mcse(x, method=method)) for x in (a, b)]
            z = (statistic(a, axis=(0, 1)) - statistic(b, axis=(0, 1))) / np.hypot(*mcse)
            assert np.all(np.abs(z) < K), (name, method, np.round(z, 2))


def test_polynomial_logistic_example_matches_nuts():
    # the example's own data: 128 points, degree-3 basis, prior precision 2
    from numpyro_ext.demo.sections.augmentation import polynomial_data, polynomial_logistic

    _, Phi, y = polynomial_data(0)
    samples = run_pg(polynomial_logistic, (Phi, y), 1)
    reference = run(NUTS(polynomial_logistic), (Phi, y), 2, 300, 2000)
    assert_same_posterior(samples, reference, ["beta"])


def test_negative_binomial_example_matches_nuts():
    example = load_example("pg_negative_binomial")
    args = example.data(seed=1, n=40)
    samples = run_pg(example.model, args, 1)
    reference = run(NUTS(example.model), args, 2, 300, 2000)
    assert_same_posterior(samples, reference, ["beta"])


def test_gp_classification_example_matches_nuts():
    # 20 function values under the example's GP prior; NUTS adapts a dense mass matrix for them
    example = load_example("pg_gp_classification")
    args = example.data(seed=1, n=20)
    samples = run_pg(example.model, args, 1)
    reference = run(NUTS(example.model, dense_mass=True), args, 2, 300, 2000)
    assert_same_posterior(samples, reference, ["f"])


@SHARES_HIERARCHICAL_REFERENCE
def test_hierarchical_example_gibbs_composite_matches_nuts(hierarchical):
    model, args, reference = hierarchical
    kernel = Gibbs([(PolyaGammaGibbs(model), ["a", "b"]), (NUTS(model), None)])
    samples = run(kernel, args, 3, 200, 2000)
    assert_same_posterior(samples, reference, ["tau", "a", "b"])


@SHARES_HIERARCHICAL_REFERENCE
def test_hierarchical_example_hmcgibbs_matches_nuts(hierarchical):
    model, args, reference = hierarchical
    update = PolyaGammaGibbs(model).gibbs_fn(*args)
    kernel = HMCGibbs(NUTS(model), gibbs_fn=update, gibbs_sites=["a", "b"])
    samples = run(kernel, args, 4, 200, 2000)
    assert_same_posterior(samples, reference, ["tau", "a", "b"])
