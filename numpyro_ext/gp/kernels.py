r"""Covariance functions (kernels) as JAX pytrees.

A kernel is a frozen dataclass registered as a pytree, so it passes through ``jit``, ``vmap``
and ``grad`` and its hyperparameters may be constants, ``numpyro.param`` values or latent
``numpyro.sample`` values of a model. Calling ``k(X1, X2)`` returns the Gram matrix
:math:`[k(x_i, x'_j)]_{ij}` and ``k.diag(X)`` its diagonal :math:`k(x_i, x_i)` without forming
the matrix. Inputs are ``(N, D)`` arrays, or ``(N,)`` for one input dimension.

Stationary kernels take a ``lengthscale`` that is a scalar or a length-``D`` vector (ARD).
Kernels combine with ``+`` (:class:`Sum`), ``*`` (:class:`Product`) and ``c * k``
(:class:`Scaled`).

Integer and boolean inputs are promoted to the default float dtype (``float32``, or ``float64``
with ``jax_enable_x64``). Hyperparameters given as concrete values are checked when the kernel
is built: a ``lengthscale`` or ``period`` must be positive and finite, a ``variance`` or
``scale`` non-negative and finite. Traced values (inside ``jit``, or latent sites of a model)
are not checked there; :func:`valid_hyperparameters` gives the same check as a traced boolean.

>>> import jax.numpy as jnp
>>> k = 2.0 * SquaredExponential(lengthscale=jnp.array([1.0, 3.0])) + Linear(0.1)
>>> k(jnp.zeros((4, 2)), jnp.ones((3, 2))).shape
(4, 3)
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Kernel",
    "Linear",
    "Matern12",
    "Matern32",
    "Matern52",
    "Periodic",
    "Product",
    "Scaled",
    "SquaredExponential",
    "Stationary",
    "Sum",
    "valid_hyperparameters",
]

#: Input dimension up to which stationary kernels form differences directly (see
#: :meth:`Stationary.squared_distance`).
DIRECT_MAX_DIM = 8


#: Hyperparameters that must be strictly positive, and those that may be zero.
_POSITIVE = ("lengthscale", "period")
_NON_NEGATIVE = ("variance", "scale")


def _concrete(value):
    """``value`` as a NumPy array when it is a concrete number, else ``None``."""
    if isinstance(value, jax.core.Tracer) or not isinstance(
        value, int | float | np.ndarray | np.generic | jax.Array
    ):
        return None
    value = np.asarray(value)
    return value if value.dtype.kind in "biuf" else None


def _check_hyperparameters(kernel) -> None:
    for field in dataclasses.fields(kernel):
        if field.name not in _POSITIVE + _NON_NEGATIVE:
            continue
        value = _concrete(getattr(kernel, field.name))
        if value is None:
            continue
        positive = field.name in _POSITIVE
        ok = np.isfinite(value) & ((value > 0) if positive else (value >= 0))
        if not np.all(ok):
            expected = "positive and finite" if positive else "non-negative and finite"
            raise ValueError(
                f"{type(kernel).__name__}: {field.name} must be {expected}, got {value.tolist()}"
            )


def valid_hyperparameters(kernel: Kernel) -> jax.Array:
    """Whether no hyperparameter of ``kernel`` (or of the kernels it combines) is out of range.

    The traced counterpart of the check made when a kernel is built from concrete values:
    false when a ``lengthscale`` or ``period`` is zero or negative, or a ``variance`` or
    ``scale`` negative. NaN counts as in range here, so that NaN propagates to whatever the
    kernel computes (samplers reject such proposals); the concrete check refuses NaN and inf.

    :param kernel: a kernel.
    :return: a boolean scalar (a tracer under ``jit``).

    >>> bool(valid_hyperparameters(SquaredExponential() + Linear()))
    True
    """
    ok = jnp.asarray(True)
    for field in dataclasses.fields(kernel):
        value = getattr(kernel, field.name)
        if isinstance(value, Kernel):
            ok = ok & valid_hyperparameters(value)
        elif field.name in _POSITIVE + _NON_NEGATIVE:
            value = jnp.asarray(value)
            bad = (value <= 0) if field.name in _POSITIVE else (value < 0)
            ok = ok & ~jnp.any(bad)
    return ok


def pytree_dataclass(cls):
    """Make ``cls`` a frozen dataclass whose fields are pytree leaves."""
    cls = dataclasses.dataclass(frozen=True)(cls)
    return jax.tree_util.register_dataclass(cls)


def as_inputs(X: jax.Array, name: str = "X") -> jax.Array:
    """Return ``X`` as a 2-D ``(N, D)`` float array; a 1-D array is one input dimension.

    Integer and boolean inputs are promoted to the default float dtype.
    """
    X = jnp.asarray(X)
    if not jnp.issubdtype(X.dtype, jnp.inexact):
        X = X.astype(jax.dtypes.canonicalize_dtype(jnp.float64))
    if X.ndim == 1:
        return X[:, None]
    if X.ndim != 2:
        raise ValueError(f"kernel inputs {name} must have shape (N, D) or (N,), got {X.shape}")
    return X


class Kernel:
    """Base class: subclasses implement :meth:`gram` and :meth:`diag` on ``(N, D)`` inputs.

    Concrete hyperparameters are checked on construction (see the module docstring).
    """

    def __post_init__(self) -> None:
        _check_hyperparameters(self)

    def __call__(self, X1: jax.Array, X2: jax.Array | None = None) -> jax.Array:
        """Gram matrix ``K[i, j] = k(X1[i], X2[j])`` (``X2 = X1`` when omitted)."""
        X1 = as_inputs(X1, "X1")
        X2 = X1 if X2 is None else as_inputs(X2, "X2")
        if X1.shape[-1] != X2.shape[-1]:
            raise ValueError(
                f"kernel inputs disagree in dimension: X1 has D={X1.shape[-1]}, "
                f"X2 has D={X2.shape[-1]}"
            )
        return self.gram(X1, X2)

    def gram(self, X1: jax.Array, X2: jax.Array) -> jax.Array:
        raise NotImplementedError

    def diag(self, X: jax.Array) -> jax.Array:
        """Diagonal ``k(X[i], X[i])`` of the Gram matrix, in ``O(N)`` memory."""
        raise NotImplementedError

    def __add__(self, other: Kernel) -> Kernel:
        if not isinstance(other, Kernel):
            return NotImplemented
        return Sum(self, other)

    def __mul__(self, other) -> Kernel:
        if isinstance(other, Kernel):
            return Product(self, other)
        return Scaled(self, other)

    __rmul__ = __mul__


class Stationary(Kernel):
    r"""A kernel :math:`\sigma^2 g(r)` of the scaled distance :math:`r = \|(x - x')/\ell\|`.

    Subclasses implement ``profile(r2)`` = :math:`g` as a function of :math:`r^2`.
    """

    variance: jax.Array
    lengthscale: jax.Array

    def scaled(self, X: jax.Array) -> jax.Array:
        ell = jnp.asarray(self.lengthscale)
        if ell.ndim > 1 or (ell.ndim == 1 and ell.shape[0] not in (1, X.shape[-1])):
            raise ValueError(
                f"{type(self).__name__}: lengthscale must be a scalar or have shape "
                f"({X.shape[-1]},) to match inputs with D={X.shape[-1]}, got {ell.shape}"
            )
        return X / ell

    def squared_distance(self, X1: jax.Array, X2: jax.Array) -> jax.Array:
        """Scaled squared distances :math:`r^2_{ij}`, shape ``(N1, N2)``.

        Up to ``DIRECT_MAX_DIM`` input dimensions the differences are formed directly, one
        dimension at a time: exact for nearby points, and as fast as a matrix product there.
        Beyond that, :math:`\\|a\\|^2 + \\|b\\|^2 - 2 a^\\top b` on inputs centred at the mean of
        ``X1``; it loses the digits of :math:`\\|a\\|^2` when two points are close, which in
        float32 can make ``Kuu`` indefinite by more than the jitter.
        """
        A, B = self.scaled(X1), self.scaled(X2)
        if A.shape[-1] <= DIRECT_MAX_DIM:
            return sum((A[:, d, None] - B[None, :, d]) ** 2 for d in range(A.shape[-1]))
        centre = jnp.mean(A, 0)
        A, B = A - centre, B - centre
        r2 = jnp.sum(A**2, -1)[:, None] + jnp.sum(B**2, -1)[None, :] - 2.0 * A @ B.T
        return jnp.maximum(r2, 0.0)

    def gram(self, X1, X2):
        return self.variance * self.profile(self.squared_distance(X1, X2))

    def diag(self, X):
        X = as_inputs(X)
        return jnp.broadcast_to(jnp.asarray(self.variance, X.dtype), X.shape[:1])

    def profile(self, r2: jax.Array) -> jax.Array:
        raise NotImplementedError


def _safe_sqrt(r2: jax.Array) -> jax.Array:
    # r = 0 on the diagonal: keep the gradient of sqrt finite there.
    return jnp.sqrt(jnp.maximum(r2, jnp.finfo(r2.dtype).tiny))


@pytree_dataclass
class SquaredExponential(Stationary):
    r"""Squared exponential (RBF): :math:`k = \sigma^2 \exp(-r^2 / 2)`.

    :param variance: signal variance :math:`\sigma^2`.
    :param lengthscale: :math:`\ell`, scalar or one per input dimension (ARD).
    """

    variance: jax.Array = 1.0
    lengthscale: jax.Array = 1.0

    def profile(self, r2):
        return jnp.exp(-0.5 * r2)


@pytree_dataclass
class Matern12(Stationary):
    r"""Matérn 1/2 (exponential): :math:`k = \sigma^2 e^{-r}`.

    :param variance: signal variance :math:`\sigma^2`.
    :param lengthscale: :math:`\ell`, scalar or one per input dimension (ARD).
    """

    variance: jax.Array = 1.0
    lengthscale: jax.Array = 1.0

    def profile(self, r2):
        return jnp.exp(-_safe_sqrt(r2))


@pytree_dataclass
class Matern32(Stationary):
    r"""Matérn 3/2: :math:`k = \sigma^2 (1 + \sqrt3 r) e^{-\sqrt3 r}`.

    :param variance: signal variance :math:`\sigma^2`.
    :param lengthscale: :math:`\ell`, scalar or one per input dimension (ARD).
    """

    variance: jax.Array = 1.0
    lengthscale: jax.Array = 1.0

    def profile(self, r2):
        s = math.sqrt(3.0) * _safe_sqrt(r2)
        return (1.0 + s) * jnp.exp(-s)


@pytree_dataclass
class Matern52(Stationary):
    r"""Matérn 5/2: :math:`k = \sigma^2 (1 + \sqrt5 r + 5 r^2 / 3) e^{-\sqrt5 r}`.

    :param variance: signal variance :math:`\sigma^2`.
    :param lengthscale: :math:`\ell`, scalar or one per input dimension (ARD).
    """

    variance: jax.Array = 1.0
    lengthscale: jax.Array = 1.0

    def profile(self, r2):
        s = math.sqrt(5.0) * _safe_sqrt(r2)
        return (1.0 + s + 5.0 * r2 / 3.0) * jnp.exp(-s)


@pytree_dataclass
class Periodic(Kernel):
    r"""Periodic (MacKay 1998): :math:`k = \sigma^2 \exp(-2 \sum_d \sin^2(\pi (x_d - x'_d) / p)
    / \ell_d^2)`.

    :param variance: signal variance :math:`\sigma^2`.
    :param lengthscale: :math:`\ell`, scalar or one per input dimension.
    :param period: :math:`p`, scalar or one per input dimension.
    """

    variance: jax.Array = 1.0
    lengthscale: jax.Array = 1.0
    period: jax.Array = 1.0

    def gram(self, X1, X2):
        diff = X1[:, None, :] - X2[None, :, :]
        s = jnp.sin(jnp.pi * diff / self.period) / self.lengthscale
        return self.variance * jnp.exp(-2.0 * jnp.sum(s**2, -1))

    def diag(self, X):
        X = as_inputs(X)
        return jnp.broadcast_to(jnp.asarray(self.variance, X.dtype), X.shape[:1])


@pytree_dataclass
class Linear(Kernel):
    r"""Linear (Bayesian linear regression): :math:`k = \sigma^2 x^\top x'`.

    :param variance: weight variance :math:`\sigma^2`, scalar or one per input dimension.
    """

    variance: jax.Array = 1.0

    def gram(self, X1, X2):
        return (X1 * self.variance) @ X2.T

    def diag(self, X):
        X = as_inputs(X)
        return jnp.sum(X**2 * self.variance, -1)


@pytree_dataclass
class Sum(Kernel):
    """Sum of two kernels, :math:`k_1 + k_2` (write ``k1 + k2``)."""

    left: Kernel
    right: Kernel

    def gram(self, X1, X2):
        return self.left.gram(X1, X2) + self.right.gram(X1, X2)

    def diag(self, X):
        return self.left.diag(X) + self.right.diag(X)


@pytree_dataclass
class Product(Kernel):
    """Pointwise product of two kernels, :math:`k_1 k_2` (write ``k1 * k2``)."""

    left: Kernel
    right: Kernel

    def gram(self, X1, X2):
        return self.left.gram(X1, X2) * self.right.gram(X1, X2)

    def diag(self, X):
        return self.left.diag(X) * self.right.diag(X)


@pytree_dataclass
class Scaled(Kernel):
    """A kernel times a non-negative constant, :math:`c\\,k` (write ``c * k``)."""

    kernel: Kernel
    scale: jax.Array = 1.0

    def gram(self, X1, X2):
        return self.scale * self.kernel.gram(X1, X2)

    def diag(self, X):
        return self.scale * self.kernel.diag(X)
