import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from numpyro_ext.transforms import Planar, solve_increasing
from tests.transforms.conftest import PROPERTY, SEED


@PROPERTY
@given(seed=SEED, scale=st.floats(0.1, 3.0))
def test_planar_satisfies_contract(check_bijector, normal, dtype, seed, scale):
    draw = normal(seed)
    # batched parameters: one flow per batch row, broadcasting against x
    flow = Planar(scale * draw(2, 1, 3), scale * draw(2, 1, 3), draw(2, 1))
    check_bijector(flow, 2 * draw(2, 2, 3), dtype)


def test_planar_enforces_invertibility_when_w_dot_u_is_very_negative(x64):
    w = jnp.array([1.0, 0.0])
    flow = Planar(-5.0 * w, w, 0.0)  # w.u = -5 would fold the line; w.u_hat > -1 instead
    u_hat = flow._u_hat()
    assert float(w @ u_hat) > -1
    x = jnp.linspace(-3, 3, 301)[:, None] * w
    y = flow.forward(x)[:, 0]
    assert bool(jnp.all(jnp.diff(y) > 0))


def test_planar_inverse_raises_instead_of_returning_a_wrong_value():
    flow = Planar(jnp.array([0.5, 0.1]), jnp.array([1.0, -1.0]), 0.2)
    with pytest.raises(ValueError, match="Planar: the numerical inverse did not converge"):
        flow.inverse(jnp.array([jnp.nan, 0.0]))
    traced = jax.jit(flow.inverse)(jnp.array([jnp.inf, 0.0]))
    assert bool(jnp.all(jnp.isnan(traced)))


def test_solve_increasing_reaches_float_resolution():
    root, ok = solve_increasing(jnp.exp, jnp.array([2.0, 5.0]), -10.0, 10.0)
    np.testing.assert_allclose(root, np.log([2.0, 5.0]), rtol=1e-6)
    assert bool(jnp.all(ok))
    _, ok = solve_increasing(jnp.exp, jnp.array(1e6), -10.0, 10.0)  # outside the bracket
    assert not bool(ok)
