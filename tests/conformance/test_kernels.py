"""Every MCMC kernel the project ships, through ``numpyro.infer.mcmc.MCMCKernel``'s contract.

A new kernel is tested by adding one line to ``KERNELS``: a name, a factory taking the model,
the problem it samples (a small model with an exact posterior by quadrature), and whether it
composes as a block of ``numpyro.infer.Gibbs`` and as the update of ``HMCGibbs`` (a kernel that
samples every latent site itself cannot; it must then be refused by Gibbs with NumPyro's own
error about ``refresh`` and offer no ``gibbs_fn``).

Tolerances: posterior means are compared with the quadrature values within 4.5 Monte Carlo
standard errors, ``sd / sqrt(ESS)`` with ESS from ``numpyro.diagnostics``; a negative control
shifts the reference by 10 standard errors and must fail.
"""

import ast
import pathlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.diagnostics import effective_sample_size
from numpyro.infer import MCMC, NUTS, Gibbs, HMCGibbs
from numpyro.infer.mcmc import MCMCKernel

from numpyro_ext.infer import CollapsedPolyaGammaGibbs, PolyaGammaGibbs

X = np.array([1.0, -1.0, 2.0, 0.5, -0.3, 1.5, -2.0, 0.8])
Y = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0])
GRID = np.linspace(-6.0, 6.0, 1201)
SCALES = np.linspace(0.005, 5.0, 1000)


def slope_model(x, y):
    """``beta ~ N(0, 1)`` (an integer prior), ``y ~ Bernoulli(logits = beta x)``."""
    beta = numpyro.sample("beta", dist.Normal(0, 1))
    numpyro.sample("y", dist.Bernoulli(logits=beta * x), obs=y)


def scale_model(x, y):
    """``tau ~ HalfNormal(1)``, ``beta ~ N(0, tau)``, ``y ~ Bernoulli(logits = beta x)``."""
    tau = numpyro.sample("tau", dist.HalfNormal(1.0))
    beta = numpyro.sample("beta", dist.Normal(0.0, tau))
    numpyro.sample("y", dist.Bernoulli(logits=beta * x), obs=y)


def _loglik(beta):
    psi = beta[..., None] * X
    return (Y * psi - np.logaddexp(0.0, psi)).sum(-1)


def _moments(log_w, values):
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    return {k: ((w * v).sum(), np.sqrt((w * v * v).sum() - (w * v).sum() ** 2))
            for k, v in values.items()}  # fmt: skip


def slope_posterior():
    return _moments(_loglik(GRID) - 0.5 * GRID**2, {"beta": GRID})


def scale_posterior():
    tau, beta = np.meshgrid(SCALES, GRID, indexing="ij")
    log_w = -0.5 * tau**2 - np.log(tau) - 0.5 * (beta / tau) ** 2 + _loglik(beta)
    return _moments(log_w, {"tau": tau, "beta": beta})


class Problem(NamedTuple):
    model: object
    posterior: object
    gaussian: tuple


PROBLEMS = {
    "slope": Problem(slope_model, slope_posterior, ("beta",)),
    "scale": Problem(scale_model, scale_posterior, ("beta",)),
}


class Entry(NamedTuple):
    factory: object
    problem: str
    composes: bool


KERNELS = {
    "PolyaGammaGibbs": Entry(PolyaGammaGibbs, "slope", True),
    "CollapsedPolyaGammaGibbs": Entry(CollapsedPolyaGammaGibbs, "scale", False),
}


@pytest.fixture(params=sorted(KERNELS), scope="module")
def entry(request):
    return KERNELS[request.param]


def _args():
    return jnp.asarray(X), jnp.asarray(Y)


def assert_matches_posterior(samples, posterior, sites, k=4.5):
    for site in sites:
        draws = np.asarray(samples[site])  # (chains, draws)
        mean, sd = posterior[site]
        ess = float(effective_sample_size(draws))
        se = sd / np.sqrt(ess)
        assert abs(draws.mean() - mean) < k * se, (site, draws.mean(), mean, se, ess)


def test_init_and_sample_keep_the_state_structure(entry):
    problem = PROBLEMS[entry.problem]
    kernel = entry.factory(problem.model)
    assert isinstance(kernel, MCMCKernel)
    assert kernel.sample_field in kernel.default_fields
    state = kernel.init(jax.random.key(0), 5, None, _args(), {})
    new = jax.jit(lambda s: kernel.sample(s, _args(), {}))(state)  # as MCMC runs it
    assert jax.tree.structure(new) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(new), strict=True):
        assert jnp.shape(a) == jnp.shape(b) and jnp.result_type(a) == jnp.result_type(b)
    z = getattr(new, kernel.sample_field)
    assert set(problem.gaussian) <= set(z)
    assert set(kernel.postprocess_fn(_args(), {})(z)) >= set(z)
    assert isinstance(kernel.get_diagnostics_str(new), str)
    assert kernel.model is problem.model


@pytest.mark.parametrize("chain_method", ["vectorized", "sequential"])
def test_mcmc_chains_sample_the_exact_posterior(entry, chain_method):
    problem = PROBLEMS[entry.problem]
    mcmc = MCMC(entry.factory(problem.model), num_warmup=200, num_samples=1500, num_chains=2,
                chain_method=chain_method, progress_bar=False)  # fmt: skip
    mcmc.run(jax.random.key(1), *_args())
    samples = mcmc.get_samples(group_by_chain=True)
    assert samples["beta"].shape == (2, 1500)
    posterior = problem.posterior()
    assert_matches_posterior(samples, posterior, posterior)
    # negative control: the same draws against a posterior shifted by 10 standard errors
    mean, sd = posterior["beta"]
    ess = float(effective_sample_size(np.asarray(samples["beta"])))
    with pytest.raises(AssertionError):
        assert_matches_posterior(samples, {"beta": (mean + 10 * sd / np.sqrt(ess), sd)}, ["beta"])


def test_composition_inside_gibbs_and_hmcgibbs(entry):
    """A Gaussian block of the scale model, the scale by NUTS: exact posterior, both ways.

    A kernel that samples the whole model itself is refused by Gibbs (no ``refresh``) and has
    no ``gibbs_fn``.
    """
    problem = PROBLEMS["scale"]
    model = problem.model
    if not entry.composes:
        with pytest.raises(ValueError, match="refresh"):
            Gibbs([(entry.factory(model), ["beta"]), (NUTS(model), None)])
        assert not hasattr(entry.factory(model), "gibbs_fn")
        return
    posterior = problem.posterior()
    composite = Gibbs([(entry.factory(model), ["beta"]), (NUTS(model), None)])
    hmc_gibbs = HMCGibbs(
        NUTS(model), gibbs_fn=entry.factory(model).gibbs_fn(*_args()), gibbs_sites=["beta"]
    )
    for kernel in (composite, hmc_gibbs):
        mcmc = MCMC(kernel, num_warmup=200, num_samples=1000, progress_bar=False)
        mcmc.run(jax.random.key(2), *_args())
        samples = mcmc.get_samples(group_by_chain=True)
        assert_matches_posterior(samples, posterior, ["beta", "tau"])


def test_kernel_modules_use_no_private_names_of_other_modules():
    """Composition through public names: no ``from numpyro_ext... import _name`` across the
    kernel modules, and no reads of NumPyro's private distribution attributes."""
    root = pathlib.Path(__file__).parents[2] / "numpyro_ext"
    files = [root / "handlers.py", *sorted((root / "infer").glob("*.py"))]
    for path in files:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("numpyro"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, (path.name, node.module, private)
            if isinstance(node, ast.Attribute) and node.attr in {"_mask", "_validate_args"}:
                raise AssertionError(f"{path.name} reads private attribute {node.attr}")
