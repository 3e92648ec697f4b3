"""Exactness of the orthogonal inducing sets (numpyro_ext.gp.orthogonal, guides.orthogonal).

Every check is against a dense computation from the joint Gaussian of (u, v, f) in float64 on
a small problem, or against SVGP itself; tolerances are rounding-level (no Monte Carlo), except
the joint-draw test whose tolerance is derived from the Monte Carlo standard error.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro import handlers
from numpyro.infer import SVI, Predictive, TraceMeanField_ELBO

from numpyro_ext.distributions import GaussianProcess
from numpyro_ext.gp import (
    InducingPoints,
    SquaredExponential,
    collapsed_elbo,
    conditional_covariances,
    odvgp_collapsed_elbo,
    solvegp_collapsed_elbo,
)
from numpyro_ext.guides import ODVGP, SOLVEGP, SparseGP

KERNEL = SquaredExponential(1.3, 0.7)
NOISE = 0.05
rng = np.random.default_rng(0)
X = np.sort(rng.uniform(-2, 2, 9))[:, None]
Y = np.sin(2 * X[:, 0]) + 0.2 * rng.normal(size=9)
ZU = np.array([[-1.5], [0.1], [1.2]])
ZV = np.array([[-0.6], [0.7]])


def model(X, y=None):
    f = numpyro.sample("f", GaussianProcess(KERNEL, X))
    numpyro.sample("y", dist.Normal(f, jnp.sqrt(NOISE)), obs=y)


def _random_gaussian(key, M):
    k1, k2 = jax.random.split(key)
    R = jnp.tril(0.3 * jax.random.normal(k1, (M, M))) + jnp.diag(0.5 + jnp.arange(M) / (M + 1))
    return jax.random.normal(k2, (M,)), R


def _site(guide, params, X=X):
    tr = handlers.trace(handlers.seed(handlers.substitute(guide, params), 0)).get_trace(X, Y)
    return tr["f"]["fn"]


def _params(guide, key=0):
    svi = SVI(model, guide, optax.adam(0.01), TraceMeanField_ELBO())
    params = svi.get_params(svi.init(jax.random.key(0), X, Y))
    keys = iter(jax.random.split(jax.random.key(key), 10))
    for name in [k for k in params if k.endswith("q_mu")]:
        m, R = _random_gaussian(next(keys), params[name].shape[0])
        params[name], params[name.replace("q_mu", "q_sqrt")] = m, R
    for name in [k for k in params if k.endswith("gamma_a")]:
        params[name] = jax.random.normal(next(keys), params[name].shape)
    return params


def _kl(m, S, K):
    M = m.shape[0]
    Kinv = jnp.linalg.inv(K)
    return 0.5 * (
        jnp.trace(Kinv @ S)
        + m @ Kinv @ m
        - M
        + jnp.linalg.slogdet(K)[1]
        - jnp.linalg.slogdet(S)[1]
    )


def _dense(q_u, q_perp, Zu, Zv, Xs, jitter_v=1e-6):
    """Mean, covariance and KL of q(f) from the joint Gaussian of (u, v, f).

    ``q_u`` and ``q_perp`` are (mean, covariance) of u and of v_perp = v - E[v | u], which the
    map (u, v_perp) -> (u, v) = (u, v_perp + K_vu K_uu^-1 u) turns into q(u, v). The
    jitters are those of the guides: 1e-6 on K_uu, and on C_vv for SOLVE-GP only.
    """
    W = jnp.concatenate([jnp.asarray(Zu), jnp.asarray(Zv)])
    Mu = len(Zu)
    K = KERNEL(W) + jnp.diag(jnp.where(jnp.arange(len(W)) < Mu, 1e-6, jitter_v))
    Kuu, Kvu = K[:Mu, :Mu], K[Mu:, :Mu]
    T = jnp.eye(len(W)).at[Mu:, :Mu].set(Kvu @ jnp.linalg.inv(Kuu))
    mu = T @ jnp.concatenate([q_u[0], q_perp[0]])
    Sigma = T @ jax.scipy.linalg.block_diag(q_u[1], q_perp[1]) @ T.T
    P = jnp.linalg.solve(K, KERNEL(W, Xs)).T
    cov = KERNEL(Xs) - P @ KERNEL(W, Xs) + P @ Sigma @ P.T
    return P @ mu, cov, _kl(mu, Sigma, K)


def _factor(Z):
    return jnp.linalg.cholesky(KERNEL(Z) + 1e-6 * jnp.eye(len(Z)))


def test_solvegp_kl_and_predictions_equal_the_dense_joint_gaussian(x64):
    guide = SOLVEGP(model, inducing=ZU, inducing_v=ZV, learn_inducing=False)
    params = _params(guide)
    Xs = jnp.linspace(-3, 3, 7)[:, None]
    q = _site(guide, params, Xs)
    Lu = _factor(ZU)
    blocks = conditional_covariances(InducingPoints(ZU), InducingPoints(ZV), KERNEL, Xs)
    Lc = blocks["Lc"]
    mu, Ru = params["auto_f_q_mu"], params["auto_f_q_sqrt"]
    mv, Rv = params["auto_f_v_q_mu"], params["auto_f_v_q_sqrt"]
    mean, cov, kl = _dense(
        (Lu @ mu, Lu @ Ru @ Ru.T @ Lu.T), (Lc @ mv, Lc @ Rv @ Rv.T @ Lc.T), ZU, ZV, Xs
    )
    np.testing.assert_allclose(q.loc, mean, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(q.variance, jnp.diagonal(cov), rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(q.kl, kl, rtol=1e-7)
    _, cov2 = guide.predict(params, Xs, full_cov=True)
    np.testing.assert_allclose(cov2, cov, rtol=1e-7, atol=1e-10)
    # negative control: dropping q(v_perp) from the dense side changes the answer
    other = _dense((Lu @ mu, Lu @ Ru @ Ru.T @ Lu.T), (0 * mv, Lc @ Lc.T), ZU, ZV, Xs)
    assert not np.allclose(q.loc, other[0], atol=1e-3)


def test_odvgp_kl_and_predictions_equal_the_dense_joint_gaussian(x64):
    guide = ODVGP(model, inducing=ZU, inducing_gamma=ZV, learn_inducing=False)
    params = _params(guide)
    Xs = jnp.linspace(-3, 3, 7)[:, None]
    q = _site(guide, params, Xs)
    Lb = _factor(ZU)
    Cgg = conditional_covariances(InducingPoints(ZU), InducingPoints(ZV), KERNEL, Xs)["Cvv"]
    m, R, a = params["auto_f_q_mu"], params["auto_f_q_sqrt"], params["auto_f_gamma_a"]
    # ODVGP is q(v_perp) = N(C_gg a, C_gg): the orthogonal part keeps its prior covariance
    mean, cov, kl = _dense((Lb @ m, Lb @ R @ R.T @ Lb.T), (Cgg @ a, Cgg), ZU, ZV, Xs, 0.0)
    np.testing.assert_allclose(q.loc, mean, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(q.variance, jnp.diagonal(cov), rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(q.kl, kl, rtol=1e-6)
    # its mean is (K_fg - K_fb K_bb^-1 K_bg) a + K_fb K_bb^-1 (L_b m): the projected basis
    Kbb = KERNEL(ZU) + 1e-6 * jnp.eye(3)
    proj = KERNEL(Xs, ZV) - KERNEL(Xs, ZU) @ jnp.linalg.solve(Kbb, KERNEL(ZU, ZV))
    direct = proj @ a + KERNEL(Xs, ZU) @ jnp.linalg.solve(Kbb, Lb @ m)
    np.testing.assert_allclose(q.loc, direct, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("cls", [SOLVEGP, ODVGP])
def test_an_empty_orthogonal_set_is_svgp_to_rounding(x64, cls):
    svgp = SparseGP(model, inducing=ZU)
    params = _params(svgp)
    second = {"inducing_v": jnp.zeros((0, 1))} if cls is SOLVEGP else {"num_inducing_gamma": 0}
    guide = cls(model, inducing=ZU, **second)
    _params(guide)
    a, b = _site(svgp, params), _site(guide, params)
    np.testing.assert_allclose(b.loc, a.loc, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(b.variance, a.variance, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(b.kl, a.kl, rtol=1e-13)


def _analytic_elbo(q):
    loglik = dist.Normal(q.loc, jnp.sqrt(NOISE)).log_prob(Y) - q.variance / (2 * NOISE)
    return jnp.sum(loglik) - q.kl


@pytest.mark.parametrize("collapse", ["v", "u"])
def test_solvegp_collapsed_bound_equals_the_uncollapsed_bound_at_its_optimal_q(x64, collapse):
    guide = SOLVEGP(model, inducing=ZU, inducing_v=ZV, learn_inducing=False)
    params = _params(guide)
    kept = "auto_f" if collapse == "v" else "auto_f_v"
    other = "auto_f_v" if collapse == "v" else "auto_f"
    bound, m, R = solvegp_collapsed_elbo(
        KERNEL, X, Y, InducingPoints(ZU), InducingPoints(ZV), NOISE,
        params[f"{kept}_q_mu"], params[f"{kept}_q_sqrt"], collapse=collapse,
    )  # fmt: skip
    at_optimum = {**params, f"{other}_q_mu": m, f"{other}_q_sqrt": R}
    np.testing.assert_allclose(_analytic_elbo(_site(guide, at_optimum)), bound, rtol=1e-10)
    # any other q of the collapsed part is worse
    perturbed = {**at_optimum, f"{other}_q_mu": m + 0.05}
    assert _analytic_elbo(_site(guide, perturbed)) < bound - 1e-6


def test_odvgp_collapsed_bound_equals_the_uncollapsed_bound_at_its_optimal_q(x64):
    guide = ODVGP(model, inducing=ZU, inducing_gamma=ZV, learn_inducing=False)
    params = _params(guide)
    bound, m, R = odvgp_collapsed_elbo(
        KERNEL, X, Y, InducingPoints(ZU), InducingPoints(ZV), NOISE, params["auto_f_gamma_a"]
    )
    at_optimum = {**params, "auto_f_q_mu": m, "auto_f_q_sqrt": R}
    np.testing.assert_allclose(_analytic_elbo(_site(guide, at_optimum)), bound, rtol=1e-10)
    # with a zero gamma weight it is Titsias' bound on the beta set
    zero = odvgp_collapsed_elbo(
        KERNEL, X, Y, InducingPoints(ZU), InducingPoints(ZV), NOISE, jnp.zeros(2)
    )[0]
    np.testing.assert_allclose(zero, collapsed_elbo(KERNEL, X, Y, ZU, NOISE), rtol=1e-8)


def test_solvegp_with_both_parts_optimal_never_beats_sgpr_on_the_union(x64):
    # q(u) q(v_perp) is a sub-family of the full Gaussian over (u, v): its best bound is at
    # most Titsias' bound with Z = [Z_u; Z_v], and reaches it when u is empty
    u, v = InducingPoints(ZU), InducingPoints(ZV)
    sgpr = collapsed_elbo(KERNEL, X, Y, jnp.concatenate([ZU, ZV]), NOISE)

    @jax.jit
    def ascent(m, R):  # coordinate ascent: each step is the exact optimum of one part
        _, mv, Rv = solvegp_collapsed_elbo(KERNEL, X, Y, u, v, NOISE, m, R, collapse="v")
        return solvegp_collapsed_elbo(KERNEL, X, Y, u, v, NOISE, mv, Rv, collapse="u")

    m, R = jnp.zeros(3), jnp.eye(3)
    for _ in range(20):
        b, m, R = ascent(m, R)
    assert b <= sgpr + 1e-8
    empty = InducingPoints(jnp.zeros((0, 1)))
    only_v = solvegp_collapsed_elbo(KERNEL, X, Y, empty, u, NOISE, jnp.zeros(0), jnp.eye(0))[0]
    np.testing.assert_allclose(only_v, collapsed_elbo(KERNEL, X, Y, ZU, NOISE), rtol=1e-8)


@pytest.mark.parametrize("cls", [SOLVEGP, ODVGP])
def test_minibatch_loss_is_unbiased_for_the_full_bound(x64, cls):
    def mb_model(X, y=None, batch_size=None):
        data = numpyro.plate("data", X.shape[0], subsample_size=batch_size)
        with data as idx:
            pass
        f = numpyro.sample("f", GaussianProcess(KERNEL, jnp.asarray(X)[idx]))
        with data:
            obs = None if y is None else jnp.asarray(y)[idx]
            numpyro.sample("y", dist.Normal(f, jnp.sqrt(NOISE)), obs=obs)

    second = {"inducing_v": ZV} if cls is SOLVEGP else {"inducing_gamma": ZV}
    guide = cls(mb_model, inducing=ZU, **second)
    svi = SVI(mb_model, guide, optax.adam(0.01), TraceMeanField_ELBO())
    params = svi.get_params(svi.init(jax.random.key(0), X, Y))
    full = _analytic_elbo(_site(guide, params))
    keys = jax.random.split(jax.random.key(1), 2000)
    elbo = TraceMeanField_ELBO()
    losses = jax.jit(
        jax.vmap(lambda k: elbo.loss(k, params, mb_model, guide, X, Y, batch_size=3))
    )(keys)
    se = jnp.std(losses) / np.sqrt(len(keys))
    assert abs(-jnp.mean(losses) - full) < 4 * se  # 4 Monte Carlo standard errors


def test_solvegp_joint_draws_of_f_and_y_have_the_predicted_moments(x64):
    guide = SOLVEGP(model, inducing=ZU, inducing_v=ZV)
    params = _params(guide)
    Xs = jnp.array([[-0.5], [0.0], [1.5]])
    mean, cov = guide.predict(params, Xs, full_cov=True)
    S = 20000
    draws = guide.sample_posterior(jax.random.key(0), params, Xs, sample_shape=(S,))
    f = draws["f"]
    sd = jnp.sqrt(jnp.diagonal(cov))
    np.testing.assert_allclose(f.mean(0), mean, atol=5 * float(sd.max()) / np.sqrt(S))
    np.testing.assert_allclose(jnp.cov(f.T), cov, atol=5 * np.sqrt(2 / S) * float(cov.max()))
    y = Predictive(model, posterior_samples=draws)(jax.random.key(1), Xs)["y"]
    np.testing.assert_allclose(y.var(0), jnp.diagonal(cov) + NOISE, rtol=5 * np.sqrt(2 / S))


def test_orthogonal_guides_refuse_a_missing_second_set():
    with pytest.raises(ValueError, match="num_inducing_v"):
        SOLVEGP(model, inducing=ZU)
    with pytest.raises(ValueError, match="num_inducing_gamma"):
        ODVGP(model, inducing=ZU)


def test_odvgp_gamma_minibatch_kl_is_unbiased(x64):
    guide = ODVGP(model, inducing=ZU, inducing_gamma=np.linspace(-2, 2, 8)[:, None])
    params = _params(guide)
    exact = float(_site(guide, params).kl)  # no PRNG key outside seed: every row
    batched = ODVGP(model, inducing=ZU, inducing_gamma=np.linspace(-2, 2, 8)[:, None],
                    gamma_batch_size=3)  # fmt: skip
    _params(batched)

    def kl(key):
        tr = handlers.trace(handlers.seed(handlers.substitute(batched, params), key))
        return tr.get_trace(X, Y)["f"]["fn"].kl

    draws = jax.jit(jax.vmap(kl))(jax.random.split(jax.random.key(0), 4000))
    se = float(jnp.std(draws)) / np.sqrt(len(draws))
    assert se > 0 and abs(float(jnp.mean(draws)) - exact) < 4 * se  # 4 Monte Carlo SEs
