"""Forward-KL amortised posterior estimation on a conjugate Gaussian simulator.

theta ~ N(0, tau^2 I_2), x_k | theta ~ N(A theta, I_2) for k = 1..K. Posterior: precision
P = I / tau^2 + K A^T A, mean P^-1 A^T sum_k x_k: affine in x, so a linear encoder with a
full-rank Gaussian family can represent it exactly. The test encoder reads the sufficient
statistic mean_k x_k (the repeats' order carries no information) and is linear in it.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest

from numpyro_ext.amortization import ConditionalFlowFamily, FullRankNormalFamily
from numpyro_ext.infer.posterior_estimation import AmortizedPosterior, coverage

A = np.array([[1.0, 0.5], [-0.4, 1.2]])
TAU = 2.0
K = 5


def simulator(x=None):
    theta = numpyro.sample("theta", dist.Normal(0, TAU).expand([2]).to_event(1))
    with numpyro.plate("repeats", K):
        numpyro.sample("x", dist.Normal(theta @ A.T, 1.0).to_event(1), obs=x)


def linear(params, x):
    return x.mean(-2) @ params["w"] + params["b"]


def exact_posterior(x):
    precision = np.eye(2) / TAU**2 + K * A.T @ A
    cov = np.linalg.inv(precision)
    return np.asarray(x).sum(-2) @ A @ cov, cov


def make_estimator(standardize=False):
    family = FullRankNormalFamily(init_scale=1.0)
    width = family.output_size(2)
    params = {"w": jnp.zeros((2, width)), "b": jnp.zeros(width)}
    return AmortizedPosterior(
        simulator, linear, observed="x", family=family, encoder_params=params,
        standardize=standardize,
    )  # fmt: skip


def fit_decayed(npe, num_simulations, num_steps, batch_size, final_fraction):
    """Adam from 1e-2, decayed exponentially to ``final_fraction`` of it over the run."""
    schedule = optax.exponential_decay(1e-2, num_steps, final_fraction)
    return npe.fit(
        jax.random.key(0),
        num_simulations=num_simulations,
        num_steps=num_steps,
        batch_size=batch_size,
        optimizer=optax.adam(schedule),
        validation_fraction=0.0,
    )


@functools.cache
def trained():
    npe = make_estimator()
    return npe, fit_decayed(npe, 20_000, 3000, 512, final_fraction=0.01)


def test_fit_recovers_the_exact_posterior_on_new_data():
    npe, fit = trained()
    assert fit.losses[-5:].mean() < fit.losses[:5].mean()
    x_obs = jax.random.normal(jax.random.key(5), (6, K, 2)) * 2
    q = npe.conditional(fit.params, x_obs)
    mean, cov = exact_posterior(x_obs)
    sd = np.sqrt(np.diag(cov))
    # Maximum likelihood on 20k simulations: parameter errors ~ 1/sqrt(20k) < 1 % of a
    # posterior sd; 10 % leaves room for optimisation error and still fails a wrong posterior.
    np.testing.assert_array_less(np.abs(q.mean - mean) / sd, 0.1)
    np.testing.assert_array_less(np.abs(q.covariance_matrix - cov) / np.outer(sd, sd), 0.1)


def test_credible_intervals_have_nominal_coverage():
    npe, fit = trained()
    num_datasets, num_draws = 2000, 99
    ranks = npe.rank_statistics(
        jax.random.key(1), fit.params, num_datasets=num_datasets, num_draws=num_draws
    )
    assert ranks.shape == (num_datasets, 2)
    observed, nominal = coverage(ranks, num_draws, [0.5, 0.8, 0.95])
    # Binomial error bars: 4 standard errors of a proportion over num_datasets data sets.
    se = np.sqrt(nominal * (1 - nominal) / num_datasets)[:, None]
    assert np.all(np.abs(observed - nominal[:, None]) < 4 * se)


def test_untrained_estimator_fails_calibration():
    # Negative control: the initial q is N(0, I) for every x, narrower than the N(0, 4 I)
    # prior and blind to the data, so its intervals under-cover.
    npe = make_estimator()
    npe.simulate(jax.random.key(0), 1)
    params = npe.init_params(jnp.zeros((1, K, 2)))
    ranks = npe.rank_statistics(jax.random.key(1), params, num_datasets=500, num_draws=99)
    observed, nominal = coverage(ranks, 99, [0.8])
    se = np.sqrt(nominal * (1 - nominal) / 500)
    assert np.all(observed < nominal - 4 * se)


def positive_model(y=None):
    rate = numpyro.sample("rate", dist.Gamma(3.0, 2.0))
    weights = numpyro.sample("weights", dist.Dirichlet(jnp.ones(3)))
    numpyro.sample("y", dist.Normal(rate * weights, 0.3).to_event(1), obs=y)


def test_constrained_latents_sample_in_support_with_jacobian(x64):
    width = FullRankNormalFamily().output_size(3)
    npe = AmortizedPosterior(
        positive_model,
        lambda p, y: y @ p["w"] + p["b"],
        observed="y",
        encoder_params={"w": 0.1 * jnp.ones((3, width)), "b": jnp.zeros(width)},
    )
    theta, sims = npe.simulate(jax.random.key(0), 10)
    assert theta.shape == (10, 3) and sims.shape == (10, 3)  # rate (1) + simplex of 3 (2)
    y = jnp.array([[0.5, 1.0, 0.2], [2.0, 0.1, 0.1]])
    params = npe.init_params(y)
    draws = npe.sample_posterior(jax.random.key(1), params, y, (7,))
    assert draws["rate"].shape == (7, 2) and np.all(draws["rate"] > 0)
    np.testing.assert_allclose(draws["weights"].sum(-1), 1.0, rtol=1e-12)
    one = jax.tree.map(lambda v: v[0], draws)
    flat = npe.flatten(one)
    rate_t = dist.biject_to(dist.constraints.positive)
    mix_t = dist.biject_to(dist.constraints.simplex)
    expected = (
        npe.conditional(params, y).log_prob(flat)
        - rate_t.log_abs_det_jacobian(flat[:, 0], one["rate"])
        - mix_t.log_abs_det_jacobian(flat[:, 1:], one["weights"])
    )
    np.testing.assert_allclose(npe.log_prob(params, one, y), expected, rtol=1e-10)


def test_bad_input_raises_clear_errors():
    npe = make_estimator()
    with pytest.raises(ValueError, match="'x' is observed"):
        npe.simulate(jax.random.key(0), 3, jnp.zeros((K, 2)))
    npe = AmortizedPosterior(simulator, linear, observed="y", encoder_params={})
    with pytest.raises(ValueError, match="no sample site 'y'"):
        npe.simulate(jax.random.key(0), 3)
    with pytest.raises(ValueError, match="levels must lie in"):
        coverage(jnp.zeros((3, 1)), 9, [1.5])
    npe = make_estimator()
    with pytest.raises(ValueError, match="must be positive"):
        npe.fit(jax.random.key(0), batch_size=0)
    with pytest.raises(ValueError, match=r"validation_fraction must lie in \[0, 1\)"):
        npe.fit(jax.random.key(0), validation_fraction=1.0)
    with pytest.raises(ValueError, match="leaves 0 for validation"):
        npe.fit(jax.random.key(0), num_simulations=4, validation_fraction=0.1)
    with pytest.raises(ValueError, match=r"parameters \['tau'\] are not latent sample sites"):
        AmortizedPosterior(simulator, observed="x", parameters=["tau"]).simulate(
            jax.random.key(0), 2
        )
    with pytest.raises(ValueError, match="list of site names"):
        AmortizedPosterior(simulator, observed="x", parameters="theta")


def _no_parameter(x=None):
    numpyro.sample("x", dist.Normal(0.0, 1.0).expand([2]).to_event(1), obs=x)


def _observed_only(x=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0), obs=jnp.asarray(0.5))
    numpyro.sample("y", dist.Normal(mu, 1.0).expand([2]).to_event(1), obs=jnp.zeros(2))
    numpyro.sample("x", dist.Normal(mu, 1.0).expand([2]).to_event(1), obs=x)


def _empty_parameter(x=None):
    theta = numpyro.sample("theta", dist.Normal(0.0, 1.0).expand([0]).to_event(1))
    numpyro.sample("x", dist.Normal(theta.sum(), 1.0).expand([2]).to_event(1), obs=x)


@pytest.mark.parametrize(
    ("model", "match"),
    [
        (_no_parameter, r"no latent sample site to estimate \(its sample sites are \['x'\]"),
        (_observed_only, r"sample sites are \['mu', 'y', 'x'\], all observed"),
        (_empty_parameter, r"parameter sites \['theta'\] have no elements"),
    ],
)
def test_a_model_without_a_parameter_is_refused_by_name(model, match):
    npe = AmortizedPosterior(model, observed="x")
    with pytest.raises(ValueError, match=match):
        npe.fit(jax.random.key(0), num_simulations=20, max_epochs=1)
    with pytest.raises(ValueError, match=match):
        npe.rank_statistics(jax.random.key(0), {}, num_datasets=3)


def test_an_empty_parameter_list_and_use_before_fit_are_refused_by_name():
    with pytest.raises(ValueError, match="parameters is empty"):
        AmortizedPosterior(simulator, observed="x", parameters=[])
    npe = make_estimator()
    one = {"theta": jnp.zeros((1, 2))}
    for call, name in (
        (lambda: npe.flatten(one), "flatten"),
        (lambda: npe.unflatten(jnp.zeros((1, 2))), "unflatten"),
        (lambda: npe.log_prob({}, one, jnp.zeros((1, K, 2))), "flatten"),
        (lambda: npe.sample_posterior(jax.random.key(0), {}, jnp.zeros((1, K, 2))), "conditional"),
    ):
        with pytest.raises(ValueError, match=rf"AmortizedPosterior.{name}: .* call fit"):
            call()
    npe.simulate(jax.random.key(0), 2)
    with pytest.raises(ValueError, match=r"lack the parameter sites \['theta'\]"):
        npe.flatten({"mu": jnp.zeros((1, 2))})


def test_conditional_flow_family_plugs_in(x64):
    npe = AmortizedPosterior(
        simulator,
        lambda p, x: x.mean(-2) @ p,
        observed="x",
        family=ConditionalFlowFamily(context_dim=4),
        encoder_params=jnp.ones((2, 4)),
    )
    theta, x = npe.simulate(jax.random.key(0), 8)
    params = npe.init_params(x)
    assert set(params) == {"posterior_encoder$params", "flow$params"}
    draws = npe.sample_posterior(jax.random.key(1), params, x, (3,))
    assert draws["theta"].shape == (3, 8, 2)
    # The flow starts at the identity up to its layers' 1e-3 scale floor (3 layers: scales
    # 1.001^3), so q(theta | x) is the N(0, I) base for every x to that accuracy.
    expected = dist.Normal(0, 1).expand([2]).to_event(1).log_prob(theta)
    got = npe.log_prob(params, npe.unflatten(theta), x)
    np.testing.assert_allclose(got, expected, atol=0.01 * (1 + np.abs(expected).max()))


def test_trained_conditional_flow_has_nominal_coverage():
    npe = AmortizedPosterior(
        simulator,
        linear,
        observed="x",
        family=ConditionalFlowFamily(context_dim=4),
        encoder_params={"w": jnp.zeros((2, 4)), "b": jnp.zeros(4)},
    )
    fit = fit_decayed(npe, 5000, 400, 256, final_fraction=0.05)
    num_datasets, num_draws, levels = 2000, 99, [0.5, 0.8, 0.95]
    ranks = jax.jit(
        functools.partial(npe.rank_statistics, num_datasets=num_datasets, num_draws=num_draws)
    )
    observed, nominal = coverage(ranks(jax.random.key(1), fit.params), num_draws, levels)
    # Binomial error bars: 4 standard errors of a proportion over num_datasets data sets.
    se = np.sqrt(nominal * (1 - nominal) / num_datasets)[:, None]
    assert np.all(np.abs(observed - nominal[:, None]) < 4 * se)
    # Negative control, same check: the untrained flow is the N(0, I) base for every x (see
    # test_conditional_flow_family_plugs_in), narrower than the prior and blind to x.
    params = npe.init_params(jnp.zeros((1, K, 2)))
    observed, _ = coverage(ranks(jax.random.key(1), params), num_draws, levels)
    assert np.all(observed < nominal[:, None] - 4 * se)


def noisy_simulator(x=None):
    """theta as in ``simulator``, plus a nuisance offset that the data average over."""
    theta = numpyro.sample("theta", dist.Normal(0, TAU).expand([2]).to_event(1))
    nuisance = numpyro.sample("nuisance", dist.Normal(0, 1).expand([K, 2]).to_event(2))
    numpyro.sample("x", dist.Normal(theta @ A.T + nuisance, 1e-3).to_event(2), obs=x)


def test_named_parameters_leave_the_rest_as_simulator_noise():
    npe = AmortizedPosterior(noisy_simulator, observed="x", parameters=["theta"])
    theta, x = npe.simulate(jax.random.key(0), 5)
    assert npe.latent_names == ["theta"] and theta.shape == (5, 2) and x.shape == (5, K, 2)
    everything = AmortizedPosterior(noisy_simulator, observed="x")
    assert everything.simulate(jax.random.key(0), 5)[0].shape == (5, 2 + 2 * K)


def test_defaults_standardise_stop_early_and_keep_the_best_validation_epoch():
    # Default estimator: spline flow on the flattened data, standardisation, early stopping.
    npe = AmortizedPosterior(simulator, observed="x")
    fit = npe.fit(jax.random.key(0), num_simulations=400, batch_size=50, stop_after_epochs=2,
                  learning_rate=3e-2, max_epochs=60)  # fmt: skip
    assert fit.losses.shape == fit.validation_losses.shape == (fit.num_epochs,)
    assert np.all(np.isfinite(fit.validation_losses))
    best = int(np.argmin(fit.validation_losses))
    assert fit.best_epoch == best
    # Stopped by patience: exactly 2 epochs after the best one, before the 60-epoch budget.
    assert fit.num_epochs == best + 3 < 60
    stats = fit.params["standardization"]
    sim_key = jax.random.split(jax.random.key(0))[0]  # fit's simulation key
    theta, x = npe.simulate(sim_key, 400)
    np.testing.assert_allclose(stats["theta_loc"], theta[:360].mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats["x_scale"], x[:360].std(0), rtol=1e-5)
    # The flow is trained in the standardised space, and conditional() undoes it: the
    # log density of theta equals the standardised density minus log |scale|.
    q = npe.conditional(fit.params, x[:3])
    z = (theta[:3] - stats["theta_loc"]) / stats["theta_scale"]
    inner = npe._loss(fit.params, z[:1], ((x[:3] - stats["x_loc"]) / stats["x_scale"])[:1])
    expected = -inner - jnp.log(stats["theta_scale"]).sum()
    np.testing.assert_allclose(q.log_prob(theta[:3])[0], expected, rtol=1e-5)


def test_gaussian_families_stay_gaussian_after_standardisation(x64):
    npe = make_estimator(standardize=True)
    fit = npe.fit(jax.random.key(0), num_simulations=300, max_epochs=2)
    q = npe.conditional(fit.params, jnp.ones((4, K, 2)))
    assert isinstance(q, dist.MultivariateNormal)  # moments stay available in closed form
    draws = q.sample(jax.random.key(1), (20_000,))
    # Monte Carlo error of a mean over 20k draws, sd / sqrt(20k); 5 standard errors.
    np.testing.assert_allclose(
        draws.mean(0), q.mean, atol=5 * float(jnp.sqrt(q.variance.max())) / 141
    )


def test_non_finite_simulations_are_refused():
    def broken(x=None):
        theta = numpyro.sample("theta", dist.Normal(0, 1).expand([2]).to_event(1))
        scale = jnp.where(theta > 0, jnp.inf, 1.0)  # a valid scale; draws of +-inf or NaN
        numpyro.sample("x", dist.Normal(theta, scale).to_event(1), obs=x)

    with pytest.raises(ValueError, match="simulations have non-finite data"):
        AmortizedPosterior(broken, observed="x").fit(jax.random.key(0), num_simulations=50)
