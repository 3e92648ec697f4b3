r"""A Gaussian-process prior over function values, as a NumPyro distribution.

:math:`f(X) \sim N(\mu(X), K(X, X))` for a kernel :math:`K` (:mod:`numpyro_ext.gp.kernels`)
and inputs :math:`X`. The GP is an ordinary sample site of a model, followed by any likelihood:

.. code-block:: python

    def model(X, y=None):
        ell = numpyro.sample("ell", dist.LogNormal(0.0, 1.0))
        f = numpyro.sample("f", GaussianProcess(SquaredExponential(1.0, ell), X))
        numpyro.sample("y", dist.Bernoulli(logits=f), obs=y)

``log_prob`` is exact (a jitter-safe Cholesky, :math:`O(N^3)`), so the site works with MCMC
for small ``N``; for large ``N`` pair it with the :class:`numpyro_ext.guides.SparseGP` guide,
which never factorises the ``N x N`` matrix in the ELBO under ``TraceMeanField_ELBO``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular
from numpyro.distributions import Distribution, constraints
from numpyro.distributions.util import lazy_property, promote_shapes
from numpyro.util import is_prng_key

from numpyro_ext.gp.kernels import Kernel, as_inputs
from numpyro_ext.linalg import cholesky

__all__ = ["GaussianProcess"]


def _check_finite(X: jax.Array, name: str) -> None:
    if isinstance(X, jax.core.Tracer):
        return
    bad = int(np.sum(~np.isfinite(np.asarray(X))))
    if bad:
        raise ValueError(
            f"GaussianProcess: {name} must be finite; it holds {bad} NaN or infinite entries"
        )


class GaussianProcess(Distribution):
    r"""Function values :math:`f(X) \sim N(\mu(X), K(X, X) + \epsilon I)`.

    :param kernel: covariance function (a :class:`numpyro_ext.gp.Kernel`); its
        hyperparameters may be ``numpyro.param`` or latent ``numpyro.sample`` values.
    :param X: inputs, shape ``(N, D)`` or ``(N,)``; integers are promoted to the default
        float dtype, and concrete inputs must be finite.
    :param mean_fn: prior mean :math:`\mu`, a function of the ``(N, D)`` inputs returning
        ``(N,)``; zero when ``None``.
    :param jitter: diagonal jitter :math:`\epsilon` added before factorising.

    >>> import jax, jax.numpy as jnp
    >>> from numpyro_ext.gp import SquaredExponential
    >>> gp = GaussianProcess(SquaredExponential(), jnp.linspace(0.0, 1.0, 4))
    >>> gp.sample(jax.random.key(0)).shape
    (4,)
    """

    arg_constraints = {}  # noqa: RUF012
    support = constraints.real_vector
    pytree_data_fields = ("kernel", "X", "loc")
    pytree_aux_fields = ("mean_fn", "jitter")

    def __init__(
        self,
        kernel: Kernel,
        X: jax.Array,
        mean_fn: Callable | None = None,
        jitter: float = 1e-6,
        *,
        validate_args: bool | None = None,
    ):
        if not isinstance(kernel, Kernel):
            raise ValueError(
                f"GaussianProcess: kernel must be a numpyro_ext.gp.Kernel, got {type(kernel)}"
            )
        self.kernel = kernel
        self.X = as_inputs(X, "X")
        _check_finite(self.X, "X")
        if not (isinstance(jitter, int | float) and jitter >= 0 and math.isfinite(jitter)):
            raise ValueError(f"GaussianProcess: jitter must be a finite float >= 0, got {jitter}")
        self.mean_fn = mean_fn
        self.jitter = jitter
        N = self.X.shape[0]
        loc = jnp.zeros(N, self.X.dtype) if mean_fn is None else jnp.asarray(mean_fn(self.X))
        if loc.shape != (N,):
            raise ValueError(
                f"GaussianProcess: mean_fn(X) must have shape ({N},), got {loc.shape}"
            )
        if not jnp.issubdtype(loc.dtype, jnp.inexact):
            loc = loc.astype(self.X.dtype)
        self.loc = loc
        super().__init__(batch_shape=(), event_shape=(N,), validate_args=validate_args)

    @lazy_property
    def covariance_matrix(self) -> jax.Array:
        return self.kernel(self.X)

    @lazy_property
    def scale_tril(self) -> jax.Array:
        return cholesky(self.covariance_matrix, self.jitter, name="K(X, X) (GaussianProcess)")

    @property
    def mean(self) -> jax.Array:
        return self.loc

    @property
    def variance(self) -> jax.Array:
        return self.kernel.diag(self.X)

    def sample(self, key, sample_shape=()):
        assert is_prng_key(key)
        eps = jax.random.normal(key, sample_shape + self.event_shape, self.loc.dtype)
        return self.loc + eps @ self.scale_tril.T

    def log_prob(self, value):
        (value,) = promote_shapes(value)
        r = (value - self.loc)[..., None]
        L = self.scale_tril
        z = solve_triangular(L, jnp.moveaxis(r, -2, 0).reshape(L.shape[0], -1), lower=True)
        maha = jnp.sum(z**2, 0).reshape(jnp.shape(value)[:-1])
        N = self.event_shape[0]
        half_log_det = jnp.sum(jnp.log(jnp.diagonal(L)))
        return -0.5 * (N * math.log(2 * math.pi) + maha) - half_log_det
