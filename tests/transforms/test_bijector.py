import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from hypothesis import given
from numpyro.distributions import constraints
from numpyro.distributions.transforms import (
    ComposeTransform,
    ExpTransform,
    ReshapeTransform,
    biject_to,
)
from numpyro.infer import Predictive
from numpyro.infer.reparam import TransformReparam

from numpyro_ext.transforms import (
    Affine,
    Banana,
    Bijector,
    Chain,
    Inline,
    Invert,
    Scale,
    Shift,
    as_bijector,
)
from tests.transforms.conftest import PROPERTY, SEED


def _exp_inline(counter=None):
    def ildj(y):
        if counter is not None:
            counter.append(1)
        return -jnp.log(y)

    return Inline(jnp.exp, jnp.log, inverse_log_det_jacobian_fn=ildj, name="exp")


@PROPERTY
@given(seed=SEED)
def test_chain_of_inline_invert_and_numpyro_parts_satisfies_contract(
    check_bijector, normal, dtype, seed
):
    draw = normal(seed)
    chain = Chain(
        [
            Banana(1.0 + 0.2 * draw()),
            Invert(Affine(draw(2), np.exp(draw(2)))),
            as_bijector(ExpTransform()),
            Shift(draw(2)),
        ]
    )
    assert chain.event_ndims_in == 1
    check_bijector(chain, 0.5 * draw(3, 2, 2), dtype)


def test_inline_derives_the_forward_log_det_from_the_inverse_one():
    exp = _exp_inline()
    x = jnp.array([0.5, -1.0])
    np.testing.assert_allclose(exp.forward_log_det_jacobian(x), x, rtol=1e-6)
    np.testing.assert_allclose(exp.inverse_log_det_jacobian(jnp.exp(x)), -x, rtol=1e-6)


def test_constant_jacobian_bijector_holds_no_state_and_computes_from_its_input():
    calls = []

    def fldj(x):
        calls.append(x.shape)
        return jnp.log(2.0) * jnp.ones(x.shape[:-1])

    double = Inline(
        lambda x: 2 * x,
        lambda y: y / 2,
        forward_log_det_jacobian_fn=fldj,
        forward_min_event_ndims=1,
        is_constant_jacobian=True,
    )
    state = dict(double.__dict__)
    for n in (1, 4):
        ld = double.forward_log_det_jacobian(jnp.ones((n, 3)))
        np.testing.assert_allclose(ld, np.full(n, np.log(2.0)), rtol=1e-6)
    assert calls == [(1, 3), (4, 3)]  # pure: evaluated on the input, nothing cached
    assert double.__dict__ == state


def test_non_constant_log_det_is_recomputed():
    calls = []
    exp = _exp_inline(calls)
    exp.inverse_log_det_jacobian(jnp.ones(2))
    exp.inverse_log_det_jacobian(jnp.ones(2))
    assert len(calls) == 2


def test_log_det_inside_jit_then_outside_uses_no_stale_value():
    shift = Scale(jnp.array(2.0))
    out = jax.jit(lambda x: shift.forward_log_det_jacobian(x))(jnp.ones(3))
    np.testing.assert_allclose(out, np.log(2.0), rtol=1e-6)
    np.testing.assert_allclose(shift.forward_log_det_jacobian(jnp.ones(3)), np.log(2.0))


def test_event_ndims_sums_extra_dimensions_and_rejects_too_few():
    exp = _exp_inline()
    x = jnp.arange(6.0).reshape(2, 3) / 6
    ld1, ld2 = (exp.forward_log_det_jacobian(x, event_ndims=n) for n in (1, 2))
    np.testing.assert_allclose(ld1, x.sum(-1), rtol=1e-6)
    np.testing.assert_allclose(ld2, x.sum(), rtol=1e-6)
    with pytest.raises(ValueError, match="event_ndims must be >= 1"):
        Banana().forward_log_det_jacobian(jnp.ones(2), event_ndims=0)


def test_chain_is_compose_transform_in_reverse_order():
    f, g = Banana(), Affine(jnp.array([0.5, -1.0]), jnp.array([2.0, 0.5]))
    x = jnp.array([[0.3, -0.2], [1.0, 2.0]])
    chain, compose = Chain([f, g]), ComposeTransform([g, f])
    np.testing.assert_allclose(chain(x), compose(x), rtol=1e-6)
    np.testing.assert_allclose(chain(x), f(g(x)), rtol=1e-6)
    np.testing.assert_allclose(
        chain.log_abs_det_jacobian(x, chain(x)), compose.log_abs_det_jacobian(x, compose(x))
    )
    np.testing.assert_allclose(compose.inv(chain(x)), x, rtol=1e-6)


def test_inv_is_an_invert_bijector_and_inverts_back():
    scale = Scale(jnp.array(3.0))
    assert isinstance(scale.inv, Invert) and scale.inv.inv is scale
    np.testing.assert_allclose(scale.inv(jnp.array(6.0)), 2.0)
    np.testing.assert_allclose(scale.inv.forward_log_det_jacobian(jnp.array(1.0)), -np.log(3.0))


def test_shape_changing_bijector_reports_forward_and_inverse_shapes():
    reshape = as_bijector(ReshapeTransform((2, 2), (4,)))
    chain = Chain([reshape, Shift(jnp.ones(4))])
    assert chain.forward_shape((5, 4)) == (5, 2, 2)
    assert chain.inverse_shape((5, 2, 2)) == (5, 4)
    assert (chain.event_ndims_in, chain.event_ndims_out) == (1, 2)
    y, ld = chain.forward_and_log_det(jnp.zeros((5, 4)))
    assert y.shape == (5, 2, 2) and ld.shape == (5,)
    np.testing.assert_allclose(chain.inverse(y), jnp.zeros((5, 4)))


def test_transformed_distribution_uses_the_fused_path_and_matches_change_of_variables():
    base = dist.Normal(jnp.zeros(2), 1.0).to_event(1)
    flow = Chain([Banana(), Scale(jnp.array([1.0, 2.0]))])
    d = dist.TransformedDistribution(base, flow)
    y, intermediates = d.sample_with_intermediates(jax.random.key(0), (4,))
    x = flow.inverse(y)
    expected = base.log_prob(x) - flow.forward_log_det_jacobian(x)
    np.testing.assert_allclose(d.log_prob(y), expected, rtol=1e-5)
    np.testing.assert_allclose(d.log_prob(y, intermediates), expected, rtol=1e-5)


def test_transform_reparam_and_predictive_accept_a_bijector():
    def model():
        numpyro.sample("y", dist.TransformedDistribution(dist.Normal(0.0, 1.0), Shift(3.0)))

    reparam = numpyro.handlers.reparam(model, config={"y": TransformReparam()})
    draws = Predictive(reparam, num_samples=500)(jax.random.key(1))
    assert "y_base" in draws
    np.testing.assert_allclose(draws["y"], draws["y_base"] + 3.0, atol=1e-6)


def test_biject_to_can_register_a_bijector_for_a_constraint():
    class _Above(constraints._GreaterThan):
        pass

    above = _Above(2.0)
    biject_to.register(_Above)(lambda c: Chain([Shift(c.lower_bound), _exp_inline()]))
    t = biject_to(above)
    assert isinstance(t, Bijector)
    np.testing.assert_allclose(t(jnp.array(0.0)), 3.0)


def test_bijectors_are_pytrees_that_jit_and_vmap():
    flow = Chain([Affine(jnp.array(1.0), jnp.array(2.0)), Banana()])
    leaves = jax.tree.leaves(flow)
    assert len(leaves) == 4
    stacked = jax.tree.map(lambda a: jnp.stack([a, a + 1]), flow)
    ys = jax.vmap(lambda b: b.forward(jnp.ones(2)))(stacked)
    np.testing.assert_allclose(ys[0], flow.forward(jnp.ones(2)))
    np.testing.assert_allclose(jax.jit(lambda b: b.inverse(b.forward(jnp.ones(2))))(flow), 1.0)


def test_inline_needs_a_log_det():
    with pytest.raises(ValueError, match="inverse_log_det_jacobian_fn or forward"):
        Inline(jnp.exp, jnp.log)
    with pytest.raises(ValueError, match="Chain: bijectors must be a non-empty"):
        Chain([])
    with pytest.raises(ValueError, match="expected a numpyro Transform"):
        as_bijector(lambda x: x)
