"""The inducing-variable abstraction takes inter-domain features without changes elsewhere.

``GaussianWindows`` is an inter-domain feature written here only from the two methods the
abstraction asks for: :math:`u_m = \\int f(x) N(x; z_m, s^2) dx` under a squared-exponential
kernel (Lázaro-Gredilla and Figueiras-Vidal 2009), with

- :math:`\\operatorname{Cov}(u_m, f(x)) = \\sigma^2 \\sqrt{\\ell^2 / (\\ell^2 + s^2)}
  \\exp(-(x - z_m)^2 / 2(\\ell^2 + s^2))`,
- :math:`\\operatorname{Cov}(u_m, u_n) = \\sigma^2 \\sqrt{\\ell^2 / (\\ell^2 + 2 s^2)}
  \\exp(-(z_m - z_n)^2 / 2(\\ell^2 + 2 s^2))`.

The collapsed bound, its optimal q(u), the conditional and the SVGP guide then run on it
unchanged.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from jax.scipy.stats import multivariate_normal
from numpy.polynomial.hermite_e import hermegauss
from numpyro import handlers
from numpyro.infer import SVI, TraceMeanField_ELBO

from numpyro_ext.distributions import GaussianProcess
from numpyro_ext.gp import (
    InducingPoints,
    InducingVariables,
    SquaredExponential,
    collapsed_elbo,
    collapsed_predict,
    collapsed_q_u,
)
from numpyro_ext.gp.kernels import pytree_dataclass
from numpyro_ext.guides import SparseGP

KERNEL = SquaredExponential(1.3, 0.6)
NOISE = 0.09


@pytree_dataclass
class GaussianWindows(InducingVariables):
    """Integrals of ``f`` against Gaussian windows ``N(z_m, width^2)``, 1-D inputs."""

    Z: jax.Array
    width: jax.Array

    def __len__(self):
        return self.Z.shape[0]

    def _scaled(self, kernel, a, b, s2):
        ell2 = kernel.lengthscale**2
        d2 = (a[:, None] - b[None, :]) ** 2
        return kernel.variance * jnp.sqrt(ell2 / (ell2 + s2)) * jnp.exp(-0.5 * d2 / (ell2 + s2))

    def Kuu(self, kernel):
        return self._scaled(kernel, self.Z, self.Z, 2 * self.width**2)

    def Kuf(self, kernel, X):
        return self._scaled(kernel, self.Z, X[:, 0], self.width**2)


def _data(n=30):
    X = jnp.linspace(0.0, 5.0, n)[:, None]
    y = jnp.sin(2 * X[:, 0]) + 0.3 * jax.random.normal(jax.random.key(0), (n,))
    return X, y


def test_gaussian_window_covariances_match_quadrature(x64):
    # Gauss-Hermite (probabilists') nodes integrate against N(0, 1) exactly for polynomials of
    # degree < 2 * 60; the smooth integrands here converge to machine precision.
    t, w = hermegauss(60)
    w = w / np.sqrt(2 * np.pi)
    feat = GaussianWindows(jnp.array([0.2, 1.0, 2.5]), jnp.asarray(0.4))
    x = jnp.array([0.0, 0.7, 3.0])
    nodes = feat.Z[:, None] + feat.width * t  # (M, Q): window nodes of each u_m
    kuf = jnp.einsum("q,mqn->mn", w, KERNEL(nodes.reshape(-1, 1), x[:, None]).reshape(3, -1, 3))
    np.testing.assert_allclose(feat.Kuf(KERNEL, x[:, None]), kuf, rtol=1e-12)
    K = KERNEL(nodes.reshape(-1, 1), nodes.reshape(-1, 1)).reshape(3, 60, 3, 60)
    kuu = jnp.einsum("p,q,mpnq->mn", w, w, K)
    np.testing.assert_allclose(feat.Kuu(KERNEL), kuu, rtol=1e-12)


def test_collapsed_bound_with_inter_domain_features(x64):
    X, y = _data()
    Z = jnp.linspace(0.2, 4.8, 6)
    points = collapsed_elbo(KERNEL, X, y, InducingPoints(Z[:, None]), NOISE)
    narrow = collapsed_elbo(KERNEL, X, y, GaussianWindows(Z, jnp.asarray(1e-5)), NOISE)
    np.testing.assert_allclose(narrow, points, rtol=1e-8)  # windows -> point evaluations
    K = KERNEL(X) + NOISE * jnp.eye(X.shape[0])
    evidence = multivariate_normal.logpdf(y, jnp.zeros_like(y), K)
    wide = collapsed_elbo(KERNEL, X, y, GaussianWindows(Z, jnp.asarray(0.3)), NOISE)
    assert wide < evidence and abs(wide - points) > 1e-3


def model(X, y=None):
    f = numpyro.sample("f", GaussianProcess(KERNEL, X))
    numpyro.sample("y", dist.Normal(f, jnp.sqrt(NOISE)), obs=y)


def test_svgp_guide_runs_on_inter_domain_features(x64):
    X, y = _data()
    feat = GaussianWindows(jnp.linspace(0.2, 4.8, 6), jnp.asarray(0.3))
    guide = SparseGP(model, inducing=feat)
    svi = SVI(model, guide, optax.adam(0.01), TraceMeanField_ELBO())
    state = svi.init(jax.random.key(0), X, y)
    assert {"auto_f_Z", "auto_f_width"} <= set(svi.get_params(state))
    # At the collapsed optimum, the guide's analytic ELBO is the collapsed bound and its
    # predictions are SGPR's: the conditional and the KL used nothing but Kuu and Kuf.
    q_mu, q_sqrt = collapsed_q_u(KERNEL, X, y, feat, NOISE)
    params = {"auto_f_Z": feat.Z, "auto_f_width": feat.width}
    params |= {"auto_f_q_mu": q_mu, "auto_f_q_sqrt": q_sqrt}
    bound = collapsed_elbo(KERNEL, X, y, feat, NOISE)
    np.testing.assert_allclose(_analytic_elbo(guide, params, X, y), bound, rtol=1e-9)
    X_new = jnp.array([[-0.5], [2.2], [6.0]])
    mean, var = guide.predict(params, X_new)
    m, v = collapsed_predict(KERNEL, X, y, feat, NOISE, X_new)
    np.testing.assert_allclose(mean, m, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(var, v, rtol=1e-6, atol=1e-9)
    # The bound is the ELBO maximised over q(u), so (envelope theorem) its gradient in the
    # window widths is the ELBO's at the optimum with q held fixed.
    grad = jax.grad(lambda s: _analytic_elbo(guide, params | {"auto_f_width": s}, X, y))
    expected = jax.grad(lambda s: collapsed_elbo(KERNEL, X, y, GaussianWindows(feat.Z, s), NOISE))
    assert abs(expected(feat.width)) > 0.1
    np.testing.assert_allclose(grad(feat.width), expected(feat.width), rtol=1e-6)
    state, loss = jax.jit(svi.update)(state, X, y)
    assert np.isfinite(loss)


def _analytic_elbo(guide, params, X, y):
    """E_q[log N(y | f, s^2)] - KL(q(u) || p(u)) from the guide's site distribution."""
    tr = handlers.trace(handlers.seed(handlers.substitute(guide, params), 0)).get_trace(X, y)
    q = tr["f"]["fn"]
    loglik = dist.Normal(q.loc, jnp.sqrt(NOISE)).log_prob(y) - q.variance / (2 * NOISE)
    return jnp.sum(loglik) - q.kl
