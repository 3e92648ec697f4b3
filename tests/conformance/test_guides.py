"""Every guide of the library through NumPyro's AutoGuide contract, on conjugate problems.

Modelled on NumPyro's ``tests/infer/test_autoguide.py``: one list of guides, each checked
against a closed-form posterior and through the round trips a NumPyro user relies on
(``sample_posterior`` with ``sample_shape``, ``median``, ``quantiles``, ``Predictive``,
``AutoGuideList``, ``Trace_ELBO`` / ``TraceMeanField_ELBO`` / ``RenyiELBO``). A new guide is
one line in ``GUIDES``: a factory ``model -> guide``, its conjugate problem and, when the
guide family contains the exact posterior, a function setting its parameters there; a guide
that trains with another objective names it (``loss``, ``optim``: the implicit guides use
``AdversarialELBO``), and a check that cannot apply to a family is listed in ``limits`` with
the reason, which the test reports as its skip reason (the same reason the guide's docs page
gives). There are no expected failures: a check either applies and passes or is a documented
limit.

The two conjugate problems:

- ``LINEAR``: local latents ``z_i ~ N(0, I_2)``, ``x_i | z_i ~ N(W z_i + b, I_3)`` with
  orthogonal columns of ``W`` (``W^T W = 1.25 I``), so the posterior is
  ``N(mu_i, I / 2.25)`` with ``mu_i = W^T (x_i - b) / 2.25`` and the evidence is
  ``x_i ~ N(b, W W^T + I)``. Diagonal, full-rank and flow guides all contain it.
- ``GP``: GP regression ``f ~ GP(SE, X)``, ``y ~ N(f, s^2)``; with inducing points at the
  data a sparse GP guide contains the exact posterior ``N(K_e (K_e + s^2 I)^{-1} y, ...)``.
  ``K_e = K + eps I`` is the prior the model's ``GaussianProcess`` factors (its jitter
  ``eps = 1e-6``); it is not negligible here: the smallest eigenvalue of ``K`` is ``5e-6``.

The exact parameters of the sparse GP guides account for both jitters (the prior's, and
``Kuu + jitter I`` in the guide): ignoring them moves the posterior mean by ``1e-5`` and single
log-weights by ``0.1``.

Two exact identities test a guide's density without training: at the exact posterior
``log p(x, z) - log q(z)`` equals ``log p(x)`` for every draw (zero variance, checked to
1e-6), and for any parameters ``E_q[p(x, z) / q(z)] = p(x)`` (checked to 4 Monte Carlo
standard errors).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro.infer import SVI, Predictive, RenyiELBO, Trace_ELBO, TraceMeanField_ELBO
from numpyro.infer.autoguide import AutoGuideList

from numpyro_ext.distributions import GaussianProcess
from numpyro_ext.gp import SquaredExponential
from numpyro_ext.guides import (
    ODVGP,
    SOLVEGP,
    AmortizedFlow,
    AmortizedImplicit,
    AmortizedMultivariateNormal,
    AmortizedNormal,
    AutoFlow,
    ImplicitGuide,
    SparseGP,
)
from numpyro_ext.infer import AdversarialELBO, adversarial_optimizer

# ----- conjugate problems ---------------------------------------------------------------------

W = np.array([[1.0, 0.5], [0.5, -1.0], [0.0, 0.0]])
B = np.array([0.1, -0.2, 0.3])
POST_PRECISION = 1.0 + 1.25  # I + W^T W / s^2 with s = 1
POST_SD = 1.0 / math.sqrt(POST_PRECISION)


def linear_model(x):
    with numpyro.plate("data", x.shape[0]):
        z = numpyro.sample("z", dist.Normal(0, 1).expand([2]).to_event(1))
        numpyro.sample("x", dist.Normal(z @ W.T + B, 1.0).to_event(1), obs=x)


def joint_linear_model(x):
    """The same joint density with no plate: the form for guides of all latents at once.

    NumPyro's RenyiELBO splits the bound over the plates common to every model site, which
    assumes the guide factorises over them; a joint guide (AutoFlow, AutoDiagonalNormal, ...)
    does not, so it meets the plated model's RenyiELBO only in this form.
    """
    z = numpyro.sample("z", dist.Normal(0, 1).expand([x.shape[0], 2]).to_event(2))
    numpyro.sample("x", dist.Normal(z @ W.T + B, 1.0).to_event(2), obs=x)


GP_X = np.linspace(0.0, 1.0, 5)
GP_NOISE = 0.3


def gp_model(X, y=None):
    f = numpyro.sample("f", GaussianProcess(SquaredExponential(), X))
    with numpyro.plate("obs", X.shape[0]):
        numpyro.sample("y", dist.Normal(f, GP_NOISE), obs=y)


@dataclass(frozen=True)
class Problem:
    model: Callable
    args: Callable[[], tuple]  # the observed data, as model arguments
    site: str  # the latent site
    observed: str  # the observed site
    posterior: Callable[[], tuple[np.ndarray, np.ndarray]]  # exact marginal mean and sd
    log_evidence: Callable[[], float]


def _linear_args():
    return (jnp.asarray(np.random.default_rng(0).normal(size=(3, 3)) * 1.5),)


def _linear_posterior():
    (x,) = _linear_args()
    mean = (np.asarray(x) - B) @ W / POST_PRECISION
    return mean, np.full_like(mean, POST_SD)


def _linear_evidence():
    (x,) = _linear_args()
    marginal = dist.MultivariateNormal(jnp.asarray(B), jnp.asarray(W @ W.T + np.eye(3)))
    return float(marginal.log_prob(x).sum())


def _gp_args():
    return (jnp.asarray(GP_X), jnp.asarray(np.sin(4 * GP_X)))


def _gp_cov():
    """``K(X, X)`` of the kernel, without jitter."""
    return np.asarray(SquaredExponential()(jnp.asarray(GP_X), jnp.asarray(GP_X)))


def _gp_prior_cov():
    """The model's prior covariance: ``K + eps I``, as its ``GaussianProcess`` factors it."""
    eps = GaussianProcess(SquaredExponential(), jnp.asarray(GP_X)).jitter
    return _gp_cov() + eps * np.eye(len(GP_X))


def _gp_posterior_cov():
    _, y = _gp_args()
    K = _gp_prior_cov()
    A = K @ np.linalg.inv(K + GP_NOISE**2 * np.eye(len(GP_X)))
    return A @ np.asarray(y), K - A @ K


def _gp_posterior():
    mean, cov = _gp_posterior_cov()
    return mean, np.sqrt(np.diag(cov))


def _gp_evidence():
    _, y = _gp_args()
    cov = jnp.asarray(_gp_prior_cov() + GP_NOISE**2 * np.eye(len(GP_X)))
    return float(dist.MultivariateNormal(jnp.zeros(len(GP_X)), cov).log_prob(y))


LINEAR = Problem(linear_model, _linear_args, "z", "x", _linear_posterior, _linear_evidence)
JOINT = Problem(joint_linear_model, _linear_args, "z", "x", _linear_posterior, _linear_evidence)
GP = Problem(gp_model, _gp_args, "f", "y", _gp_posterior, _gp_evidence)

# ----- the exact posterior in each guide's own parametrisation -------------------------------


def _inv_softplus(y):
    return y + np.log(-np.expm1(-y))


def _linear_encoder(params, x):
    return x @ params["w"] + params["b"]


def _exact_autoflow(guide, params):
    mean, sd = LINEAR.posterior()
    return {**params, "auto_loc": jnp.asarray(mean.ravel()), "auto_scale": jnp.asarray(sd.ravel())}


def _exact_encoder(diag_columns, init_scale=1.0):
    """Linear encoder giving loc ``(x - b) W / 2.25`` and the posterior sd on ``diag_columns``."""

    def exact(guide, params):
        width = params["amortized_encoder$params"]["b"].shape[0]
        w = np.zeros((3, width))
        w[:, :2] = W / POST_PRECISION
        b = np.zeros(width)
        b[:2] = -B @ W / POST_PRECISION
        b[list(diag_columns)] = _inv_softplus(POST_SD) - _inv_softplus(init_scale)
        return {**params, "amortized_encoder$params": {"w": jnp.asarray(w), "b": jnp.asarray(b)}}

    return exact


def _exact_sparse_gp(guide, params):
    """Whitened ``q(v)``, ``u = L v``, with inducing points at the data.

    The guide's ``q(f)`` is ``N(A u_mean, K - A K + A S_u A^T)`` with ``A = K Kuu^{-1}``,
    ``Kuu = K + jitter I = L L^T`` (its own jitter) and ``K`` itself as ``Kfu`` and ``Kff``;
    solving for ``u_mean`` and ``S_u`` puts it at the model's posterior exactly (all the
    matrices share ``K``'s eigenvectors, and ``S_u`` is positive definite).
    """
    K = _gp_cov()
    L = np.linalg.cholesky(K + guide.jitter * np.eye(len(GP_X)))
    A = K @ np.linalg.inv(L @ L.T)
    mean, cov = _gp_posterior_cov()
    u_mean = np.linalg.solve(A, mean)
    S_u = np.linalg.solve(A, np.linalg.solve(A, cov - (K - A @ K)).T)
    S_v = np.linalg.solve(L, np.linalg.solve(L, S_u).T)
    q_sqrt = np.linalg.cholesky(0.5 * (S_v + S_v.T))
    return {
        **params,
        "auto_f_q_mu": jnp.asarray(np.linalg.solve(L, u_mean)).reshape(
            params["auto_f_q_mu"].shape
        ),
        "auto_f_q_sqrt": jnp.asarray(q_sqrt).reshape(params["auto_f_q_sqrt"].shape),
    }


def _amortized(cls, width, **kwargs):
    if cls is not AmortizedFlow:
        kwargs.setdefault("init_scale", 1.0)

    def make(model):
        params = {"w": jnp.zeros((3, width)), "b": jnp.zeros(width)}
        return cls(
            model, _linear_encoder, plate="data", inputs="x", encoder_params=params, **kwargs
        )

    return make


def _exact_implicit(guide, params):
    """The default generator at zero MLP output is ``N(loc, skip^2)``: the posterior's."""
    mean, sd = LINEAR.posterior()
    generator = params["implicit_generator$params"]
    return {
        **params,
        "implicit_loc": jnp.asarray(mean.ravel()),
        "implicit_generator$params": {**generator, "skip": jnp.asarray(sd.ravel())},
    }


def _linear_generator(params, h):
    """``u_i = x_i w + b + s * eps_i``: the generator of a linear-Gaussian posterior."""
    return h[..., :3] @ params["w"] + params["b"] + params["s"] * h[..., 3:]


def _exact_linear_generator(guide, params):
    return {
        **params,
        "amortized_generator$params": {
            "w": jnp.asarray(W / POST_PRECISION),
            "b": jnp.asarray(-B @ W / POST_PRECISION),
            "s": jnp.full(2, POST_SD),
        },
    }


# ----- the guides: one line each --------------------------------------------------------------

# Documented limits (docs/sparse-gp.md, docs/adversarial.md): the checks that cannot apply.
SPARSE_GP_MARGINAL = (
    "the default family's site is the product of q(f)'s marginals, so that TraceMeanField_ELBO "
    "with the registered KL is the SVGP bound with no B x B matrix; it does not contain the "
    "correlated posterior, so density-ratio checks (Trace_ELBO, RenyiELBO, importance weights) "
    "need joint=True"
)
SPARSE_GP_LIMITS = dict.fromkeys(["weights", "evidence", "elbos"], SPARSE_GP_MARGINAL)
IMPLICIT = (
    "an implicit guide has no density (log q is unknown; ImplicitLatent.log_prob raises), so "
    "density-ratio and ELBO checks cannot apply; it trains with AdversarialELBO"
)
IMPLICIT_LIMITS = dict.fromkeys(["weights", "evidence", "elbos", "mean_field"], IMPLICIT)


def _adam():
    return optax.adam(1e-3)


@dataclass(frozen=True)
class Case:
    make: Callable  # model -> guide
    problem: Problem
    exact: Callable | None = None  # (guide, params) -> params at the exact posterior
    limits: dict = field(default_factory=dict)  # test name -> why it cannot apply (skipped)
    loss: Callable = Trace_ELBO  # the training objective
    optim: Callable = _adam  # () -> an optax optimiser
    monte_carlo_median: bool = False  # median estimated from ``num_quantile_samples`` draws


def _auto_flow(model):
    return AutoFlow(model, num_layers=2, hidden=(8,), init_scale=1.0)


def _sparse_gp(cls=SparseGP, **kwargs):
    def make(model):
        return cls(model, inducing=GP_X, learn_inducing=False, **kwargs)

    return make


def _implicit(model):
    return ImplicitGuide(model, hidden=(8,), init_scale=1.0)


def _amortized_implicit(model):
    params = {"w": jnp.zeros((3, 2)), "b": jnp.zeros(2), "s": jnp.ones(2)}
    return AmortizedImplicit(
        model, _linear_generator, plate="data", inputs="x", generator_params=params, hidden=(8,)
    )


# The orthogonal guides' second sets at their initial (prior) parameters add nothing to q(f)
# (q(v_perp) = p(v_perp) integrates out; a = 0), so SVGP's exact parameters are theirs.
SECOND = GP_X[1::2] + 0.1
ADVERSARIAL = {"loss": AdversarialELBO, "optim": adversarial_optimizer, "monte_carlo_median": True}

GUIDES = {
    "AutoFlow": Case(_auto_flow, JOINT, _exact_autoflow),
    "AmortizedNormal": Case(_amortized(AmortizedNormal, 4), LINEAR, _exact_encoder((2, 3))),
    "AmortizedMultivariateNormal": Case(
        _amortized(AmortizedMultivariateNormal, 5), LINEAR, _exact_encoder((2, 4))
    ),
    "AmortizedFlow": Case(_amortized(AmortizedFlow, 4, context_dim=4), LINEAR),
    "SparseGP": Case(_sparse_gp(), GP, _exact_sparse_gp, SPARSE_GP_LIMITS),
    "SparseGP(joint)": Case(_sparse_gp(joint=True), GP, _exact_sparse_gp),
    "SOLVEGP": Case(
        _sparse_gp(SOLVEGP, inducing_v=SECOND), GP, _exact_sparse_gp, SPARSE_GP_LIMITS
    ),
    "ODVGP(joint)": Case(
        _sparse_gp(ODVGP, inducing_gamma=SECOND, joint=True), GP, _exact_sparse_gp
    ),
    "ImplicitGuide": Case(_implicit, JOINT, _exact_implicit, IMPLICIT_LIMITS, **ADVERSARIAL),
    "AmortizedImplicit": Case(
        _amortized_implicit, LINEAR, _exact_linear_generator, IMPLICIT_LIMITS, **ADVERSARIAL
    ),
}


def cases(test: str):
    """The parametrisation of one test: every guide, skipped with its reason where the check
    cannot apply to its family."""
    return [
        pytest.param(
            name,
            id=name,
            marks=[pytest.mark.skip(reason=case.limits[test])] if test in case.limits else [],
        )
        for name, case in GUIDES.items()
    ]


# ----- helpers --------------------------------------------------------------------------------


@functools.cache
def _initialised(name):
    """The guide after ``svi.init`` and its initial parameters, shared by the tests (float64)."""
    case = GUIDES[name]
    guide = case.make(case.problem.model)
    args = case.problem.args()
    svi = SVI(case.problem.model, guide, case.optim(), case.loss())
    return case, guide, args, svi.get_params(svi.init(jax.random.key(0), *args))


def setup(name, exact=True):
    case, guide, args, params = _initialised(name)
    if exact and case.exact is not None:
        params = case.exact(guide, params)
    return case, guide, args, params


def log_weights(model, guide, params, args, num, elbo=None):
    """``log p(x, z) - log q(z)`` at ``num`` guide draws (minus a one-particle ELBO loss)."""
    elbo = elbo or Trace_ELBO()
    keys = jax.random.split(jax.random.key(1), num)
    loss = jax.jit(jax.vmap(lambda k: elbo.loss(k, params, model, guide, *args)))
    return -np.asarray(loss(keys))


# ----- the contract ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", cases("weights"))
def test_exact_posterior_weights(x64, name):
    """At the exact posterior every importance weight ``p(x, z) / q(z)`` equals the evidence."""
    case, guide, args, params = setup(name)
    if case.exact is None:
        pytest.skip("the family does not contain the exact posterior in closed form")
    lw = log_weights(case.problem.model, guide, params, args, num=8)
    np.testing.assert_allclose(lw, case.problem.log_evidence(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", cases("closed_form"))
def test_closed_form_posterior(x64, name):
    """At the exact posterior the draws of ``sample_posterior`` have the exact marginals."""
    case, guide, args, params = setup(name)
    if case.exact is None:
        pytest.skip("the family does not contain the exact posterior in closed form")
    # 4.5 Monte Carlo standard errors: sd of the mean sd / sqrt(M); of the sample sd about
    # sd / sqrt(2 M).
    num = 4000
    draws = guide.sample_posterior(jax.random.key(2), params, *args, sample_shape=(num,))
    z = np.asarray(draws[case.problem.site])
    mean, sd = case.problem.posterior()
    assert np.all(np.abs(z.mean(0) - mean) < 4.5 * sd / math.sqrt(num))
    assert np.all(np.abs(z.std(0) - sd) < 4.5 * sd / math.sqrt(2 * num))


@pytest.mark.parametrize("name", cases("evidence"))
def test_importance_weights_average_to_the_evidence(x64, name):
    """E_q[p(x, z) / q(z)] = p(x) for any parameters: the guide's density is normalised."""
    case, guide, args, params = setup(name, exact=False)
    noise = jax.random.split(jax.random.key(3), len(jax.tree.leaves(params)))
    leaves, treedef = jax.tree.flatten(params)
    leaves = [
        leaf + 0.05 * jax.random.normal(k, jnp.shape(leaf), jnp.result_type(leaf))
        if jnp.issubdtype(jnp.result_type(leaf), jnp.floating) and not name.startswith("AutoFlow")
        else leaf
        for leaf, k in zip(leaves, noise, strict=True)
    ]
    params = jax.tree.unflatten(treedef, leaves)
    w = np.exp(
        log_weights(case.problem.model, guide, params, args, num=4000)
        - case.problem.log_evidence()
    )
    assert abs(w.mean() - 1.0) < 4 * w.std() / math.sqrt(w.size), (w.mean(), w.std())


@pytest.mark.parametrize("name", cases("median_quantiles"))
def test_sample_posterior_median_and_quantiles(x64, name):
    case, guide, args, params = setup(name)
    site = case.problem.site
    shape = jnp.shape(case.problem.posterior()[0])
    draws = guide.sample_posterior(jax.random.key(4), params, *args, sample_shape=(2, 3))
    assert draws[site].shape == (2, 3, *shape)
    median = guide.median(params)
    assert median[site].shape == shape
    quantiles = guide.quantiles(params, [0.1, 0.5, 0.9])
    assert quantiles[site].shape == (3, *shape)
    assert np.all(np.diff(np.asarray(quantiles[site]), axis=0) > 0)
    if case.exact is not None:
        mean, sd = case.problem.posterior()
        # Gaussian families give exact quantiles; flows and implicit guides estimate them from
        # M draws, whose standard error is sqrt(p (1 - p) / M) / density at the quantile: 4.5
        # of those (and the median likewise where it is estimated).
        probs = np.array([0.1, 0.5, 0.9]).reshape(-1, *[1] * len(shape))
        z = jax.scipy.stats.norm.ppf(probs)
        num = getattr(guide, "num_quantile_samples", np.inf)
        se = np.sqrt(probs * (1 - probs) / num) * sd / jax.scipy.stats.norm.pdf(z)
        assert np.all(np.abs(quantiles[site] - (mean + z * sd)) <= 4.5 * se + 1e-6)
        median_tol = 4.5 * se[1] + 1e-6 if case.monte_carlo_median else 1e-6
        assert np.all(np.abs(median[site] - mean) <= median_tol)


@pytest.mark.parametrize("name", cases("predictive"))
def test_predictive_with_the_guide(x64, name):
    case, guide, args, params = setup(name)
    sites = [case.problem.site, case.problem.observed]
    predictive = Predictive(
        case.problem.model, guide=guide, params=params, num_samples=3, return_sites=sites
    )
    out = predictive(jax.random.key(5), *args)
    shape = jnp.shape(case.problem.posterior()[0])
    assert out[case.problem.site].shape == (3, *shape)
    assert out[case.problem.observed].shape[0] == 3


@pytest.mark.parametrize("name", cases("autoguide_list"))
def test_autoguide_list_composition(x64, name):
    case = GUIDES[name]
    model, args = case.problem.model, case.problem.args()
    guide = AutoGuideList(model)
    guide.append(case.make(model))
    svi = SVI(model, guide, case.optim(), case.loss())
    state = svi.init(jax.random.key(0), *args)
    state, loss = svi.update(state, *args)
    params = svi.get_params(state)
    shape = jnp.shape(case.problem.posterior()[0])
    site = case.problem.site
    assert np.isfinite(loss)
    assert guide.sample_posterior(jax.random.key(1), params, *args, sample_shape=(2,))[
        site
    ].shape == (2, *shape)
    assert guide.median(params)[site].shape == shape
    assert guide.quantiles(params, [0.25, 0.75])[site].shape == (2, *shape)


@pytest.mark.parametrize("name", cases("elbos"))
def test_elbos(x64, name):
    """Trace_ELBO and RenyiELBO are the evidence at the exact posterior; TraceMeanField_ELBO is
    finite and agrees with Trace_ELBO on average (4 Monte Carlo standard errors)."""
    case, guide, args, params = setup(name)
    model, evidence = case.problem.model, case.problem.log_evidence()
    renyi = log_weights(
        model, guide, params, args, num=4, elbo=RenyiELBO(alpha=0.5, num_particles=2)
    )
    trace = log_weights(model, guide, params, args, num=500)
    mean_field = log_weights(model, guide, params, args, num=500, elbo=TraceMeanField_ELBO())
    assert np.all(np.isfinite(renyi)) and np.all(np.isfinite(mean_field))
    if case.exact is not None:
        np.testing.assert_allclose(renyi, evidence, atol=1e-6)
        np.testing.assert_allclose(trace, evidence, atol=1e-6)
    se = np.hypot(trace.std(), mean_field.std()) / math.sqrt(trace.size)
    assert abs(trace.mean() - mean_field.mean()) < 4 * se + 1e-9


@pytest.mark.parametrize("name", cases("mean_field"))
def test_mean_field_elbo_at_the_exact_posterior(x64, name):
    """TraceMeanField_ELBO (analytic KL where one is registered) averages to the evidence at
    the exact posterior: 4 Monte Carlo standard errors of the mean of 500 one-draw losses."""
    case, guide, args, params = setup(name)
    if case.exact is None:
        pytest.skip("the family does not contain the exact posterior in closed form")
    elbo = log_weights(
        case.problem.model, guide, params, args, num=500, elbo=TraceMeanField_ELBO()
    )
    se = elbo.std() / math.sqrt(elbo.size)
    assert abs(elbo.mean() - case.problem.log_evidence()) < 4 * se + 1e-9, (elbo.mean(), se)
