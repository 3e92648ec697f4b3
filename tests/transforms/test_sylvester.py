import jax
import jax.numpy as jnp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from numpyro_ext.transforms import Sylvester
from tests.transforms.conftest import PROPERTY, SEED


@PROPERTY
@given(seed=SEED, scale=st.floats(0.1, 3.0))
def test_sylvester_satisfies_contract(check_bijector, normal, dtype, seed, scale):
    draw = normal(seed)
    flow = Sylvester(draw(3, 3), scale * draw(3, 3), scale * draw(3, 3), draw(3))
    check_bijector(flow, 2 * draw(2, 2, 3), dtype)


def test_sylvester_inverse_raises_on_non_finite_input():
    flow = Sylvester.init(jax.random.key(0), 2)
    with pytest.raises(ValueError, match="Sylvester: the numerical inverse did not converge"):
        flow.inverse(jnp.array([jnp.nan, 1.0]))


def test_sylvester_checks_parameter_shapes():
    with pytest.raises(ValueError, match=r"raw_r must be \(3, 3\)"):
        Sylvester(jnp.ones((3, 3)), jnp.ones((2, 2)), jnp.ones((3, 3)), jnp.ones(3))
