import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given

from numpyro_ext.transforms import Householder, householder_matrix
from tests.transforms.conftest import PROPERTY, SEED


@PROPERTY
@given(seed=SEED)
def test_householder_satisfies_contract(check_bijector, normal, dtype, seed):
    draw = normal(seed)
    _, log_det = check_bijector(Householder(draw(3, 4)), draw(2, 2, 4), dtype)
    np.testing.assert_array_equal(log_det, 0.0)


def test_householder_product_is_orthogonal_and_reflections_are_involutions():
    q = householder_matrix(jax.random.normal(jax.random.key(0), (3, 3)))
    np.testing.assert_allclose(q @ q.T, jnp.eye(3), atol=1e-6)
    single = Householder(jnp.array([1.0, 2.0, -1.0]))
    x = jnp.array([0.3, 0.1, 2.0])
    np.testing.assert_allclose(single.forward(single.forward(x)), x, atol=1e-6)


def test_householder_rejects_zero_vectors():
    with pytest.raises(ValueError, match="non-zero"):
        Householder(jnp.zeros((2, 3)))
