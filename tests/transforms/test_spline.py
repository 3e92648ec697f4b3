import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from numpyro_ext.transforms import RationalQuadraticSpline
from tests.transforms.conftest import PROPERTY, SEED


def _spline(key, d, bins, dtype, scale=1.0, boundary=3.0):
    k1, k2, k3 = jax.random.split(key, 3)
    return RationalQuadraticSpline(
        scale * jax.random.normal(k1, (d, bins), dtype),
        scale * jax.random.normal(k2, (d, bins), dtype),
        scale * jax.random.normal(k3, (d, bins - 1), dtype),
        boundary,
    )


@PROPERTY
@given(seed=SEED, scale=st.floats(0.1, 1.5))
def test_spline_satisfies_bijector_contract(check_bijector, normal, dtype, seed, scale):
    draw = normal(seed)
    spline = RationalQuadraticSpline(scale * draw(3, 6), scale * draw(3, 6), scale * draw(3, 5))
    x = 2.5 * draw(2, 2, 3)  # inside and outside [-3, 3]
    check_bijector(spline, x, dtype)


def test_spline_is_identity_outside_the_boundary_and_continuous_at_it(x64):
    spline = _spline(jax.random.key(0), 1, 5, jnp.float64, scale=2.0)
    x = jnp.array([[-5.0], [-3.0 - 1e-9], [-3.0 + 1e-9], [3.0 - 1e-9], [4.0]])
    y, ld = jax.jit(spline.forward_and_log_det)(x)
    np.testing.assert_allclose(y, x, atol=1e-7)
    np.testing.assert_allclose(ld[jnp.array([0, 4])], 0.0)


def test_spline_is_increasing_and_maps_the_interval_onto_itself(x64):
    spline = _spline(jax.random.key(1), 1, 6, jnp.float64, scale=2.0)
    x = jnp.linspace(-3, 3, 2001)[:, None]
    y = jax.jit(spline.forward)(x)[:, 0]
    assert bool(jnp.all(jnp.diff(y) > 0))
    np.testing.assert_allclose([y[0], y[-1]], [-3.0, 3.0], atol=1e-12)


def test_zero_parameters_give_the_identity():
    spline = RationalQuadraticSpline(jnp.zeros(4), jnp.zeros(4), jnp.zeros(3))
    x = jnp.linspace(-4, 4, 9)
    y, ld = jax.jit(spline.forward_and_log_det)(x)
    np.testing.assert_allclose(y, x, atol=1e-5)
    np.testing.assert_allclose(ld, 0.0, atol=1e-5)


def test_mismatched_parameter_shapes_are_rejected():
    with pytest.raises(ValueError, match=r"derivatives \(\.\.\., K - 1\)"):
        RationalQuadraticSpline(jnp.zeros(4), jnp.zeros(4), jnp.zeros(4))
