import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro.distributions import constraints
from numpyro.infer import SVI, Predictive, Trace_ELBO

from numpyro_ext.guides import AutoFlow
from numpyro_ext.transforms import Banana, Invert, masked_autoregressive_flow

RHO = 0.95
# G is volume preserving, so the unnormalised banana below integrates to the Gaussian's
# normaliser: Z = 2 pi sqrt(det Sigma) = 2 pi sqrt(1 - rho^2).
LOG_Z = float(np.log(2 * np.pi) + 0.5 * np.log1p(-(RHO**2)))


def unnormalised_banana():
    """Flat prior on x and the Gaussian potential at G^{-1}(x): the banana up to Z."""
    x = numpyro.sample("x", dist.ImproperUniform(constraints.real_vector, (), (2,)))
    u = Banana().inverse(x)
    numpyro.factor("banana", -0.5 * (u[0] ** 2 - 2 * RHO * u[0] * u[1] + u[1] ** 2) / (1 - RHO**2))


def test_small_flow_guide_reaches_the_known_log_evidence_of_the_banana():
    guide = AutoFlow(unnormalised_banana, num_layers=2, hidden=(16, 16), init_scale=1.0)
    steps = 2000
    optim = optax.adam(optax.cosine_decay_schedule(2e-2, steps))
    svi = SVI(unnormalised_banana, guide, optim, Trace_ELBO(num_particles=8))
    params = svi.run(jax.random.key(0), steps, progress_bar=False).params

    def elbo(key):
        return -Trace_ELBO().loss(key, params, unnormalised_banana, guide)

    n = 4000
    draws = jax.jit(jax.vmap(elbo))(jax.random.split(jax.random.key(1), n))
    mean, se = float(draws.mean()), float(draws.std() / np.sqrt(n))
    # The gap log Z - ELBO = KL(q || p) must be below 0.05 nats (AutoNormal's is ~0.87, the
    # default AutoIAFNormal's ~0.25); 4 Monte Carlo standard errors of the estimate allowed.
    assert LOG_Z - mean < 0.05 + 4 * se, (LOG_Z, mean, se)
    assert mean - 4 * se < LOG_Z  # an ELBO never exceeds log Z


def test_flow_guide_starts_as_a_normal_around_the_init_location():
    guide = AutoFlow(
        unnormalised_banana,
        init_loc_fn=numpyro.infer.init_to_value(values={"x": jnp.ones(2)}),
        init_scale=0.01,
    )
    with numpyro.handlers.seed(rng_seed=0):
        guide()
    params = {"auto_loc": jnp.ones(2), "auto_scale": jnp.full(2, 0.01)}
    params["auto_flow"] = guide._flow_init
    sample = jax.jit(lambda k: guide.sample_posterior(k, params, sample_shape=(2000,))["x"])
    draws = sample(jax.random.key(0))
    np.testing.assert_allclose(draws.mean(0), 1.0, atol=5 * 0.01 / np.sqrt(2000))


def test_flow_guide_takes_any_flow_and_works_with_predictive():
    def model(y):
        mu = numpyro.sample("mu", dist.Normal(0, 1).expand([3]).to_event(1))
        sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
        numpyro.sample("y", dist.Normal(mu, sigma).to_event(1), obs=y)

    # any bijector: here an inverse autoregressive flow (MAF layers inverted, one-pass sampling)
    guide = AutoFlow(
        model, flow=lambda key, dim: Invert(masked_autoregressive_flow(key, dim, 2, (8,)))
    )
    y = jnp.array([0.5, -0.3, 1.2])
    svi = SVI(model, guide, optax.adam(1e-2), Trace_ELBO())
    result = svi.run(jax.random.key(0), 50, y, progress_bar=False)
    assert np.isfinite(result.losses).all()
    predictive = Predictive(
        model, guide=guide, params=result.params, num_samples=10, return_sites=["mu", "sigma"]
    )
    draws = jax.jit(predictive)(jax.random.key(1), y)
    assert draws["mu"].shape == (10, 3) and bool(jnp.all(draws["sigma"] > 0))


def test_flow_guide_rejects_one_dimensional_latents_and_bad_scales():
    def model():
        numpyro.sample("z", dist.Normal(0, 1))

    with pytest.raises(ValueError, match="needs >= 2 latent dimensions"):
        with numpyro.handlers.seed(rng_seed=0):
            AutoFlow(model)()
    with pytest.raises(ValueError, match="init_scale must be > 0"):
        AutoFlow(model, init_scale=0.0)
