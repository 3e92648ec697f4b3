"""Arc-cosine kernels and spherical activation features (numpyro_ext.gp.spherical).

Exactness in float64: the zonal expansion against Cho & Saul's closed form (truncation error
reported and shown to fall with L), the features' Kuf and Kuu against direct quadrature on the
sphere S^2, the Funk-Hecke coefficients' structure (odd ReLU levels >= 3 vanish), and the
sparse guides built on the features against the dense joint Gaussian.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro import handlers
from numpyro.infer import SVI, TraceMeanField_ELBO

from numpyro_ext.distributions import GaussianProcess
from numpyro_ext.gp import (
    ArcCosine,
    InducingPoints,
    SphericalActivationFeatures,
    activation_coefficients,
    arccos_eigenvalues,
    default_truncation,
    network_weights,
    zonal,
)
from numpyro_ext.guides import SOLVEGP, SparseGP

rng = np.random.default_rng(1)
X2 = rng.normal(size=(7, 2))  # d = 2 inputs, D = 3 after the bias


@pytest.mark.parametrize("order", [0, 1, 2])
@pytest.mark.parametrize("D", [3, 5])
def test_truncated_expansion_converges_to_the_closed_form_arc_cosine_kernel(x64, order, D):
    k = ArcCosine(variance=1.3, bias=0.8, order=order)
    X = rng.normal(size=(6, D - 1))
    exact = k(X)
    errors = [float(jnp.abs(k.expansion(X, X, L) - exact).max()) for L in (4, 8, 16, 32, 64)]
    print(f"order {order}, D {D}: max |k_L - k| at L = 4..64:", [f"{e:.1e}" for e in errors])
    assert all(b < a for a, b in itertools.pairwise(errors))
    # the rate follows the smoothness of J_n at theta = 0: about L^-1, L^-3, L^-5
    assert errors[-1] < {0: 2e-2, 1: 1e-4, 2: 1e-5}[order]


@pytest.mark.parametrize("D", [2, 3, 9])
def test_fused_zonal_sum_equals_the_weighted_stack_of_levels(x64, D):
    from numpyro_ext.gp.spherical import _zonal_sum

    gen = np.random.default_rng(3)
    t = jnp.asarray(np.clip(gen.uniform(-1.0, 1.0, (5, 6)), -1.0, 1.0))
    w = gen.normal(size=11) * (np.arange(11) % 3 != 2)  # some levels weigh nothing
    expected = np.tensordot(w, np.asarray(zonal(t, D, 10)), 1)
    np.testing.assert_allclose(_zonal_sum(t, D, w), expected, rtol=1e-12, atol=1e-12)
    # negative control: dropping the top level is seen
    assert np.max(np.abs(_zonal_sum(t, D, w[:-1]) - expected)) > 1e-3


def test_odd_relu_levels_above_one_vanish_and_the_even_ones_do_not():
    for D in (2, 3, 6):
        s = activation_coefficients("relu", D, 12)
        np.testing.assert_allclose(s[3::2] / s[0], 0.0, atol=1e-11)  # quadrature rounding
        assert np.all(np.abs(s[0::2]) > 1e-5) and abs(s[1]) > 1e-3
    # negative control: an activation with an odd part beyond t has odd levels
    s = activation_coefficients(lambda t: np.maximum(t, 0.0) + t**3, 3, 6)
    assert abs(s[3]) > 1e-3


def _sphere_rule(n_theta, n_phi):
    x, w = np.polynomial.legendre.leggauss(n_theta)
    phi = 2 * np.pi * np.arange(n_phi) / n_phi
    c, p = np.meshgrid(x, phi, indexing="ij")
    s = np.sqrt(1 - c**2)
    W = np.stack([s * np.cos(p), s * np.sin(p), c], -1).reshape(-1, 3)
    return W, np.repeat(w / 2, n_phi) / n_phi  # uniform probability on S^2


# ReLU's kink slows the product Gauss rule: its error on the unit-radius scale falls from about
# 1e-5 to 2e-6 to 2e-7 as the rule doubles (worst of 30 feature draws at 120 x 240: 4.8e-5), so
# ReLU gets an absolute tolerance of twice that worst case; softplus is smooth.
@pytest.mark.parametrize(
    ("activation", "rtol", "atol"), [("softplus", 1e-9, 0.0), ("relu", 2e-3, 1e-4)]
)
def test_kuf_and_kuu_agree_with_quadrature_on_the_sphere(x64, activation, rtol, atol):
    L, kernel = 6, ArcCosine(variance=0.9, bias=0.6, order=1)
    # its own generator: the draw must not depend on which tests ran before in this process
    Z = np.random.default_rng(3).normal(size=(3, 3)) * np.array([[1.0], [2.0], [0.5]])
    feat = SphericalActivationFeatures(jnp.asarray(Z), activation, L)
    W, q = _sphere_rule(40, 80) if activation == "softplus" else _sphere_rule(120, 240)
    Zh, rz = Z / np.linalg.norm(Z, axis=1, keepdims=True), np.linalg.norm(Z, axis=1)
    sigma = {"softplus": lambda t: np.logaddexp(t, 0.0), "relu": lambda t: np.maximum(t, 0)}
    g = sigma[activation](Zh @ W.T)  # (M, Q): the activation on the sphere
    lam = 0.9 * arccos_eigenvalues(1, 3, L)
    Xt = np.concatenate([X2, np.full((7, 1), 0.6)], 1)
    rx, Xh = np.linalg.norm(Xt, axis=1), Xt / np.linalg.norm(Xt, axis=1, keepdims=True)
    # Kuf over the radii: the projection of phi_m onto the kept levels, by quadrature
    proj = sum(
        (g * q) @ zonal(W @ Xh.T, 3, L)[ell] for ell in range(L + 1) if lam[ell] > 0
    )  # (M, N)
    kuf = np.asarray(feat.Kuf(kernel, X2))
    np.testing.assert_allclose(kuf / np.outer(rz, rx), proj, rtol=rtol, atol=atol)
    if activation == "relu":
        return
    # Kuu: <phi_m, phi_m'>_H = sum_l <P_l phi_m, P_l phi_m'>_L2 / lambda_l, all by quadrature
    Zw = zonal(W @ W.T, 3, L)
    kuu = sum(
        ((g * q) @ Zw[ell]) @ (q[:, None] * ((g * q) @ Zw[ell]).T) / lam[ell]
        for ell in range(L + 1)
        if lam[ell] > 0
    )
    np.testing.assert_allclose(feat.Kuu(kernel), np.outer(rz, rz) * kuu, rtol=rtol)


def test_arc_cosine_gram_has_finite_gradients_at_coincident_points(x64):
    X = jnp.asarray(X2)

    def total(bias, X):
        return jnp.sum(ArcCosine(1.0, bias, 1)(X, X))

    grads = jax.grad(total, argnums=(0, 1))(0.5, X)
    assert all(np.all(np.isfinite(g)) for g in grads)


def _model(X, y=None):
    f = numpyro.sample("f", GaussianProcess(ArcCosine(1.0, 0.7, 1), X))
    numpyro.sample("y", dist.Normal(f, 0.1), obs=y)


def _fit_params(guide, X, y, steps=30):
    svi = SVI(_model, guide, optax.adam(0.05), TraceMeanField_ELBO())
    return svi.run(jax.random.key(0), steps, X, y, progress_bar=False).params


def test_svgp_posterior_mean_with_activation_features_is_a_one_hidden_layer_network(x64):
    X = jnp.asarray(X2)
    y = jnp.sin(X[:, 0]) + X[:, 1]
    Z = jnp.asarray(rng.normal(size=(4, 3)))
    feat = SphericalActivationFeatures(Z, "relu", 8)
    guide = SparseGP(_model, inducing=feat)
    params = _fit_params(guide, X, y)
    X_new = jnp.asarray(rng.normal(size=(5, 2)))
    mean, _ = guide.predict(params, X_new)
    fitted = SphericalActivationFeatures(params["auto_f_Z"], "relu", 8)
    net = network_weights(fitted, ArcCosine(1.0, 0.7, 1), params["auto_f_q_mu"])
    np.testing.assert_allclose(fitted.hidden(ArcCosine(1.0, 0.7, 1), X_new) @ net["beta"], mean)
    # the hidden units' pre-activations are W x + b
    Xt = jnp.concatenate([X_new, jnp.full((5, 1), 0.7)], 1)
    np.testing.assert_allclose(X_new @ net["W"].T + net["b"], Xt @ fitted.Z.T, rtol=1e-12)


def test_solvegp_with_spherical_u_and_point_v_matches_the_dense_joint_gaussian(x64):
    X = jnp.asarray(X2)
    kernel = ArcCosine(1.0, 0.7, 1)
    feat = SphericalActivationFeatures(jnp.asarray(rng.normal(size=(3, 3))), "softplus", 6)
    Wv = jnp.asarray(rng.normal(size=(2, 2)))
    guide = SOLVEGP(_model, inducing=feat, inducing_v=Wv, learn_inducing=False)
    params = _fit_params(guide, X, jnp.sin(X[:, 0]), steps=5)
    tr = handlers.trace(handlers.seed(handlers.substitute(guide, params), 0)).get_trace(X)
    q = tr["f"]["fn"]
    # dense: joint covariance of (u, v, f) from Kuu, Kvu = phi(W_v), Kvv, Kuf, Kvf, Kff
    Kuu, Kuv, Kvv = feat.Kuu(kernel), feat.Kuf(kernel, Wv), kernel(Wv)
    Kuu, Kvv = Kuu + 1e-6 * jnp.eye(3), Kvv
    K = jnp.block([[Kuu, Kuv], [Kuv.T, Kvv]])
    Kwf = jnp.concatenate([feat.Kuf(kernel, X), kernel(Wv, X)])
    Lu = jnp.linalg.cholesky(Kuu)
    Cvv = Kvv - Kuv.T @ jnp.linalg.solve(Kuu, Kuv) + 1e-6 * jnp.eye(2)
    K = K.at[3:, 3:].set(Cvv + Kuv.T @ jnp.linalg.solve(Kuu, Kuv))
    Lc = jnp.linalg.cholesky(Cvv)
    T = jnp.eye(5).at[3:, :3].set(Kuv.T @ jnp.linalg.inv(Kuu))
    m_u, R_u = params["auto_f_q_mu"], params["auto_f_q_sqrt"]
    m_v, R_v = params["auto_f_v_q_mu"], params["auto_f_v_q_sqrt"]
    mu = T @ jnp.concatenate([Lu @ m_u, Lc @ m_v])
    S = T @ jax.scipy.linalg.block_diag(Lu @ R_u @ R_u.T @ Lu.T, Lc @ R_v @ R_v.T @ Lc.T) @ T.T
    P = jnp.linalg.solve(K, Kwf).T
    var = kernel.diag(X) - jnp.sum(P * Kwf.T, 1) + jnp.sum((P @ S) * P, 1)
    np.testing.assert_allclose(q.loc, P @ mu, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(q.variance, var, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("order", [0, 1, 2])
def test_per_input_lengthscales_divide_the_inputs_before_the_bias(x64, order):
    ell = np.array([0.5, 3.0])
    k = ArcCosine(variance=1.3, bias=0.8, order=order, lengthscale=ell)
    k1 = ArcCosine(variance=1.3, bias=0.8, order=order)
    X, Y = rng.normal(size=(5, 2)), rng.normal(size=(4, 2))
    np.testing.assert_allclose(k(X, Y), k1(X / ell, Y / ell), rtol=1e-12)
    np.testing.assert_allclose(k.diag(X), k1.diag(X / ell), rtol=1e-12)
    np.testing.assert_allclose(k.expansion(X, Y, 8), k1.expansion(X / ell, Y / ell, 8), rtol=1e-12)
    feat = SphericalActivationFeatures(jnp.asarray(rng.normal(size=(3, 3))), "relu", 6)
    np.testing.assert_allclose(feat.Kuf(k, X), feat.Kuf(k1, X / ell), rtol=1e-12)
    # closed form on the diagonal: sigma^2 |(x / ell, b)|^(2n) J_n(0) / pi
    x = np.array([[1.0, 6.0]])  # (x / ell, b) = (2, 2, 0.8)
    J0 = {0: 1.0, 1: 1.0, 2: 3.0}[order]
    np.testing.assert_allclose(k(x)[0, 0], 1.3 * 8.64**order * J0, rtol=1e-12)
    # negative control: the scales change the kernel
    assert np.max(np.abs(np.asarray(k(X, Y) - k1(X, Y)))) > 1e-2


def test_network_weights_fold_the_lengthscales_into_the_input_weights(x64):
    ell = jnp.array([0.5, 3.0])
    kernel = ArcCosine(1.2, 0.7, 1, ell)
    feat = SphericalActivationFeatures(jnp.asarray(rng.normal(size=(4, 3))), "relu", 8)
    q_mu = jnp.asarray(rng.normal(size=4))
    net = network_weights(feat, kernel, q_mu)
    X_new = jnp.asarray(rng.normal(size=(5, 2)))
    Xt = jnp.concatenate([X_new / ell, jnp.full((5, 1), 0.7)], 1)
    np.testing.assert_allclose(X_new @ net["W"].T + net["b"], Xt @ feat.Z.T, rtol=1e-12)
    # the network is the whitened posterior mean K_fu K_uu^-1 L_u q_mu
    Kuu = feat.Kuu(kernel) + 1e-6 * jnp.eye(4)
    mean = feat.Kuf(kernel, X_new).T @ jnp.linalg.solve(Kuu, jnp.linalg.cholesky(Kuu) @ q_mu)
    np.testing.assert_allclose(feat.hidden(kernel, X_new) @ net["beta"], mean, rtol=1e-9)


def _captured_share(feat, kernel, X):
    """Mean of diag(K_fu K_uu^-1 K_uf) / diag(K_ff): the prior variance the features hold."""
    Kuu = feat.Kuu(kernel)
    Lu = jnp.linalg.cholesky(Kuu + 1e-10 * jnp.trace(Kuu) / len(Kuu) * jnp.eye(len(Kuu)))
    A = jax.scipy.linalg.solve_triangular(Lu, feat.Kuf(kernel, X), lower=True)
    return float(jnp.mean(jnp.sum(A**2, 0) / kernel.diag(X)))


def test_default_truncation_is_the_first_level_with_enough_harmonics(x64):
    gen = np.random.default_rng(5)
    for D, M in [(3, 16), (5, 40), (7, 128)]:
        L = default_truncation(M, D)
        kept = (arccos_eigenvalues(1, D, L) > 0) * zonal(1.0, D, L)
        assert kept.sum() >= M > kept[:-1].sum()  # the first level where the count reaches M
        Z = jnp.asarray(gen.normal(size=(M, D)))
        s = np.linalg.eigvalsh(
            np.asarray(SphericalActivationFeatures(Z, "relu", L).Kuu(ArcCosine()))
        )
        assert s[0] > 1e-8 * s[-1]
        # negative control: one level lower there are fewer harmonics than features
        s = np.linalg.eigvalsh(
            np.asarray(SphericalActivationFeatures(Z, "relu", L - 1).Kuu(ArcCosine()))
        )
        assert s[0] < 1e-10 * s[-1]
    assert SphericalActivationFeatures(jnp.ones((128, 7))).level() == 4


def test_features_at_the_default_level_hold_far_more_prior_variance_than_at_a_high_one(x64):
    X = jnp.asarray(np.random.default_rng(6).normal(size=(200, 6)))
    Z = jnp.asarray(np.random.default_rng(7).normal(size=(128, 7)))
    kernel = ArcCosine()
    default = _captured_share(SphericalActivationFeatures(Z, "relu"), kernel, X)
    high = _captured_share(SphericalActivationFeatures(Z, "relu", 10), kernel, X)
    print(f"share of the prior variance at L = 4: {default:.3f}, at L = 10: {high:.3f}")
    assert default > 0.4 and high < 0.05


def test_features_refuse_other_kernels_and_mismatched_inputs():
    from numpyro_ext.gp import SquaredExponential

    feat = SphericalActivationFeatures(jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="must be an ArcCosine kernel"):
        feat.Kuu(SquaredExponential())
    with pytest.raises(ValueError, match="inputs need 2 columns"):
        feat.Kuf(ArcCosine(), jnp.ones((4, 3)))
    with pytest.raises(ValueError, match="order must be 0, 1 or 2"):
        ArcCosine(order=3)
    with pytest.raises(ValueError, match="lengthscale must be positive"):
        ArcCosine(lengthscale=-1.0)
    with pytest.raises(ValueError, match=r"lengthscale must be a scalar or have shape \(2,\)"):
        ArcCosine(lengthscale=jnp.ones(3))(jnp.ones((4, 2)))
    with pytest.raises(ValueError, match="activation must be one of"):
        activation_coefficients("tanhh", 3, 4)
    assert isinstance(InducingPoints(jnp.ones(2)), InducingPoints)
