import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from numpyro_ext.transforms import AffineCoupling, SplineCoupling
from tests.transforms.conftest import PROPERTY, SEED, perturb

eqx = pytest.importorskip("equinox", reason="Equinox conditioners need the [nn] extra")
nnx = pytest.importorskip("flax.nnx", reason="Flax NNX conditioners need the [nn] extra")


@PROPERTY
@given(seed=SEED, scale=st.floats(0.05, 0.4))
def test_conditional_affine_spline_coupling_satisfies_contract(
    check_bijector, normal, dtype, seed, scale
):
    draw = normal(seed)
    layer = SplineCoupling.init(jax.random.key(0), 4, (8,), num_bins=5, context_dim=2, affine=True)
    layer = perturb(layer, draw, scale).conditioned(draw(2, 1, 2))  # context broadcasts
    check_bijector(layer, 1.5 * draw(2, 3, 4), dtype)


@PROPERTY
@given(seed=SEED, scale=st.floats(0.05, 0.4))
def test_masked_affine_coupling_satisfies_contract(check_bijector, normal, dtype, seed, scale):
    draw = normal(seed)
    layer = AffineCoupling.init(jax.random.key(0), 3, (8,), mask=[True, False, True])
    check_bijector(perturb(layer, draw, scale), draw(3, 3), dtype)


def test_coupling_leaves_conditioning_coordinates_unchanged():
    layer = perturb(
        SplineCoupling.init(jax.random.key(1), 4, (8,), mask=[False, True, False, True]),
        lambda *s: np.random.default_rng(0).normal(size=s).astype(np.float32),
        0.3,
    )
    x = jnp.linspace(-1, 1, 8).reshape(2, 4)
    y = jax.jit(lambda b: b.forward(x))(layer)
    np.testing.assert_array_equal(y[:, [1, 3]], x[:, [1, 3]])
    assert not np.allclose(y[:, [0, 2]], x[:, [0, 2]])


def test_context_changes_the_map():
    layer = perturb(
        SplineCoupling.init(jax.random.key(2), 2, (8,), context_dim=1),
        lambda *s: np.random.default_rng(1).normal(size=s).astype(np.float32),
        0.3,
    )
    x = jnp.array([0.5, 0.5])
    forward = jax.jit(lambda c: layer.conditioned(c).forward(x))
    y0, y1 = forward(jnp.array([0.0])), forward(jnp.array([2.0]))
    assert y0[0] == x[0] and abs(float(y0[1] - y1[1])) > 1e-3


def _mlp_apply(params, x):
    return jnp.tanh(x @ params["w1"]) @ params["w2"]


@pytest.mark.parametrize("kind", ["nnx", "equinox", "pure"])
def test_coupling_accepts_nnx_equinox_and_pure_conditioners(kind):
    k = 2 * 3 - 1  # spline with 2 bins: 3K - 1 parameters for each of 2 coordinates
    if kind == "nnx":
        rngs = nnx.Rngs(0)
        net = nnx.Sequential(nnx.Linear(2, 8, rngs=rngs), nnx.Linear(8, 2 * k, rngs=rngs))
        layer = SplineCoupling(net, split=2, num_bins=2)
    elif kind == "equinox":
        net = eqx.nn.MLP(2, 2 * k, 8, 1, key=jax.random.key(0))
        layer = SplineCoupling(net, split=2, num_bins=2)
    else:
        params = {"w1": jnp.ones((2, 8)) * 0.1, "w2": jnp.ones((8, 2 * k)) * 0.1}
        from numpyro_ext.transforms import as_conditioner

        layer = SplineCoupling(as_conditioner(_mlp_apply, params), split=2, num_bins=2)
    x = jnp.linspace(-1, 1, 12).reshape(3, 4)

    @jax.jit
    def check(b):
        y, ld = b.forward_and_log_det(x)
        jac = jax.vmap(jax.jacfwd(b.forward))(x)
        grads = jax.grad(lambda c: c.forward_and_log_det(x)[1].sum())(b)
        return b.inverse(y), ld, jnp.linalg.slogdet(jac)[1], grads

    x_back, ld, jac_ld, grads = check(layer)
    np.testing.assert_allclose(x_back, x, atol=1e-5)
    np.testing.assert_allclose(jac_ld, ld, atol=1e-5)
    assert any(float(jnp.abs(g).sum()) > 0 for g in jax.tree.leaves(grads))


def test_coupling_reports_a_conditioner_of_the_wrong_width():
    layer = SplineCoupling(lambda x: jnp.zeros((*x.shape[:-1], 3)), split=1, num_bins=4)
    with pytest.raises(ValueError, match="returned 3 values per input, expected 11"):
        layer.forward(jnp.zeros(2))


def test_coupling_rejects_bad_masks():
    with pytest.raises(ValueError, match="exactly one of mask or split"):
        AffineCoupling(lambda x: x)
    with pytest.raises(ValueError, match="both True and False"):
        AffineCoupling(lambda x: x, mask=[True, True])
    with pytest.raises(ValueError, match="leaves nothing to transform"):
        AffineCoupling(lambda x: x, split=2).forward(jnp.zeros(2))
