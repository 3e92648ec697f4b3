import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro.infer import SVI, Predictive, Trace_ELBO
from numpyro.infer.autoguide import AutoIAFNormal, AutoNormal

from numpyro_ext.guides import AutoFlow
from numpyro_ext.transforms import banana_distribution, masked_autoregressive_flow


def banana_model():
    numpyro.sample("x", banana_distribution())


def _fit(guide, steps=1000):
    svi = SVI(banana_model, guide, optax.adam(1e-2), Trace_ELBO(num_particles=4))
    return svi.run(jax.random.key(0), steps, progress_bar=False).params


def _elbo_draws(guide, params, n=4000):
    """log p(x) - log q(x) per guide draw: the banana is normalised, so ELBO = -KL(q || p)."""

    def one(key):
        seeded = numpyro.handlers.substitute(numpyro.handlers.seed(guide, key), params)
        trace = numpyro.handlers.trace(seeded).get_trace()
        log_q = sum(
            site["fn"].log_prob(site["value"]).sum()
            for site in trace.values()
            if site["type"] == "sample"
        )
        return banana_distribution().log_prob(trace["x"]["value"]) - log_q

    return jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(1), n))


def test_flow_guide_beats_autonormal_and_autoiaf_on_a_banana_posterior():
    elbos = {}
    for name, guide in [
        ("normal", AutoNormal(banana_model)),
        ("iaf", AutoIAFNormal(banana_model, num_flows=2)),
        ("flow", AutoFlow(banana_model, num_layers=3, hidden=(16, 16))),
    ]:
        draws = _elbo_draws(guide, _fit(guide))
        elbos[name] = (float(draws.mean()), float(draws.std() / jnp.sqrt(draws.size)))
    flow, flow_se = elbos["flow"]
    for other in ("normal", "iaf"):
        value, se = elbos[other]
        # better by more than 4 standard errors of the difference of the two estimates
        assert flow - value > 4 * np.hypot(flow_se, se), elbos
    assert flow <= 4 * flow_se  # an ELBO never exceeds log Z = 0


def test_flow_guide_starts_as_a_normal_around_the_init_location():
    guide = AutoFlow(
        banana_model,
        init_loc_fn=numpyro.infer.init_to_value(values={"x": jnp.ones(2)}),
        init_scale=0.01,
    )
    with numpyro.handlers.seed(rng_seed=0):
        guide()
    params = {"auto_loc": jnp.ones(2), "auto_scale": jnp.full(2, 0.01)}
    params["auto_flow"] = guide._flow_init
    draws = guide.sample_posterior(jax.random.key(0), params, sample_shape=(2000,))["x"]
    np.testing.assert_allclose(draws.mean(0), 1.0, atol=5 * 0.01 / np.sqrt(2000))


def test_flow_guide_takes_any_flow_and_works_with_predictive():
    def model(y):
        mu = numpyro.sample("mu", dist.Normal(0, 1).expand([3]).to_event(1))
        sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
        numpyro.sample("y", dist.Normal(mu, sigma).to_event(1), obs=y)

    guide = AutoFlow(model, flow=lambda key, dim: masked_autoregressive_flow(key, dim, 2, (8,)))
    y = jnp.array([0.5, -0.3, 1.2])
    svi = SVI(model, guide, optax.adam(1e-2), Trace_ELBO())
    result = svi.run(jax.random.key(0), 50, y, progress_bar=False)
    assert np.isfinite(result.losses).all()
    predictive = Predictive(
        model, guide=guide, params=result.params, num_samples=10, return_sites=["mu", "sigma"]
    )
    draws = predictive(jax.random.key(1), y)
    assert draws["mu"].shape == (10, 3) and bool(jnp.all(draws["sigma"] > 0))


def test_flow_guide_rejects_one_dimensional_latents_and_bad_scales():
    def model():
        numpyro.sample("z", dist.Normal(0, 1))

    with pytest.raises(ValueError, match="needs >= 2 latent dimensions"):
        with numpyro.handlers.seed(rng_seed=0):
            AutoFlow(model)()
    with pytest.raises(ValueError, match="init_scale must be > 0"):
        AutoFlow(model, init_scale=0.0)
