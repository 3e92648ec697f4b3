import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given

from numpyro_ext.transforms import Affine, Scale, Shift
from tests.transforms.conftest import PROPERTY, SEED


@PROPERTY
@given(seed=SEED)
def test_affine_family_satisfies_bijector_contract(check_bijector, normal, dtype, seed):
    draw = normal(seed)
    shift, scale = draw(3), np.exp(0.5 * draw(3)) * np.array([1, -1, 1], dtype)
    x = draw(2, 2, 3)
    for bijector in (Shift(shift), Scale(scale), Affine(shift, scale)):
        check_bijector(bijector, x, dtype)


def test_scale_log_det_is_log_abs_scale_summed_over_event():
    ld = Scale(jnp.array([2.0, -3.0])).forward_log_det_jacobian(jnp.ones((4, 2)), event_ndims=1)
    np.testing.assert_allclose(ld, np.full(4, np.log(6.0)), rtol=1e-6)


def test_affine_keeps_no_state_across_calls():
    bijector = Affine(jnp.array([0.5, 1.0]), jnp.array([2.0, 3.0]))
    state = {k: v for k, v in bijector.__dict__.items()}
    for n in (1, 5):
        bijector.forward_log_det_jacobian(jnp.ones((n, 2)))
        bijector.forward_and_log_det(jnp.ones((n, 2)))
    assert bijector.__dict__.keys() == state.keys()


@pytest.mark.parametrize("make", [Scale, lambda s: Affine(0.0, s)])
def test_zero_scale_is_rejected(make):
    with pytest.raises(ValueError, match="scale must be non-zero"):
        make(jnp.array([1.0, 0.0]))
