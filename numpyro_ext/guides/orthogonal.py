r"""Sparse GP guides with a second, orthogonal inducing set: SOLVE-GP and ODVGP.

Both replace :class:`~numpyro_ext.guides.SparseGP` for a ``GaussianProcess`` site with the same
gesture, the same objective (``TraceMeanField_ELBO``, minibatched or not, any likelihood) and
the same contract (``sample_posterior``, ``median``, ``quantiles``, ``predict``,
``AutoGuideList``, ``Predictive``). Only the variational family differs; its math lives in
:mod:`numpyro_ext.gp.orthogonal`.

- :class:`SOLVEGP` (Shi, Titsias & Mnih 2020): :math:`q(u)\, q(v_\perp)`, both Gaussian with
  full covariances, :math:`v_\perp` the part of a second set :math:`v` orthogonal to
  :math:`u`. Cost per step :math:`O(B (M_u + M_v)^2 + M_u^3 + M_v^3)` against SVGP's
  :math:`O(B (M_u + M_v)^2 + (M_u + M_v)^3)` at the same number of inducing variables.
- :class:`ODVGP` (Salimbeni et al. 2018): a covariance set :math:`\beta` as in SVGP plus a
  mean-only set :math:`\gamma` projected orthogonally to :math:`\beta`; the :math:`\gamma` set
  costs :math:`O(B M_\gamma + M_\gamma^2 + M_\gamma M_\beta^2)` and no factorisation.

With an empty second set both are SVGP exactly.

The gesture is SVGP's: swap the guide class. SVGP and both orthogonal guides on one problem:

>>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist, optax
>>> from numpyro.infer import SVI, TraceMeanField_ELBO
>>> from numpyro_ext.distributions import GaussianProcess
>>> from numpyro_ext.gp import SquaredExponential
>>> from numpyro_ext.guides import SparseGP
>>> def model(X, y=None):
...     f = numpyro.sample("f", GaussianProcess(SquaredExponential(), X))
...     numpyro.sample("y", dist.Normal(f, 0.1), obs=y)
>>> X = jnp.linspace(0.0, 1.0, 20)
>>> for guide in (
...     SparseGP(model, num_inducing=3),
...     SOLVEGP(model, num_inducing=3, num_inducing_v=3),
...     ODVGP(model, num_inducing=3, num_inducing_gamma=6),
... ):
...     svi = SVI(model, guide, optax.adam(0.05), TraceMeanField_ELBO())
...     result = svi.run(jax.random.key(0), 50, X, jnp.sin(X), progress_bar=False)
...     mean, var = guide.predict(result.params, jnp.array([0.5]))
...     print(type(guide).__name__, mean.shape, var.shape)
SparseGP (1,) (1,)
SOLVEGP (1,) (1,)
ODVGP (1,) (1,)
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpyro
from numpyro.infer.autoguide import AutoGuide, AutoNormal

from numpyro_ext.gp.conditional import gaussian_kl
from numpyro_ext.gp.inducing import InducingPoints, InducingVariables, cross_covariance
from numpyro_ext.gp.orthogonal import (
    conditional_covariances,
    odvgp_conditional,
    odvgp_gamma_kl,
    solvegp_conditional,
)
from numpyro_ext.guides.sparse_gp import SparseGP

__all__ = ["ODVGP", "SOLVEGP"]


class _TwoSets(SparseGP):
    """A :class:`SparseGP` (whitened) whose family adds a second inducing set."""

    _second = "v"

    def __init__(
        self,
        model: Callable,
        *,
        second: jax.Array | InducingVariables | None,
        num_second: int | None,
        site: str | None = None,
        inducing: jax.Array | InducingVariables | None = None,
        num_inducing: int | None = None,
        init_inducing: str = "kmeans",
        learn_inducing: bool = True,
        jitter: float = 1e-6,
        joint: bool = False,
        hyperparameters: type[AutoGuide] | None = AutoNormal,
        prefix: str = "auto",
    ):
        if second is None and num_second is None:
            raise ValueError(
                f"{type(self).__name__}: give either `inducing_{self._second}` or "
                f"`num_inducing_{self._second}` (0 for none)"
            )
        self.second, self.num_second = self._as_inducing(second), num_second
        super().__init__(
            model,
            site=site,
            inducing=inducing,
            num_inducing=num_inducing,
            init_inducing=init_inducing,
            whiten=True,
            learn_inducing=learn_inducing,
            jitter=jitter,
            joint=joint,
            hyperparameters=hyperparameters,
            prefix=prefix,
        )

    def _init_family(self, rng_key, gp):
        key_u, key_v = jax.random.split(rng_key)
        if self.inducing is None:
            self.inducing = self._choose_inducing(key_u, gp.X, self.num_inducing)
        if self.second is None:
            if self.num_second == 0:
                self.second = type(self.inducing)(jnp.zeros((0, gp.X.shape[1]), gp.X.dtype))
            else:
                self.second = self._choose_inducing(key_v, gp.X, self.num_second)
        self._init_q_sqrt = jnp.eye(len(self.inducing), dtype=self._dtype)

    def _params(self):
        inducing, q_mu, q_sqrt = super()._params()
        name = f"{self.prefix}_{self.site}_{self._second}"
        return (inducing, q_mu, q_sqrt, self._inducing_param(self.second, name), name)


class SOLVEGP(_TwoSets):
    r"""SOLVE-GP guide: :math:`q(u)\, q(v_\perp)` with an orthogonal second inducing set.

    :math:`q(f) = \int p(f \mid u, v_\perp)\, q(u)\, q(v_\perp)`, both factors whitened
    Gaussians; KL :math:`\mathrm{KL}(q(u) \| p(u)) + \mathrm{KL}(q(v_\perp) \| N(0, C_{vv}))`
    (:mod:`numpyro_ext.gp.orthogonal`). Parameters: those of :class:`SparseGP` for :math:`u`
    and ``{prefix}_{site}_v_q_mu``, ``{prefix}_{site}_v_q_sqrt``, ``{prefix}_{site}_v_Z``.

    :param model: the NumPyro model.
    :param inducing_v: the second set's inputs ``(M_v, D)`` or :class:`InducingVariables`.
    :param num_inducing_v: ``M_v`` when ``inducing_v`` is not given (0 gives SVGP).
    :param kwargs: as for :class:`SparseGP` (whitened always).

    Example: the module's, which fits both orthogonal guides to one problem.
    """

    _second = "v"

    def __init__(
        self,
        model: Callable,
        *,
        inducing_v: jax.Array | InducingVariables | None = None,
        num_inducing_v: int | None = None,
        **kwargs,
    ):
        super().__init__(model, second=inducing_v, num_second=num_inducing_v, **kwargs)

    def _init_family(self, rng_key, gp):
        super()._init_family(rng_key, gp)
        self._init_q_sqrt_v = jnp.eye(len(self.second), dtype=self._dtype)

    def _params(self):
        inducing, q_mu, q_sqrt, v, name = super()._params()
        q_mu_v, q_sqrt_v = self._gaussian_param(name, len(v), self._init_q_sqrt_v)
        return inducing, q_mu, q_sqrt, v, q_mu_v, q_sqrt_v

    def _moments(self, state, kernel, X, full_cov=False):
        u, q_mu, q_sqrt, v, q_mu_v, q_sqrt_v = state
        blocks = conditional_covariances(u, v, kernel, X, self.jitter)
        Kff = kernel(X) if full_cov else kernel.diag(X)
        mean, var = solvegp_conditional(
            blocks["Au"], blocks["Cvf"], blocks["Lc"], Kff, q_mu, q_sqrt, q_mu_v, q_sqrt_v
        )
        return mean, var, gaussian_kl(q_mu, q_sqrt) + gaussian_kl(q_mu_v, q_sqrt_v)


class ODVGP(_TwoSets):
    r"""Orthogonally decoupled guide: a covariance set :math:`\beta` and a mean-only set
    :math:`\gamma`.

    Mean :math:`A_\beta^\top m + C_{f\gamma} a_\gamma`, variance that of SVGP on
    :math:`\beta`, KL :math:`\mathrm{KL}(q(\beta) \| p(\beta)) + \tfrac12 a_\gamma^\top
    C_{\gamma\gamma} a_\gamma` (:mod:`numpyro_ext.gp.orthogonal`). ``inducing`` is the
    :math:`\beta` set. Parameters: those of :class:`SparseGP` and ``{prefix}_{site}_gamma_a``,
    ``{prefix}_{site}_gamma_Z``.

    :param model: the NumPyro model.
    :param inducing_gamma: the mean-only set's inputs ``(M_gamma, D)`` or
        :class:`InducingVariables`.
    :param num_inducing_gamma: ``M_gamma`` when ``inducing_gamma`` is not given.
    :param gamma_batch_size: estimate the KL's :math:`a^\top K_{\gamma\gamma} a` from this
        many random rows of the :math:`\gamma` set per step (unbiased; the mean uses all of
        it); ``None`` uses every row. Needs inducing points as the :math:`\gamma` set.
    :param kwargs: as for :class:`SparseGP` (whitened always).

    Example: the module's, which fits both orthogonal guides to one problem.
    """

    _second = "gamma"

    def __init__(
        self,
        model: Callable,
        *,
        inducing_gamma: jax.Array | InducingVariables | None = None,
        num_inducing_gamma: int | None = None,
        gamma_batch_size: int | None = None,
        **kwargs,
    ):
        if gamma_batch_size is not None and gamma_batch_size < 1:
            raise ValueError(f"ODVGP: gamma_batch_size must be >= 1, got {gamma_batch_size}")
        self.gamma_batch_size = gamma_batch_size
        super().__init__(model, second=inducing_gamma, num_second=num_inducing_gamma, **kwargs)

    def _params(self):
        beta, q_mu, q_sqrt, gamma, name = super()._params()
        a = numpyro.param(f"{name}_a", jnp.zeros(len(gamma), self._dtype))
        rows, M = None, len(gamma)
        key = numpyro.prng_key() if self.gamma_batch_size else None
        if key is not None and self.gamma_batch_size < M:
            rows = jax.random.choice(key, M, (self.gamma_batch_size,), replace=False)
        return beta, q_mu, q_sqrt, gamma, a, rows

    def _moments(self, state, kernel, X, full_cov=False):
        beta, q_mu, q_sqrt, gamma, a, rows = state
        blocks = conditional_covariances(beta, gamma, kernel, X, self.jitter, factor=False)
        Kff = kernel(X) if full_cov else kernel.diag(X)
        mean, var = odvgp_conditional(blocks["Au"], blocks["Cvf"], Kff, q_mu, q_sqrt, a)
        if rows is None:
            Kgg = gamma.Kuu(kernel)
        else:
            Kgg = cross_covariance(gamma, InducingPoints(jnp.asarray(gamma.Z)[rows]), kernel)
        kl = gaussian_kl(q_mu, q_sqrt) + odvgp_gamma_kl(a, Kgg, blocks["B"], rows)
        return mean, var, kl
