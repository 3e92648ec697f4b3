r"""Collapsed Pólya-gamma Gibbs: hyperparameters updated with the Gaussian block integrated out.

In a hierarchical model the Gaussian block :math:`z = m_\theta + L_\theta v`,
:math:`v \sim N(0, I)`, has a prior (and possibly a design) that depends on hyperparameters
:math:`\theta` (scales, lengthscales). Updating :math:`\theta \mid z` and :math:`z \mid \theta`
in turn mixes slowly when they are tightly coupled (the centred funnel). Given the Pólya-gamma
auxiliaries :math:`\omega` the augmented likelihood is Gaussian in the logits
:math:`\psi = A_\theta v + \psi_{0,\theta}` (:math:`A = X L`, :math:`\psi_0 = X m + c`), so the
block integrates out in closed form (Polson, Scott & Windle 2013, §3):

.. math::

    \log p(y, \omega \mid \theta) = \mathrm{const}
    + \kappa^\top W \psi_0 - \tfrac12 \psi_0^\top W \Omega \psi_0
    - \tfrac12 \log |P| + \tfrac12 \lVert L_P^{-1} r \rVert^2,
    \qquad P = I + A^\top W \Omega A = L_P L_P^\top,\quad r = A^\top W (\kappa - \Omega \psi_0),

where the constant, :math:`\sum_n w_n (\log C(y_n) - b_n \log 2) + \log \mathrm{PG}(\omega_n
\mid b_n, 0)`, is free of :math:`\theta` as long as the Pólya-gamma shapes :math:`b` and the
weights :math:`W` are (this is checked). A sweep of :class:`CollapsedPolyaGammaGibbs` draws

1. :math:`\omega \mid z, \theta \sim \mathrm{PG}(b, \psi)`, exactly;
2. :math:`\theta \mid \omega, y` by univariate slice sampling (Neal 2003, stepping out and
   shrinkage) of each unconstrained coordinate in turn, against the collapsed density above
   plus the prior of :math:`\theta` (with the Jacobian of its transform to the real line) and
   every factor of the model outside the Gaussian block;
3. :math:`z \mid \theta, \omega, y`, exactly (Gaussian).

Steps 2 and 3 update :math:`(\theta, z) \mid \omega` by a kernel that leaves the marginal of
:math:`\theta` invariant followed by the exact conditional of :math:`z`, so the sweep is a valid
blocked Gibbs sampler of the joint posterior.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax.scipy.linalg import cho_solve, solve_triangular
from numpyro import handlers
from numpyro.distributions.distribution import ExpandedDistribution, Independent
from numpyro.distributions.transforms import biject_to
from numpyro.util import is_prng_key

from numpyro_ext.infer.augmented_kernel import AugmentedModelKernel, concrete
from numpyro_ext.infer.conjugate_terms import (
    ConjugateTerms,
    augmented_terms,
    check_conjugate,
    conjugate_terms_and_rest,
    evaluate,
    full_precision,
)
from numpyro_ext.infer.gaussian_block import (
    block_layout,
    gaussian_prior,
    is_auxiliary,
    trace_block,
    trace_with,
)
from numpyro_ext.infer.polya_gamma_sweep import sample_gaussian_block, sample_omega

_CALLER = "CollapsedPolyaGammaGibbs"

__all__ = ["CollapsedPolyaGammaGibbs", "CollapsedPolyaGammaGibbsState"]


class CollapsedPolyaGammaGibbsState(NamedTuple):
    """State of :class:`CollapsedPolyaGammaGibbs`.

    :param z: the Gaussian block and the hyperparameters (constrained), by site name.
    :param omega: the flattened Pólya-gamma auxiliaries of the last sweep.
    :param u: the hyperparameters in unconstrained space, flattened.
    :param log_width: log of each unconstrained coordinate's slice width.
    :param terms: the conjugate terms at the current hyperparameters (without ``whitened``
        where the design does not depend on them: that path works from the Gram matrix).
    :param rest: log density at ``u`` of everything but the Gaussian block and the augmented
        likelihoods (the hyperparameters' priors and Jacobians, other factors).
    :param step: the number of sweeps done (widths adapt while it is below ``num_warmup``).
    :param rng_key: the random key of the next sweep.
    """

    z: dict
    omega: jax.Array
    u: jax.Array
    log_width: jax.Array
    terms: ConjugateTerms
    rest: jax.Array
    step: jax.Array
    rng_key: jax.Array


class SliceResult(NamedTuple):
    """One univariate slice update: the new point, its log density and the work it took."""

    x: jax.Array
    log_density: jax.Array
    steps_out: jax.Array
    rejected: jax.Array


def collapsed_log_likelihood(terms: ConjugateTerms, omega: jax.Array) -> jax.Array:
    r"""``log p(y, omega | theta)`` with the Gaussian block integrated out, up to a constant.

    The constant, ``sum_n w_n (log C(y_n) - b_n log 2) + log PG(omega_n | b_n, 0)``, depends on
    the hyperparameters only through ``b`` and ``W``.

    :param terms: the conjugate terms (prior, design and Pólya-gamma parameters).
    :param omega: the Pólya-gamma auxiliaries, shape ``(n,)``.
    """
    psi0, w = terms.whitened_offset, terms.weight
    chol, r = terms.whitened_conditional(omega)
    s = solve_triangular(chol, r, lower=True)
    return (
        jnp.dot(w * terms.kappa, psi0)
        - 0.5 * jnp.dot(w * omega * psi0, psi0)
        - jnp.sum(jnp.log(jnp.diagonal(chol)))
        + 0.5 * jnp.dot(s, s)
    )


def slice_sample(
    key: jax.Array,
    x0: jax.Array,
    log_density: Callable[[jax.Array], jax.Array],
    log_density_x0: jax.Array,
    width: jax.Array,
    max_steps_out: int = 8,
    max_proposals: int = 20,
) -> SliceResult:
    r"""One univariate slice-sampling update (Neal 2003, §4: stepping out, then shrinkage).

    Draws the level :math:`\log y = \log f(x_0) - E`, :math:`E \sim \mathrm{Exp}(1)`, places an
    interval of size ``width`` at random around ``x0``, steps its ends out by ``width`` (at most
    ``max_steps_out`` steps in all, split at random between the ends, Fig. 3 of the paper) while
    they lie in the slice, then proposes uniformly in the interval, shrinking it towards ``x0``
    after each rejection. Both loops are bounded: if ``max_proposals`` proposals are all
    rejected, ``x0`` is kept, which still leaves :math:`f` invariant (the reversibility argument
    holds for each number of shrinks separately). A ``nan`` log density counts as ``-inf``.

    :param key: random key.
    :param x0: current point (scalar).
    :param log_density: the unnormalised log density, scalar to scalar.
    :param log_density_x0: its value at ``x0``.
    :param width: the initial interval size.
    :param max_steps_out: the most step-outs of both ends together.
    :param max_proposals: the most proposals of the shrinkage loop.

    >>> import jax, jax.numpy as jnp
    >>> def logf(x):
    ...     return -0.5 * x**2
    >>> r = slice_sample(jax.random.key(0), jnp.array(0.3), logf, logf(0.3), jnp.array(1.0))
    >>> bool(logf(r.x) > -jnp.inf)
    True
    """

    def logf(x):
        lp = log_density(x)
        return jnp.where(jnp.isnan(lp), -jnp.inf, lp)

    dtype = jnp.result_type(x0)
    # one batch of uniforms: the level, the placement, the split of the step-outs, proposals
    uniforms = jax.random.uniform(key, (3 + max_proposals,), dtype)
    level = log_density_x0 + jnp.log(uniforms[0])  # log f(x0) - Exp(1)
    left = x0 - width * uniforms[1]
    left_steps = jnp.floor(max_steps_out * uniforms[2]).astype(jnp.int32)
    steps = jnp.stack([left_steps, max_steps_out - 1 - left_steps])
    direction = jnp.array([-1.0, 1.0], dtype)

    # both ends step out in one loop, their densities evaluated as a batch of two; an end whose
    # budget is spent is not evaluated (Neal's "while J > 0 and y < f(L)")
    def out_cond(c):
        return jnp.any(c[2])

    def out_body(c):
        ends, left_over, active = c
        grow = active & (jax.vmap(logf)(ends) > level)
        ends = jnp.where(grow, ends + direction * width, ends)
        left_over = left_over - grow.astype(jnp.int32)
        return ends, left_over, grow & (left_over > 0)

    ends = jnp.stack([left, left + width])
    ends, left_over, _ = jax.lax.while_loop(out_cond, out_body, (ends, steps, steps > 0))

    def cond(c):
        return ~c[5] & (c[4] < max_proposals)

    def body(c):
        lo, hi, _, _, n, _ = c
        x = lo + (hi - lo) * uniforms[3 + n]
        lp = logf(x)
        accepted = lp > level
        lo = jnp.where(~accepted & (x < x0), x, lo)
        hi = jnp.where(~accepted & (x >= x0), x, hi)
        return lo, hi, x, lp, n + 1, accepted

    init = (ends[0], ends[1], x0, log_density_x0, jnp.int32(0), jnp.array(False))
    _, _, x, lp, n, accepted = jax.lax.while_loop(cond, body, init)
    x = jnp.where(accepted, x, x0)
    lp = jnp.where(accepted, lp, log_density_x0)
    rejected = n - accepted.astype(jnp.int32)
    return SliceResult(x, lp, jnp.sum(steps - left_over), rejected)


class _HyperLayout(NamedTuple):
    """The hyperparameter sites and the shapes of their unconstrained values."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @property
    def size(self) -> int:
        return sum(math.prod(s) for s in self.shapes)

    def unravel(self, flat: jax.Array) -> dict:
        sizes = [math.prod(s) for s in self.shapes]
        pieces = jnp.split(flat, np.cumsum(sizes)[:-1]) if self.names else []
        return {k: p.reshape(s) for k, p, s in zip(self.names, pieces, self.shapes, strict=True)}


def _latent(site: dict) -> bool:
    return site["type"] == "sample" and not site["is_observed"]


def _is_gaussian(name: str, fn) -> bool:
    try:
        gaussian_prior(name, fn, _CALLER)
    except ValueError:
        return False
    return True


def _hyper_layout(model: Callable, args, kwargs, hyperparameters) -> _HyperLayout:
    tr = trace_with(model, args, kwargs, lambda site: None)
    latent = {k: s for k, s in tr.items() if _latent(s) and not is_auxiliary(s)}
    if hyperparameters is None:
        names = tuple(k for k, s in latent.items() if not _is_gaussian(k, s["fn"]))
    else:
        unknown = [k for k in hyperparameters if k not in latent]
        if unknown:
            raise ValueError(
                f"CollapsedPolyaGammaGibbs: hyperparameters {unknown} are not latent sample "
                f"sites of the model (its latent sites are {list(latent)})"
            )
        names = tuple(k for k in latent if k in set(hyperparameters))
    shapes = []
    for k in names:
        support = latent[k]["fn"].support
        if support.is_discrete:
            raise ValueError(
                f"CollapsedPolyaGammaGibbs: hyperparameter site {k!r} is discrete "
                f"({type(latent[k]['fn']).__name__}); only continuous hyperparameters are "
                "slice-sampled"
            )
        shape = jnp.shape(biject_to(support).inv(latent[k]["value"]))
        shapes.append(tuple(shape))
    return _HyperLayout(names, tuple(shapes))


def _constrain(model: Callable, args, kwargs, hyper: _HyperLayout, u_flat: jax.Array):
    """Constrained hyperparameters and ``log |d theta / d u|`` at unconstrained ``u_flat``."""
    u = hyper.unravel(u_flat)

    def substitute_fn(site):
        if site["name"] in u:
            return biject_to(site["fn"].support)(u[site["name"]])
        if _latent(site):  # the block does not enter the hyperparameters' priors (checked)
            return jnp.zeros(site["fn"].shape(), u_flat.dtype)
        return None

    tr = trace_with(model, args, kwargs, substitute_fn)
    theta = {k: tr[k]["value"] for k in hyper.names}
    log_det = sum(
        jnp.sum(biject_to(tr[k]["fn"].support).log_abs_det_jacobian(u[k], theta[k]))
        for k in hyper.names
    )
    return theta, jnp.asarray(log_det, u_flat.dtype)


def _unconstrain(model: Callable, args, kwargs, hyper: _HyperLayout, theta: dict) -> jax.Array:
    tr = trace_with(model, args, kwargs, lambda site: theta.get(site["name"]))
    pieces = [biject_to(tr[k]["fn"].support).inv(theta[k]) for k in hyper.names]
    return jnp.concatenate([jnp.ravel(p) for p in pieces]) if pieces else jnp.zeros(0)


def _diagonal_prior(model: Callable, args, kwargs, layout) -> bool:
    """Whether every site of the block has an (expanded, independent) ``Normal`` prior."""
    tr = trace_block(model, args, kwargs, {})
    for k in layout.names:
        fn = tr[k]["fn"]
        while isinstance(fn, (ExpandedDistribution, Independent)):
            fn = fn.base_dist
        if not isinstance(fn, dist.Normal):
            return False
    return True


class CollapsedPolyaGammaGibbs(AugmentedModelKernel):
    r"""Pólya-gamma Gibbs with collapsed slice updates of the non-Gaussian latents.

    For a model whose logits are affine in a Gaussian block given the other latents
    :math:`\theta` (population scales, lengthscales, the scale of a non-centred
    parameterisation), each sweep draws :math:`\omega \mid z, \theta` (Pólya-gamma),
    :math:`\theta \mid \omega, y` with :math:`z` integrated out analytically, by univariate
    slice sampling (Neal 2003) of each unconstrained coordinate in turn, then
    :math:`z \mid \theta, \omega, y` exactly (the module docstring has the collapsed density).
    Collapsing removes the coupling of :math:`\theta` and :math:`z` that slows the centred
    Gibbs composite ``Gibbs([(PolyaGammaGibbs(model), ...), (NUTS(model), None)])``.

    During warmup the slice width of each coordinate adapts by a Robbins-Monro step on its
    log, ``log w += 0.5 t^{-0.6} (steps out - rejected proposals)``, which grows a width
    that has to step out and shrinks one that has to shrink; after warmup it is fixed.
    ``get_samples()`` holds every latent site of the model, the hyperparameters in their
    constrained space. The kernel samples the whole model itself, so it is not a block of
    ``numpyro.infer.Gibbs`` (it has no ``refresh``, and Gibbs refuses it) and offers no
    ``gibbs_fn`` for ``HMCGibbs``; ``PolyaGammaGibbs`` is the kernel for those compositions.

    The Pólya-gamma shapes :math:`b` (e.g. a ``NegativeBinomial`` total count) and the masks
    of the augmented sites must not depend on :math:`\theta`; the prior of the block and its
    design may. Both, and the affinity of the logits, are checked at ``init``.

    :param model: the (un-augmented) model.
    :param hyperparameters: the latent sites updated by the collapsed slice sampler; ``None``
        (default): every latent site whose prior is not ``Normal``, ``MultivariateNormal`` or
        ``GaussianProcess``. The other latents form the Gaussian block.
    :param sites: observed sites to augment (``None``: every supported one).
    :param width: the initial slice width of each unconstrained coordinate.
    :param adapt_width: adapt the widths during warmup.
    :param max_steps_out: the most step-outs of an interval (both ends together).
    :param max_proposals: the most shrinkage proposals before the current value is kept.
    :param auxiliaries: also return the Pólya-gamma auxiliaries in the samples.
    :param check: verify the conjugate structure at ``init`` (skipped under tracing).
    :param approximate_above: ``None`` (default): exact Pólya-gamma draws, at a cost linear in
        the shapes ``b``; a threshold ``>= 200``: larger shapes drawn by the truncated gamma
        series (an approximation whose cost does not grow with ``b``), as in
        :class:`~numpyro_ext.infer.PolyaGammaGibbs`.

    >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
    >>> from numpyro.infer import MCMC
    >>> def model(g, y):
    ...     tau = numpyro.sample("tau", dist.HalfNormal(1.0))
    ...     a = numpyro.sample("a", dist.Normal(0.0, tau).expand([3]).to_event(1))
    ...     numpyro.sample("y", dist.Bernoulli(logits=a[g]), obs=y)
    >>> g = jnp.repeat(jnp.arange(3), 4)
    >>> y = jnp.array([0, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0, 1.0])
    >>> mcmc = MCMC(CollapsedPolyaGammaGibbs(model), num_warmup=50, num_samples=100,
    ...             progress_bar=False)
    >>> mcmc.run(jax.random.key(0), g, y)
    >>> s = mcmc.get_samples()
    >>> s["tau"].shape, s["a"].shape, bool((s["tau"] > 0).all())
    ((100,), (100, 3), True)

    References: N. G. Polson, J. G. Scott, J. Windle, Bayesian inference for logistic models
    using Pólya-gamma latent variables, JASA 108 (2013); R. M. Neal, Slice sampling, Annals of
    Statistics 31 (2003).
    """

    def __init__(
        self,
        model: Callable,
        *,
        hyperparameters: Iterable[str] | None = None,
        sites: Iterable[str] | None = None,
        width: float = 1.0,
        adapt_width: bool = True,
        max_steps_out: int = 8,
        max_proposals: int = 20,
        auxiliaries: bool = False,
        check: bool = True,
        approximate_above: float | None = None,
    ):
        super().__init__(
            model, sites=sites, auxiliaries=auxiliaries, check=check,
            approximate_above=approximate_above,
        )  # fmt: skip
        if isinstance(hyperparameters, str):
            raise ValueError(
                "CollapsedPolyaGammaGibbs: 'hyperparameters' must be a list of site names; "
                f"got {hyperparameters!r}"
            )
        if not width > 0:
            raise ValueError(f"CollapsedPolyaGammaGibbs: 'width' must be positive; got {width}")
        if max_steps_out < 1 or max_proposals < 1:
            raise ValueError(
                "CollapsedPolyaGammaGibbs: 'max_steps_out' and 'max_proposals' must be at "
                f"least 1; got {max_steps_out} and {max_proposals}"
            )
        self._hyperparameters = None if hyperparameters is None else tuple(hyperparameters)
        self._width = float(width)
        self._adapt_width = adapt_width
        self._max_steps_out = int(max_steps_out)
        self._max_proposals = int(max_proposals)
        self._hyper: _HyperLayout | None = None
        self._num_warmup = 0
        self._fixed_design = False
        self._diagonal_prior = False

    def _terms(self, u: jax.Array, args, kwargs, design: jax.Array | None = None):
        """Conjugate terms, the rest of the log density and the hyperparameters at ``u``.

        With ``design`` (a design known not to move with the hyperparameters) the logits are
        not differentiated: one trace of the model gives the prior, the offset and the rest.
        """
        theta, log_det = _constrain(self._model, args, kwargs, self._hyper, u)
        model = self._augmented(handlers.condition(self._model, data=theta))
        if design is None:
            terms, rest = conjugate_terms_and_rest(model, args, kwargs, self._layout, _CALLER)
            return terms, rest + log_det, theta
        z0 = jnp.zeros(design.shape[1], design.dtype)
        (offset, b, kappa, weight, const), loc, tril, rest = evaluate(
            model, args, kwargs, self._layout, z0, _CALLER
        )
        # no ``whitened`` (an O(n d^2) product): the fixed-design path works from the Gram matrix
        terms = ConjugateTerms(
            loc, tril, design, offset, b, kappa, weight, const, None, design @ loc + offset
        )
        return terms, rest + log_det, theta

    def _log_target(
        self, terms: ConjugateTerms, omega: jax.Array, args, kwargs, gram=None
    ) -> Callable:
        """``u -> log p(u | omega, y)`` up to a constant (``terms``: those of this sweep;
        ``gram``: :meth:`_gram` of a fixed design, if already formed)."""
        if not self._fixed_design:

            def log_target(u):
                terms, rest, _ = self._terms(u, args, kwargs)
                return collapsed_log_likelihood(terms, omega) + rest

            return log_target

        # a fixed design X: P = I + L^T (X^T W Omega X) L with the Gram matrix formed once a
        # sweep, so that an evaluation costs O(n d + d^3) rather than O(n d^2)
        gram = self._gram(terms, omega) if gram is None else gram

        def log_target(u):
            t, rest, _ = self._terms(u, args, kwargs, design=terms.design)
            chol, r, psi0 = self._whitened_system(t, omega, gram)
            s = solve_triangular(chol, r, lower=True)
            w_omega = t.weight * omega
            return (
                jnp.dot(t.weight * t.kappa, psi0)
                - 0.5 * jnp.dot(w_omega * psi0, psi0)
                - jnp.sum(jnp.log(jnp.diagonal(chol)))
                + 0.5 * jnp.dot(s, s)
                + rest
            )

        return log_target

    @staticmethod
    def _gram(terms: ConjugateTerms, omega: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(X^T W Omega X, X^T W kappa)`` of a fixed design."""
        X, w = terms.design, terms.weight
        return X.T @ ((w * omega)[:, None] * X), X.T @ (w * terms.kappa)

    def _whitened_system(self, t: ConjugateTerms, omega: jax.Array, gram):
        """``(chol(P), r, psi_0)`` from the Gram matrix of a fixed design (``t.whitened`` is not
        used); a diagonal prior scale makes ``L^T G L`` an elementwise product."""
        X, (G, x_kappa) = t.design, gram
        psi0 = X @ t.loc + t.offset
        r_z = x_kappa - G @ t.loc - X.T @ (t.weight * omega * t.offset)
        eye = jnp.eye(X.shape[1], dtype=X.dtype)
        if self._diagonal_prior:
            scale = jnp.diagonal(t.scale_tril)
            precision, r = eye + G * scale[:, None] * scale[None, :], scale * r_z
        else:
            L = t.scale_tril
            precision, r = eye + L.T @ G @ L, L.T @ r_z
        return jnp.linalg.cholesky(precision), r, psi0

    def _design_is_fixed(self, args, kwargs, u: jax.Array) -> bool:
        """Whether the design is the same at ``u`` and at another point (concrete inputs)."""
        if u.size == 0:
            return True
        design = jax.jit(lambda u: self._terms(u, args, kwargs)[0].design)
        other = u + jnp.asarray(np.random.default_rng(2).normal(size=u.shape), u.dtype)
        x, y = np.asarray(design(u)), np.asarray(design(other))
        eps = float(np.finfo(x.dtype).eps)
        return bool(np.allclose(x, y, rtol=1e3 * eps, atol=1e3 * eps * (np.abs(x).max() + 1)))

    def _check_structure(self, args, kwargs, u: jax.Array) -> None:
        """``b`` and the weights unchanged at another point (two traces); affinity at ``u``."""
        other = u + jnp.asarray(np.random.default_rng(1).normal(size=u.shape), u.dtype)
        b_weight = []
        for point in (u, other):
            theta, _ = _constrain(self._model, args, kwargs, self._hyper, point)
            model = self._augmented(handlers.condition(self._model, data=theta))
            aug = augmented_terms(trace_block(model, args, kwargs, {}))
            b, weight = aug.b, aug.weight
            b_weight.append((np.asarray(b), np.asarray(weight)))
        for what, x, y in zip(
            ("Pólya-gamma shape b (a Binomial or NegativeBinomial total count)", "mask or scale"),
            *b_weight,
            strict=True,
        ):
            bad = ~np.isclose(x, y, rtol=1e-6, atol=1e-6)
            if bad.any():
                raise ValueError(
                    f"CollapsedPolyaGammaGibbs: the {what} of site "
                    f"{self._layout.site_of_observation(int(np.argmax(bad)))!r} depends on the "
                    f"hyperparameters {list(self._hyper.names)}; the collapsed density needs "
                    "it fixed. Sample them in another block instead: Gibbs([(PolyaGammaGibbs("
                    "model), [gaussian sites]), (NUTS(model), None)])"
                )
        theta, _ = _constrain(self._model, args, kwargs, self._hyper, u)
        model = self._augmented(handlers.condition(self._model, data=theta))
        check_conjugate(model, args, kwargs, self._layout, _CALLER)

    @full_precision
    def init(self, rng_key, num_warmup, init_params, model_args, model_kwargs):
        args, kwargs = model_args, {} if model_kwargs is None else model_kwargs
        self._num_warmup = int(num_warmup)
        hyper = _hyper_layout(self._model, args, kwargs, self._hyperparameters)
        self._hyper = hyper
        dtype = jnp.result_type(float)
        u_proto = jnp.zeros(hyper.size, dtype)
        theta, _ = _constrain(self._model, args, kwargs, hyper, u_proto)
        model = self._augmented(handlers.condition(self._model, data=theta))
        layout = block_layout(model, args, kwargs, _CALLER)
        self._layout = layout
        self._has_deterministic = layout.has_deterministic
        self._sample_fn = self.sample
        self._fixed_design = False
        self._diagonal_prior = _diagonal_prior(model, args, kwargs, layout)
        if concrete(args, kwargs):
            with jax.ensure_compile_time_eval():
                if self._check:
                    self._check_structure(args, kwargs, u_proto)
                self._fixed_design = self._design_is_fixed(args, kwargs, u_proto)

        def init_one(key, params):
            params = params or {}
            key, key_u, key_z = jax.random.split(key, 3)
            if hyper.names and all(k in params for k in hyper.names):
                theta = {k: params[k] for k in hyper.names}
                u = _unconstrain(self._model, args, kwargs, hyper, theta).astype(dtype)
            else:  # like numpyro's init_to_uniform
                u = jax.random.uniform(key_u, (hyper.size,), dtype, -2.0, 2.0)
            terms, rest, theta = self._terms(u, args, kwargs)
            if self._fixed_design:  # the state holds the terms as the sweeps make them
                terms, rest, theta = self._terms(u, args, kwargs, design=terms.design)
            if all(k in params for k in layout.names):
                z = layout.ravel(params).astype(dtype)
            else:
                noise = jax.random.normal(key_z, terms.loc.shape, dtype)
                z = terms.loc + terms.scale_tril @ noise
            omega = jnp.zeros_like(terms.b)
            log_width = jnp.full(hyper.size, math.log(self._width), dtype)
            return CollapsedPolyaGammaGibbsState(
                {**self._outputs(z, omega), **theta}, omega, u, log_width, terms, rest,
                jnp.int32(0), key,
            )  # fmt: skip

        # jitted: tracing the model eagerly, op by op, takes seconds
        if is_prng_key(rng_key):
            state = jax.jit(init_one)(rng_key, init_params)
        else:
            state = jax.jit(jax.vmap(init_one))(rng_key, init_params)
        self._threshold = self._shape_threshold(layout, state.terms.b)
        return state

    def _update_hyperparameters(self, key, state, omega, args, kwargs, gram=None):
        """Slice-sample each unconstrained coordinate of ``u`` against the collapsed density."""

        log_target = self._log_target(state.terms, omega, args, kwargs, gram)
        adapt = self._adapt_width & (state.step < self._num_warmup)
        gain = 0.5 * (state.step + 1.0) ** -0.6

        def coordinate(i, carry):
            u, lp, log_width, key = carry
            key, sub = jax.random.split(key)
            width = jnp.exp(log_width[i])
            result = slice_sample(
                sub, u[i], lambda x: log_target(u.at[i].set(x)), lp, width,
                self._max_steps_out, self._max_proposals,
            )  # fmt: skip
            step = jnp.where(adapt, gain * (result.steps_out - result.rejected), 0.0)
            log_width = log_width.at[i].set(jnp.clip(log_width[i] + step, -10.0, 10.0))
            return u.at[i].set(result.x), result.log_density, log_width, key

        if self._fixed_design:
            lp = log_target(state.u)
        else:  # the terms at u are at hand
            lp = collapsed_log_likelihood(state.terms, omega) + state.rest
        u, _, log_width, _ = jax.lax.fori_loop(
            0, self._hyper.size, coordinate, (state.u, lp, state.log_width, key)
        )
        return u, log_width

    def _sweep(self, state: CollapsedPolyaGammaGibbsState, args, kwargs):
        layout = self._layout
        key, key_omega, key_hyper, key_z = jax.random.split(state.rng_key, 4)
        terms = state.terms
        z = layout.ravel(state.z)
        psi = terms.design @ z + terms.offset
        omega = sample_omega(
            key_omega, terms.b, jnp.sqrt(terms.weight) * psi, layout.unit_b, self._threshold
        )
        # the Gram matrix of a fixed design depends on omega only: formed once a sweep
        gram = self._gram(terms, omega) if self._fixed_design else None
        u, log_width = self._update_hyperparameters(key_hyper, state, omega, args, kwargs, gram)
        if self._fixed_design:
            terms, rest, theta = self._terms(u, args, kwargs, design=state.terms.design)
            z = self._sample_block(key_z, terms, omega, gram)
        else:
            terms, rest, theta = self._terms(u, args, kwargs)
            z = sample_gaussian_block(key_z, terms, omega)
        return CollapsedPolyaGammaGibbsState(
            {**self._outputs(z, omega), **theta}, omega, u, log_width, terms, rest,
            state.step + 1, key,
        )  # fmt: skip

    def _sample_block(self, key, terms: ConjugateTerms, omega: jax.Array, gram) -> jax.Array:
        """``z | theta, omega, y`` through the Gram matrix of a fixed design."""
        chol, r, _ = self._whitened_system(terms, omega, gram)
        noise = jax.random.normal(key, r.shape, r.dtype)
        v = cho_solve((chol, True), r) + solve_triangular(chol.T, noise, lower=False)
        if self._diagonal_prior:
            return terms.loc + jnp.diagonal(terms.scale_tril) * v
        return terms.loc + terms.scale_tril @ v

    @full_precision
    def sample(self, state, model_args, model_kwargs):
        self._require_init()
        kwargs = {} if model_kwargs is None else model_kwargs
        if is_prng_key(state.rng_key):
            return self._sweep(state, model_args, kwargs)
        return jax.vmap(lambda s: self._sweep(s, model_args, kwargs))(state)

    def _reset(self) -> None:
        super()._reset()
        self._hyper = None
