"""Numerical reliability at extreme magnitudes, float32 and float64 (hypothesis).

Round trips are judged by backward stability: ``inverse(forward(x))`` must be the exact
preimage of a value within a few ulps of ``y``, so the admissible error at ``x`` is a few
``eps * (|y| + B) / slope(x)`` (an output ulp maps back to an input error of ulp / slope) plus a
few ``eps * |x|``. That is only a useful bound if the slope cannot collapse: the parametrisations
bound it (splines: slope in about ``[7e-5, 180]``; network-produced affine scales in about
``[0.0125, 5.54]``), and the tests check those bounds on raw parameters up to ``1e3``, where an
unbounded parametrisation gives slopes near ``1e-7`` and round-trip errors of order one.
"""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from numpyro_ext.transforms import (
    AffineCoupling,
    MaskedAutoregressive,
    RationalQuadraticSpline,
)
from numpyro_ext.transforms.affine import softplus_scale
from tests.transforms.conftest import PROPERTY, SEED

MAGNITUDE = st.sampled_from([1.0, 10.0, 1e2, 1e3])
SLOPE_MIN, SLOPE_MAX = 7e-5, 180.0  # 8 bins, documented in numpyro_ext.transforms.spline
SCALE_MIN, SCALE_MAX = 0.0124, 5.55


@jax.jit
def _spline_round_trip(params, x):
    spline = RationalQuadraticSpline.from_params(params, boundary=3.0)
    y, log_det = spline.forward_and_log_det(x)
    x_back, inv_log_det = spline.inverse_and_log_det(y)
    slope = jax.vmap(jax.grad(lambda v, p: RationalQuadraticSpline.from_params(p, 3.0)(v)))(
        x, params
    )
    return y, log_det, x_back, inv_log_det + spline.forward_log_det_jacobian(x_back), slope


@PROPERTY
@given(seed=SEED, magnitude=MAGNITUDE)
def test_spline_round_trip_is_backward_stable_for_raw_parameters_up_to_1e3(dtype, seed, magnitude):
    rng = np.random.default_rng(seed)
    params = (magnitude * rng.normal(size=(256, 23))).astype(dtype)
    x = rng.uniform(-3.6, 3.6, size=256).astype(dtype)
    y, log_det, x_back, inv_mismatch, slope = map(np.asarray, _spline_round_trip(params, x))
    eps = np.finfo(dtype).eps
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(log_det))
    assert SLOPE_MIN <= np.exp(log_det).min() and np.exp(log_det).max() <= SLOPE_MAX
    # a few tens of ulps of the output, mapped back through the slope: the inverse solves a
    # quadratic whose coefficients carry the forward pass's rounding (worst seen: 17 ulps)
    bound = 32 * eps * ((np.abs(y) + 3.0) / np.exp(log_det) + np.abs(x))
    assert np.all(np.abs(x_back - x) <= bound), np.max(np.abs(x_back - x) / bound)
    # the closed-form slope (eq. 5) and autodiff through the map agree up to the cancellation in
    # xi (1 - xi) and in the denominator of narrow bins: a few thousand ulps, relative
    ld_tol = 4096 * eps * (1 + np.abs(log_det))
    assert np.all(np.abs(log_det - np.log(slope)) <= ld_tol)
    # the inverse's log-det is minus the forward one at the point the inverse found (same bound:
    # the inverse evaluates eq. 5 at its own xi)
    assert np.all(np.abs(inv_mismatch) <= ld_tol)


def test_spline_parametrisation_bounds_the_slope_where_unbounded_raw_values_collapse_it():
    # negative control for the bound above: raw values of 1e3 would, without the soft clamp,
    # give a bin of relative height 1e-3 with knot derivatives ~1e3 (slope ~1e-9 inside)
    params = np.zeros(23, np.float32)
    params[:8] = [1e3, 0, 0, 0, 0, 0, 0, 0]  # one wide bin
    params[8:16] = [-1e3, 0, 0, 0, 0, 0, 0, 0]  # a low one at the same place
    params[16:] = 1e3
    x = jnp.linspace(-2.9, -2.0, 50, dtype=jnp.float32)
    spline = RationalQuadraticSpline.from_params(jnp.asarray(params), 3.0)
    slope = np.exp(np.asarray(spline.forward_log_det_jacobian(x)))
    assert slope.min() >= SLOPE_MIN
    np.testing.assert_allclose(spline.inverse(spline.forward(x)), x, atol=1e-3)


def test_network_scales_are_bounded():
    raw = jnp.array([-1e4, -1e3, -10.0, 0.0, 10.0, 1e3, 1e4])
    scale = np.asarray(softplus_scale(raw))
    assert scale.min() >= SCALE_MIN and scale.max() <= SCALE_MAX
    np.testing.assert_allclose(scale[3], 1.0, rtol=2 * np.finfo(np.float32).eps)  # identity at 0


def _layer(kind, dtype, seed):
    key = jax.random.key(seed)
    layer = (
        AffineCoupling.init(key, 4, (16,))
        if kind == "coupling"
        else MaskedAutoregressive.init(key, 4, (16,))
    )
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda a: (a + 0.5 * rng.normal(size=a.shape)).astype(dtype), layer)


@jax.jit
def _affine_round_trip(layer, x):
    y, log_det = layer.forward_and_log_det(x)
    x_back, inv_log_det = layer.inverse_and_log_det(y)
    jac = jax.vmap(jax.jacfwd(layer.forward))(x)
    return y, log_det, x_back, inv_log_det, jnp.linalg.slogdet(jac)[1]


@PROPERTY
@given(seed=SEED, magnitude=MAGNITUDE, kind=st.sampled_from(["coupling", "maf"]))
def test_affine_coupling_and_maf_are_finite_and_invert_at_large_inputs(
    dtype, seed, magnitude, kind
):
    layer = _layer(kind, dtype, seed % 64)
    x = (magnitude * np.random.default_rng(seed).normal(size=(64, 4))).astype(dtype)
    y, log_det, x_back, inv_log_det, jac_log_det = map(np.asarray, _affine_round_trip(layer, x))
    eps = np.finfo(dtype).eps
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(x_back))
    # y_i = x_i sigma + mu with sigma in [SCALE_MIN, SCALE_MAX]: inverting (y - mu) / sigma
    # costs eps (|y| + |mu|) / sigma, and |mu| <= |y| + SCALE_MAX |x|; for MAF the error of
    # earlier coordinates feeds the later ones' mu and sigma (4 coordinates: a factor 4)
    growth = 4 if kind == "maf" else 1
    scale = np.abs(y).max(-1, keepdims=True) / SCALE_MIN + SCALE_MAX / SCALE_MIN * np.abs(x)
    bound = 8 * growth * eps * (scale + np.abs(x))
    assert np.all(np.abs(x_back - x) <= bound), np.max(np.abs(x_back - x) / bound)
    ld_tol = 64 * eps * (1 + np.abs(log_det))
    assert np.all(np.abs(inv_log_det + log_det) <= ld_tol)
    assert np.all(np.abs(jac_log_det - log_det) <= ld_tol)
