"""Tests for numpyro_ext.gp.collapsed: the Titsias bound, its optimal q(u) and predictions."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import optax
import pytest
from jax.scipy.stats import multivariate_normal
from numpyro.distributions import constraints
from numpyro.infer import SVI, Trace_ELBO

from numpyro_ext.gp import (
    InducingPoints,
    Matern32,
    SquaredExponential,
    collapsed_elbo,
    collapsed_factor,
    collapsed_predict,
    collapsed_q_u,
    predict_f,
)
from numpyro_ext.gp.collapsed import _collapsed_elbo

NOISE = 0.09


def _data(n=30, seed=0):
    X = jnp.linspace(0.0, 5.0, n)[:, None]
    y = jnp.sin(2 * X[:, 0]) + 0.3 * jax.random.normal(jax.random.key(seed), (n,))
    return X, y


def _exact(kernel, X, y, X_new):
    K = kernel(X) + NOISE * jnp.eye(X.shape[0])
    Ks = kernel(X, X_new)
    evidence = multivariate_normal.logpdf(y, jnp.zeros_like(y), K)
    mean = Ks.T @ jnp.linalg.solve(K, y)
    var = kernel.diag(X_new) - jnp.sum(Ks * jnp.linalg.solve(K, Ks), 0)
    return evidence, mean, var


@pytest.mark.parametrize("kernel", [SquaredExponential(1.3, 0.7), Matern32(0.8, 1.2)])
def test_sgpr_with_inducing_at_data_equals_exact_evidence_and_predictions(x64, kernel):
    X, y = _data()
    X_new = jnp.array([[0.3], [2.2], [6.0]])
    evidence, mean, var = _exact(kernel, X, y, X_new)
    bound = collapsed_elbo(kernel, X, y, X, NOISE, jitter=1e-12)
    np.testing.assert_allclose(bound, evidence, rtol=1e-8)
    m, v = collapsed_predict(kernel, X, y, X, NOISE, X_new, jitter=1e-12)
    np.testing.assert_allclose(m, mean, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(v, var, rtol=1e-5, atol=1e-8)


def test_collapsed_bound_is_below_the_evidence_and_tightens_with_more_inducing_points(x64):
    X, y = _data()
    kernel = SquaredExponential(1.0, 0.5)
    evidence = _exact(kernel, X, y, X[:1])[0]
    bounds = [collapsed_elbo(kernel, X, y, X[::step], NOISE) for step in (10, 5, 2)]
    assert bounds[0] < bounds[1] < bounds[2] < evidence


def test_optimal_q_u_reproduces_collapsed_predictions_in_both_parameterisations(x64):
    X, y = _data()
    kernel, Z = SquaredExponential(1.0, 0.6), X[::4]
    X_new = jnp.linspace(-1.0, 6.0, 7)[:, None]
    expected = collapsed_predict(kernel, X, y, Z, NOISE, X_new, full_cov=True)
    for whiten in (True, False):
        q_mu, q_sqrt = collapsed_q_u(kernel, X, y, Z, NOISE, whiten=whiten)
        got = predict_f(InducingPoints(Z), kernel, X_new, q_mu, q_sqrt, whiten, full_cov=True)
        np.testing.assert_allclose(got[0], expected[0], rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(got[1], expected[1], rtol=1e-6, atol=1e-9)


def test_mean_function_shifts_the_targets(x64):
    X, y = _data()
    kernel, Z = SquaredExponential(), X[::3]
    shifted = collapsed_elbo(kernel, X, y + 2.0, Z, NOISE, mean_fn=lambda X: jnp.full(30, 2.0))
    np.testing.assert_allclose(shifted, collapsed_elbo(kernel, X, y, Z, NOISE))


def test_collapsed_bound_works_in_both_precisions(dtype):
    X, y = _data()
    b = collapsed_elbo(SquaredExponential(), X.astype(dtype), y.astype(dtype), X[::3], NOISE)
    assert b.dtype == dtype and bool(jnp.isfinite(b))


def test_collapsed_factor_fits_hyperparameters_and_inducing_inputs_with_svi(x64):
    X, y = _data(60)
    Z0 = X[::12]

    def model(X, y):
        ell = numpyro.param("ell", 1.0, constraint=constraints.positive)
        var = numpyro.param("var", 1.0, constraint=constraints.positive)
        noise = numpyro.param("noise", 0.5, constraint=constraints.positive)
        Z = numpyro.param("Z", Z0)
        collapsed_factor("sgpr", SquaredExponential(var, ell), X, y, Z, noise)

    svi = SVI(model, lambda X, y: None, optax.adam(0.1), Trace_ELBO())
    state = svi.init(jax.random.key(0), X, y)
    p0 = svi.get_params(state)
    loss0 = svi.evaluate(state, X, y)
    np.testing.assert_allclose(
        -loss0, collapsed_elbo(SquaredExponential(), X, y, Z0, 0.5), rtol=1e-10
    )
    result = svi.run(jax.random.key(0), 150, X, y, progress_bar=False)
    assert result.losses[-1] < loss0 - 10.0
    assert not np.allclose(result.params["Z"], p0["Z"])


def test_bad_targets_raise_a_clear_error():
    X, _ = _data()
    with pytest.raises(ValueError, match=r"y must have shape \(30,\)"):
        collapsed_elbo(SquaredExponential(), X, jnp.ones(29), X[::3], NOISE)


def _primitives(jaxpr, name):
    """Occurrences of primitive ``name`` in ``jaxpr`` and every sub-jaxpr."""
    n = 0
    for eqn in jaxpr.eqns:
        n += eqn.primitive.name == name
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            n += _primitives(sub, name)
    return n


def test_only_kuu_is_factored_with_a_jitter_loop_even_under_grad(x64):
    # B = I + A A^T has eigenvalues >= 1: it is factored plainly, so the bound, its gradient and
    # the optimal q(u) keep a single data-dependent loop (Kuu's jitter escalation), which an
    # accelerator must report to the host once per call.
    X, y = _data()
    Z, kernel = X[::3], SquaredExponential(1.3, 0.7)
    bound = lambda Z: collapsed_elbo(kernel, X, y, Z, NOISE)  # noqa: E731
    for fn in (bound, jax.value_and_grad(bound), lambda Z: collapsed_q_u(kernel, X, y, Z, NOISE)):
        jaxpr = jax.make_jaxpr(fn)(Z).jaxpr
        assert _primitives(jaxpr, "while") == 1
        assert _primitives(jaxpr, "pure_callback") == 1  # Kuu's failure report, inside its loop


def test_nan_hyperparameters_give_a_nan_bound_rather_than_an_error(x64):
    X, y = _data()
    # Traced NaN (a sampler's proposal); concrete NaN is refused when the kernel is built.
    elbo = jax.jit(lambda v: collapsed_elbo(SquaredExponential(v, 0.7), X, y, X[::3], NOISE))
    assert bool(jnp.isnan(elbo(jnp.nan)))
    q_u = jax.jit(lambda s2: collapsed_q_u(SquaredExponential(1.3, 0.7), X, y, X[::3], s2))
    q_mu, q_sqrt = q_u(jnp.nan)
    assert bool(jnp.all(jnp.isnan(q_sqrt)))
    assert bool(jnp.all(jnp.isnan(q_mu)))


def _plain_bound(kernel, X, y, Z, noise, mean_fn):
    """The bound (anchors' formula) in plain JAX, for automatic differentiation to check."""
    L = jnp.linalg.cholesky(kernel(Z) + 1e-6 * jnp.eye(Z.shape[0]))
    A = jax.scipy.linalg.solve_triangular(L, kernel(Z, X), lower=True) / jnp.sqrt(noise)
    LB = jnp.linalg.cholesky(jnp.eye(Z.shape[0]) + A @ A.T)
    r = y - mean_fn(X)
    c = jax.scipy.linalg.solve_triangular(LB, A @ r, lower=True) / jnp.sqrt(noise)
    N = X.shape[0]
    return (
        -0.5 * N * jnp.log(2 * jnp.pi * noise)
        - jnp.sum(jnp.log(jnp.diagonal(LB)))
        - 0.5 * (r @ r / noise - c @ c)
        - 0.5 * (jnp.sum(kernel.diag(X)) / noise - jnp.sum(A**2))
    )


def test_closed_form_gradient_and_hessian_match_automatic_differentiation(x64):
    X, y = _data()
    h = (jnp.array(1.3), jnp.array(0.7), X[::3] + 0.05, jnp.array(NOISE), jnp.array(0.2))

    def split(h):
        kernel = SquaredExponential(h[0], h[1])
        return kernel, X, y, h[2], h[3], lambda X: h[4] * X[:, 0]

    ours = lambda h: collapsed_elbo(*split(h))  # noqa: E731  (mean_fn closes over a tracer)
    plain = lambda h: _plain_bound(*split(h))  # noqa: E731
    value_and_grad = jax.jit(lambda h: (jax.value_and_grad(ours)(h), jax.value_and_grad(plain)(h)))
    (got, got_grad), (want, want_grad) = value_and_grad(h)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    for got, want in zip(got_grad, want_grad, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10)
    # Forward mode goes through the rule's own operations: second derivatives are exact too.
    hessians = [jax.jit(jax.hessian(lambda p, f=f: f(p + h[2:])))(h[:2]) for f in (ours, plain)]
    np.testing.assert_allclose(np.array(hessians[0]), np.array(hessians[1]), rtol=1e-8)


def test_zero_noise_or_lengthscale_is_refused_concretely_and_minus_inf_under_jit(x64):
    X, y = _data()
    with pytest.raises(ValueError, match=r"noise_variance must be positive and finite, got 0\.0"):
        collapsed_elbo(SquaredExponential(), X, y, X[::3], 0.0)
    with pytest.raises(ValueError, match="lengthscale must be positive"):
        collapsed_elbo(SquaredExponential(1.0, 0.0), X, y, X[::3], NOISE)
    with pytest.raises(ValueError, match="y must be finite"):
        collapsed_elbo(SquaredExponential(), X, y.at[0].set(jnp.nan), X[::3], NOISE)
    with pytest.raises(ValueError, match="noise_variance must be positive"):
        collapsed_predict(SquaredExponential(), X, y, X[::3], -1.0, X)

    def bound(ell, s2):
        return collapsed_elbo(SquaredExponential(1.0, ell), X, y, X[::3], s2)

    value_and_grad = jax.jit(jax.value_and_grad(bound, argnums=(0, 1)))
    for ell, s2 in [(0.7, 0.0), (0.0, NOISE), (0.7, -1.0)]:
        value, grads = value_and_grad(ell, s2)
        assert value == -jnp.inf and all(g == 0 for g in grads)
    value, grads = value_and_grad(0.7, NOISE)  # the valid case is untouched
    assert bool(jnp.isfinite(value)) and all(bool(jnp.isfinite(g)) for g in grads)


def test_integer_inputs_and_targets_are_promoted():
    X = jnp.arange(10)
    bound = collapsed_elbo(SquaredExponential(1.0, 3.0), X, X % 3, X[::3], 0.5)
    expected = collapsed_elbo(
        SquaredExponential(1.0, 3.0), X * 1.0, X % 3 * 1.0, X[::3] * 1.0, 0.5
    )
    np.testing.assert_allclose(bound, expected)


def test_a_new_mean_function_does_not_recompile(x64):
    X, y = _data()
    kernel, Z = SquaredExponential(), X[::3]
    collapsed_elbo(kernel, X, y, Z, NOISE, mean_fn=lambda X: 0.1 * X[:, 0])
    before = _collapsed_elbo._cache_size()
    for k in range(3):
        collapsed_elbo(kernel, X, y, Z, NOISE, mean_fn=lambda X, k=k: k * X[:, 0])
        collapsed_predict(kernel, X, y, Z, NOISE, X, mean_fn=lambda X, k=k: k * X[:, 0])
    assert _collapsed_elbo._cache_size() == before
    shifted = collapsed_predict(
        kernel, X, y + 2.0, Z, NOISE, X[:4], mean_fn=lambda X: 2.0 + 0 * X[:, 0]
    )
    np.testing.assert_allclose(
        shifted[0], collapsed_predict(kernel, X, y, Z, NOISE, X[:4])[0] + 2.0
    )
