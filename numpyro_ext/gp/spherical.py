r"""Arc-cosine kernels and spherical activation features (inter-domain inducing variables).

Inputs :math:`x \in \mathbb{R}^d` are augmented with a bias, :math:`\tilde x = (x, b) \in
\mathbb{R}^D`, :math:`D = d + 1`, and split into a radius :math:`|\tilde x|` and a point
:math:`\hat x = \tilde x / |\tilde x|` on the sphere :math:`S^{D-1}`.

**The arc-cosine kernel** of order :math:`n \in \{0, 1, 2\}` (Cho & Saul 2009) is
:math:`k_n(x, y) = \sigma^2 |\tilde x|^n |\tilde y|^n J_n(\theta) / \pi` with
:math:`\cos\theta = \hat x^\top \hat y`, :math:`J_0 = \pi - \theta`,
:math:`J_1 = \sin\theta + (\pi - \theta)\cos\theta`,
:math:`J_2 = 3 \sin\theta \cos\theta + (\pi - \theta)(1 + 2\cos^2\theta)`. It is the
covariance of a one-hidden-layer network with infinitely many units
:math:`\mathrm{relu}(w^\top \tilde x)^n`, :math:`w \sim N(0, I)`.

**Zonal expansion.** With :math:`\alpha = (D - 2)/2` and the zonal functions
:math:`Z_\ell(t) = \tfrac{\ell + \alpha}{\alpha} C_\ell^\alpha(t)` (Gegenbauer polynomials;
:math:`2 T_\ell` when :math:`D = 2`), which reproduce each level of spherical harmonics,
:math:`\int Z_\ell(w^\top x) Z_{\ell'}(w^\top y)\, d\mu(w) = \delta_{\ell\ell'} Z_\ell(x^\top y)`
for the uniform probability :math:`\mu` on the sphere, a function of a cosine expands as
:math:`\sigma(t) = \sum_\ell \sigma_\ell Z_\ell(t)` with
:math:`\sigma_\ell = \int_{-1}^1 \sigma(t) Z_\ell(t) p(t)\, dt / Z_\ell(1)`,
:math:`p(t) \propto (1 - t^2)^{\alpha - 1/2}` (the Funk-Hecke formula). The arc-cosine kernel
is :math:`|\tilde x|^n |\tilde y|^n \sum_\ell \lambda_\ell Z_\ell(\hat x^\top \hat y)` with
:math:`\lambda_\ell = \sigma^2 c_n s_\ell^2`, :math:`s_\ell` the coefficients of
:math:`\mathrm{relu}^n` and :math:`c_n = 2^{n+1} \Gamma(D/2 + n) / \Gamma(D/2)`
(:func:`arccos_eigenvalues`). For ReLU the odd levels :math:`\ell \ge 3` vanish.

**Activation features** (Dutordoir, Hensman, van der Wilk et al. 2021; Tiao, Dutordoir &
Picheny 2023): :math:`u_m = \langle f, \phi_m \rangle_{\mathcal H}` with
:math:`\phi_m(x) = (|z_m| |\tilde x|)^n \sigma(\hat z_m^\top \hat x)`, its expansion truncated
at level :math:`L` to the levels where :math:`\lambda_\ell \ne 0`. Then, in closed form,

.. math::

    [K_{uf}]_{m}(x) = (|z_m| |\tilde x|)^n \sum_{\ell \le L} \sigma_\ell Z_\ell(\hat z_m^\top
    \hat x), \qquad
    [K_{uu}]_{mm'} = (|z_m| |z_{m'}|)^n \sum_{\ell \le L} \frac{\sigma_\ell^2}{\lambda_\ell}
    Z_\ell(\hat z_m^\top \hat z_{m'}).

The posterior mean :math:`K_{fu} K_{uu}^{-1} \mu_u = \sum_m \beta_m \phi_m(x)` is a network
with one hidden layer (:func:`network_weights`). The coefficients come from Gauss-Jacobi
quadrature on each half of :math:`[-1, 1]` (exact for ReLU and the step, spectrally accurate
for smooth activations), computed once per (activation, :math:`D`, :math:`L`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import operator
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular
from scipy import special

from numpyro_ext.gp.inducing import InducingVariables
from numpyro_ext.gp.kernels import Kernel, as_inputs, pytree_dataclass
from numpyro_ext.linalg import cholesky

__all__ = [
    "ArcCosine",
    "SphericalActivationFeatures",
    "activation_coefficients",
    "arccos_eigenvalues",
    "default_truncation",
    "network_weights",
    "zonal",
]

_ACTIVATIONS = {
    "relu": lambda t: np.maximum(t, 0.0),
    "step": lambda t: (t > 0).astype(float),
    "relu2": lambda t: np.maximum(t, 0.0) ** 2,
    "softplus": lambda t: np.logaddexp(t, 0.0),
}
_ORDER_ACTIVATION = {0: "step", 1: "relu", 2: "relu2"}


def zonal(t, D: int, L: int):
    r"""Zonal functions :math:`Z_0(t), \dots, Z_L(t)` on :math:`S^{D-1}`, stacked first.

    :param t: cosines, any shape (NumPy or JAX).
    :param D: ambient dimension (:math:`\ge 2`).
    :param L: highest level.

    >>> [round(float(z), 6) for z in zonal(1.0, 3, 3)]  # 2l + 1 on the 2-sphere
    [1.0, 3.0, 5.0, 7.0]
    """
    if D < 2:
        raise ValueError(f"zonal: the sphere needs D >= 2 ambient dimensions, got {D}")
    xp = jnp if isinstance(t, jax.Array) else np
    return xp.stack(list(_levels(xp.asarray(t), D, L, xp)))


def _levels(t, D: int, L: int, xp=jnp):
    r""":math:`Z_0(t), \dots, Z_L(t)` one at a time, by the Gegenbauer three-term recurrence."""
    alpha = (D - 2) / 2
    yield xp.ones_like(t)
    if alpha == 0:  # Chebyshev: Z_l = 2 T_l
        prev, cur = xp.ones_like(t), t
        for _ in range(1, L + 1):
            yield 2 * cur
            prev, cur = cur, 2 * t * cur - prev
        return
    prev, cur = xp.ones_like(t), 2 * alpha * t  # C_0, C_1
    for ell in range(1, L + 1):
        yield (ell + alpha) / alpha * cur
        prev, cur = cur, (2 * t * (ell + alpha) * cur - (ell + 2 * alpha - 1) * prev) / (ell + 1)


def _zonal_sum(t: jax.Array, D: int, weights: np.ndarray) -> jax.Array:
    r""":math:`\sum_\ell w_\ell Z_\ell(t)` for constant weights, summed along the recurrence.

    No stack of the :math:`L + 1` levels: XLA fuses the unrolled recurrence and the sum into one
    elementwise pass over ``t``; levels with zero weight are left out of the sum.
    """
    levels = _levels(t, D, len(weights) - 1)
    terms = [float(w) * z for w, z in zip(weights, levels, strict=True) if w]
    return functools.reduce(operator.add, terms) if terms else jnp.zeros_like(t)


def _half_rules(D: int, nodes: int):
    """Nodes and weights of :math:`\\int_{-1}^1 g(t) p(t) dt` split at 0 (Gauss-Jacobi)."""
    a = (D - 2) / 2 - 0.5
    x, w = special.roots_jacobi(nodes, a, 0.0)
    right = ((1 + x) / 2, w * ((3 + x) / 2) ** a)
    x, w = special.roots_jacobi(nodes, 0.0, a)
    left = ((x - 1) / 2, w * ((3 - x) / 2) ** a)
    t = np.concatenate([left[0], right[0]])
    weights = np.concatenate([left[1], right[1]]) * 2.0 ** (-a - 1)
    return t, weights / special.beta(0.5, a + 1.0)


@functools.lru_cache(maxsize=64)
def _coefficients(activation, D: int, L: int, nodes: int) -> np.ndarray:
    fn = _ACTIVATIONS.get(activation, activation) if isinstance(activation, str) else activation
    t, w = _half_rules(D, nodes)
    Z = zonal(t, D, L)
    values = np.asarray(fn(t), dtype=float)
    return (Z * values * w).sum(-1) / zonal(1.0, D, L)


def activation_coefficients(
    activation: str | Callable, D: int, L: int, nodes: int = 200
) -> np.ndarray:
    r"""Coefficients :math:`\sigma_0, \dots, \sigma_L` of :math:`\sigma(t) = \sum_\ell
    \sigma_\ell Z_\ell(t)` on :math:`S^{D-1}` (Funk-Hecke), by Gauss-Jacobi quadrature.

    :param activation: ``"relu"``, ``"softplus"``, ``"step"``, ``"relu2"`` or a function of
        the cosine accepting NumPy arrays (smooth away from 0 for spectral accuracy).
    :param D: ambient dimension (input dimension + 1 for the bias).
    :param L: highest level.
    :param nodes: quadrature nodes on each half of :math:`[-1, 1]`.

    >>> c = activation_coefficients("relu", 3, 5)
    >>> [bool(abs(x) < 1e-12) for x in c[[3, 5]]]  # odd levels >= 3 vanish
    [True, True]
    """
    if isinstance(activation, str) and activation not in _ACTIVATIONS:
        raise ValueError(
            f"activation must be one of {sorted(_ACTIVATIONS)} or a function, got {activation!r}"
        )
    return _coefficients(activation, D, L, nodes)


def arccos_eigenvalues(order: int, D: int, L: int) -> np.ndarray:
    r"""Funk-Hecke eigenvalues :math:`\lambda_\ell / \sigma^2 = c_n s_\ell^2` of the arc-cosine
    kernel of ``order`` on :math:`S^{D-1}` (levels ``0..L``; exact zeros where they vanish).

    :param order: 0, 1 or 2.
    :param D: ambient dimension.
    :param L: highest level.
    """
    s = activation_coefficients(_ORDER_ACTIVATION[order], D, L)
    c = 2.0 ** (order + 1) * math.exp(math.lgamma(D / 2 + order) - math.lgamma(D / 2))
    lam = c * s**2
    return np.where(lam > 1e-13 * lam[0], lam, 0.0)


def _safe_cos(c):
    """Cosines with the endpoints handled so that the arc-cosine has finite gradients."""
    inside = jnp.abs(c) < 1.0
    c_in = jnp.where(inside, c, 0.0)
    theta = jnp.where(inside, jnp.arccos(c_in), jnp.where(c >= 1.0, 0.0, jnp.pi))
    s = jnp.where(inside, jnp.sqrt(jnp.where(inside, 1.0 - c_in**2, 1.0)), 0.0)
    return jnp.clip(c, -1.0, 1.0), s, theta


def default_truncation(
    M: int, D: int, order: int = 1, activation: str | Callable = "relu", max_level: int = 40
) -> int:
    r"""The smallest level :math:`L` at which the levels :math:`\ell \le L` kept by the
    features (:math:`\lambda_\ell \ne 0` and :math:`\sigma_\ell \ne 0`) hold at least ``M``
    spherical harmonics on :math:`S^{D-1}` (level :math:`\ell` holds :math:`Z_\ell(1)`).

    Below it ``K_uu`` of ``M`` features is singular; far above it the features capture little
    of the prior variance (see :class:`SphericalActivationFeatures`). Where the count barely
    exceeds ``M``, ``K_uu`` is only just nonsingular: in float32 use a level or two more.

    :param M: number of features.
    :param D: ambient dimension (input dimension + 1).
    :param order: order of the arc-cosine kernel.
    :param activation: the features' activation.
    :param max_level: the largest level returned.

    >>> default_truncation(128, 7)  # 1 + 7 + 27 + 182 harmonics at levels 0, 1, 2, 4
    4
    """
    lam = arccos_eigenvalues(order, D, max_level)
    sig = activation_coefficients(activation, D, max_level)
    kept = (lam > 0) & (np.abs(sig) > 1e-13 * np.abs(sig).max())
    counts = np.cumsum(np.where(kept, zonal(1.0, D, max_level), 0.0))
    enough = np.nonzero(counts >= M)[0]
    return int(enough[0]) if enough.size else max_level


@pytree_dataclass
class ArcCosine(Kernel):
    r"""Arc-cosine kernel of order 0, 1 or 2 on bias-augmented inputs (Cho & Saul 2009).

    :math:`k(x, y) = \sigma^2 |\tilde x|^n |\tilde y|^n J_n(\theta) / \pi`,
    :math:`\tilde x = (x / \ell, b)`: the covariance of :math:`\mathrm{relu}(w^\top x +
    w_0)^n` with :math:`w_i \sim N(0, \ell_i^{-2})` and :math:`w_0 \sim N(0, b^2)`.

    :param variance: :math:`\sigma^2`.
    :param bias: the constant :math:`b` appended to every input.
    :param order: :math:`n` (static).
    :param lengthscale: :math:`\ell`, scalar or one per input dimension (ARD); the inputs are
        divided by it before the bias is appended.

    >>> import jax.numpy as jnp
    >>> k = ArcCosine(order=1)
    >>> round(float(k(jnp.array([[1.0]]))[0, 0]), 6)  # |(1, 1)|^2 J_1(0) / pi
    2.0
    """

    variance: jax.Array = 1.0
    bias: jax.Array = 1.0
    order: int = dataclasses.field(default=1, metadata={"static": True})
    lengthscale: jax.Array = 1.0

    def __post_init__(self):
        super().__post_init__()
        if self.order not in (0, 1, 2):
            raise ValueError(f"ArcCosine: order must be 0, 1 or 2, got {self.order!r}")

    def augment(self, X: jax.Array) -> tuple[jax.Array, jax.Array]:
        r"""The points :math:`\hat x = \tilde x / |\tilde x|` on the sphere and the radii
        :math:`|\tilde x|` of :math:`\tilde x = (x / \ell, b)`, shapes ``(N, d + 1)``, ``(N,)``."""
        X = as_inputs(X, "X")
        ell = jnp.asarray(self.lengthscale, X.dtype)
        if ell.ndim > 1 or (ell.ndim == 1 and ell.shape[0] not in (1, X.shape[-1])):
            raise ValueError(
                f"ArcCosine: lengthscale must be a scalar or have shape ({X.shape[-1]},) to "
                f"match inputs with d={X.shape[-1]}, got {ell.shape}"
            )
        b = jnp.broadcast_to(jnp.asarray(self.bias, X.dtype), (X.shape[0], 1))
        Xt = jnp.concatenate([X / ell, b], -1)
        r = jnp.linalg.norm(Xt, axis=-1)
        return Xt / r[:, None], r

    def _J(self, c, s, theta):
        if self.order == 0:
            return jnp.pi - theta
        if self.order == 1:
            return s + (jnp.pi - theta) * c
        return 3 * s * c + (jnp.pi - theta) * (1 + 2 * c**2)

    def gram(self, X1, X2):
        U1, r1 = self.augment(X1)
        U2, r2 = self.augment(X2)
        c, s, theta = _safe_cos(U1 @ U2.T)
        radial = jnp.outer(r1, r2) ** self.order
        return self.variance * radial * self._J(c, s, theta) / jnp.pi

    def diag(self, X):
        _, r = self.augment(X)
        return self.variance * r ** (2 * self.order) * (3.0 if self.order == 2 else 1.0)

    def expansion(self, X1: jax.Array, X2: jax.Array, truncation: int) -> jax.Array:
        """The Gram matrix from the zonal expansion truncated at level ``truncation``."""
        U1, r1 = self.augment(X1)
        U2, r2 = self.augment(X2)
        D = U1.shape[-1]
        lam = arccos_eigenvalues(self.order, D, truncation)
        series = _zonal_sum(jnp.clip(U1 @ U2.T, -1.0, 1.0), D, lam)
        return self.variance * jnp.outer(r1, r2) ** self.order * series


@pytree_dataclass
class SphericalActivationFeatures(InducingVariables):
    r"""Inducing variables :math:`u_m = \langle f, \phi_m \rangle_{\mathcal H}` for an
    :class:`ArcCosine` GP, :math:`\phi_m(x) = (|z_m| |\tilde x|)^n \sigma(\hat z_m^\top
    \hat x)` truncated at level ``truncation``.

    :param Z: hidden-unit weights ``(M, D)`` on the bias-augmented inputs (``D = d + 1``).
    :param activation: ``"relu"``, ``"softplus"``, ``"step"``, ``"relu2"`` or a function of
        the cosine (static).
    :param truncation: highest level :math:`L` (static); by default the smallest level whose
        kept levels hold at least ``M`` spherical harmonics (:func:`default_truncation`).

    Every kept level carries the same RKHS weight :math:`\sigma_\ell^2 / \lambda_\ell` when
    the activation matches the kernel (ReLU features, order-1 kernel), so the features'
    RKHS norms grow with the number of harmonics below :math:`L` and, with :math:`L` far
    above the default, ``M`` features capture a vanishing share of the prior variance
    (about 1.5 % at :math:`D = 7`, :math:`L = 10`, :math:`M = 128`, against about 60 % at the
    default :math:`L = 4`).

    >>> import jax.numpy as jnp
    >>> feat = SphericalActivationFeatures(jnp.ones((4, 3)), "relu", 6)
    >>> feat.Kuf(ArcCosine(), jnp.zeros((5, 2))).shape
    (4, 5)
    """

    Z: jax.Array
    activation: str | Callable = dataclasses.field(default="relu", metadata={"static": True})
    truncation: int | None = dataclasses.field(default=None, metadata={"static": True})

    def __len__(self) -> int:
        return jnp.shape(self.Z)[0]

    def level(self, order: int = 1) -> int:
        """The truncation level :math:`L` used with an arc-cosine kernel of ``order``."""
        if self.truncation is not None:
            return self.truncation
        M, D = jnp.shape(self.Z)
        return default_truncation(M, D, order, self.activation)

    def _terms(self, kernel):
        if not isinstance(kernel, ArcCosine):
            raise ValueError(
                "SphericalActivationFeatures: the GP kernel must be an ArcCosine kernel, got "
                f"{type(kernel).__name__}"
            )
        Z = as_inputs(self.Z, "Z")
        D = Z.shape[-1]
        L = self.level(kernel.order)
        lam = arccos_eigenvalues(kernel.order, D, L)
        sig = activation_coefficients(self.activation, D, L)
        keep = lam > 0
        rz = jnp.linalg.norm(Z, axis=-1)
        return (
            Z / rz[:, None],
            rz,
            D,
            sig * keep,
            np.where(keep, sig**2 / np.where(keep, lam, 1), 0),
        )

    def Kuu(self, kernel):
        U, rz, D, _, w = self._terms(kernel)
        series = _zonal_sum(jnp.clip(U @ U.T, -1.0, 1.0), D, w)
        return jnp.outer(rz, rz) ** kernel.order * series / kernel.variance

    def Kuf(self, kernel, X):
        U, rz, D, sig, _ = self._terms(kernel)
        Xh, rx = kernel.augment(X)
        if Xh.shape[-1] != D:
            raise ValueError(
                f"SphericalActivationFeatures: Z has D={D} columns, so inputs need "
                f"{D - 1} columns (the bias is appended), got {Xh.shape[-1] - 1}"
            )
        series = _zonal_sum(jnp.clip(U @ Xh.T, -1.0, 1.0), D, sig)
        return jnp.outer(rz, rx) ** kernel.order * series

    def hidden(self, kernel: ArcCosine, X: jax.Array) -> jax.Array:
        """Hidden-unit outputs :math:`\\phi_m(x)`, ``(N, M)`` (the truncated expansion)."""
        return self.Kuf(kernel, X).T


def network_weights(
    features: SphericalActivationFeatures,
    kernel: ArcCosine,
    q_mu: jax.Array,
    whiten: bool = True,
    jitter: float = 1e-6,
) -> dict:
    r"""The posterior mean :math:`\sum_m \beta_m \phi_m(x)` as a one-hidden-layer network.

    Hidden unit :math:`m` is :math:`(|z_m||\tilde x|)^n \sigma_L(\hat z_m^\top \hat x)` with
    :math:`z_m^\top \tilde x = W_m^\top x + b_m` (:math:`W_m = z_{m, 1:d} / \ell`,
    :math:`b_m = z_{m, d+1} b`); for ReLU of order 1 and untruncated
    :math:`\sigma` it is :math:`\mathrm{relu}(W_m^\top x + b_m)`.

    :param features: the fitted features.
    :param kernel: the fitted kernel.
    :param q_mu: the mean of :math:`q(u)` (whitened when ``whiten``).
    :param whiten: whether ``q_mu`` is whitened.
    :param jitter: diagonal jitter of :math:`K_{uu}`.
    :return: ``{"W": (M, d), "b": (M,), "beta": (M,)}`` with
        :math:`\beta = K_{uu}^{-1} \mu_u`.
    """
    Lu = cholesky(features.Kuu(kernel), jitter=jitter, name="Kuu (spherical features)")
    v = q_mu if whiten else solve_triangular(Lu, q_mu, lower=True)
    beta = solve_triangular(Lu.T, v, lower=False)
    Z = as_inputs(features.Z, "Z")
    ell = jnp.asarray(kernel.lengthscale, Z.dtype)
    return {"W": Z[:, :-1] / ell, "b": Z[:, -1] * kernel.bias, "beta": beta}
