"""The ArviZ bridge must carry values, not just shapes: draws, log-likelihoods, dims, data."""

import arviz_stats as azs
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from jax import random
from numpyro.infer import MCMC, NUTS, SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoDiagonalNormal, AutoNormal

from numpyro_ext.arviz import from_mcmc, from_svi

N, D = 20, 3


def logistic(X, y=None):
    beta = numpyro.sample("beta", dist.Normal(0, 1).expand([X.shape[1]]).to_event(1))
    alpha = numpyro.sample("alpha", dist.Normal(0, 2))
    logits = numpyro.deterministic("logits", alpha + X @ beta)
    with numpyro.plate("obs", X.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=logits), obs=y)


def manual_guide(X, y=None):
    loc = numpyro.param("loc", jnp.zeros(X.shape[1]))
    numpyro.sample("beta", dist.Normal(loc, 0.5).to_event(1))
    numpyro.sample("alpha", dist.Normal(numpyro.param("a_loc", 0.0), 0.5))


@pytest.fixture(scope="module")
def data():
    kx, ky = random.split(random.PRNGKey(1))
    X = random.normal(kx, (N, D))
    y = (random.uniform(ky, (N,)) < jax.nn.sigmoid(X @ jnp.array([1.0, -1.0, 0.5]))) * 1.0
    return X, y


@pytest.fixture(scope="module")
def fitted(data):
    X, y = data
    guide = AutoNormal(logistic)
    svi = SVI(logistic, guide, optax.adam(0.05), Trace_ELBO())
    result = svi.run(random.PRNGKey(0), 200, X, y, progress_bar=False)
    return guide, result.params


def bernoulli_loglik(posterior, X, y):
    logits = posterior["alpha"][..., None] + np.einsum("...d,nd->...n", posterior["beta"], X)
    return np.asarray(dist.Bernoulli(logits=logits).log_prob(y))


def test_posterior_equals_guide_draws_for_the_same_key(data, fitted):
    X, y = data
    guide, params = fitted
    key = random.PRNGKey(7)
    dt = from_svi(guide, params, model_args=(X, y), num_samples=50, rng_key=key)
    expected = guide.sample_posterior(random.split(key)[0], params, X, y, sample_shape=(50,))
    for name in ("alpha", "beta"):
        np.testing.assert_array_equal(dt.posterior[name].values[0], np.asarray(expected[name]))


def test_custom_guide_goes_through_predictive(data):
    X, y = data
    params = {"loc": jnp.array([0.3, -0.2, 0.1]), "a_loc": jnp.array(0.4)}
    dt = from_svi(manual_guide, params, model_args=(X, y), num_samples=30, model=logistic)
    beta = dt.posterior["beta"].values[0]
    assert beta.shape == (30, D)
    # draws come from N(loc, 0.5): their mean lies within 5 standard errors of loc
    se = 0.5 / np.sqrt(30)
    assert np.all(np.abs(beta.mean(0) - np.asarray(params["loc"])) < 5 * se)


def test_log_likelihood_is_the_pointwise_model_density(data, fitted):
    X, y = data
    guide, params = fitted
    dt = from_svi(guide, params, model_args=(X, y), num_samples=40)
    posterior = {k: dt.posterior[k].values for k in ("alpha", "beta")}
    np.testing.assert_allclose(
        dt.log_likelihood["y"].values, bernoulli_loglik(posterior, X, y), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(dt.observed_data["y"].values, np.asarray(y))


def test_deterministic_sites_are_in_the_posterior(data, fitted):
    X, y = data
    guide, params = fitted
    dt = from_svi(guide, params, model_args=(X, y), num_samples=10)
    post = dt.posterior
    expected = post["alpha"].values[..., None] + np.einsum("cdk,nk->cdn", post["beta"].values, X)
    np.testing.assert_allclose(post["logits"].values, expected, rtol=1e-5, atol=1e-5)


def test_posterior_predictive_draws_are_fresh(data, fitted):
    X, y = data
    guide, params = fitted
    dt = from_svi(guide, params, model_args=(X, y), num_samples=400)
    y_rep = dt.posterior_predictive["y"].values[0]
    p = jax.nn.sigmoid(dt.posterior["logits"].values[0])
    # E[y_rep - p] = 0; the standard error of the mean of 400 x 20 Bernoulli residuals
    se = np.sqrt(np.mean(p * (1 - p)) / y_rep.size)
    assert abs(np.mean(y_rep - p)) < 5 * se
    assert not np.all(y_rep == np.asarray(y))


def test_dims_and_coords_as_requested(data, fitted):
    X, y = data
    guide, params = fitted
    names = [f"patient{i}" for i in range(N)]
    dt = from_svi(
        guide,
        params,
        model_args=(X, y),
        num_samples=10,
        dims={"beta": ["feature"], "y": ["patient"], "logits": ["patient"]},
        coords={"feature": ["age", "dose", "weight"], "patient": names},
    )
    assert dt.posterior["beta"].dims == ("chain", "draw", "feature")
    assert list(dt.posterior["beta"].coords["feature"].values) == ["age", "dose", "weight"]
    assert dt.log_likelihood["y"].dims == ("chain", "draw", "patient")
    assert list(dt.observed_data["y"].coords["patient"].values) == names


def test_plate_names_become_dims_by_default(data, fitted):
    X, y = data
    guide, params = fitted
    dt = from_svi(guide, params, model_args=(X, y), num_samples=10, sample_dims=("sample",))
    assert dt.posterior_predictive["y"].dims == ("sample", "obs")
    assert dt.posterior["alpha"].dims == ("sample",)


def test_loo_runs_and_is_bounded_by_the_in_sample_density(data, fitted):
    X, y = data
    guide, params = fitted
    dt = from_svi(guide, params, model_args=(X, y), num_samples=300)
    result = azs.loo(dt)
    ll = dt.log_likelihood["y"].values.reshape(-1, N)
    lppd = np.sum(jax.scipy.special.logsumexp(ll, axis=0) - np.log(ll.shape[0]))
    assert np.isfinite(result.elpd)
    assert result.elpd <= lppd + 1e-6


def test_from_mcmc_keeps_chains_and_values(data):
    X, y = data
    mcmc = MCMC(
        NUTS(logistic),
        num_warmup=100,
        num_samples=60,
        num_chains=2,
        chain_method="sequential",
        progress_bar=False,
    )
    mcmc.run(random.PRNGKey(3), X, y, extra_fields=("diverging", "potential_energy"))
    dt = from_mcmc(mcmc, model_args=(X, y))
    samples = mcmc.get_samples(group_by_chain=True)
    np.testing.assert_array_equal(dt.posterior["beta"].values, np.asarray(samples["beta"]))
    assert dt.posterior["logits"].shape == (2, 60, N)
    posterior = {k: dt.posterior[k].values for k in ("alpha", "beta")}
    np.testing.assert_allclose(
        dt.log_likelihood["y"].values, bernoulli_loglik(posterior, X, y), rtol=1e-5, atol=1e-6
    )
    assert dt.posterior_predictive["y"].shape == (2, 60, N)
    np.testing.assert_allclose(
        dt.sample_stats["lp"].values, -np.asarray(mcmc.get_extra_fields(True)["potential_energy"])
    )
    assert dt.sample_stats["diverging"].dtype == bool
    assert np.isfinite(azs.loo(dt).elpd)


def test_params_from_another_guide_are_refused(data, fitted):
    X, y = data
    _, params = fitted
    other = AutoDiagonalNormal(logistic)
    with pytest.raises(ValueError, match="params do not match the guide: missing"):
        from_svi(other, params, model_args=(X, y))


def test_params_of_the_wrong_shape_are_refused(data, fitted):
    X, y = data
    guide, params = fitted
    name = next(k for k in params if k.startswith("beta") and k.endswith("loc"))
    bad = {**params, name: jnp.zeros(D + 1)}
    with pytest.raises(ValueError, match=f"'{name}' has shape"):
        from_svi(guide, bad, model_args=(X, y))


def test_missing_observed_data_is_refused(data, fitted):
    X, _ = data
    guide, params = fitted
    with pytest.raises(ValueError, match="no observed site"):
        from_svi(guide, params, model_args=(X,))


def test_mcmc_without_run_is_refused():
    with pytest.raises(ValueError, match=r"call mcmc\.run"):
        from_mcmc(MCMC(NUTS(logistic), num_warmup=1, num_samples=1, progress_bar=False))


def test_guide_without_model_needs_model_argument(data):
    X, y = data
    with pytest.raises(ValueError, match="pass model="):
        from_svi(manual_guide, {"loc": jnp.zeros(D), "a_loc": 0.0}, model_args=(X, y))


def test_data_of_another_shape_is_refused_with_a_value_error(data, fitted):
    X, y = data
    guide, params = fitted
    with pytest.raises(ValueError, match="the model fails at the given model arguments"):
        from_svi(guide, params, model_args=(X[:, :2], y), num_samples=5)


def test_model_arguments_named_like_options_reach_the_model(data):
    X, y = data

    def model(X, model=1.0, dims=0.0, num_samples=0, coords=None, y=None):
        beta = numpyro.sample("beta", dist.Normal(dims, model).expand([X.shape[1]]).to_event(1))
        with numpyro.plate("obs", X.shape[0]):
            numpyro.sample("y", dist.Bernoulli(logits=X @ beta + coords), obs=y)

    guide = AutoNormal(model)
    # SVI.run itself cannot take a keyword named model: fit with positional arguments.
    svi = SVI(model, guide, optax.adam(0.05), Trace_ELBO())
    params = svi.run(random.PRNGKey(0), 20, X, 2.0, 0.5, 3, 0.25, y, progress_bar=False).params
    kwargs = {"model": 2.0, "dims": 0.5, "num_samples": 3, "coords": 0.25, "y": y}
    dt = from_svi(guide, params, model_args=(X,), model_kwargs=kwargs, num_samples=20)
    assert dt.posterior["beta"].shape == (1, 20, D)
    # The log-likelihood is the model's at the given keyword arguments (coords shifts logits).
    beta = dt.posterior["beta"].values
    expected = dist.Bernoulli(logits=np.einsum("...d,nd->...n", beta, X) + 0.25).log_prob(y)
    np.testing.assert_allclose(dt.log_likelihood["y"].values, expected, rtol=1e-5, atol=1e-6)


def test_model_arguments_must_be_a_tuple(data, fitted):
    X, _ = data
    guide, params = fitted
    with pytest.raises(ValueError, match="model_args must be a tuple"):
        from_svi(guide, params, model_args={"X": X})
