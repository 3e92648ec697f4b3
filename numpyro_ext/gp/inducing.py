r"""Inducing variables: what a sparse GP conditions on.

A sparse GP summarises the process by ``M`` inducing variables :math:`u`, jointly Gaussian with
the function values :math:`f`. Everything the sparse machinery needs from them is

- ``Kuu(kernel)``: the prior covariance :math:`\operatorname{Cov}(u, u)` (``M x M``), so the
  prior over :math:`u` is :math:`N(0, K_{uu})`;
- ``Kuf(kernel, X)``: the cross-covariance :math:`\operatorname{Cov}(u, f(X))` (``M x N``).

:class:`InducingPoints` are the classic choice, :math:`u = f(Z)`, so ``Kuu = k(Z, Z)`` and
``Kuf = k(Z, X)``. Inter-domain features subclass :class:`InducingVariables` and override the
two methods (:class:`~numpyro_ext.gp.spherical.SphericalActivationFeatures` projects :math:`f`
onto activation functions on the sphere); conditionals, KL terms and the guides only ever call
these methods, so they work unchanged. A second set :math:`v` (SOLVE-GP, orthogonally
decoupled bases; :mod:`numpyro_ext.gp.orthogonal`) needs, besides its own ``Kuu`` and ``Kuf``
(:math:`K_{vv}`, :math:`K_{vf}`), the cross-covariance :math:`K_{vu}` given by
:func:`cross_covariance`; the conditional covariances :math:`C_{vv}` and :math:`C_{vf}` follow.

Inducing variables are pytrees: their array fields are learnable (the guide registers them
as ``numpyro.param`` sites).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from numpyro_ext.gp.kernels import Kernel, as_inputs, pytree_dataclass

__all__ = ["InducingPoints", "InducingVariables", "cross_covariance"]


class InducingVariables:
    """Base class of inducing variables: provides :meth:`Kuu` and :meth:`Kuf`."""

    def __len__(self) -> int:
        raise NotImplementedError

    def Kuu(self, kernel: Kernel) -> jax.Array:
        """Prior covariance of the inducing variables, shape ``(M, M)`` (no jitter)."""
        raise NotImplementedError

    def Kuf(self, kernel: Kernel, X: jax.Array) -> jax.Array:
        """Cross-covariance between the inducing variables and ``f(X)``, shape ``(M, N)``."""
        raise NotImplementedError


@pytree_dataclass
class InducingPoints(InducingVariables):
    r"""Function values at inducing inputs, :math:`u = f(Z)`.

    :param Z: inducing inputs, shape ``(M, D)`` (or ``(M,)`` for ``D = 1``).

    >>> import jax.numpy as jnp
    >>> from numpyro_ext.gp import SquaredExponential
    >>> feat = InducingPoints(jnp.linspace(0.0, 1.0, 5))
    >>> feat.Kuf(SquaredExponential(), jnp.zeros((3, 1))).shape
    (5, 3)
    """

    Z: jax.Array

    def __len__(self) -> int:
        return jnp.shape(self.Z)[0]

    def Kuu(self, kernel):
        Z = as_inputs(self.Z, "Z")
        return kernel(Z, Z)

    def Kuf(self, kernel, X):
        return kernel(as_inputs(self.Z, "Z"), as_inputs(X, "X"))


def cross_covariance(u: InducingVariables, v: InducingVariables, kernel: Kernel) -> jax.Array:
    r"""Cross-covariance :math:`K_{vu} = \operatorname{Cov}(v, u)`, ``(M_v, M_u)``, of two sets.

    When either set is :class:`InducingPoints` the other set's ``Kuf`` at those points gives it
    (:math:`v = f(W)` makes :math:`K_{vu} = K_{uf}(W)^\top`), so any feature pairs with points.

    :param u: the first set.
    :param v: the second set.
    :param kernel: the GP kernel.

    >>> import jax.numpy as jnp
    >>> from numpyro_ext.gp import SquaredExponential
    >>> u, v = InducingPoints(jnp.zeros(2)), InducingPoints(jnp.ones(3))
    >>> cross_covariance(u, v, SquaredExponential()).shape
    (3, 2)
    """
    if isinstance(v, InducingPoints):
        return u.Kuf(kernel, v.Z).T
    if isinstance(u, InducingPoints):
        return v.Kuf(kernel, u.Z)
    raise NotImplementedError(
        f"cross_covariance: no rule for {type(u).__name__} with {type(v).__name__}; one of "
        "the two sets must be InducingPoints"
    )
