r"""The sparse-GP conditional: the marginal :math:`q(f) = \int p(f \mid u) q(u) du` and its KL.

With :math:`q(u) = N(m, S)`, :math:`S = R R^\top` (``q_sqrt = R``, lower triangular), and
:math:`L = \operatorname{chol}(K_{uu})`, write :math:`A_0 = L^{-1} K_{uf}`. Whitened
(:math:`u = L v`, :math:`q(v) = N(m, S)`) the projection is :math:`A = A_0`; unwhitened it is
:math:`A = L^{-\top} A_0 = K_{uu}^{-1} K_{uf}`. Then (Hensman et al. 2013, 2015)

.. math::

    \mu = A^\top m, \qquad
    \Sigma = K_{ff} - A_0^\top A_0 + (R^\top A)^\top (R^\top A),

at cost :math:`O(N M^2)` for the marginal variances. The KL term of the ELBO is
:math:`\mathrm{KL}(N(m, S) \,\|\, N(0, I))` whitened and
:math:`\mathrm{KL}(N(m, S) \,\|\, N(0, K_{uu}))` unwhitened.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular

from numpyro_ext.gp.inducing import InducingVariables
from numpyro_ext.gp.kernels import Kernel
from numpyro_ext.linalg import cholesky

__all__ = ["conditional", "gaussian_kl", "inducing_factor", "predict_f"]


def inducing_factor(inducing: InducingVariables, kernel: Kernel, jitter: float = 1e-6):
    """Cholesky factor ``L`` of ``Kuu + jitter I`` (raises a clear error if it fails).

    :param inducing: the inducing variables.
    :param kernel: the GP kernel.
    :param jitter: diagonal jitter.
    :return: lower-triangular ``(M, M)`` factor.
    """
    return cholesky(inducing.Kuu(kernel), jitter=jitter, name="Kuu (inducing covariance)")


def conditional(
    Kuf: jax.Array,
    Lu: jax.Array,
    Kff: jax.Array,
    q_mu: jax.Array,
    q_sqrt: jax.Array,
    whiten: bool = True,
    full_cov: bool = False,
) -> tuple[jax.Array, jax.Array]:
    r"""Mean and (co)variance of :math:`q(f)` from the covariance blocks.

    :param Kuf: cross-covariance, ``(M, N)``.
    :param Lu: Cholesky factor of :math:`K_{uu}`, ``(M, M)``.
    :param Kff: prior variances ``(N,)``, or the prior covariance ``(N, N)`` when ``full_cov``.
    :param q_mu: variational mean :math:`m`, ``(M,)``.
    :param q_sqrt: lower-triangular :math:`R`, ``(M, M)``.
    :param whiten: whether :math:`q` is over :math:`v = L^{-1} u` (True) or over :math:`u`.
    :param full_cov: return the ``(N, N)`` covariance instead of the ``(N,)`` variances.
    :return: ``(mean, var)``.

    >>> import jax.numpy as jnp
    >>> mean, var = conditional(jnp.ones((2, 3)), jnp.eye(2), jnp.full(3, 5.0),
    ...                         jnp.zeros(2), jnp.eye(2))
    >>> var.tolist()
    [5.0, 5.0, 5.0]
    """
    A0 = solve_triangular(Lu, Kuf, lower=True)
    A = A0 if whiten else solve_triangular(Lu.T, A0, lower=False)
    mean = A.T @ q_mu
    RA = q_sqrt.T @ A
    if full_cov:
        return mean, Kff - A0.T @ A0 + RA.T @ RA
    return mean, Kff - jnp.sum(A0**2, 0) + jnp.sum(RA**2, 0)


def gaussian_kl(q_mu: jax.Array, q_sqrt: jax.Array, Lp: jax.Array | None = None) -> jax.Array:
    r"""KL divergence :math:`\mathrm{KL}(N(m, R R^\top) \,\|\, N(0, L_p L_p^\top))`.

    :math:`\tfrac12[\operatorname{tr}(K^{-1} S) + m^\top K^{-1} m - M + \log|K| - \log|S|]`.

    :param q_mu: mean :math:`m`, ``(M,)``.
    :param q_sqrt: lower-triangular :math:`R` with nonzero diagonal, ``(M, M)``.
    :param Lp: lower Cholesky factor of the prior covariance; ``None`` for the identity.
    :return: scalar KL.

    >>> import jax.numpy as jnp
    >>> float(gaussian_kl(jnp.ones(2), jnp.eye(2)))
    1.0
    """
    M = q_mu.shape[-1]
    logdet_q = 2.0 * jnp.sum(jnp.log(jnp.abs(jnp.diagonal(q_sqrt))))
    if Lp is None:
        trace, maha, logdet_p = jnp.sum(q_sqrt**2), jnp.sum(q_mu**2), 0.0
    else:
        trace = jnp.sum(solve_triangular(Lp, q_sqrt, lower=True) ** 2)
        maha = jnp.sum(solve_triangular(Lp, q_mu, lower=True) ** 2)
        logdet_p = 2.0 * jnp.sum(jnp.log(jnp.diagonal(Lp)))
    return 0.5 * (trace + maha - M + logdet_p - logdet_q)


@partial(jax.jit, static_argnames=("whiten", "full_cov", "jitter"))
def predict_f(
    inducing: InducingVariables,
    kernel: Kernel,
    X: jax.Array,
    q_mu: jax.Array,
    q_sqrt: jax.Array,
    whiten: bool = True,
    full_cov: bool = False,
    jitter: float = 1e-6,
) -> tuple[jax.Array, jax.Array]:
    """Mean and (co)variance of the sparse posterior :math:`q(f(X))` (zero prior mean).

    :param inducing: the inducing variables.
    :param kernel: the GP kernel.
    :param X: inputs, ``(N, D)`` or ``(N,)``.
    :param q_mu: variational mean, ``(M,)``.
    :param q_sqrt: lower-triangular variational scale, ``(M, M)``.
    :param whiten: whitened parameterisation.
    :param full_cov: joint covariance instead of marginal variances.
    :param jitter: diagonal jitter for ``Kuu``.
    :return: ``(mean, var)``.
    """
    Lu = inducing_factor(inducing, kernel, jitter)
    Kff = kernel(X) if full_cov else kernel.diag(X)
    return conditional(inducing.Kuf(kernel, X), Lu, Kff, q_mu, q_sqrt, whiten, full_cov)
