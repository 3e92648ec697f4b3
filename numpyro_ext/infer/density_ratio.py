"""Density-ratio estimation by probabilistic classification, and the KL estimate it gives.

A critic :math:`T_\\psi(z)` trained by logistic regression to label draws of :math:`p` as 1
and draws of :math:`q` as 0, i.e. minimising

.. math::

    \\mathcal{L}(\\psi) = \\mathbb{E}_p[\\operatorname{softplus}(-T_\\psi)]
        + \\mathbb{E}_q[\\operatorname{softplus}(T_\\psi)],

is Bayes-optimal at :math:`T^*(z) = \\log p(z) - \\log q(z)` when the two classes are equally
likely (Sugiyama, Suzuki & Kanamori 2012, ch. 4; Mohamed & Lakshminarayanan 2016). The
Kullback-Leibler divergence then follows as a Monte Carlo average,
:math:`\\mathrm{KL}(p \\,\\|\\, q) = \\mathbb{E}_p[T^*(z)]`. This is the estimator inside
:class:`numpyro_ext.infer.AdversarialELBO`; here it stands on its own for two samplers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = [
    "DensityRatioFit",
    "KLEstimate",
    "RatioCheck",
    "check_log_ratio",
    "fit_density_ratio",
    "kl_estimate",
    "logistic_ratio_loss",
]


def logistic_ratio_loss(logits_p: jax.Array, logits_q: jax.Array) -> jax.Array:
    """Logistic (binary cross-entropy) loss of a critic labelling ``p`` draws 1, ``q`` draws 0.

    :math:`\\tfrac12(\\overline{\\operatorname{softplus}(-T(z_p))} +
    \\overline{\\operatorname{softplus}(T(z_q))})`; its minimiser over all functions is
    :math:`T = \\log p - \\log q`.

    :param logits_p: critic outputs on draws from ``p``, any shape.
    :param logits_q: critic outputs on draws from ``q``, any shape.
    :return: the scalar loss.

    >>> import jax.numpy as jnp
    >>> float(logistic_ratio_loss(jnp.zeros(3), jnp.zeros(5)))  # a blind critic: log 2
    0.6931...
    """
    return 0.5 * (jnp.mean(jax.nn.softplus(-logits_p)) + jnp.mean(jax.nn.softplus(logits_q)))


class DensityRatioFit(NamedTuple):
    """Result of :func:`fit_density_ratio`.

    :param params: the fitted critic parameters.
    :param losses: the logistic loss at every step.
    :param log_ratio: ``log_ratio(z)``, the fitted :math:`\\log p(z) - \\log q(z)`.
    """

    params: Any
    losses: jax.Array
    log_ratio: Callable[[jax.Array], jax.Array]


def _as_logits(out: jax.Array) -> jax.Array:
    return out[..., 0] if jnp.ndim(out) >= 1 and out.shape[-1] == 1 else out


def fit_density_ratio(
    rng_key: jax.Array,
    critic: Callable[[Any, jax.Array], jax.Array],
    params: Any,
    sample_p: Callable[[jax.Array, int], jax.Array],
    sample_q: Callable[[jax.Array, int], jax.Array],
    *,
    num_steps: int = 2000,
    batch_size: int = 256,
    optimizer: optax.GradientTransformation | None = None,
) -> DensityRatioFit:
    """Fit ``critic(params, z)`` to :math:`\\log p(z) - \\log q(z)` by logistic regression.

    Every step draws ``batch_size`` fresh samples from each sampler (so the critic never
    overfits a fixed sample) and takes one optimiser step; the loop is one ``lax.scan``.

    :param rng_key: PRNG key.
    :param critic: ``critic(params, z)`` mapping ``(n, d)`` draws to ``(n,)`` or ``(n, 1)``
        logits.
    :param params: initial critic parameters (a pytree).
    :param sample_p: ``sample_p(key, n)`` returning ``n`` draws of ``p`` (the numerator).
    :param sample_q: ``sample_q(key, n)`` returning ``n`` draws of ``q`` (the denominator).
    :param num_steps: optimisation steps.
    :param batch_size: draws of each class per step.
    :param optimizer: an optax optimiser; default ``optax.adam(1e-2)``.
    :return: a :class:`DensityRatioFit`.

    >>> import jax, jax.numpy as jnp
    >>> critic = lambda p, z: p[0] + p[1] * z[:, 0] + p[2] * z[:, 0] ** 2
    >>> fit = fit_density_ratio(
    ...     jax.random.key(0), critic, jnp.zeros(3),
    ...     lambda k, n: 1.0 + jax.random.normal(k, (n, 1)),
    ...     lambda k, n: 2.0 * jax.random.normal(k, (n, 1)), num_steps=500)
    >>> est = kl_estimate(fit.log_ratio, 1.0 + jax.random.normal(jax.random.key(1), (4000, 1)))
    >>> bool(abs(est.kl - 0.4431) < 0.1)
    True
    """
    optimizer = optax.adam(1e-2) if optimizer is None else optimizer

    def loss_fn(p, key):
        kp, kq = jax.random.split(key)
        return logistic_ratio_loss(
            _as_logits(critic(p, sample_p(kp, batch_size))),
            _as_logits(critic(p, sample_q(kq, batch_size))),
        )

    def step(carry, key):
        p, state = carry
        loss, grads = jax.value_and_grad(loss_fn)(p, key)
        updates, state = optimizer.update(grads, state, p)
        return (optax.apply_updates(p, updates), state), loss

    keys = jax.random.split(rng_key, num_steps)
    (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)), keys)
    return DensityRatioFit(params, losses, lambda z: _as_logits(critic(params, z)))


class KLEstimate(NamedTuple):
    """A Monte Carlo KL estimate with its standard error."""

    kl: jax.Array
    stderr: jax.Array


def kl_estimate(log_ratio: Callable[[jax.Array], jax.Array], samples_p: jax.Array) -> KLEstimate:
    """The KL estimate :math:`\\frac1n \\sum_i T(z_i)`, :math:`z_i \\sim p`.

    Exact in expectation when ``log_ratio`` is the true :math:`\\log p - \\log q`; with a
    fitted critic it carries the critic's error :math:`\\mathbb{E}_p[T - T^*]` as bias, which
    the returned standard error does not include.

    :param log_ratio: ``log_ratio(z)`` for a batch of draws, ``(n, d) -> (n,)``.
    :param samples_p: ``(n, d)`` draws from ``p``.
    :return: ``KLEstimate(kl, stderr)``.

    >>> import jax, jax.numpy as jnp
    >>> from jax.scipy.stats import norm
    >>> true = lambda z: norm.logpdf(z[:, 0], 1.0, 1.0) - norm.logpdf(z[:, 0], 0.0, 2.0)
    >>> z = 1.0 + jax.random.normal(jax.random.key(0), (20000, 1))
    >>> est = kl_estimate(true, z)
    >>> abs(est.kl - 0.44314718) < 4 * est.stderr
    Array(True, dtype=bool)
    """
    values = _as_logits(log_ratio(samples_p))
    n = values.shape[0]
    return KLEstimate(jnp.mean(values), jnp.std(values, ddof=1) / jnp.sqrt(n))


class RatioCheck(NamedTuple):
    """How far a critic is from a known log-ratio, under draws of ``p``.

    :param rmse: root-mean-square error :math:`\\sqrt{\\mathbb{E}[(T - T^*)^2]}`.
    :param bias: mean error :math:`\\mathbb{E}[T - T^*]` (the bias it adds to a KL estimate).
    :param max_abs: largest absolute error over the draws.
    :param correlation: Pearson correlation of ``T`` and :math:`T^*`.
    """

    rmse: jax.Array
    bias: jax.Array
    max_abs: jax.Array
    correlation: jax.Array


def check_log_ratio(
    log_ratio: Callable[[jax.Array], jax.Array],
    true_log_ratio: Callable[[jax.Array], jax.Array],
    samples: jax.Array,
) -> RatioCheck:
    """Compare a critic with a known log-ratio on a set of draws (e.g. from ``p``).

    :param log_ratio: the fitted critic, ``(n, d) -> (n,)``.
    :param true_log_ratio: the known :math:`\\log p - \\log q`, ``(n, d) -> (n,)``.
    :param samples: where to compare, ``(n, d)``.
    :return: a :class:`RatioCheck`.

    >>> import jax.numpy as jnp
    >>> check = check_log_ratio(lambda z: z[:, 0] + 0.1, lambda z: z[:, 0], jnp.ones((4, 1)))
    >>> round(float(check.bias), 4), round(float(check.rmse), 4)
    (0.1, 0.1)
    """
    fitted = _as_logits(log_ratio(samples))
    true = _as_logits(true_log_ratio(samples))
    err = fitted - true
    corr = jnp.corrcoef(fitted, true)[0, 1] if fitted.shape[0] > 1 else jnp.nan
    return RatioCheck(
        rmse=jnp.sqrt(jnp.mean(err**2)),
        bias=jnp.mean(err),
        max_abs=jnp.max(jnp.abs(err)),
        correlation=corr,
    )
