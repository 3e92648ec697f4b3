r"""The sparse variational GP guide (SVGP; Hensman, Fusi & Lawrence 2013; Hensman et al. 2015).

The model keeps an ordinary GP sample site,
``f = numpyro.sample("f", GaussianProcess(kernel, X_batch))``, followed by any likelihood. The
guide :class:`SparseGP` replaces the ``N``-dimensional posterior over ``f`` by ``M`` inducing
variables :math:`u` with :math:`q(u) = N(m, S)` (whitened by default) and samples ``f`` from the
marginals of :math:`q(f) = \int p(f \mid u) q(u)\, du` at cost :math:`O(B M^2 + M^3)`.

The ELBO, :math:`\sum_n E_{q(f_n)}[\log p(y_n \mid f_n)] - \mathrm{KL}(q(u) \,\|\, p(u))`,
comes out of NumPyro's own objectives:

- ``TraceMeanField_ELBO`` uses the KL registered here between the guide's site distribution
  :class:`SparseGPMarginal` and the model's :class:`GaussianProcess`; it is
  :math:`\mathrm{KL}(q(u) \,\|\, p(u))`, and nothing ``N``-dimensional is factorised.
- ``Trace_ELBO`` computes :math:`\log p(f) - \log q(f)` at the sampled ``f``.
  :class:`SparseGPMarginal` defines :math:`\log q(f) := \log p(f) + \mathrm{KL}(q(u) \| p(u))`
  (the density of the augmented family relative to the prior), so the difference is exactly
  :math:`-\mathrm{KL}`. The value is right but the cost is :math:`O(B^3)`: ``Trace_ELBO``
  evaluates the model's ``GaussianProcess`` density at the ``B`` sampled values (a ``B x B``
  Cholesky and, for the gradient, ``B x B`` triangular solves), and :math:`\log q(f)` has to
  carry the same term to cancel it; in float32 the cancellation also loses digits when ``B``
  is large. Prefer ``TraceMeanField_ELBO``, which never touches a ``B x B`` matrix.

Minibatches: put the GP site *outside* the data plate (it is one joint draw at the batch
inputs, and its KL must not be scaled) and the likelihood inside it::

    def model(X, y=None, batch_size=None):
        kernel = SquaredExponential(numpyro.param("var", 1.0), numpyro.param("ell", 1.0))
        data = numpyro.plate("data", X.shape[0], subsample_size=batch_size)
        with data as idx:
            pass
        f = numpyro.sample("f", GaussianProcess(kernel, X[idx]))
        with data:
            numpyro.sample("y", dist.Normal(f, 0.1), obs=None if y is None else y[idx])

The guide runs the model up to the GP site to read the kernel (current parameter values) and
the batch inputs; the plate's subsample indices it draws are replayed by the model, and
NumPyro scales the likelihood by ``N / B``. Latent kernel hyperparameters are guided by another
guide placed *before* this one in an :class:`~numpyro.infer.autoguide.AutoGuideList`; during SVI
this guide reads their sampled values from the trace being recorded. For predictions, pass the
``AutoGuideList`` as ``values=`` (their posterior medians are plugged in) or a dict of values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpyro
from numpyro import handlers
from numpyro.distributions import Distribution, constraints
from numpyro.distributions.kl import kl_divergence
from numpyro.infer.autoguide import AutoGuide, AutoGuideList
from numpyro.primitives import _PYRO_STACK, Messenger
from numpyro.util import is_prng_key

from numpyro_ext.distributions.gaussian_process import GaussianProcess
from numpyro_ext.gp.conditional import conditional, gaussian_kl, inducing_factor
from numpyro_ext.gp.inducing import InducingPoints, InducingVariables
from numpyro_ext.gp.init import kmeans_inducing, random_subset_inducing
from numpyro_ext.linalg import cholesky

__all__ = ["SparseGP", "SparseGPMarginal"]


class SparseGPMarginal(Distribution):
    r"""The SVGP guide's distribution over ``f(X)``: marginals of :math:`q(f)`, carrying
    :math:`q(u)`.

    ``sample`` draws independent :math:`f_n \sim N(\mu_n, \sigma_n^2)` from the marginals of
    :math:`q(f)`; ``log_prob(f)`` is :math:`\log p(f) + \mathrm{KL}(q(u) \| p(u))` with
    :math:`p` the GP prior, so a ``Trace_ELBO`` term :math:`\log p(f) - \log q(f)` is the exact
    KL (it is not the density of the independent draws).

    :param prior: the model's :class:`GaussianProcess` at the same inputs.
    :param inducing: the inducing variables.
    :param q_mu: variational mean ``(M,)``.
    :param q_sqrt: lower-triangular variational scale ``(M, M)``.
    :param whiten: whether :math:`q` is over :math:`L^{-1} u`.
    :param jitter: diagonal jitter for ``Kuu``.
    """

    arg_constraints = {}  # noqa: RUF012
    support = constraints.real_vector
    pytree_data_fields = ("prior", "inducing", "q_mu", "q_sqrt", "loc", "scale", "kl")
    pytree_aux_fields = ("whiten", "jitter")

    def __init__(
        self,
        prior: GaussianProcess,
        inducing: InducingVariables,
        q_mu: jax.Array,
        q_sqrt: jax.Array,
        whiten: bool = True,
        jitter: float = 1e-6,
        *,
        validate_args: bool | None = None,
    ):
        M = len(inducing)
        if jnp.shape(q_mu) != (M,) or jnp.shape(q_sqrt) != (M, M):
            raise ValueError(
                f"SparseGPMarginal: q_mu must have shape ({M},) and q_sqrt ({M}, {M}) for {M} "
                f"inducing variables, got {jnp.shape(q_mu)} and {jnp.shape(q_sqrt)}"
            )
        self.prior, self.inducing, self.q_mu, self.q_sqrt = prior, inducing, q_mu, q_sqrt
        self.whiten, self.jitter = whiten, jitter
        kernel, X = prior.kernel, prior.X
        Lu = inducing_factor(inducing, kernel, jitter)
        mean, var = conditional(inducing.Kuf(kernel, X), Lu, kernel.diag(X), q_mu, q_sqrt, whiten)
        self.loc = prior.loc + mean
        # Round-off can push a marginal variance below zero in float32; floor it at the jitter.
        floor = max(jitter, float(jnp.finfo(var.dtype).tiny))
        self.scale = jnp.sqrt(jnp.maximum(var, floor))
        self.kl = gaussian_kl(q_mu, q_sqrt, None if whiten else Lu)
        super().__init__(
            batch_shape=(), event_shape=prior.event_shape, validate_args=validate_args
        )

    @property
    def mean(self) -> jax.Array:
        return self.loc

    @property
    def variance(self) -> jax.Array:
        return self.scale**2

    def sample(self, key, sample_shape=()):
        assert is_prng_key(key)
        eps = jax.random.normal(key, sample_shape + self.event_shape, self.loc.dtype)
        return self.loc + self.scale * eps

    def log_prob(self, value):
        return self.prior.log_prob(value) + self.kl

    def kl_to(self, prior: GaussianProcess) -> jax.Array:
        """:math:`\\mathrm{KL}(q(u) \\| p(u))` with :math:`p(u) = N(0, K_{uu})` under ``prior``."""
        if prior.event_shape != self.event_shape:
            raise ValueError(
                f"SparseGP: the model's GaussianProcess has event shape {prior.event_shape} but "
                f"the guide's has {self.event_shape}"
            )
        if self.whiten:
            return self.kl
        Lu = inducing_factor(self.inducing, prior.kernel, self.jitter)
        return gaussian_kl(self.q_mu, self.q_sqrt, Lu)


@kl_divergence.register(SparseGPMarginal, GaussianProcess)
def _kl_sparse_gp(q: SparseGPMarginal, p: GaussianProcess) -> jax.Array:
    return q.kl_to(p)


def _recorded_value(name: str):
    """The value of sample site ``name`` already recorded by an enclosing trace/substitute."""
    for handler in reversed(_PYRO_STACK):
        if isinstance(handler, handlers.trace):
            site = handler.trace.get(name)
            if site is not None and site["type"] == "sample":
                return site["value"]
        if isinstance(handler, handlers.substitute) and handler.data and name in handler.data:
            return handler.data[name]
    return None


class _capture_gp(Messenger):
    """Run the model up to (and through) the GP site without sampling anything.

    Records the site's ``GaussianProcess``; observed and deterministic sites are hidden from
    enclosing handlers; latent sites before the GP site take ``values[name]`` or a value
    recorded by an enclosing trace (those after it do not matter and get zeros). Params and
    plates pass through, so the guide sees current parameter values and draws the subsample
    indices the model will replay.
    """

    def __init__(self, fn, site: str | None, values: dict | None = None):
        self.site, self.values = site, values or {}
        self.gp, self.frames = None, ()
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] == "deterministic":
            msg["stop"] = True
        if msg["type"] != "sample":
            return
        msg["stop"] = True
        name, fn = msg["name"], msg["fn"]
        while not isinstance(fn, GaussianProcess) and hasattr(fn, "base_dist"):
            fn = fn.base_dist  # a plate expanded it, or a mask wrapped it
        is_gp = isinstance(fn, GaussianProcess)
        if name == self.site or (self.site is None and is_gp and self.gp is None):
            if not is_gp:
                raise ValueError(
                    f"SparseGP: site '{name}' must be a GaussianProcess, got {type(msg['fn'])}"
                )
            self.site, self.gp, self.frames = name, fn, msg["cond_indep_stack"]
            msg["value"] = jnp.zeros(msg["fn"].shape(), fn.loc.dtype)
        elif not msg["is_observed"]:
            value = self.values.get(name)
            value = _recorded_value(name) if value is None else value
            if value is None and self.gp is not None:
                value = jnp.zeros(msg["fn"].shape())  # after the GP site: never used
            if value is None:
                raise ValueError(
                    f"SparseGP: the model's latent site '{name}' has no value; guide it with "
                    "another guide placed before SparseGP in an AutoGuideList and, outside SVI, "
                    "pass `values=` that AutoGuideList (its medians are used) or a dict"
                )
            msg["value"] = value


class SparseGP(AutoGuide):
    r"""Sparse variational GP guide for a :class:`GaussianProcess` site of the model.

    :math:`q(u) = N(m, R R^\top)` over ``M`` inducing variables (over :math:`v = L^{-1} u`
    when ``whiten``), initialised at the prior. Parameters: ``{prefix}_{site}_q_mu``,
    ``{prefix}_{site}_q_sqrt`` and one per array field of the inducing variables
    (``{prefix}_{site}_Z`` for inducing points).

    :param model: the NumPyro model.
    :param site: name of the GP site; the first ``GaussianProcess`` site when ``None``.
    :param inducing: inducing inputs ``(M, D)`` or :class:`InducingVariables`; when ``None``,
        ``num_inducing`` points are chosen from the site's inputs by ``init_inducing``.
    :param num_inducing: ``M`` when ``inducing`` is not given.
    :param init_inducing: ``"kmeans"`` or ``"subset"``.
    :param whiten: whitened parameterisation (recommended).
    :param learn_inducing: register the inducing variables as learnable params.
    :param jitter: diagonal jitter for ``Kuu``.
    :param prefix: name prefix of the parameters.

    >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist, optax
    >>> from numpyro.infer import SVI, TraceMeanField_ELBO
    >>> from numpyro_ext.distributions import GaussianProcess
    >>> from numpyro_ext.gp import SquaredExponential
    >>> def model(X, y=None):
    ...     f = numpyro.sample("f", GaussianProcess(SquaredExponential(), X))
    ...     numpyro.sample("y", dist.Normal(f, 0.1), obs=y)
    >>> X = jnp.linspace(0.0, 1.0, 20)
    >>> guide = SparseGP(model, num_inducing=5)
    >>> svi = SVI(model, guide, optax.adam(0.05), TraceMeanField_ELBO())
    >>> result = svi.run(jax.random.key(0), 50, X, jnp.sin(X), progress_bar=False)
    >>> mean, var = guide.predict(result.params, jnp.array([0.5]))
    >>> mean.shape
    (1,)
    """

    def __init__(
        self,
        model: Callable,
        *,
        site: str | None = None,
        inducing: jax.Array | InducingVariables | None = None,
        num_inducing: int | None = None,
        init_inducing: str = "kmeans",
        whiten: bool = True,
        learn_inducing: bool = True,
        jitter: float = 1e-6,
        prefix: str = "auto",
    ):
        if inducing is None and num_inducing is None:
            raise ValueError("SparseGP: give either `inducing` (inputs Z) or `num_inducing`")
        if init_inducing not in ("kmeans", "subset"):
            raise ValueError(
                f"SparseGP: init_inducing must be 'kmeans' or 'subset', got {init_inducing!r}"
            )
        if inducing is not None and not isinstance(inducing, InducingVariables):
            inducing = InducingPoints(jnp.asarray(inducing))
        self.site, self.inducing, self.num_inducing = site, inducing, num_inducing
        self.init_inducing, self.whiten = init_inducing, whiten
        self.learn_inducing, self.jitter = learn_inducing, jitter
        super().__init__(model, prefix=prefix)

    def _capture(self, args, kwargs, values=None) -> GaussianProcess:
        capture = _capture_gp(self.model, self.site, values)
        capture(*args, **kwargs)
        if capture.gp is None:
            raise ValueError(
                "SparseGP: the model has no GaussianProcess sample site"
                + (f" named '{self.site}'" if self.site else "")
            )
        if capture.frames:
            raise ValueError(
                f"SparseGP: GP site '{capture.site}' sits inside plate(s) "
                f"{[f.name for f in capture.frames]}; put the GP site outside the data plate "
                "and only the likelihood inside it"
            )
        self.site = capture.site
        return capture.gp

    def _setup_prototype(self, *args, **kwargs):
        rng_key = numpyro.prng_key()
        rng_key = jax.random.key(0) if rng_key is None else rng_key
        with handlers.block(), handlers.seed(rng_seed=rng_key):
            self.prototype_trace = handlers.trace(self.model).get_trace(*args, **kwargs)
            gp = self._capture(args, kwargs, self._prototype_latents())
        if self.inducing is None:
            if self.init_inducing == "kmeans":
                Z = kmeans_inducing(rng_key, gp.X, self.num_inducing)
            else:
                Z = random_subset_inducing(rng_key, gp.X, self.num_inducing)
            self.inducing = InducingPoints(Z)
        M = len(self.inducing)
        if self.whiten:
            self._init_q_sqrt = jnp.eye(M, dtype=gp.loc.dtype)
        else:
            self._init_q_sqrt = inducing_factor(self.inducing, gp.kernel, self.jitter)

    def _prototype_latents(self) -> dict:
        return {
            name: site["value"]
            for name, site in self.prototype_trace.items()
            if site["type"] == "sample" and not site["is_observed"]
        }

    def _params(self):
        name = f"{self.prefix}_{self.site}"
        inducing = self.inducing
        if self.learn_inducing and dataclasses.is_dataclass(inducing):
            inducing = dataclasses.replace(
                inducing,
                **{
                    f.name: numpyro.param(f"{name}_{f.name}", getattr(inducing, f.name))
                    for f in dataclasses.fields(inducing)
                },
            )
        M = len(inducing)
        dtype = self._init_q_sqrt.dtype
        q_mu = numpyro.param(f"{name}_q_mu", jnp.zeros(M, dtype))
        q_sqrt = numpyro.param(
            f"{name}_q_sqrt", self._init_q_sqrt, constraint=constraints.lower_cholesky
        )
        return inducing, q_mu, q_sqrt

    def __call__(self, *args, **kwargs):
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        gp = self._capture(args, kwargs)
        inducing, q_mu, q_sqrt = self._params()
        q = SparseGPMarginal(gp, inducing, q_mu, q_sqrt, self.whiten, self.jitter)
        return {self.site: numpyro.sample(self.site, q)}

    def _latent_values(self, params, values) -> dict | None:
        """``values`` as a dict: given as one, or the medians of the guide(s) given."""
        if values is None or isinstance(values, dict):
            return values
        parts = list(values) if isinstance(values, AutoGuideList) else [values]
        medians = {}
        for part in parts:
            if part is not self:
                medians.update(part.median(params))
        return medians

    def _posterior(self, params, args, kwargs, values):
        values = self._latent_values(params, values)
        with handlers.block(), handlers.substitute(data=params):
            gp = self._capture(args, kwargs, values)
            inducing, q_mu, q_sqrt = self._params()
        return gp, inducing, q_mu, q_sqrt

    def predict(
        self,
        params: dict,
        *args,
        values: dict | AutoGuide | None = None,
        full_cov: bool = False,
        **kwargs,
    ) -> tuple[jax.Array, jax.Array]:
        """Mean and (co)variance of :math:`q(f)` at the GP site's inputs of ``model(*args)``.

        Pass new inputs through the model's arguments. Add the noise variance for ``y``.
        Latent sites the kernel depends on (hyperparameters guided by another guide) need a
        value: pass the whole ``AutoGuideList`` (or the guide of those sites) as ``values`` to
        plug in their posterior medians, or a dict of values.

        :param params: fitted parameters (``svi_result.params``).
        :param values: values of latent model sites (e.g. kernel hyperparameters) as a dict,
            or a guide (``AutoGuideList`` or ``AutoGuide``) whose ``median(params)`` gives them.
        :param full_cov: return the joint covariance instead of marginal variances.
        :return: ``(mean, var)``.
        """
        gp, inducing, q_mu, q_sqrt = self._posterior(params, args, kwargs, values)
        Kff = gp.kernel(gp.X) if full_cov else gp.kernel.diag(gp.X)
        Lu = inducing_factor(inducing, gp.kernel, self.jitter)
        mean, var = conditional(
            inducing.Kuf(gp.kernel, gp.X), Lu, Kff, q_mu, q_sqrt, self.whiten, full_cov
        )
        return gp.loc + mean, var

    def sample_posterior(
        self,
        rng_key,
        params,
        *args,
        sample_shape=(),
        values: dict | AutoGuide | None = None,
        **kwargs,
    ):
        """Joint samples of ``f`` at the GP site's inputs of ``model(*args)``.

        Feed them to ``numpyro.infer.Predictive(model, posterior_samples=...)`` to sample
        ``y`` from the likelihood.

        :param rng_key: PRNG key.
        :param params: fitted parameters.
        :param sample_shape: leading shape of the draws.
        :param values: values of latent model sites (kernel hyperparameters) as a dict, or a
            guide whose posterior medians give them (see :meth:`predict`).
        :return: ``{site: samples}`` with shape ``sample_shape + (N,)``.
        """
        mean, cov = self.predict(params, *args, values=values, full_cov=True, **kwargs)
        L = cholesky(cov, jitter=self.jitter, name="posterior covariance of f")
        eps = jax.random.normal(rng_key, tuple(sample_shape) + mean.shape, mean.dtype)
        return {self.site: mean + eps @ L.T}
