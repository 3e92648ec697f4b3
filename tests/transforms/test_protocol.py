"""NumPyro's Transform protocol on the bijectors: sign, domain/codomain, structural equality,
shapes with batched parameters, and what NumPyro builds on them (cdf/icdf, AutoNormal)."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro.distributions import constraints
from numpyro.distributions.transforms import AffineTransform, ExpTransform
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoNormal

from numpyro_ext.transforms import (
    Affine,
    Banana,
    Chain,
    Inline,
    Invert,
    RationalQuadraticSpline,
    Scale,
    Shift,
    neural_spline_flow,
)


def _exp():
    return Inline(
        jnp.exp,
        jnp.log,
        inverse_log_det_jacobian_fn=lambda y: -jnp.log(y),
        codomain=constraints.positive,
        sign=1,
    )


@pytest.mark.parametrize(
    "ours, numpyros",
    [
        (Shift(1.0), AffineTransform(1.0, 1.0)),
        (Affine(0.0, 2.0), AffineTransform(0.0, 2.0)),
        (Affine(0.5, -2.0), AffineTransform(0.5, -2.0)),
        (Scale(-3.0), AffineTransform(0.0, -3.0)),
        (Invert(Affine(0.5, -2.0)), AffineTransform(0.5, -2.0).inv),
        (Chain([Shift(1.0), Scale(-2.0)]), AffineTransform(1.0, -2.0)),
    ],
    ids=["shift", "affine", "affine_negative", "scale_negative", "invert", "chain"],
)
def test_cdf_and_icdf_answer_as_numpyros_affine_transform(ours, numpyros):
    q = jnp.array([0.1, 0.5, 0.9])
    value = jnp.array([-1.0, 0.5, 2.0])
    mine = dist.TransformedDistribution(dist.Normal(0.0, 1.0), ours)
    theirs = dist.TransformedDistribution(dist.Normal(0.0, 1.0), numpyros)
    np.testing.assert_allclose(mine.cdf(value), theirs.cdf(value), rtol=1e-6)
    np.testing.assert_allclose(mine.icdf(q), theirs.icdf(q), rtol=1e-6)
    np.testing.assert_allclose(mine.cdf(mine.icdf(q)), q, rtol=1e-5)


def test_spline_sign_is_increasing_and_gives_a_cdf():
    spline = RationalQuadraticSpline(jnp.array([0.3, -1.0, 0.5]), jnp.zeros(3), jnp.ones(2))
    d = dist.TransformedDistribution(dist.Normal(0.0, 1.0), spline)
    x = jnp.array([-0.4, 0.2])
    np.testing.assert_allclose(d.cdf(spline(x)), dist.Normal(0.0, 1.0).cdf(x), rtol=1e-6)


def test_sign_is_undefined_where_the_map_is_not_elementwise():
    with pytest.raises(NotImplementedError):
        _ = Banana().sign
    with pytest.raises(NotImplementedError, match="sign"):
        _ = Inline(jnp.exp, jnp.log, inverse_log_det_jacobian_fn=lambda y: -jnp.log(y)).sign


@pytest.mark.parametrize(
    "transform, domain, codomain",
    [
        (_exp(), constraints.real, constraints.positive),
        (Chain([ExpTransform()]), constraints.real, constraints.positive),
        (Chain([Shift(1.0), ExpTransform()]), constraints.real, constraints.real),
        (Invert(ExpTransform()), constraints.positive, constraints.real),
        (Invert(_exp()), constraints.positive, constraints.real),
        (Chain([ExpTransform(), Shift(1.0)]), constraints.real, constraints.positive),
    ],
    ids=["inline", "chain", "chain_shift_last", "invert", "invert_inline", "chain_exp_last"],
)
def test_domain_and_codomain_are_the_parts(transform, domain, codomain):
    assert transform.domain == domain
    assert transform.codomain == codomain


def test_chain_reinterprets_an_elementwise_codomain_over_the_chain_event():
    chain = Chain([ExpTransform(), Banana()])
    assert chain.codomain.event_dim == 1
    assert chain.codomain(jnp.array([[1.0, 2.0], [1.0, -2.0]])).tolist() == [True, False]


def test_autonormal_stays_in_the_support_of_a_transformed_site():
    def model():
        numpyro.sample(
            "x", dist.TransformedDistribution(dist.Normal(0.5, 0.3), Chain([ExpTransform()]))
        )

    guide = AutoNormal(model)
    svi = SVI(model, guide, optax.adam(0.05), Trace_ELBO())
    result = svi.run(jax.random.key(0), 200, progress_bar=False)
    assert np.isfinite(result.losses[-1])
    draws = guide.sample_posterior(jax.random.key(1), result.params, sample_shape=(500,))["x"]
    assert bool(jnp.all(draws > 0))
    # the posterior is the prior: log x ~ N(0.5, 0.3)
    np.testing.assert_allclose(jnp.mean(jnp.log(draws)), 0.5, atol=0.1)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Shift(jnp.array([1.0, 2.0])),
        lambda: Chain([Scale(2.0), Banana(0.5, 1.0)]),
        lambda: Invert(Affine(1.0, 3.0)),
        lambda: neural_spline_flow(jax.random.key(0), 3, num_layers=2, hidden=(4,)),
    ],
    ids=["shift", "chain", "invert", "flow"],
)
def test_a_bijector_passed_through_jit_equals_itself(make):
    bijector = make()
    through = jax.jit(lambda b: b)(bijector)
    assert through == bijector
    assert bool(through.eq(bijector))
    assert bool(jax.jit(lambda a, b: a.eq(b))(bijector, through))
    changed = jax.tree.map(lambda a: a + 1, bijector)
    assert changed != bijector
    assert not bool(jax.jit(lambda a, b: a.eq(b))(bijector, changed))


def test_equality_distinguishes_types_and_static_settings():
    assert Shift(1.0) != Scale(1.0)
    assert Banana(1.0, 1.0) == Banana(1.0, 1.0)
    assert Banana(1.0, 1.0) != Banana(1.0, 2.0)
    assert Shift(1.0) != 1.0


def test_banana_and_chain_take_batched_parameters():
    banana = Banana(jnp.array([0.5, 1.0, 2.0]), 1.0)
    x = jnp.array([0.3, -0.2])
    y = banana(x)
    assert y.shape == (3, 2) == banana.forward_shape(x.shape)
    assert banana.log_abs_det_jacobian(x, y).shape == (3,)
    chain = Chain([banana, Shift(1.0)])
    np.testing.assert_allclose(chain.log_abs_det_jacobian(x, chain(x)), np.zeros(3))
    np.testing.assert_allclose(chain.inv(chain(x)), np.broadcast_to(x, (3, 2)), rtol=1e-6)
    d = dist.TransformedDistribution(dist.Normal(jnp.zeros(2), 1.0).to_event(1), banana)
    assert d.log_prob(y).shape == (3,)


@pytest.mark.parametrize(
    "bijector, shape, expected",
    [
        (Affine(jnp.zeros(3), 2.0), (4, 1), (4, 3)),
        (Scale(jnp.ones((2, 1))), (3,), (2, 3)),
        (
            RationalQuadraticSpline(jnp.zeros((5, 4)), jnp.zeros((5, 4)), jnp.zeros((5, 3))),
            (),
            (5,),
        ),
    ],
    ids=["affine", "scale", "spline"],
)
def test_forward_shape_broadcasts_the_parameters(bijector, shape, expected):
    assert bijector.forward_shape(shape) == expected
    assert bijector(jnp.zeros(shape)).shape == expected
    assert bijector.inverse_shape(expected) == expected


def test_a_batch_of_contexts_batches_an_unbatched_input_through_a_scanned_flow():
    flow = neural_spline_flow(jax.random.key(0), dim=3, num_layers=2, hidden=(4,), context_dim=2)
    flow = jax.tree.map(lambda a: a + 0.1, flow).conditioned(jnp.ones((5, 2)))
    y, log_det = flow.forward_and_log_det(jnp.zeros(3))
    assert y.shape == (5, 3) and log_det.shape == (5,)
    np.testing.assert_allclose(flow.inverse(y), np.zeros((5, 3)), atol=1e-5)
