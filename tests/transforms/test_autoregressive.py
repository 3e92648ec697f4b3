import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from numpyro_ext.transforms import MADE, Invert, MaskedAutoregressive
from tests.transforms.conftest import PROPERTY, SEED, perturb


@PROPERTY
@given(seed=SEED, scale=st.floats(0.05, 0.4))
def test_conditional_spline_maf_satisfies_contract(check_bijector, normal, dtype, seed, scale):
    draw = normal(seed)
    layer = MaskedAutoregressive.init(
        jax.random.key(0), 3, (8,), transform="spline", num_bins=4, context_dim=2
    )
    layer = perturb(layer, draw, scale).conditioned(draw(2))
    check_bijector(layer, 1.5 * draw(2, 2, 3), dtype)


@PROPERTY
@given(seed=SEED, scale=st.floats(0.05, 0.4))
def test_affine_maf_satisfies_contract(check_bijector, normal, dtype, seed, scale):
    draw = normal(seed)
    layer = perturb(MaskedAutoregressive.init(jax.random.key(0), 3, (8,)), draw, scale)
    check_bijector(Invert(layer), draw(4, 3), dtype)  # the IAF direction too


def test_maf_jacobian_is_lower_triangular_and_inverse_is_one_pass():
    rng = np.random.default_rng(0)
    layer = perturb(
        MaskedAutoregressive.init(jax.random.key(1), 4, (16,)),
        lambda *s: rng.normal(size=s).astype(np.float32),
        0.5,
    )
    x = jnp.array([0.3, -0.5, 1.0, 0.2])
    jac = jax.jit(jax.jacfwd(layer.forward))(x)
    np.testing.assert_allclose(jnp.triu(jac, 1), 0.0, atol=1e-7)
    assert float(jnp.abs(jnp.tril(jac, -1)).max()) > 1e-3
    calls = []
    counting = MaskedAutoregressive(
        lambda v: calls.append(1) or layer.conditioner(v), transform="affine"
    )
    jax.jit(counting.inverse)(x)  # traced once: the conditioner is called once per pass
    assert len(calls) == 1


def test_made_outputs_depend_only_on_earlier_inputs():
    made = perturb(
        MADE.init(jax.random.key(0), 4, (12, 12), num_params=2, context_dim=1),
        lambda *s: np.random.default_rng(2).normal(size=s).astype(np.float32),
        1.0,
    )
    jac = jax.jit(jax.jacfwd(made))(jnp.ones(5))  # (8 outputs, 4 inputs + 1 context)
    deps = np.abs(np.asarray(jac)) > 0
    for p in range(2):
        for i in range(4):
            assert not deps[p * 4 + i, i:4].any()
        assert deps[p * 4 + 3, :3].all()
    assert deps[:, 4][4 * 0 + 1 :].any()  # the context reaches the outputs


def test_maf_rejects_unknown_transforms():
    with pytest.raises(ValueError, match="'affine' or 'spline'"):
        MaskedAutoregressive(lambda x: x, transform="cubic")
