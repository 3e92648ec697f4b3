"""The bijector contract, checked the same way for every bijector (a fixture, not a helper).

The whole contract is one jitted function, so a property test compiles once per shape and
dtype and hypothesis then varies parameter and input values at run-time cost only: each
property test fixes its shapes (batch dimensions included) and hypothesis draws the seed of
the parameters and inputs (numpy-generated, so drawing is cheap) and their scale.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

PROPERTY = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SEED = st.integers(0, 2**16)

# float32 round trips lose digits where a flow compresses space (|log det| up to a few here);
# the tolerances are a few hundred ulps of the dtype, not tuned to pass.
TOL = {jnp.dtype("float32"): 2e-3, jnp.dtype("float64"): 1e-9}


def _jacobian_log_det(bijector, x):
    """log|det J| per batch element from one ``jax.jacfwd`` of the whole batch, and the largest
    derivative of an output with respect to another batch element's input (must be 0)."""
    nd = bijector.event_ndims_in
    batch = x.shape[: x.ndim - nd]
    n, d = int(np.prod(batch, dtype=int)), int(np.prod(x.shape[x.ndim - nd :], dtype=int))
    jac = jax.jacfwd(bijector.forward)(x).reshape(n, d, n, d)
    same = np.eye(n, dtype=bool)[:, None, :, None]
    leak = jnp.max(jnp.abs(jnp.where(same, 0.0, jac)), initial=0.0)
    blocks = jac[np.arange(n), :, np.arange(n), :]  # (n, d, d)
    if nd == 0:
        log_det = jnp.log(jnp.abs(blocks[:, 0, 0]))
    else:
        log_det = jnp.linalg.slogdet(blocks)[1]
    return log_det.reshape(batch), leak


# The contract is compiled once per bijector structure, shape and dtype and then run on many
# hypothesis draws: a fast compile matters more than fast code, so skip XLA's costly passes.
@partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})
def _contract(bijector, x):
    y, log_det = bijector.forward_and_log_det(x)
    x_back, inv_log_det = bijector.inverse_and_log_det(y)

    def loss(b, v):
        out, ld = b.forward_and_log_det(v)
        _, ild = b.inverse_and_log_det(v)
        return jnp.sum(out**2) + jnp.sum(ld) + jnp.sum(ild)

    grads = jax.grad(loss, argnums=(0, 1))(bijector, x)
    finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
    return dict(
        y=y,
        log_det=log_det,
        x_back=x_back,
        inv_log_det=inv_log_det,
        fldj=bijector.forward_log_det_jacobian(x),
        ildj=bijector.inverse_log_det_jacobian(y),
        jac_log_det_and_leak=_jacobian_log_det(bijector, x),
        grads_finite=finite,
    )


@pytest.fixture
def normal(dtype):
    """``normal(seed)(*shape)``: standard normal draws of the test dtype from numpy."""

    def draws(seed):
        rng = np.random.default_rng(seed)
        return lambda *shape: rng.normal(size=shape).astype(dtype)

    return draws


def perturb(tree, draw, scale):
    """Add ``scale`` times standard normal noise to every array leaf of a pytree."""
    return jax.tree.map(lambda a: a + scale * draw(*a.shape), tree)


@pytest.fixture
def check_bijector():
    """Assert the bijector contract on ``x`` (shape ``(*batch, d)``); returns ``(y, ld)``."""

    def check(bijector, x, dtype):
        tol = TOL[jnp.dtype(dtype)]
        x = jnp.asarray(x, dtype)
        out = jax.tree.map(np.asarray, _contract(bijector, x))
        y, log_det = out["y"], out["log_det"]
        assert y.dtype == dtype and log_det.dtype == dtype
        assert log_det.shape == x.shape[: x.ndim - bijector.event_ndims_in]
        assert np.all(np.isfinite(y)) and np.all(np.isfinite(log_det))
        scale = 1 + np.abs(np.asarray(x))
        np.testing.assert_allclose(out["x_back"] / scale, x / scale, atol=tol, rtol=0)
        ld_tol = tol * (1 + float(np.abs(log_det).max(initial=0.0)))
        np.testing.assert_allclose(out["inv_log_det"], -log_det, atol=ld_tol)
        np.testing.assert_allclose(out["fldj"], log_det, atol=ld_tol)
        np.testing.assert_allclose(out["ildj"], out["inv_log_det"], atol=ld_tol)
        jac_log_det, leak = out["jac_log_det_and_leak"]
        np.testing.assert_allclose(jac_log_det, log_det, atol=10 * ld_tol)
        assert leak == 0.0, "an output depends on the input of another batch element"
        assert bool(out["grads_finite"]), "non-finite gradient"
        return y, log_det

    return check
