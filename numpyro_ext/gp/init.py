"""Initial inducing inputs: a random subset of the data, or k-means centres.

Where the inducing inputs start matters for sparse GPs (a poor start leaves points stuck in
empty regions); k-means centres spread them where the data are. Both are pure JAX: k-means runs
a fixed number of vectorised Lloyd iterations in ``lax.fori_loop``, started from k-means++
seeding (Arthur & Vassilvitskii 2007).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from numpyro_ext.gp.kernels import as_inputs

__all__ = ["kmeans_inducing", "random_subset_inducing"]


def _check(X, num_inducing):
    X = as_inputs(X)
    if not 0 < num_inducing <= X.shape[0]:
        raise ValueError(
            f"num_inducing must be between 1 and the number of inputs ({X.shape[0]}), "
            f"got {num_inducing}"
        )
    return X


def random_subset_inducing(rng_key: jax.Array, X: jax.Array, num_inducing: int) -> jax.Array:
    """``num_inducing`` distinct rows of ``X`` chosen uniformly at random.

    :param rng_key: PRNG key.
    :param X: inputs ``(N, D)`` or ``(N,)``.
    :param num_inducing: ``M``.
    :return: ``(M, D)`` inducing inputs.

    >>> import jax, jax.numpy as jnp
    >>> random_subset_inducing(jax.random.key(0), jnp.arange(10.0), 3).shape
    (3, 1)
    """
    X = _check(X, num_inducing)
    idx = jax.random.choice(rng_key, X.shape[0], (num_inducing,), replace=False)
    return X[idx]


def _kmeans_plus_plus(rng_key, X, num_inducing):
    keys = jax.random.split(rng_key, num_inducing)
    first = X[jax.random.randint(keys[0], (), 0, X.shape[0])]
    C = jnp.zeros((num_inducing, X.shape[1]), X.dtype).at[0].set(first)
    d2 = jnp.sum((X - first) ** 2, 1)

    def pick(i, carry):
        C, d2 = carry
        logits = jnp.where(d2 > 0, jnp.log(jnp.where(d2 > 0, d2, 1.0)), -jnp.inf)
        c = X[jax.random.categorical(keys[i], logits)]
        return C.at[i].set(c), jnp.minimum(d2, jnp.sum((X - c) ** 2, 1))

    return lax.fori_loop(1, num_inducing, pick, (C, d2))[0]


def kmeans_inducing(
    rng_key: jax.Array, X: jax.Array, num_inducing: int, num_iters: int = 25
) -> jax.Array:
    """k-means (Lloyd) centres of ``X``, started from k-means++ seeding.

    k-means++ picks each new centre with probability proportional to the squared distance to
    the nearest centre so far; an empty cluster keeps its previous centre.

    :param rng_key: PRNG key.
    :param X: inputs ``(N, D)`` or ``(N,)``.
    :param num_inducing: number of centres ``M``.
    :param num_iters: Lloyd iterations.
    :return: ``(M, D)`` centres.

    >>> import jax, jax.numpy as jnp
    >>> X = jnp.concatenate([jnp.zeros(5), jnp.ones(5)])
    >>> sorted(kmeans_inducing(jax.random.key(0), X, 2).ravel().tolist())
    [0.0, 1.0]
    """
    X = _check(X, num_inducing)
    centres = _kmeans_plus_plus(rng_key, X, num_inducing)

    def lloyd(_, C):
        d2 = jnp.sum(X**2, 1)[:, None] - 2.0 * X @ C.T + jnp.sum(C**2, 1)[None, :]
        onehot = jax.nn.one_hot(jnp.argmin(d2, 1), num_inducing, dtype=X.dtype)
        counts = onehot.sum(0)
        sums = onehot.T @ X
        return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1)[:, None], C)

    return lax.fori_loop(0, num_iters, lloyd, centres)
