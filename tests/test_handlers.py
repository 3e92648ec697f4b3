"""Tests of the Pólya-gamma augmentation handler: exact marginalisation, masks, plates, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.infer.util import log_density

from numpyro_ext.distributions import PolyaGamma
from numpyro_ext.handlers import PolyaGammaLikelihood, polya_gamma


def _ones_for_auxiliaries(site):
    if site["name"].endswith("_pg_omega"):
        return jnp.ones(site["fn"].shape())
    return None


def _trace(model, *args):
    """Trace with unit auxiliaries: these tests check structure, not the PG sampler."""
    model = handlers.substitute(handlers.seed(model, 0), substitute_fn=_ones_for_auxiliaries)
    return handlers.trace(model).get_trace(*args)


PSI = np.array([-3.0, -0.7, 0.0, 0.4, 2.5])


def _likelihood(kind, psi):
    if kind == "bernoulli":
        return dist.Bernoulli(logits=psi), np.array([1.0, 0.0, 1.0, 1.0, 0.0])
    if kind == "binomial":
        return dist.Binomial(6, logits=psi), np.array([0.0, 2.0, 6.0, 3.0, 5.0])
    return dist.NegativeBinomialLogits(2.5, psi), np.array([0.0, 1.0, 4.0, 7.0, 2.0])


def _model(kind):
    def model(psi, y):
        with numpyro.plate("n", psi.shape[0]):
            numpyro.sample("y", _likelihood(kind, psi)[0], obs=y)

    return model


def _site_log_probs(model, args, values):
    """Per-observation log densities of every sample site of ``model`` at ``values``."""
    tr = handlers.trace(handlers.substitute(handlers.seed(model, 0), data=values)).get_trace(*args)
    return {k: s["fn"].log_prob(s["value"]) for k, s in tr.items() if s["type"] == "sample"}


@pytest.mark.parametrize("kind", ["bernoulli", "binomial", "negbin"])
def test_integrating_out_omega_returns_the_original_likelihood(x64, kind):
    # quadrature over log(omega): the integrand is smooth and decays at both ends, so the
    # trapezoid rule on this grid is accurate far below the 1e-6 tolerance of PG.log_prob.
    psi = jnp.asarray(PSI)
    y = jnp.asarray(_likelihood(kind, PSI)[1])
    u = jnp.linspace(-9.0, 5.0, 6001)

    def augmented(log_omega):
        omega = jnp.full(psi.shape, jnp.exp(log_omega))
        lp = _site_log_probs(polya_gamma(_model(kind)), (psi, y), {"y_pg_omega": omega})
        return lp["y"] + lp["y_pg_omega"] + log_omega

    integrand = jax.jit(jax.vmap(augmented))(u)
    marginal = jax.scipy.special.logsumexp(integrand, axis=0) + jnp.log(u[1] - u[0])
    expected = _site_log_probs(_model(kind), (psi, y), {})["y"]
    np.testing.assert_allclose(marginal, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", ["bernoulli", "binomial", "negbin"])
def test_factor_matches_the_laplace_transform_identity(x64, kind):
    # E_PG(b,0)[exp(-omega psi^2/2)] = cosh(psi/2)^-b, so the factor's omega-free part times
    # that expectation is the likelihood, in closed form.
    base, y = _likelihood(kind, jnp.asarray(PSI))
    factor = PolyaGammaLikelihood(base, jnp.zeros(PSI.shape))
    meta = _trace(polya_gamma(_model(kind)), jnp.asarray(PSI), jnp.asarray(y))["y"]["infer"]
    meta = meta["polya_gamma"]
    log_cosh = jnp.log(jnp.cosh(0.5 * PSI))
    np.testing.assert_allclose(
        factor.log_prob(y) - meta["b"] * log_cosh, base.log_prob(y), rtol=1e-12, atol=1e-12
    )


def test_auxiliaries_live_in_the_same_plates_with_one_per_observation(dtype):
    def model(x, y):
        beta = numpyro.sample("beta", dist.Normal(0.0, 1.0))
        with numpyro.plate("rows", 3, dim=-2), numpyro.plate("cols", 4):
            numpyro.sample("y", dist.Bernoulli(logits=beta * x), obs=y)
        numpyro.sample("z", dist.Bernoulli(logits=beta * x).to_event(2), obs=y)

    x, y = jnp.ones((3, 4), dtype), jnp.zeros((3, 4), dtype)
    tr = _trace(polya_gamma(model), x, y)
    assert tr["y_pg_omega"]["fn"].shape() == (3, 4)
    assert {f.name for f in tr["y_pg_omega"]["cond_indep_stack"]} == {"rows", "cols"}
    assert tr["z_pg_omega"]["fn"].event_shape == (3, 4)
    assert tr["y"]["fn"].log_prob(y).dtype == dtype
    assert tr["z"]["fn"].log_prob(y).shape == ()


def test_masks_drop_the_augmented_factor_exactly_where_the_original_was_dropped():
    x = jnp.array([0.5, -1.0, 2.0, 0.3])
    keep = jnp.array([True, False, True, False])

    def model(y, fn_mask=None, handler_mask=None):
        beta = numpyro.sample("beta", dist.Normal(0.0, 1.0))
        with (
            numpyro.plate("n", 4),
            handlers.mask(mask=handler_mask if handler_mask is not None else True),
        ):
            d = dist.Bernoulli(logits=beta * x)
            numpyro.sample("y", d.mask(fn_mask) if fn_mask is not None else d, obs=y)

    params = {"beta": 0.7, "y_pg_omega": jnp.array([0.3, 0.2, 0.9, 0.4])}
    y1, y2 = jnp.array([1.0, 0.0, 0.0, 1.0]), jnp.array([1.0, 1.0, 0.0, 0.0])
    aug = polya_gamma(model)
    for kwargs in ({"fn_mask": keep}, {"handler_mask": keep}):
        joint = jax.jit(lambda y, kwargs=kwargs: log_density(aug, (y,), kwargs, params)[0])
        lp1, lp2 = joint(y1), joint(y2)
        assert float(lp1) == pytest.approx(float(lp2), abs=1e-6)  # masked y do not count
        full = jax.jit(lambda y: log_density(aug, (y,), {}, params)[0])(y1)
        assert float(lp1) != pytest.approx(float(full), abs=1e-3)


def test_obs_mask_augments_the_observed_part_and_leaves_imputation_alone():
    def model(y):
        beta = numpyro.sample("beta", dist.Normal(0.0, 1.0))
        with numpyro.plate("n", 3):
            numpyro.sample(
                "y", dist.Bernoulli(logits=beta), obs=y, obs_mask=jnp.array([True, False, True])
            )

    tr = _trace(polya_gamma(model, sites=["y"]), jnp.array([1.0, 0.0, 0.0]))
    site = tr["y_observed"]
    assert isinstance(site["fn"].base_dist, PolyaGammaLikelihood)
    assert "y_observed_pg_omega" in tr
    assert "y_unobserved_pg_omega" not in tr
    assert "polya_gamma" not in tr["y_unobserved"]["infer"]
    assert (site["fn"].log_prob(site["value"]) != 0).tolist() == [True, False, True]


def test_unnamed_unsupported_sites_are_left_alone_and_named_ones_raise():
    def model():
        numpyro.sample("y", dist.Bernoulli(logits=0.3), obs=1.0)
        numpyro.sample("counts", dist.Poisson(2.0), obs=3.0)
        numpyro.sample("p", dist.Bernoulli(probs=0.3), obs=1.0)

    tr = _trace(polya_gamma(model))
    assert isinstance(tr["y"]["fn"], PolyaGammaLikelihood)
    assert isinstance(tr["counts"]["fn"], dist.Poisson)
    with pytest.raises(ValueError, match="site 'counts' has a Poisson likelihood; only Bern"):
        _trace(polya_gamma(model, sites=["counts"]))
    with pytest.raises(ValueError, match="site 'p' has a BernoulliProbs likelihood"):
        _trace(polya_gamma(model, sites=["y", "p"]))
    with pytest.raises(ValueError, match="'sites' must be a list"):
        polya_gamma(model, sites="y")


def test_a_named_latent_site_is_refused():
    def model():
        numpyro.sample("y", dist.Bernoulli(logits=0.3))

    with pytest.raises(ValueError, match="site 'y' is not observed"):
        handlers.seed(polya_gamma(model, sites=["y"]), 0)()


def test_decorator_form_and_double_application_augment_once():
    @polya_gamma
    def model():
        numpyro.sample("y", dist.Binomial(4, logits=0.2), obs=3.0)

    tr = _trace(polya_gamma(model))
    assert [k for k in tr if k.endswith("_pg_omega")] == ["y_pg_omega"]
    assert float(tr["y_pg_omega"]["fn"].b) == 4.0


def test_auxiliary_prior_is_pg_b_zero():
    tr = _trace(
        polya_gamma(_model("negbin")), jnp.asarray(PSI), jnp.asarray(_likelihood("negbin", PSI)[1])
    )
    prior = tr["y_pg_omega"]["fn"]
    assert isinstance(prior, PolyaGamma)
    np.testing.assert_allclose(prior.b, _likelihood("negbin", PSI)[1] + 2.5)
    np.testing.assert_allclose(prior.c, 0.0)


def test_predictive_on_the_augmented_model_simulates_the_original_likelihood():
    def model(y=None):
        with numpyro.plate("n", 2000):
            numpyro.sample("y", dist.Bernoulli(logits=1.0), obs=y)

    factor = PolyaGammaLikelihood(dist.Bernoulli(logits=jnp.ones(2000)), jnp.ones(2000))
    draws = factor.sample(jax.random.key(0))
    # mean of 2000 Bernoulli(sigmoid(1)) draws: 5 standard errors
    p = jax.nn.sigmoid(1.0)
    assert abs(float(draws.mean()) - float(p)) < 5 * float(jnp.sqrt(p * (1 - p) / 2000))
