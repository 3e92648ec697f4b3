r"""The sparse variational GP guide (SVGP; Hensman, Fusi & Lawrence 2013; Hensman et al. 2015).

The model keeps an ordinary GP sample site,
``f = numpyro.sample("f", GaussianProcess(kernel, X_batch))``, followed by any likelihood. The
guide :class:`SparseGP` replaces the ``N``-dimensional posterior over ``f`` by ``M`` inducing
variables :math:`u` with :math:`q(u) = N(m, S)` (whitened by default) and samples ``f`` from the
marginals of :math:`q(f) = \int p(f \mid u) q(u)\, du` at cost :math:`O(B M^2 + M^3)`.
:class:`~numpyro_ext.guides.SOLVEGP` and :class:`~numpyro_ext.guides.ODVGP` add a second,
orthogonal inducing set to the same machinery.

The objective is ``TraceMeanField_ELBO``. The guide's site distribution
:class:`SparseGPMarginal` is the product of the marginals :math:`N(\mu_n, \sigma_n^2)` that it
samples, and ``log_prob`` is that density. The ELBO's prior term for the site is the KL
registered between :class:`SparseGPMarginal` and the model's :class:`GaussianProcess`:
:math:`\mathrm{KL}(q(u)\, p(f \mid u) \,\|\, p(u)\, p(f \mid u)) = \mathrm{KL}(q(u) \,\|\, p(u))`,
the KL of the augmented family, so the objective is exactly the SVGP bound
:math:`\sum_n E_{q(f_n)}[\log p(y_n \mid f_n)] - \mathrm{KL}(q(u) \,\|\, p(u))`, minibatched or
not, and nothing ``B x B`` is formed. ``Trace_ELBO`` and ``RenyiELBO`` score the site by
densities instead, :math:`\log p(f) - \log q(f)` with the GP prior over the ``B`` points of the
batch, which is meaningful only without subsampling. With ``joint=True`` the site is the joint
:math:`q(f)` of the sparse family (:math:`O(B^3)`), and the ELBO is
:math:`E[\log p(y \mid f)] - \mathrm{KL}(q(f) \| p(f))`, never below the SVGP bound and equal
to the evidence at the exact posterior when the inducing inputs are the data; with the default
marginals it is the bound of the fully factorised family.

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

How the guide reads the kernel and the inputs: the model is traced once when the guide is set
up (as every ``AutoGuide`` does) to find the GP site and the latent sites before it. The
kernel's current parameter values and the batch inputs are values the model computes on every
call, and NumPyro has no public API that hands a model's intermediate values to a guide; so
each call runs the model's *prefix*, up to the GP site only, under public effect handlers
(``block`` and a ``Messenger`` that stops at the site). Under ``jit`` this is trace-time work.
The plate indices drawn there are the ones the model replays.

Latent sites before the GP site (kernel hyperparameters, a mean function's weights) are guided
by an inner guide, ``hyperparameters`` (``AutoNormal`` by default), built on the model with
only those sites exposed. Its draws are passed to the prefix by value, so ``sample_posterior``,
``median`` and ``quantiles`` cover them and ``AutoGuideList`` needs nothing else; do not guide
those sites a second time in the list.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import ndtri
from numpyro import handlers
from numpyro.distributions import Distribution, constraints
from numpyro.distributions.kl import kl_divergence
from numpyro.infer.autoguide import AutoGuide, AutoNormal
from numpyro.primitives import Messenger
from numpyro.util import is_prng_key

from numpyro_ext.distributions.gaussian_process import GaussianProcess
from numpyro_ext.gp.conditional import conditional, gaussian_kl, inducing_factor
from numpyro_ext.gp.inducing import InducingPoints, InducingVariables
from numpyro_ext.gp.init import kmeans_inducing, random_subset_inducing
from numpyro_ext.linalg import cholesky

__all__ = ["SparseGP", "SparseGPMarginal"]


class SparseGPMarginal(Distribution):
    r"""The sparse guides' distribution over ``f(X)``: :math:`q(f)`, marginal or joint.

    With marginal variances, ``sample`` draws :math:`f_n \sim N(\mu_n, \sigma_n^2)`
    independently and ``log_prob`` is :math:`\sum_n \log N(f_n \mid \mu_n, \sigma_n^2)`;
    with a joint covariance :math:`\Sigma` both are those of :math:`N(\mu, \Sigma)`
    (:math:`O(N^3)`). Either way ``log_prob`` is the density of the draws. The attribute ``kl``
    is the KL term of the augmented family (:math:`\mathrm{KL}(q(u) \| p(u))` for SVGP); it is
    what ``kl_divergence(q, GaussianProcess)`` returns, so that ``TraceMeanField_ELBO``
    computes the sparse bound.

    :param prior: the model's :class:`GaussianProcess` at the same inputs.
    :param loc: means :math:`\mu` ``(N,)`` (prior mean included).
    :param variance: marginal variances ``(N,)`` or a joint covariance ``(N, N)``.
    :param kl: the family's KL term (a scalar).
    :param jitter: floor of the marginal variances.

    >>> import jax.numpy as jnp
    >>> from numpyro_ext.distributions import GaussianProcess
    >>> from numpyro_ext.gp import SquaredExponential
    >>> prior = GaussianProcess(SquaredExponential(), jnp.zeros(2))
    >>> q = SparseGPMarginal(prior, jnp.zeros(2), jnp.ones(2), jnp.array(0.5))
    >>> round(float(q.log_prob(jnp.zeros(2))), 4)
    -1.8379
    """

    arg_constraints = {}  # noqa: RUF012
    support = constraints.real_vector
    pytree_data_fields = ("prior", "loc", "scale", "scale_tril", "kl")
    pytree_aux_fields = ()

    def __init__(
        self,
        prior: GaussianProcess,
        loc: jax.Array,
        variance: jax.Array,
        kl: jax.Array,
        jitter: float = 1e-6,
        *,
        validate_args: bool | None = None,
    ):
        shape = prior.event_shape
        if jnp.shape(loc) != shape or jnp.shape(variance) not in (shape, shape + shape):
            raise ValueError(
                f"SparseGPMarginal: loc must have the prior's shape {shape} and variance that "
                f"shape or {shape + shape}, got {jnp.shape(loc)} and {jnp.shape(variance)}"
            )
        self.prior, self.loc, self.kl = prior, loc, kl
        if jnp.ndim(variance) == 2:
            # factored as it is (jitter only if that fails): its density must be exact
            self.scale_tril = cholesky(variance, jitter=0.0, name="covariance of q(f)")
            self.scale = jnp.sqrt(jnp.sum(self.scale_tril**2, -1))
        else:
            floor = max(jitter, float(jnp.finfo(jnp.result_type(variance)).tiny))
            self.scale, self.scale_tril = jnp.sqrt(jnp.maximum(variance, floor)), None
        super().__init__(batch_shape=(), event_shape=shape, validate_args=validate_args)

    @property
    def mean(self) -> jax.Array:
        return self.loc

    @property
    def variance(self) -> jax.Array:
        return self.scale**2

    def sample(self, key, sample_shape=()):
        assert is_prng_key(key)
        eps = jax.random.normal(key, sample_shape + self.event_shape, self.loc.dtype)
        if self.scale_tril is not None:
            return self.loc + eps @ self.scale_tril.T
        return self.loc + self.scale * eps

    def log_prob(self, value):
        if self.scale_tril is not None:
            return dist.MultivariateNormal(self.loc, scale_tril=self.scale_tril).log_prob(value)
        z = (value - self.loc) / self.scale
        return jnp.sum(-0.5 * z**2 - jnp.log(self.scale) - 0.5 * math.log(2 * math.pi), -1)

    def icdf(self, q):
        return self.loc + self.scale * ndtri(q)

    def kl_to(self, prior: GaussianProcess) -> jax.Array:
        """The family's KL term against ``prior`` (the model's GP at the same inputs)."""
        if prior.event_shape != self.event_shape:
            raise ValueError(
                f"SparseGP: the model's GaussianProcess has event shape {prior.event_shape} but "
                f"the guide's has {self.event_shape}"
            )
        return self.kl


@kl_divergence.register(SparseGPMarginal, GaussianProcess)
def _kl_sparse_gp(q: SparseGPMarginal, p: GaussianProcess) -> jax.Array:
    return q.kl_to(p)


class _Reached(Exception):
    """Raised by :class:`_run_to_site` at the GP site: carries the site's distribution."""

    def __init__(self, name, gp, frames):
        self.name, self.gp, self.frames = name, gp, frames
        super().__init__(name)


class _run_to_site(Messenger):
    """Run the model up to its GP site and stop there.

    Latent sites before it take ``values[name]``; a latent site without a value is an error.
    """

    def __init__(self, fn, site: str | None, values: dict):
        self.site, self.values = site, values
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] != "sample":
            return
        name, fn = msg["name"], msg["fn"]
        while not isinstance(fn, GaussianProcess) and hasattr(fn, "base_dist"):
            fn = fn.base_dist  # a plate expanded it, or a mask wrapped it
        if name == self.site or (self.site is None and isinstance(fn, GaussianProcess)):
            if not isinstance(fn, GaussianProcess):
                raise ValueError(
                    f"SparseGP: site '{name}' must be a GaussianProcess, got {type(msg['fn'])}"
                )
            raise _Reached(name, fn, msg["cond_indep_stack"])
        if msg["is_observed"]:
            return
        if name not in self.values:
            raise ValueError(
                f"SparseGP: the model's latent site '{name}' comes before the GP site and has "
                "no value; guide it with `hyperparameters=` (an AutoGuide class)"
            )
        msg["value"] = self.values[name]


def _full_plates(msg):
    """``substitute_fn`` giving every subsampled plate its full index range."""
    if msg["type"] == "plate":
        size = msg["args"][0]
        return jnp.arange(size)
    return None


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
    :param joint: make the site distribution the joint :math:`q(f)` (joint draws, joint
        density, :math:`O(B^3)` per step) instead of its marginals; for ``Trace_ELBO`` and
        ``RenyiELBO``, whose density ratio then is the sparse family's.
    :param hyperparameters: ``AutoGuide`` class for the latent sites before the GP site
        (built as ``hyperparameters(block(model, expose=...), prefix=prefix)``); ``None``
        refuses such sites.
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
        joint: bool = False,
        hyperparameters: type[AutoGuide] | None = AutoNormal,
        prefix: str = "auto",
    ):
        name = type(self).__name__
        self.joint = joint
        if inducing is None and num_inducing is None:
            raise ValueError(f"{name}: give either `inducing` (inputs Z) or `num_inducing`")
        if init_inducing not in ("kmeans", "subset"):
            raise ValueError(
                f"{name}: init_inducing must be 'kmeans' or 'subset', got {init_inducing!r}"
            )
        self.site = site
        self.inducing = self._as_inducing(inducing)
        self.num_inducing = num_inducing
        self.init_inducing, self.whiten = init_inducing, whiten
        self.learn_inducing, self.jitter = learn_inducing, jitter
        self.hyperparameters, self.hyperparameter_guide = hyperparameters, None
        super().__init__(model, prefix=prefix)

    # -- the GP site ------------------------------------------------------------------------

    @staticmethod
    def _as_inducing(inducing):
        if inducing is None or isinstance(inducing, InducingVariables):
            return inducing
        return InducingPoints(jnp.asarray(inducing))

    def _choose_inducing(self, rng_key, X, num):
        if self.init_inducing == "kmeans":
            return InducingPoints(kmeans_inducing(rng_key, X, num))
        return InducingPoints(random_subset_inducing(rng_key, X, num))

    def _gp(self, args, kwargs, values, full=False) -> GaussianProcess:
        """The model's GP site distribution: the model's prefix run with ``values``."""
        fn = _run_to_site(self.model, self.site, values)
        if full:
            fn = handlers.substitute(fn, substitute_fn=_full_plates)
        fn = handlers.block(fn, hide_fn=lambda msg: msg["type"] in ("sample", "deterministic"))
        try:
            with warnings.catch_warnings():
                # a subsampled plate given its full range warns that the sizes differ
                warnings.filterwarnings("ignore", "subsample_size does not match")
                fn(*args, **kwargs)
        except _Reached as reached:
            if reached.frames:
                raise ValueError(
                    f"{type(self).__name__}: GP site '{reached.name}' sits inside plate(s) "
                    f"{[f.name for f in reached.frames]}; put the GP site outside the data "
                    "plate and only the likelihood inside it"
                ) from None
            self.site = reached.name
            return reached.gp
        raise ValueError(
            f"{type(self).__name__}: the model has no GaussianProcess sample site"
            + (f" named '{self.site}'" if self.site else "")
        )

    def _setup_prototype(self, *args, **kwargs):
        rng_key = numpyro.prng_key()
        rng_key = jax.random.key(0) if rng_key is None else rng_key

        def no_gp_draw(msg):
            fn = msg["fn"] if msg["type"] == "sample" else None
            while fn is not None and not isinstance(fn, GaussianProcess):
                fn = getattr(fn, "base_dist", None)
            return None if fn is None else jnp.zeros(msg["fn"].shape(), fn.loc.dtype)

        with handlers.block(), handlers.seed(rng_seed=rng_key):
            model = handlers.substitute(self.model, substitute_fn=no_gp_draw)
            self.prototype_trace = handlers.trace(model).get_trace(*args, **kwargs)
        self._args, self._kwargs = args, kwargs
        names = []
        for name, site in self.prototype_trace.items():
            if site["type"] != "sample":
                continue
            fn = site["fn"]
            while not isinstance(fn, GaussianProcess) and hasattr(fn, "base_dist"):
                fn = fn.base_dist
            if name == self.site or (self.site is None and isinstance(fn, GaussianProcess)):
                break
            if not site["is_observed"]:
                names.append(name)
        if names and self.hyperparameters is not None:
            self.hyperparameter_guide = self.hyperparameters(
                handlers.block(self.model, expose=names), prefix=self.prefix
            )
        values = {name: self.prototype_trace[name]["value"] for name in names}
        gp = self._gp(args, kwargs, values)
        self._dtype = gp.loc.dtype
        self._init_family(rng_key, gp)

    # -- the variational family (overridden by the orthogonal guides) ------------------------

    def _init_family(self, rng_key, gp: GaussianProcess):
        if self.inducing is None:
            self.inducing = self._choose_inducing(rng_key, gp.X, self.num_inducing)
        M = len(self.inducing)
        if self.whiten:
            self._init_q_sqrt = jnp.eye(M, dtype=self._dtype)
        else:
            self._init_q_sqrt = inducing_factor(self.inducing, gp.kernel, self.jitter)

    def _inducing_param(self, inducing, field_prefix):
        if not (self.learn_inducing and dataclasses.is_dataclass(inducing)):
            return inducing
        return dataclasses.replace(
            inducing,
            **{
                f.name: numpyro.param(f"{field_prefix}_{f.name}", getattr(inducing, f.name))
                for f in dataclasses.fields(inducing)
                if not f.metadata.get("static", False)
            },
        )

    def _gaussian_param(self, name, M, init_q_sqrt):
        if M == 0:  # an empty set has nothing to learn (and no lower-Cholesky transform)
            return jnp.zeros(0, self._dtype), jnp.zeros((0, 0), self._dtype)
        q_mu = numpyro.param(f"{name}_q_mu", jnp.zeros(M, self._dtype))
        q_sqrt = numpyro.param(
            f"{name}_q_sqrt", init_q_sqrt, constraint=constraints.lower_cholesky
        )
        return q_mu, q_sqrt

    def _params(self):
        """Register the family's parameters; return what :meth:`_moments` needs."""
        name = f"{self.prefix}_{self.site}"
        inducing = self._inducing_param(self.inducing, name)
        q_mu, q_sqrt = self._gaussian_param(name, len(inducing), self._init_q_sqrt)
        return inducing, q_mu, q_sqrt

    def _moments(self, state, kernel, X, full_cov=False):
        """``(mean, (co)variance, kl)`` of :math:`q(f(X))` around a zero prior mean."""
        inducing, q_mu, q_sqrt = state
        Lu = inducing_factor(inducing, kernel, self.jitter)
        Kff = kernel(X) if full_cov else kernel.diag(X)
        mean, var = conditional(
            inducing.Kuf(kernel, X), Lu, Kff, q_mu, q_sqrt, self.whiten, full_cov
        )
        return mean, var, gaussian_kl(q_mu, q_sqrt, None if self.whiten else Lu)

    # -- the AutoGuide contract ---------------------------------------------------------------

    def __call__(self, *args, **kwargs):
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        values = {}
        if self.hyperparameter_guide is not None:
            values = self.hyperparameter_guide(*args, **kwargs)
        gp = self._gp(args, kwargs, values)
        mean, var, kl = self._moments(self._params(), gp.kernel, gp.X, self.joint)
        q = SparseGPMarginal(gp, gp.loc + mean, var, kl, self.jitter)
        return {**values, self.site: numpyro.sample(self.site, q)}

    def _hyper_values(self, params, values):
        if values is not None:
            return values.median(params) if isinstance(values, AutoGuide) else values
        if self.hyperparameter_guide is None:
            return {}
        return self.hyperparameter_guide.median(params)

    def _posterior(self, params, args, kwargs, values, full=False):
        with handlers.block(), handlers.substitute(data=params):
            gp = self._gp(args, kwargs, values, full)
            state = self._params()
        return gp, state

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
        Latent hyperparameters take their posterior medians unless ``values`` gives them.

        :param params: fitted parameters (``svi_result.params``).
        :param values: values of the latent sites before the GP site, as a dict (or a guide
            whose ``median(params)`` gives them).
        :param full_cov: return the joint covariance instead of marginal variances.
        :return: ``(mean, var)``.
        """
        values = self._hyper_values(params, values)
        gp, state = self._posterior(params, args, kwargs, values)
        mean, var, _ = self._moments(state, gp.kernel, gp.X, full_cov)
        return gp.loc + mean, var

    def sample_posterior(self, rng_key, params, *args, sample_shape=(), **kwargs):
        """Joint draws of ``f`` at the GP site's inputs of ``model(*args)`` (and of the latent
        hyperparameters, when there are any, with ``f`` drawn given each of them).

        Without ``args`` the inputs are those the guide was set up with, every subsampled
        plate at its full size. Feed the draws to ``numpyro.infer.Predictive(model,
        posterior_samples=...)`` to sample ``y``.

        :param rng_key: PRNG key.
        :param params: fitted parameters.
        :param sample_shape: leading shape of the draws.
        :return: ``{site: samples}`` with shape ``sample_shape + (N,)``, plus the
            hyperparameter draws.
        """
        full = not args and not kwargs
        if full:
            args, kwargs = self._args, self._kwargs
        sample_shape = tuple(sample_shape)
        key_h, key_f = jax.random.split(rng_key)
        hypers = {}
        if self.hyperparameter_guide is not None:
            hypers = self.hyperparameter_guide.sample_posterior(
                key_h, params, *args, sample_shape=sample_shape, **kwargs
            )
            hypers = {k: v for k, v in hypers.items() if k != self.site}

        def draw(key, values):
            gp, state = self._posterior(params, args, kwargs, values, full)
            mean, cov, _ = self._moments(state, gp.kernel, gp.X, full_cov=True)
            L = cholesky(cov, jitter=self.jitter, name="posterior covariance of f")
            return gp.loc + mean + L @ jax.random.normal(key, mean.shape, mean.dtype)

        n = math.prod(sample_shape)
        keys = jax.random.split(key_f, max(n, 1))
        if hypers:
            flat = jax.tree.map(lambda v: v.reshape((n, *v.shape[len(sample_shape) :])), hypers)
            f = jax.vmap(draw)(keys, flat)
        else:
            gp, state = self._posterior(params, args, kwargs, {}, full)
            mean, cov, _ = self._moments(state, gp.kernel, gp.X, full_cov=True)
            L = cholesky(cov, jitter=self.jitter, name="posterior covariance of f")
            eps = jax.random.normal(key_f, (max(n, 1), *mean.shape), mean.dtype)
            f = gp.loc + mean + eps @ L.T
        f = f.reshape(sample_shape + f.shape[1:])
        return {**hypers, self.site: f}

    def _marginals_at_setup(self, params):
        values = self._hyper_values(params, None)
        gp, state = self._posterior(params, self._args, self._kwargs, values, full=True)
        mean, var, _ = self._moments(state, gp.kernel, gp.X)
        return gp.loc + mean, var, values

    def median(self, params):
        """Posterior medians: :math:`q(f)` is Gaussian, so its mean at the inputs the guide was
        set up with (subsampled plates at full size), given the hyperparameters' medians."""
        mean, _, values = self._marginals_at_setup(params)
        return {**values, self.site: mean}

    def quantiles(self, params, quantiles):
        """Marginal quantiles of ``f`` (Gaussian, closed form) at the inputs the guide was set
        up with, given the hyperparameters' medians; the hyperparameters' own quantiles come
        from their guide. Shapes ``(len(quantiles), N)``."""
        q = jnp.asarray(quantiles)
        mean, var, _ = self._marginals_at_setup(params)
        sd = jnp.sqrt(jnp.maximum(var, self.jitter))
        result = {}
        if self.hyperparameter_guide is not None:
            result.update(self.hyperparameter_guide.quantiles(params, quantiles))
        result[self.site] = mean + sd * ndtri(q)[..., None]
        return result
