r"""The collapsed (Titsias 2009) bound for GP regression with Gaussian noise.

For :math:`y = f(X) + \varepsilon`, :math:`\varepsilon \sim N(0, \sigma^2 I)`, the optimal
:math:`q(u)` can be integrated out analytically, leaving

.. math::

    \log p(y) \ge \log N(y \mid 0, Q_{ff} + \sigma^2 I)
        - \tfrac{1}{2\sigma^2} \operatorname{tr}(K_{ff} - Q_{ff}),
    \qquad Q_{ff} = K_{fu} K_{uu}^{-1} K_{uf}.

It is evaluated the stable way (GPflow's SGPR): :math:`A = L^{-1} K_{uf} / \sigma`,
:math:`B = I + A A^\top = L_B L_B^\top`, :math:`c = L_B^{-1} A (y - \mu) / \sigma`, so only
``M x M`` matrices are factorised. The bound equals the exact log marginal likelihood when the
inducing inputs are the data inputs. :func:`collapsed_factor` adds it to a NumPyro model so
that SVI fits kernel hyperparameters, noise and inducing inputs by maximising it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from jax.scipy.linalg import cho_solve, solve_triangular

from numpyro_ext.gp.conditional import inducing_factor
from numpyro_ext.gp.inducing import InducingPoints, InducingVariables
from numpyro_ext.gp.kernels import Kernel, as_inputs, valid_hyperparameters
from numpyro_ext.linalg import cholesky_errors

__all__ = ["collapsed_elbo", "collapsed_factor", "collapsed_predict", "collapsed_q_u"]


def _inducing(Z) -> InducingVariables:
    return Z if isinstance(Z, InducingVariables) else InducingPoints(as_inputs(Z, "Z"))


def _residual(X, y, mean_fn):
    y = jnp.asarray(y)
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"collapsed bound: y must have shape ({X.shape[0]},), got {y.shape}")
    if not jnp.issubdtype(y.dtype, jnp.inexact):
        y = y.astype(X.dtype)
    if mean_fn is None:
        return y
    mean = jnp.asarray(mean_fn(X))
    if mean.shape not in ((), (X.shape[0],)):
        raise ValueError(
            f"collapsed bound: mean_fn(X) must have shape ({X.shape[0]},), got {mean.shape}"
        )
    return y - mean


def _check_concrete(name: str, noise_variance, arrays: dict) -> None:
    """Refuse concrete invalid input with a ``ValueError`` naming the argument."""
    s2 = noise_variance
    if not isinstance(s2, jax.core.Tracer):
        s2 = np.asarray(s2)
        if s2.shape != ():
            raise ValueError(f"{name}: noise_variance must be a scalar, got shape {s2.shape}")
        if not (np.isfinite(s2) and s2 > 0):
            raise ValueError(
                f"{name}: noise_variance must be positive and finite, got {s2.item()}; "
                "the collapsed bound divides by it (keep it above a small floor such as "
                "1e-6, as GPflow's Gaussian likelihood does)"
            )
    for arg, value in arrays.items():
        if not isinstance(value, jax.core.Tracer) and not np.all(np.isfinite(np.asarray(value))):
            raise ValueError(f"{name}: {arg} must be finite; it holds NaN or inf")


def _prepare(name, kernel, X, y, Z, noise_variance, mean_fn):
    """Validated inputs, inducing variables and residual ``y - mean(X)``, outside ``jit``.

    ``mean_fn`` is evaluated here (traced when the caller is traced), so the jitted core sees
    arrays only: a new ``mean_fn`` never recompiles it.
    """
    if not isinstance(kernel, Kernel):
        raise ValueError(f"{name}: kernel must be a numpyro_ext.gp.Kernel, got {type(kernel)}")
    X = as_inputs(X, "X")
    inducing = _inducing(Z)
    r = _residual(X, y, mean_fn)
    arrays = {"X": X, "y": r if mean_fn is None else jnp.asarray(y), "mean_fn(X)": r}
    if isinstance(inducing, InducingPoints):
        arrays["Z"] = inducing.Z
    _check_concrete(name, noise_variance, arrays)
    return X, inducing, r


def _factor_B(A: jax.Array) -> jax.Array:
    """Cholesky factor of ``B = I + A A^T``, plainly.

    The eigenvalues of ``B`` are at least one, so it never needs jitter, and a factorisation of
    a finite ``A`` cannot fail; NaN or inf in ``A`` comes out as NaN. Unlike ``Kuu``'s jitter-safe
    factorisation it therefore has no loop and no failure check: no control flow that an
    accelerator would have to report to the host on every call.
    """
    B = A @ A.T
    return jnp.linalg.cholesky(B + jnp.eye(B.shape[0], dtype=B.dtype))


def _inverse_factor(LB: jax.Array) -> jax.Array:
    r"""Lower-triangular ``R`` with ``R R^T = B^{-1}``, without forming ``B^{-1}``.

    With ``J`` the reversal permutation, ``J B J = C C^T`` (``C`` lower) gives ``B = U U^T`` with
    ``U = J C J`` upper triangular, so ``R = U^{-T}`` is lower triangular. ``B = L_B L_B^T``
    is reversed and factored again; ``B``'s eigenvalues are at least one, so neither
    factorisation needs jitter.
    """
    B = LB @ LB.T
    U = jnp.linalg.cholesky(B[::-1, ::-1])[::-1, ::-1]
    eye = jnp.eye(LB.shape[0], dtype=LB.dtype)
    return solve_triangular(U, eye, lower=False).T


def _terms(kernel, X, r, inducing, noise_variance, jitter):
    L = inducing_factor(inducing, kernel, jitter)
    sigma = jnp.sqrt(noise_variance)
    A = solve_triangular(L, inducing.Kuf(kernel, X), lower=True) / sigma
    LB = _factor_B(A)
    c = solve_triangular(LB, A @ r, lower=True) / sigma
    return L, A, LB, c


def collapsed_elbo(
    kernel: Kernel,
    X: jax.Array,
    y: jax.Array,
    Z: jax.Array | InducingVariables,
    noise_variance: jax.Array,
    mean_fn: Callable | None = None,
    jitter: float = 1e-6,
) -> jax.Array:
    r"""Titsias' collapsed lower bound on :math:`\log p(y)` (SGPR).

    :math:`-\tfrac N2 \log 2\pi\sigma^2 - \sum \log \operatorname{diag} L_B
    - \tfrac{1}{2}(r^\top r / \sigma^2 - c^\top c)
    - \tfrac{1}{2}(\operatorname{tr} K_{ff} / \sigma^2 - \operatorname{tr} A A^\top)`,
    :math:`r = y - \mu(X)`.

    Invalid hyperparameters: a concrete ``noise_variance`` that is not positive and finite, or
    concrete inputs holding NaN/inf, raise ``ValueError``; under ``jit`` (traced values) a
    non-positive noise variance or an out-of-range kernel hyperparameter (see
    :func:`~numpyro_ext.gp.kernels.valid_hyperparameters`) gives ``-inf``, the bound of an
    impossible model, with a zero gradient, and NaN in any argument gives NaN (no error, so
    that a sampler can reject the proposal that produced it).

    :param kernel: GP kernel.
    :param X: inputs ``(N, D)`` or ``(N,)``.
    :param y: targets ``(N,)``.
    :param Z: inducing inputs ``(M, D)`` or an :class:`InducingVariables`.
    :param noise_variance: Gaussian noise variance :math:`\sigma^2 > 0`.
    :param mean_fn: prior mean function of ``X`` (zero when ``None``); evaluated outside the
        compiled core, so any function (a new lambda each call, a closure over parameters)
        costs no recompilation.
    :param jitter: diagonal jitter for ``Kuu``.
    :return: the scalar bound.

    >>> import jax.numpy as jnp
    >>> from numpyro_ext.gp import SquaredExponential
    >>> X = jnp.linspace(0.0, 1.0, 5)
    >>> bound = collapsed_elbo(SquaredExponential(), X, jnp.sin(X), X[::2], 0.1)
    >>> bool(jnp.isfinite(bound))
    True
    """
    X, inducing, r = _prepare("collapsed_elbo", kernel, X, y, Z, noise_variance, mean_fn)
    with cholesky_errors():
        return _collapsed_elbo(kernel, X, r, inducing, noise_variance, float(jitter))


@partial(jax.jit, static_argnames=("jitter",))
def _collapsed_elbo(kernel, X, r, inducing, noise_variance, jitter):
    valid = ~(noise_variance <= 0) & valid_hyperparameters(kernel)  # NaN propagates
    # Invalid values are replaced before use, so neither the value nor the gradient sees NaN.
    noise_variance = jnp.where(valid, noise_variance, 1.0)
    kernel = jax.tree.map(lambda a, b: jnp.where(valid, a, b), kernel, _unit(kernel))
    L = inducing_factor(inducing, kernel, jitter)
    Kuf = inducing.Kuf(kernel, X)
    dtype = jnp.result_type(Kuf, r, noise_variance)
    args = (L, Kuf, r, noise_variance, jnp.sum(kernel.diag(X)))
    bound = _sgpr_bound(*(jnp.asarray(a, dtype) for a in args))
    return jnp.where(valid, bound, -jnp.inf)


def _unit(kernel: Kernel) -> Kernel:
    """The same kernel with every hyperparameter set to one (a valid stand-in)."""
    return jax.tree.map(lambda a: jnp.ones_like(a), kernel)


def _sgpr_forward(L, Kuf, r, s2, tr_Kff):
    """The bound from ``L = chol(Kuu)``, ``Kuf``, the residual, sigma^2 and tr Kff."""
    A0 = solve_triangular(L, Kuf, lower=True)  # A = A0 / sigma
    G = A0 @ A0.T
    LB = jnp.linalg.cholesky(G / s2 + jnp.eye(G.shape[0], dtype=G.dtype))  # see _factor_B
    v = A0 @ r
    c = solve_triangular(LB, v, lower=True) / s2
    N = r.shape[0]
    log_det = jnp.sum(jnp.log(jnp.diagonal(LB))) + 0.5 * N * jnp.log(s2)
    fit = 0.5 * (r @ r / s2 - c @ c)
    trace = 0.5 * (tr_Kff - jnp.trace(G)) / s2
    bound = -0.5 * N * math.log(2 * math.pi) - log_det - fit - trace
    return bound, (A0, G, LB, v, c)


@jax.custom_jvp
def _sgpr_bound(L, Kuf, r, s2, tr_Kff):
    return _sgpr_forward(L, Kuf, r, s2, tr_Kff)[0]


@_sgpr_bound.defjvp
def _sgpr_bound_jvp(primals, tangents):
    r"""The bound's gradient in closed form: four O(N M^2) operations in all, not six.

    Automatic differentiation of the forward pass (``A0 = L^{-1} Kuf``, ``G = A0 A0^T``) adds
    four ``(M, N)`` products (two for the adjoint of ``G``, the triangular solve for ``Kuf`` and
    ``\bar A_0 A_0^T`` for ``L``); here, with ``B = I + G / s2``, ``u = B^{-1} A0 r``,
    ``P = B^{-1} G`` and ``e = r - A0^T u / s2``, the gradient with respect to ``A0`` is
    ``(P A0 + u e^T) / s2^2`` (one product), ``Kuf`` gets ``L^{-T}`` of it (one solve) and
    ``L`` gets ``-L^{-T} (P G + u (A0 e)^T) / s2^2``, which is ``M x M``. The rule's own
    operations are ordinary JAX, so forward mode and Hessians still work.
    """
    L, Kuf, r, s2, tr_Kff = primals
    bound, (A0, G, LB, v, c) = _sgpr_forward(L, Kuf, r, s2, tr_Kff)
    u = s2 * solve_triangular(LB.T, c, lower=False)  # B^-1 A0 r
    P = cho_solve((LB, True), G)  # B^-1 G
    e = r - A0.T @ u / s2
    grad_A0 = (P @ A0 + jnp.outer(u, e)) / s2**2
    grad_A0_At = (P @ G + jnp.outer(u, v - G @ u / s2)) / s2**2  # grad_A0 @ A0^T
    rhs = jnp.concatenate([grad_A0, grad_A0_At], axis=1)
    solved = solve_triangular(L.T, rhs, lower=False)
    grad_Kuf, grad_L = solved[:, : Kuf.shape[1]], -jnp.tril(solved[:, Kuf.shape[1] :])
    grad_r = -e / s2
    N = r.shape[0]
    grad_s2 = 0.5 * (
        (jnp.trace(P) + r @ r + tr_Kff - jnp.trace(G)) / s2**2
        + u @ G @ u / s2**4
        - 2.0 * (v @ u) / s2**3
        - N / s2
    )
    dL, dKuf, dr, ds2, dtr = tangents
    tangent = (
        jnp.sum(grad_L * dL)
        + jnp.sum(grad_Kuf * dKuf)
        + grad_r @ dr
        + grad_s2 * ds2
        - 0.5 * dtr / s2
    )
    return bound, tangent


def collapsed_q_u(
    kernel: Kernel,
    X: jax.Array,
    y: jax.Array,
    Z: jax.Array | InducingVariables,
    noise_variance: jax.Array,
    mean_fn: Callable | None = None,
    jitter: float = 1e-6,
    whiten: bool = True,
) -> tuple[jax.Array, jax.Array]:
    r"""The optimal :math:`q(u)` of the collapsed bound, as ``(q_mu, q_sqrt)``.

    Whitened (:math:`v = L^{-1} u`): :math:`q(v) = N(L_B^{-\top} c, B^{-1})`. Unwhitened:
    :math:`q(u) = N(L m_v, L B^{-1} L^\top)`. An SVGP with this :math:`q(u)` attains the
    collapsed bound. Input checks as in :func:`collapsed_elbo`.

    :param kernel: GP kernel.
    :param X: inputs.
    :param y: targets.
    :param Z: inducing inputs or inducing variables.
    :param noise_variance: Gaussian noise variance.
    :param mean_fn: prior mean function (zero when ``None``).
    :param jitter: diagonal jitter for ``Kuu``.
    :param whiten: parameterisation of the returned :math:`q`.
    :return: ``(q_mu (M,), q_sqrt (M, M) lower triangular)``.
    """
    X, inducing, r = _prepare("collapsed_q_u", kernel, X, y, Z, noise_variance, mean_fn)
    with cholesky_errors():
        return _collapsed_q_u(kernel, X, r, inducing, noise_variance, float(jitter), whiten)


@partial(jax.jit, static_argnames=("jitter", "whiten"))
def _collapsed_q_u(kernel, X, r, inducing, noise_variance, jitter, whiten):
    L, _, LB, c = _terms(kernel, X, r, inducing, noise_variance, jitter)
    q_mu = solve_triangular(LB.T, c, lower=False)
    q_sqrt = _inverse_factor(LB)
    if whiten:
        return q_mu, q_sqrt
    return L @ q_mu, L @ q_sqrt


def collapsed_predict(
    kernel: Kernel,
    X: jax.Array,
    y: jax.Array,
    Z: jax.Array | InducingVariables,
    noise_variance: jax.Array,
    X_new: jax.Array,
    mean_fn: Callable | None = None,
    jitter: float = 1e-6,
    full_cov: bool = False,
) -> tuple[jax.Array, jax.Array]:
    r"""Predictive mean and (co)variance of :math:`f(X_*)` under the optimal :math:`q(u)`.

    :math:`\mu_* = \mu(X_*) + T_2^\top c`, :math:`\Sigma_* = K_{**} - T_1^\top T_1 + T_2^\top
    T_2` with :math:`T_1 = L^{-1} K_{u*}`, :math:`T_2 = L_B^{-1} T_1`. Input checks as in
    :func:`collapsed_elbo`.

    :param kernel: GP kernel.
    :param X: training inputs.
    :param y: training targets.
    :param Z: inducing inputs or inducing variables.
    :param noise_variance: Gaussian noise variance.
    :param X_new: test inputs.
    :param mean_fn: prior mean function (zero when ``None``).
    :param jitter: diagonal jitter for ``Kuu``.
    :param full_cov: joint covariance instead of marginal variances.
    :return: ``(mean, var)`` of the latent function (add the noise variance for ``y``).
    """
    X, inducing, r = _prepare("collapsed_predict", kernel, X, y, Z, noise_variance, mean_fn)
    X_new = as_inputs(X_new, "X_new")
    _check_concrete("collapsed_predict", noise_variance, {"X_new": X_new})
    with cholesky_errors():
        mean, var = _collapsed_predict(
            kernel, X, r, inducing, noise_variance, X_new, float(jitter), full_cov
        )
    return (mean, var) if mean_fn is None else (mean + mean_fn(X_new), var)


@partial(jax.jit, static_argnames=("jitter", "full_cov"))
def _collapsed_predict(kernel, X, r, inducing, noise_variance, X_new, jitter, full_cov):
    L, _, LB, c = _terms(kernel, X, r, inducing, noise_variance, jitter)
    T1 = solve_triangular(L, inducing.Kuf(kernel, X_new), lower=True)
    T2 = solve_triangular(LB, T1, lower=True)
    mean = T2.T @ c
    if full_cov:
        return mean, kernel(X_new) - T1.T @ T1 + T2.T @ T2
    return mean, kernel.diag(X_new) - jnp.sum(T1**2, 0) + jnp.sum(T2**2, 0)


def collapsed_factor(
    name: str,
    kernel: Kernel,
    X: jax.Array,
    y: jax.Array,
    Z: jax.Array | InducingVariables,
    noise_variance: jax.Array,
    mean_fn: Callable | None = None,
    jitter: float = 1e-6,
) -> jax.Array:
    """Add the collapsed bound to the model as ``numpyro.factor(name, bound)``.

    In a model whose kernel hyperparameters, noise and ``Z`` are ``numpyro.param`` sites, SVI
    with an empty guide and ``Trace_ELBO`` then minimises ``-bound``; with latent
    hyperparameters it is a (collapsed) variational objective for them.

    :param name: factor site name.
    :param kernel: GP kernel.
    :param X: inputs.
    :param y: targets.
    :param Z: inducing inputs or inducing variables.
    :param noise_variance: Gaussian noise variance.
    :param mean_fn: prior mean function (zero when ``None``).
    :param jitter: diagonal jitter for ``Kuu``.
    :return: the bound (also recorded as the factor).
    """
    bound = collapsed_elbo(kernel, X, y, Z, noise_variance, mean_fn, jitter)
    numpyro.factor(name, bound)
    return bound
