import jax.numpy as jnp
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from numpyro_ext.transforms import Radial
from tests.transforms.conftest import PROPERTY, SEED


@PROPERTY
@given(seed=SEED, scale=st.floats(0.1, 3.0))
def test_radial_satisfies_contract(check_bijector, normal, dtype, seed, scale):
    draw = normal(seed)
    flow = Radial(draw(3), scale * draw(), scale * draw())
    check_bijector(flow, 2 * draw(2, 2, 3), dtype)


def test_radial_contracts_fully_at_the_invertibility_limit_and_still_inverts(x64):
    flow = Radial(jnp.zeros(2), 0.0, -30.0)  # beta -> -alpha: strongest contraction
    x = jnp.array([[1e-3, 0.0], [0.5, -2.0], [10.0, 3.0]])
    y, ld = flow.forward_and_log_det(x)
    np.testing.assert_allclose(flow.inverse(y), x, rtol=1e-8)
    assert bool(jnp.all(jnp.isfinite(ld)))


def test_radial_fixes_its_centre():
    flow = Radial(jnp.array([1.0, -2.0]), 0.3, 1.0)
    np.testing.assert_allclose(flow.forward(jnp.array([1.0, -2.0])), [1.0, -2.0])
    np.testing.assert_allclose(flow.inverse(jnp.array([1.0, -2.0])), [1.0, -2.0])
