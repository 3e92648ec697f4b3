import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given

from numpyro_ext.transforms import (
    AffineCoupling,
    Chain,
    Permute,
    Scan,
    Shift,
    SplineCoupling,
    neural_spline_flow,
)
from tests.transforms.conftest import PROPERTY, SEED, perturb


@PROPERTY
@given(seed=SEED)
def test_conditional_scanned_flow_satisfies_contract(check_bijector, normal, dtype, seed):
    # the scan mechanics (stacked leaves, reversed inverse, shared context) under a cheap layer;
    # the spline couplings have their own contract test
    draw = normal(seed)
    layers = [
        Chain([AffineCoupling.init(k, 3, (8,), context_dim=2), Permute.reverse(3)])
        for k in jax.random.split(jax.random.key(0), 2)
    ]
    flow = perturb(Scan.stack(layers), draw, 0.3).conditioned(draw(2, 1, 2))
    check_bijector(flow, draw(2, 2, 3), dtype)


def test_scan_equals_the_chain_of_its_layers():
    rng = np.random.default_rng(0)
    keys = jax.random.split(jax.random.key(0), 3)
    layers = [
        Chain([SplineCoupling.init(k, 3, (8,), num_bins=4), Permute.reverse(3)]) for k in keys
    ]
    noise = lambda *s: rng.normal(size=s).astype(np.float32)  # noqa: E731
    layers = [perturb(layer, noise, 0.2) for layer in layers]
    x = jnp.array([[0.2, -1.0, 0.5], [1.0, 2.0, -0.3]])
    fused = jax.jit(lambda b: b.forward_and_log_det(x))
    y_scan, ld_scan = fused(Scan.stack(layers))
    y_chain, ld_chain = fused(Chain(layers[::-1]))
    np.testing.assert_allclose(y_scan, y_chain, atol=1e-5)
    np.testing.assert_allclose(ld_scan, ld_chain, atol=1e-5)


def test_scan_traces_the_layer_once_whatever_the_depth():
    def equations(depth):
        flow = neural_spline_flow(jax.random.key(0), 2, depth, (8,))
        jaxpr = jax.make_jaxpr(lambda f, x: f.forward_and_log_det(x))(flow, jnp.ones(2))
        return len(jaxpr.jaxpr.eqns), str(jaxpr).count("scan[")

    assert equations(2) == equations(16)
    assert equations(16)[1] == 1


def test_scan_passes_its_context_to_every_layer():
    flow = neural_spline_flow(jax.random.key(0), 2, 2, (8,), context_dim=1)
    rng = np.random.default_rng(3)
    flow = perturb(flow, lambda *s: rng.normal(size=s).astype(np.float32), 0.3)
    x = jnp.array([0.4, -0.4])
    forward = jax.jit(lambda c: flow.conditioned(c).forward(x))
    a, b = forward(jnp.array([0.0])), forward(jnp.array([1.0]))
    assert float(jnp.abs(a - b).max()) > 1e-3
    x_back = jax.jit(lambda y: flow.conditioned(jnp.array([1.0])).inverse(y))(b)
    np.testing.assert_allclose(x_back, x, atol=1e-5)


def test_scan_stack_rejects_layers_of_different_structure():
    with pytest.raises(ValueError, match="differ in structure"):
        Scan.stack([Shift(1.0), Chain([Shift(1.0)])])
