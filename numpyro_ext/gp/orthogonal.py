r"""A second inducing set, orthogonal to the first: SOLVE-GP and orthogonally decoupled bases.

Write :math:`u` for the first set (``M_u`` variables, :math:`K_{uu} = L_u L_u^\top`) and
:math:`v` for the second (``M_v``). The part of :math:`v` that :math:`u` does not explain,
:math:`v_\perp = v - K_{vu} K_{uu}^{-1} u`, is independent of :math:`u` under the prior, with
the conditional covariances

.. math::

    C_{vv} = K_{vv} - K_{vu} K_{uu}^{-1} K_{uv}, \qquad
    C_{vf} = K_{vf} - K_{vu} K_{uu}^{-1} K_{uf}, \qquad
    C_{ff} = K_{ff} - K_{fu} K_{uu}^{-1} K_{uf}.

With :math:`A_u = L_u^{-1} K_{uf}` and :math:`B = L_u^{-1} K_{uv}` these are
:math:`C_{vv} = K_{vv} - B^\top B` and :math:`C_{vf} = K_{vf} - B^\top A_u`.

- SOLVE-GP (Shi, Titsias & Mnih, AISTATS 2020): :math:`q(u)\, q(v_\perp)` with both Gaussian
  and whitened (:math:`u = L_u a`, :math:`v_\perp = L_c b`, :math:`L_c L_c^\top = C_{vv}`):
  mean :math:`A_u^\top m_u + A_v^\top m_v`, :math:`A_v = L_c^{-1} C_{vf}`; variance
  :math:`K_{ff} - |A_u|^2 - |A_v|^2 + |R_u^\top A_u|^2 + |R_v^\top A_v|^2` (column sums);
  KL :math:`\mathrm{KL}(q(a) \| N(0, I)) + \mathrm{KL}(q(b) \| N(0, I))`, which equals
  :math:`\mathrm{KL}(q(u) \| p(u)) + \mathrm{KL}(q(v_\perp) \| N(0, C_{vv}))`.
- Orthogonally decoupled bases (ODVGP; Salimbeni et al., NeurIPS 2018): a covariance set
  :math:`\beta` (the :math:`u` above, SVGP-whitened) and a mean-only set :math:`\gamma` with
  weights :math:`a_\gamma`: mean :math:`A_\beta^\top m + C_{f\gamma} a_\gamma`, the variance
  of SVGP on :math:`\beta`, and KL
  :math:`\mathrm{KL}(q(a) \| N(0, I)) + \tfrac12 a_\gamma^\top C_{\gamma\gamma} a_\gamma`.
  It is SOLVE-GP with :math:`q(v_\perp) = N(C_{vv} a_\gamma, C_{vv})`: the orthogonal part keeps
  its prior covariance and only its mean is fitted.
- Collapsed bounds (Gaussian likelihood): given the other part, the whitened Gaussian part with
  projection :math:`A` integrates out as in Titsias (2009),
  :math:`\log N(r \mid 0, \sigma^2 I + A^\top A) - t / (2\sigma^2)` with :math:`r` the residual
  of the fixed part's mean and :math:`t` the trace of the variance that remains; its optimum
  is :math:`q = N(\Sigma A r / \sigma^2, \Sigma)`, :math:`\Sigma = (I + A A^\top/\sigma^2)^{-1}`.

Everything is written on the matrices (``Kuf``, ``Kvf``, ``Kvu``, ...), which any inducing
variables provide (:mod:`numpyro_ext.gp.inducing`), so spherical features serve as either set.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular

from numpyro_ext.gp.conditional import gaussian_kl, inducing_factor
from numpyro_ext.gp.inducing import InducingVariables, cross_covariance
from numpyro_ext.gp.kernels import Kernel, as_inputs
from numpyro_ext.linalg import cholesky

__all__ = [
    "conditional_covariances",
    "odvgp_collapsed_elbo",
    "odvgp_conditional",
    "odvgp_gamma_kl",
    "orthogonal_collapsed_bound",
    "solvegp_collapsed_elbo",
    "solvegp_conditional",
]


def conditional_covariances(
    u: InducingVariables,
    v: InducingVariables,
    kernel: Kernel,
    X: jax.Array,
    jitter: float = 1e-6,
    factor: bool = True,
) -> dict:
    r"""The blocks of the second set given the first.

    :param u: the first inducing set.
    :param v: the second inducing set.
    :param kernel: the GP kernel.
    :param X: inputs ``(N, D)``.
    :param jitter: diagonal jitter for both factorisations.
    :param factor: also factor :math:`C_{vv}` (``Lc``); ODVGP does not need it.
    :return: dict with ``Lu`` (:math:`\operatorname{chol} K_{uu}`), ``Au``
        (:math:`L_u^{-1} K_{uf}`), ``Cvv``, ``Lc`` (:math:`\operatorname{chol} C_{vv}`),
        ``Cvf`` and ``Cff`` (the diagonal of :math:`C_{ff}`).

    >>> import jax.numpy as jnp
    >>> from numpyro_ext.gp import InducingPoints, SquaredExponential
    >>> u, v = InducingPoints(jnp.array([0.0])), InducingPoints(jnp.array([0.0]))
    >>> blocks = conditional_covariances(u, v, SquaredExponential(), jnp.ones(2), jitter=0.0)
    >>> round(float(blocks["Cvv"][0, 0]), 6)  # v duplicates u: nothing left
    0.0
    """
    X = as_inputs(X, "X")
    Lu = inducing_factor(u, kernel, jitter)
    Au = solve_triangular(Lu, u.Kuf(kernel, X), lower=True)
    B = solve_triangular(Lu, cross_covariance(u, v, kernel).T, lower=True)
    Cvv = v.Kuu(kernel) - B.T @ B
    Cvf = v.Kuf(kernel, X) - B.T @ Au
    Cff = kernel.diag(X) - jnp.sum(Au**2, 0)
    blocks = {"Lu": Lu, "Au": Au, "Cvv": Cvv, "Cvf": Cvf, "Cff": Cff, "B": B}
    if factor:
        blocks["Lc"] = (
            cholesky(Cvv, jitter=jitter, name="C_vv (conditional covariance of v given u)")
            if Cvv.shape[0]
            else Cvv
        )
    return blocks


def solvegp_conditional(
    Au: jax.Array,
    Cvf: jax.Array,
    Lc: jax.Array,
    Kff: jax.Array,
    q_mu_u: jax.Array,
    q_sqrt_u: jax.Array,
    q_mu_v: jax.Array,
    q_sqrt_v: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    r"""SOLVE-GP mean and variance (or covariance) of :math:`q(f)`, whitened.

    :param Au: :math:`L_u^{-1} K_{uf}`, ``(M_u, N)``.
    :param Cvf: :math:`C_{vf}`, ``(M_v, N)``.
    :param Lc: Cholesky factor of :math:`C_{vv}`, ``(M_v, M_v)``.
    :param Kff: prior variances ``(N,)``, or the prior covariance ``(N, N)`` for the joint.
    :param q_mu_u: whitened mean of :math:`u`, ``(M_u,)``.
    :param q_sqrt_u: lower-triangular scale, ``(M_u, M_u)``.
    :param q_mu_v: whitened mean of :math:`v_\perp`, ``(M_v,)``.
    :param q_sqrt_v: lower-triangular scale, ``(M_v, M_v)``.
    :return: ``(mean, var)``; ``var`` has ``Kff``'s shape.
    """
    Av = solve_triangular(Lc, Cvf, lower=True)
    mean = Au.T @ q_mu_u + Av.T @ q_mu_v
    RAu, RAv = q_sqrt_u.T @ Au, q_sqrt_v.T @ Av
    if Kff.ndim == 2:
        return mean, Kff - Au.T @ Au - Av.T @ Av + RAu.T @ RAu + RAv.T @ RAv
    var = Kff - jnp.sum(Au**2, 0) - jnp.sum(Av**2, 0) + jnp.sum(RAu**2, 0) + jnp.sum(RAv**2, 0)
    return mean, var


def odvgp_conditional(
    Ab: jax.Array,
    Cgf: jax.Array,
    Kff: jax.Array,
    q_mu: jax.Array,
    q_sqrt: jax.Array,
    a_gamma: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    r"""ODVGP mean and variance (or covariance) of :math:`q(f)`.

    :param Ab: :math:`L_\beta^{-1} K_{\beta f}`, ``(M_beta, N)``.
    :param Cgf: :math:`C_{\gamma f} = K_{\gamma f} - K_{\gamma\beta} K_{\beta\beta}^{-1}
        K_{\beta f}`, ``(M_gamma, N)``.
    :param Kff: prior variances ``(N,)`` or covariance ``(N, N)``.
    :param q_mu: whitened mean of the :math:`\beta` set.
    :param q_sqrt: its lower-triangular scale.
    :param a_gamma: mean weights of the :math:`\gamma` set, ``(M_gamma,)``.
    :return: ``(mean, var)``.
    """
    mean = Ab.T @ q_mu + Cgf.T @ a_gamma
    RA = q_sqrt.T @ Ab
    if Kff.ndim == 2:
        return mean, Kff - Ab.T @ Ab + RA.T @ RA
    return mean, Kff - jnp.sum(Ab**2, 0) + jnp.sum(RA**2, 0)


def odvgp_gamma_kl(
    a_gamma: jax.Array, Kgg: jax.Array, B: jax.Array, rows: jax.Array | None = None
) -> jax.Array:
    r""":math:`\tfrac12 a^\top C_{\gamma\gamma} a = \tfrac12 (a^\top K_{\gamma\gamma} a -
    |B a|^2)` with :math:`B = L_\beta^{-1} K_{\beta\gamma}`.

    With ``rows`` (a minibatch :math:`I` of the :math:`\gamma` set, as in Salimbeni et al.'s
    code) ``Kgg`` holds only those rows, :math:`K_{I\gamma}`, and :math:`a^\top K a` is
    estimated without bias by :math:`\tfrac{M_\gamma}{|I|} \sum_{j \in I} a_j (K_{I\gamma}
    a)_j`, at cost :math:`O(|I| M_\gamma)` instead of :math:`O(M_\gamma^2)`.

    :param a_gamma: mean weights ``(M_gamma,)``.
    :param Kgg: :math:`K_{\gamma\gamma}` ``(M_gamma, M_gamma)``, or its rows ``(|I|, M_gamma)``.
    :param B: :math:`L_\beta^{-1} K_{\beta\gamma}` ``(M_beta, M_gamma)``.
    :param rows: indices :math:`I` of the rows in ``Kgg``; ``None`` for all of them.
    """
    if rows is None:
        quad = a_gamma @ (Kgg @ a_gamma)
    else:
        quad = a_gamma.shape[0] / rows.shape[0] * (a_gamma[rows] @ (Kgg @ a_gamma))
    return 0.5 * (quad - jnp.sum((B @ a_gamma) ** 2))


def orthogonal_collapsed_bound(
    A: jax.Array, r: jax.Array, noise_variance: jax.Array, trace: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""Titsias' bound for a whitened Gaussian part with projection ``A``, and its optimum.

    :math:`\log N(r \mid 0, \sigma^2 I + A^\top A) - t / (2\sigma^2)` by the Woodbury
    identity in :math:`O(N M^2)`.

    :param A: ``(M, N)`` projection of the part being integrated out.
    :param r: ``(N,)`` residual of the observations after the fixed part's mean.
    :param noise_variance: :math:`\sigma^2`.
    :param trace: :math:`t`, the summed variance of ``f`` that remains.
    :return: ``(bound, q_mu, q_sqrt)`` with the optimal whitened Gaussian.

    >>> import jax.numpy as jnp
    >>> bound, m, R = orthogonal_collapsed_bound(jnp.zeros((0, 2)), jnp.zeros(2), 1.0, 0.0)
    >>> round(float(bound), 6)  # log N(0 | 0, I) in two dimensions
    -1.837877
    """
    M, N = A.shape
    s2 = noise_variance
    LB = jnp.linalg.cholesky(jnp.eye(M, dtype=A.dtype) + A @ A.T / s2)
    c = solve_triangular(LB, A @ r, lower=True) / s2
    bound = (
        -0.5 * N * math.log(2 * math.pi)
        - 0.5 * N * jnp.log(s2)
        - jnp.sum(jnp.log(jnp.diagonal(LB)))
        - 0.5 * (r @ r / s2 - c @ c)
        - 0.5 * trace / s2
    )
    q_mu = solve_triangular(LB.T, c, lower=False)
    LBinv = solve_triangular(LB, jnp.eye(M, dtype=A.dtype), lower=True)
    q_sqrt = jnp.linalg.cholesky(LBinv.T @ LBinv) if M else LBinv
    return bound, q_mu, q_sqrt


def solvegp_collapsed_elbo(
    kernel: Kernel,
    X: jax.Array,
    y: jax.Array,
    u: InducingVariables,
    v: InducingVariables,
    noise_variance: jax.Array,
    q_mu: jax.Array,
    q_sqrt: jax.Array,
    collapse: str = "v",
    jitter: float = 1e-6,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""SOLVE-GP bound for :math:`y = f + N(0, \sigma^2)` with one part integrated out.

    ``collapse="v"``: ``q_mu, q_sqrt`` is :math:`q(u)` (whitened) and the optimal
    :math:`q(v_\perp)` is returned; ``collapse="u"``: the roles swap.

    :param kernel: the GP kernel.
    :param X: inputs ``(N, D)``.
    :param y: observations ``(N,)`` (zero prior mean).
    :param u: the first inducing set.
    :param v: the orthogonal set.
    :param noise_variance: :math:`\sigma^2`.
    :param q_mu: whitened mean of the part kept.
    :param q_sqrt: its lower-triangular scale.
    :param collapse: ``"v"`` or ``"u"``, the part integrated out.
    :param jitter: diagonal jitter.
    :return: ``(bound, q_mu, q_sqrt)``: the bound and the optimal q of the collapsed part.
    """
    if collapse not in ("u", "v"):
        raise ValueError(f"solvegp_collapsed_elbo: collapse must be 'u' or 'v', got {collapse!r}")
    blocks = conditional_covariances(u, v, kernel, X, jitter)
    Au = blocks["Au"]
    Av = solve_triangular(blocks["Lc"], blocks["Cvf"], lower=True)
    Afix, Aint = (Au, Av) if collapse == "v" else (Av, Au)
    r = jnp.asarray(y) - Afix.T @ q_mu
    trace = (
        jnp.sum(kernel.diag(as_inputs(X)))
        - jnp.sum(Au**2)
        - jnp.sum(Av**2)
        + jnp.sum((q_sqrt.T @ Afix) ** 2)
    )
    bound, m, R = orthogonal_collapsed_bound(Aint, r, noise_variance, trace)
    return bound - gaussian_kl(q_mu, q_sqrt), m, R


def odvgp_collapsed_elbo(
    kernel: Kernel,
    X: jax.Array,
    y: jax.Array,
    beta: InducingVariables,
    gamma: InducingVariables,
    noise_variance: jax.Array,
    a_gamma: jax.Array,
    jitter: float = 1e-6,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""ODVGP bound for a Gaussian likelihood with :math:`q(\beta)` integrated out.

    :param kernel: the GP kernel.
    :param X: inputs ``(N, D)``.
    :param y: observations ``(N,)`` (zero prior mean).
    :param beta: the covariance set.
    :param gamma: the mean-only set.
    :param noise_variance: :math:`\sigma^2`.
    :param a_gamma: mean weights of the :math:`\gamma` set.
    :param jitter: diagonal jitter.
    :return: ``(bound, q_mu, q_sqrt)`` with the optimal whitened :math:`q` of the
        :math:`\beta` set.
    """
    blocks = conditional_covariances(beta, gamma, kernel, X, jitter, factor=False)
    Ab, Cgf = blocks["Au"], blocks["Cvf"]
    r = jnp.asarray(y) - Cgf.T @ a_gamma
    trace = jnp.sum(blocks["Cff"])
    bound, m, R = orthogonal_collapsed_bound(Ab, r, noise_variance, trace)
    return bound - odvgp_gamma_kl(a_gamma, gamma.Kuu(kernel), blocks["B"]), m, R
