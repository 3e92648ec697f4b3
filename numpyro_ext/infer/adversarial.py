"""Adversarial Variational Bayes: the ELBO of a guide known only through its sampler.

An implicit guide draws :math:`u = g_\\phi(\\varepsilon)` (or :math:`g_\\phi(x_i, \\varepsilon)`),
:math:`\\varepsilon \\sim N(0, I)`, in the unconstrained space of the latents, so
:math:`\\log q_\\phi(u)` is unknown and the ELBO cannot be evaluated. Adversarial Variational
Bayes (Mescheder, Nowozin & Geiger 2017; Huszár 2017) writes the negative ELBO with a
reference density :math:`r` that *is* known,

.. math::

    -\\mathcal{L}(\\phi) = \\mathbb{E}_{q_\\phi}\\bigl[\\log q_\\phi(u) - \\log r(u)
        + \\log r(u) - \\log|J(u)| - \\log p(x, z(u))\\bigr],

and replaces the unknown :math:`\\log q_\\phi - \\log r` by a critic :math:`T_\\psi` trained by
logistic regression to tell draws of :math:`q_\\phi` from draws of :math:`r` (see
:mod:`numpyro_ext.infer.density_ratio`); :math:`z(u)` is the constrained value and
:math:`|J|` the Jacobian of ``biject_to``. Two references are offered:

- the prior (``adaptive_contrast=False``): :math:`r(u) = p(z(u))\\,|J(u)|`, the original AVB;
  the loss becomes :math:`\\mathbb{E}_q[T_\\psi(u) - \\log p(x \\mid z)]`;
- adaptive contrast (default): :math:`r = N(\\hat\\mu, \\hat\\Sigma)` with :math:`q`'s own
  mean and covariance (estimated from extra draws, gradient stopped); the critic sees the
  whitened draw :math:`\\hat L^{-1}(u - \\hat\\mu)`, :math:`\\hat L \\hat L^\\top = \\hat\\Sigma`,
  against :math:`N(0, I)` and only has to learn how far :math:`q` is from Gaussian, a much
  easier task in high dimensions (AVB section 3.3). With the full covariance the Gaussian part
  of the entropy gradient, correlations included, comes exactly from :math:`\\log r`; with
  ``contrast_covariance="diagonal"`` (AVB's choice) the critic must learn the correlations.

One scalar for SVI: ``loss = primal + (critic_loss - stop_gradient(critic_loss))``. The primal
term evaluates the critic with its parameters' gradient stopped, and the critic's logistic loss
sees the guide's draws with their gradient stopped, so the gradient with respect to the
guide's parameters is the AVB primal gradient and the gradient with respect to the critic's is
the discriminator's; the value is the (estimated) negative ELBO. With
:func:`adversarial_optimizer` the two parameter groups get their own optax optimisers and the
critic can take several steps per guide step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
import optax
from numpyro import handlers
from numpyro.distributions import constraints
from numpyro.infer.elbo import ELBO

from numpyro_ext.infer.density_ratio import logistic_ratio_loss

__all__ = ["AdversarialELBO", "ImplicitLatent", "adversarial_optimizer", "is_critic_param"]


class ImplicitLatent(dist.Distribution):
    """A distribution known only through a sampler, with a critic attached.

    ``sample(key, shape)`` draws :math:`\\varepsilon \\sim N(0, I)` of width ``noise_dim`` and
    returns ``generator(eps)``; ``log_prob`` is unavailable and raises. Implicit guides sample
    their flat unconstrained latent as this distribution; :class:`AdversarialELBO` recognises
    it and uses ``log_ratio`` in place of the missing density.

    :param generator: maps noise ``(..., *batch_shape, noise_dim)`` to ``(..., *batch_shape, D)``.
    :param noise_dim: width of the noise.
    :param latent_dim: ``D``.
    :param log_ratio: the critic, ``(..., *batch_shape, D) -> (..., *batch_shape)``; it reads
        its parameters with ``numpyro.param`` when called, so the objective can substitute them.
    :param batch_shape: batch shape (``()`` for a global latent, ``(B,)`` per datum).
    :param sites: names of the model sites this latent covers.
    :param pack: maps ``{site: constrained value}`` to the flat unconstrained latent (used to
        draw the prior reference).
    :param dtype: dtype of the noise.
    """

    arg_constraints: ClassVar[dict] = {}
    support = constraints.real_vector
    pytree_aux_fields = ("generator", "noise_dim", "log_ratio", "sites", "pack", "dtype")

    def __init__(
        self,
        generator: Callable[[jax.Array], jax.Array],
        noise_dim: int,
        latent_dim: int,
        log_ratio: Callable[[jax.Array], jax.Array],
        *,
        batch_shape: tuple[int, ...] = (),
        sites: tuple[str, ...] = (),
        pack: Callable[[dict], jax.Array] | None = None,
        dtype: Any = None,
    ) -> None:
        self.generator = generator
        self.noise_dim = noise_dim
        self.log_ratio = log_ratio
        self.sites = tuple(sites)
        self.pack = pack
        self.dtype = jnp.result_type(float) if dtype is None else dtype
        super().__init__(batch_shape=tuple(batch_shape), event_shape=(latent_dim,))

    def sample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        shape = tuple(sample_shape) + self.batch_shape + (self.noise_dim,)
        return self.generator(jax.random.normal(key, shape, self.dtype))

    def rsample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        return self.sample(key, sample_shape)

    def log_prob(self, value: jax.Array) -> jax.Array:
        raise NotImplementedError(
            "ImplicitLatent has no density: an implicit guide is known only through its "
            "sampler. Train it with numpyro_ext.infer.AdversarialELBO (not Trace_ELBO), and "
            "use sample_posterior / Predictive to draw from it"
        )

    def moments(self, key: jax.Array, num_draws: int) -> tuple[jax.Array, jax.Array]:
        """Monte Carlo mean and standard deviation per coordinate from ``num_draws`` draws."""
        draws = self.sample(key, (num_draws,))
        return jnp.mean(draws, 0), jnp.std(draws, 0, ddof=1)


def _find_implicit(fn: Any) -> ImplicitLatent | None:
    while fn is not None:
        if isinstance(fn, ImplicitLatent):
            return fn
        fn = getattr(fn, "base_dist", None)
    return None


def _site_log_prob(site: dict) -> jax.Array:
    log_prob = site["fn"].log_prob(site["value"])
    if site.get("scale") is not None:
        log_prob = site["scale"] * log_prob
    return jnp.sum(log_prob)


def is_critic_param(name: str) -> bool:
    """Whether a parameter name belongs to an implicit guide's critic (``*_critic$...``)."""
    return name.split("$")[0].endswith("_critic")


class AdversarialELBO(ELBO):
    """Negative ELBO of implicit guides, with their critics trained in the same gradient.

    Works for any guide whose latent is an :class:`ImplicitLatent` site
    (:class:`~numpyro_ext.guides.ImplicitGuide`, :class:`~numpyro_ext.guides.AmortizedImplicit`),
    alone or in an ``AutoGuideList`` beside explicit guides (their sites enter as in
    ``Trace_ELBO``). Per particle, with :math:`s` the site's subsampling scale :math:`N / B`:

    .. math::

        \\text{primal} = s \\sum_i [\\bar T(\\tilde u_i) + \\log r(u_i)]
            + \\log q_{\\text{other}} - \\log p(x, z)\\big|_{\\text{not covered by r}},

    .. math::

        \\text{critic} = \\tfrac12\\bigl(\\overline{\\operatorname{softplus}(-T(\\tilde u))}
            + \\overline{\\operatorname{softplus}(T(v))}\\bigr),\\quad v \\sim r,

    where the bar is a stopped gradient, :math:`\\tilde u` the (normalised, for adaptive
    contrast) draw and the critic loss a per-datum mean (so its step size does not grow with
    ``N``). The returned loss is ``primal + critic - stop_gradient(critic)``.

    When the critic is optimal, :math:`\\mathbb{E}_q[T] = \\mathrm{KL}(q \\,\\|\\, r)` and the
    primal gradient is exactly the ELBO's; a suboptimal critic biases the value by
    :math:`\\mathbb{E}_q[T - T^*]` and the gradient by :math:`\\mathbb{E}_q[\\nabla_u (T -
    T^*)\\, \\partial u / \\partial \\phi]`.

    :param num_particles: draws of the guide per step.
    :param adaptive_contrast: contrast against a Gaussian with ``q``'s moments (default) or
        against the prior.
    :param contrast_covariance: the adaptive reference's covariance: ``"full"`` (the sample
        covariance of the draws shrunk towards its diagonal by :math:`D / (D + K)`),
        ``"diagonal"`` (per-coordinate variances, AVB's original adaptive contrast) or
        ``"auto"`` (default): full for a global latent, diagonal for per-datum latents, whose
        moments come from only ``num_critic_draws`` draws per datum.
    :param num_critic_draws: draws of ``q`` (and of ``r``) per datum on which the critic takes
        its logistic loss each step; under adaptive contrast they also give the moments.
    :param vectorize_particles: as in ``Trace_ELBO``.

    >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
    >>> from numpyro.infer import SVI
    >>> from numpyro_ext.guides import ImplicitGuide
    >>> def model(y):
    ...     mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    ...     with numpyro.plate("data", y.shape[0]):
    ...         numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)
    >>> guide = ImplicitGuide(model, hidden=(16,))
    >>> svi = SVI(model, guide, adversarial_optimizer(), AdversarialELBO())
    >>> result = svi.run(jax.random.key(0), 200, jnp.ones(4), progress_bar=False)
    >>> draws = guide.sample_posterior(jax.random.key(1), result.params, sample_shape=(100,))
    >>> draws["mu"].shape
    (100,)
    """

    def __init__(
        self,
        num_particles: int = 1,
        *,
        adaptive_contrast: bool = True,
        contrast_covariance: str = "auto",
        num_critic_draws: int = 32,
        vectorize_particles: bool | Callable = True,
    ) -> None:
        if num_critic_draws < 2:
            raise ValueError(f"num_critic_draws must be >= 2, got {num_critic_draws}")
        if contrast_covariance not in ("auto", "full", "diagonal"):
            raise ValueError(
                "contrast_covariance must be 'auto', 'full' or 'diagonal', got "
                f"{contrast_covariance!r}"
            )
        self.adaptive_contrast = adaptive_contrast
        self.contrast = contrast_covariance
        self.num_critic_draws = num_critic_draws
        super().__init__(num_particles=num_particles, vectorize_particles=vectorize_particles)

    def components(
        self,
        rng_key: jax.Array,
        param_map: dict,
        model: Callable,
        guide: Callable,
        *args,
        **kwargs,
    ) -> dict[str, jax.Array]:
        """The parts of one particle: ``primal`` (-ELBO estimate), ``critic`` (logistic loss)
        and ``kl`` (the critic's estimate of :math:`\\mathbb{E}_q[\\log q - \\log r]`, summed
        over sites and scaled). A critic loss near :math:`\\log 2 \\approx 0.69` means the
        critic cannot tell ``q`` from ``r``; near 0 means it separates them perfectly
        (saturation: its gradients carry no information)."""
        return self._particle(rng_key, param_map, model, guide, args, kwargs)

    def _particle(self, rng_key, params, model, guide, args, kwargs) -> dict[str, jax.Array]:
        k_guide, k_model, k_moment, k_neg = jax.random.split(rng_key, 4)
        guide_trace = handlers.trace(
            handlers.substitute(handlers.seed(guide, k_guide), data=params)
        ).get_trace(*args, **kwargs)
        # seed outside replay: replayed sites already have their values and draw no key
        model_trace = handlers.trace(
            handlers.substitute(
                handlers.seed(handlers.replay(model, guide_trace), k_model), params
            )
        ).get_trace(*args, **kwargs)

        implicit = {}
        for name, site in guide_trace.items():
            if site["type"] == "sample":
                q = _find_implicit(site["fn"])
                if q is not None:
                    implicit[name] = q
        if not implicit:
            raise ValueError(
                "AdversarialELBO: the guide has no implicit latent (an ImplicitLatent sample "
                "site); use Trace_ELBO for explicit guides"
            )
        covered = set()
        if not self.adaptive_contrast:
            for name, q in implicit.items():
                if not q.sites or q.pack is None:
                    raise ValueError(
                        f"AdversarialELBO(adaptive_contrast=False): site {name!r} does not say "
                        "which model sites it covers, so the prior reference cannot be drawn"
                    )
                covered.update(q.sites)

        primal = jnp.zeros(())
        for name, site in model_trace.items():
            if site["type"] == "sample" and name not in covered:
                primal = primal - _site_log_prob(site)
        for name, site in guide_trace.items():
            if site["type"] == "sample" and name not in covered and name not in implicit:
                primal = primal + _site_log_prob(site)

        frozen = jax.lax.stop_gradient(params)
        critic_loss = jnp.zeros(())
        kl = jnp.zeros(())
        negatives = (
            None
            if self.adaptive_contrast
            else self._prior_draws(k_neg, model, guide_trace, covered, params, args, kwargs)
        )
        for i, (name, q) in enumerate(implicit.items()):
            site = guide_trace[name]
            scale = 1.0 if site.get("scale") is None else site["scale"]
            u = site["value"]
            draws = jax.lax.stop_gradient(
                q.sample(jax.random.fold_in(k_moment, i), (self.num_critic_draws,))
            )
            if self.adaptive_contrast:
                # moments from draws independent of the critic's positives and of u, so that
                # both are normalised the same way (self-normalised draws are under-dispersed)
                held = jax.lax.stop_gradient(
                    q.sample(jax.random.fold_in(k_guide, i + 1), (self.num_critic_draws,))
                )
                whiten, log_r_of = self._reference(held, full=self._full(q))
                u_in = whiten(u)
                log_r = log_r_of(u)
                pos = whiten(draws)
                neg = jax.random.normal(jax.random.fold_in(k_neg, i), draws.shape, u.dtype)
            else:
                u_in = u
                log_r = 0.0  # the prior's terms cancel with the model's (they are not summed)
                pos = draws
                neg = jax.vmap(q.pack)({s: negatives[s] for s in q.sites})
            t_primal = handlers.substitute(q.log_ratio, data=frozen)(u_in)
            t_pos = handlers.substitute(q.log_ratio, data=params)(pos)
            t_neg = handlers.substitute(q.log_ratio, data=params)(neg)
            primal = primal + scale * jnp.sum(t_primal + log_r)
            kl = kl + scale * jnp.sum(t_primal)
            critic_loss = critic_loss + logistic_ratio_loss(t_pos, t_neg)
        return {"primal": primal, "critic": critic_loss, "kl": kl}

    def _full(self, q: ImplicitLatent) -> bool:
        if self.contrast == "auto":
            return q.batch_shape == ()
        return self.contrast == "full"

    def _reference(self, held: jax.Array, full: bool) -> tuple[Callable, Callable]:
        """The Gaussian reference fitted to ``held`` draws ``(K, *batch, D)`` (gradient stopped).

        Returns ``whiten(u) = L^{-1}(u - mu)`` and ``log_r(u)``, with ``L`` the Cholesky factor
        of the (shrunk) covariance, or the standard deviations when not ``full``."""
        num, dim = held.shape[0], held.shape[-1]
        tiny = jnp.finfo(held.dtype).tiny ** 0.25
        mu = jnp.mean(held, 0)
        if not full:
            sd = jnp.maximum(jnp.std(held, 0, ddof=1), tiny)

            def whiten(u):
                return (u - mu) / sd

            def log_r(u):
                return jnp.sum(dist.Normal(mu, sd).log_prob(u), -1)

            return whiten, log_r

        centred = held - mu
        cov = jnp.einsum("k...i,k...j->...ij", centred, centred) / (num - 1)
        var = jnp.diagonal(cov, axis1=-2, axis2=-1)
        # shrink towards the diagonal by D / (D + K): positive definite even when K <= D
        lam = dim / (dim + num)
        eye = jnp.eye(dim, dtype=held.dtype)
        chol = jnp.linalg.cholesky((1 - lam) * cov + (lam * var + tiny**2)[..., None] * eye)
        log_det = jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), -1)

        def whiten(u):
            many = u.ndim > mu.ndim  # (K, *batch, D) draws: solve with K as columns
            r = jnp.moveaxis(u - mu, 0, -1) if many else (u - mu)[..., None]
            w = jax.scipy.linalg.solve_triangular(chol, r, lower=True)
            return jnp.moveaxis(w, -1, 0) if many else w[..., 0]

        def log_r(u):
            w = whiten(u)
            return -0.5 * jnp.sum(w**2, -1) - log_det - 0.5 * dim * jnp.log(2 * jnp.pi)

        return whiten, log_r

    def _prior_draws(self, key, model, guide_trace, covered, params, args, kwargs) -> dict:
        keep = {
            name: site
            for name, site in guide_trace.items()
            if site["type"] == "plate" or (site["type"] == "sample" and name not in covered)
        }

        def one(k):
            with handlers.block():
                trace = handlers.trace(
                    handlers.substitute(handlers.replay(handlers.seed(model, k), keep), params)
                ).get_trace(*args, **kwargs)
            return {name: trace[name]["value"] for name in covered}

        keys = jax.random.split(key, self.num_critic_draws)
        return jax.lax.stop_gradient(jax.vmap(one)(keys))

    def loss_with_mutable_state(
        self,
        rng_key: jax.Array,
        param_map: dict,
        model: Callable,
        guide: Callable,
        *args,
        **kwargs,
    ) -> dict:
        def particle(key):
            parts = self._particle(key, param_map, model, guide, args, kwargs)
            critic = parts["critic"]
            return parts["primal"] + critic - jax.lax.stop_gradient(critic)

        if self.num_particles == 1:
            loss = particle(rng_key)
        else:
            keys = jax.random.split(rng_key, self.num_particles)
            loss = jnp.mean(self.vectorize_particles_fn(particle, keys))
        return {"loss": loss, "mutable_state": None}


def adversarial_optimizer(
    guide: optax.GradientTransformation | None = None,
    critic: optax.GradientTransformation | None = None,
    *,
    critic_steps: int = 1,
    is_critic: Callable[[str], bool] = is_critic_param,
) -> optax.GradientTransformation:
    """One optax optimiser for SVI with separate rules for the guide and the critic.

    Parameters are split by name (``is_critic``, default: names ``*_critic$...``) through
    ``optax.multi_transform``. With ``critic_steps = k > 1`` the critic is updated at every SVI
    step and everything else once every ``k`` steps, with the mean of its ``k`` gradients
    (``optax.MultiSteps``): ``k`` critic steps per guide step, as in AVB's training loop.

    :param guide: optimiser of the guide's (and model's) parameters; default
        ``optax.adam(1e-3)``.
    :param critic: optimiser of the critic's parameters; default ``optax.adam(3e-3)``.
    :param critic_steps: critic updates per guide update.
    :param is_critic: predicate on parameter names.
    :return: an ``optax.GradientTransformation`` to pass to ``numpyro.infer.SVI``.

    >>> import jax.numpy as jnp
    >>> opt = adversarial_optimizer(critic_steps=2)
    >>> state = opt.init({"g_loc": jnp.zeros(2), "g_critic$params": jnp.zeros(3)})
    """
    if critic_steps < 1:
        raise ValueError(f"critic_steps must be >= 1, got {critic_steps}")
    guide = optax.adam(1e-3) if guide is None else guide
    critic = optax.adam(3e-3) if critic is None else critic
    if critic_steps > 1:
        guide = optax.MultiSteps(guide, every_k_schedule=critic_steps).gradient_transformation()

    def labels(params):
        return {name: "critic" if is_critic(name) else "guide" for name in params}

    return optax.multi_transform({"guide": guide, "critic": critic}, labels)
