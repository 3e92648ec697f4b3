"""Implicit guides keep AutoGuide's contract (shapes, median, quantiles, Predictive, lists)."""

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import SVI, Predictive
from numpyro.infer.autoguide import AutoGuideList, AutoNormal

from numpyro_ext.guides import AmortizedImplicit, ImplicitGuide
from numpyro_ext.infer import AdversarialELBO, adversarial_optimizer


def global_model(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    s = numpyro.sample("s", dist.LogNormal(0.0, 1.0))
    w = numpyro.sample("w", dist.Dirichlet(jnp.ones(3)))
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", dist.Normal(mu + w[0], s), obs=y)


def local_model(x, subsample_size=None):
    tau = numpyro.sample("tau", dist.LogNormal(0.0, 1.0))
    with numpyro.plate("data", x.shape[0], subsample_size=subsample_size):
        z = numpyro.sample("z", dist.Normal(0, 1).expand([2]).to_event(1))
        v = numpyro.sample("v", dist.LogNormal(0.0, 1.0))
        xb = numpyro.subsample(x, event_dim=0)
        numpyro.sample("x", dist.Normal(z.sum(-1), tau * v), obs=xb)


def fit(model, guide, *args, steps=5, **kwargs):
    svi = SVI(model, guide, adversarial_optimizer(), AdversarialELBO(num_critic_draws=4))
    return svi.run(jax.random.key(0), steps, *args, progress_bar=False, **kwargs).params


@pytest.fixture(scope="module")
def fitted_global():
    # one short fit shared by the tests that only read a trained global guide
    y = jnp.array([0.5, 1.0, 1.5])
    guide = ImplicitGuide(global_model, hidden=(8,))
    return y, guide, fit(global_model, guide, y)


def test_global_guide_contract(fitted_global):
    y, guide, params = fitted_global
    draws = guide.sample_posterior(jax.random.key(1), params, y, sample_shape=(5, 2))
    assert draws["mu"].shape == (5, 2) and draws["w"].shape == (5, 2, 3)
    assert jnp.all(draws["s"] > 0) and jnp.allclose(draws["w"].sum(-1), 1.0, atol=1e-5)
    med = guide.median(params)
    assert med["mu"].shape == () and med["w"].shape == (3,) and med["s"] > 0
    qs = guide.quantiles(params, [0.1, 0.5, 0.9])
    assert qs["mu"].shape == (3,) and jnp.all(jnp.diff(qs["mu"]) > 0)
    assert jnp.allclose(qs["s"][1], med["s"], rtol=1e-5)
    pred = Predictive(global_model, guide=guide, params=params, num_samples=7)(
        jax.random.key(2), y
    )
    assert pred["y"].shape == (7, 3)
    post = Predictive(guide, params=params, num_samples=7)(jax.random.key(2), y)
    assert post["mu"].shape == (7,) and post["w"].shape == (7, 3)


def test_global_guide_in_guide_list_with_adaptive_and_prior_contrast():
    y = jnp.array([0.5, 1.0, 1.5])
    for adaptive in (True, False):
        guide = AutoGuideList(global_model)
        guide.append(ImplicitGuide(numpyro.handlers.block(global_model, hide=["w"]), hidden=(8,)))
        guide.append(AutoNormal(numpyro.handlers.block(global_model, expose=["w"])))
        svi = SVI(
            global_model,
            guide,
            adversarial_optimizer(critic_steps=2),
            AdversarialELBO(adaptive_contrast=adaptive, num_critic_draws=4),
        )
        result = svi.run(jax.random.key(0), 10, y, progress_bar=False)
        assert jnp.all(jnp.isfinite(result.losses))
        draws = guide.sample_posterior(jax.random.key(1), result.params, y, sample_shape=(4,))
        assert set(draws) >= {"mu", "s", "w"} and draws["w"].shape == (4, 3)


def test_amortized_guide_contract_and_subsampling():
    x = jnp.linspace(-2, 2, 10)
    blocked = numpyro.handlers.block(local_model, hide=["tau"])
    guide = AutoGuideList(local_model)
    guide.append(AutoNormal(numpyro.handlers.block(local_model, expose=["tau"])))
    local = AmortizedImplicit(blocked, plate="data", inputs="x", hidden=(8,))
    guide.append(local)
    params = fit(local_model, guide, x, subsample_size=4)
    draws = local.sample_posterior(jax.random.key(1), params, jnp.ones(3), sample_shape=(5,))
    assert draws["z"].shape == (5, 3, 2) and draws["v"].shape == (5, 3)
    assert jnp.all(draws["v"] > 0)
    assert local.median(params, x)["z"].shape == (10, 2)
    qs = local.quantiles(params, [0.25, 0.75], x)
    assert qs["v"].shape == (2, 10) and jnp.all(qs["v"][1] > qs["v"][0])
    x_new = jnp.ones(3)  # new data: the guide encodes all of it, no subsampling
    pred = Predictive(local_model, guide=guide, params=params, num_samples=3)(
        jax.random.key(2), x_new
    )
    assert pred["x"].shape == (3, 3)


def test_amortized_scale_is_n_over_b():
    x = jnp.linspace(-2, 2, 12)
    guide = AmortizedImplicit(
        numpyro.handlers.block(local_model, hide=["tau"]), plate="data", inputs="x", hidden=(4,)
    )
    with numpyro.handlers.seed(rng_seed=0):
        tr = numpyro.handlers.trace(guide).get_trace(x, subsample_size=4)
    site = tr["_amortized_latent"]
    assert site["value"].shape == (4, 3) and site["scale"] == pytest.approx(3.0)


def test_bad_generator_output_is_named():
    y = jnp.array([0.5])
    guide = ImplicitGuide(
        global_model, lambda p, e: e @ p, generator_params=jnp.ones((4, 2)), noise_dim=4
    )
    with pytest.raises(ValueError, match=r"\(batch, 4\)"):
        fit(global_model, guide, y, steps=1)


def test_arviz_from_svi(fitted_global):
    pytest.importorskip("arviz_base")
    from numpyro_ext.arviz import from_svi

    y, guide, params = fitted_global
    dt = from_svi(guide, params, model_args=(y,), num_samples=20)
    assert dt.posterior["mu"].shape[-1] == 20 or dt.posterior["mu"].size == 20
    assert "y" in dt.log_likelihood
