"""Tests for numpyro_ext.gp.init: k-means and random-subset inducing inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_ext.gp import kmeans_inducing, random_subset_inducing


def test_random_subset_returns_distinct_rows_of_the_data():
    X = jnp.arange(20.0).reshape(10, 2)
    Z = random_subset_inducing(jax.random.key(0), X, 4)
    rows = {tuple(r) for r in np.asarray(X).tolist()}
    assert Z.shape == (4, 2) and len({tuple(r) for r in np.asarray(Z).tolist()} & rows) == 4


def test_kmeans_recovers_well_separated_cluster_centres():
    centres = jnp.array([[0.0, 0.0], [5.0, 5.0], [-5.0, 5.0]])
    noise = 0.1 * jax.random.normal(jax.random.key(1), (3, 30, 2))
    X = (centres[:, None, :] + noise).reshape(-1, 2)
    Z = kmeans_inducing(jax.random.key(2), X, 3)
    # each true centre has a k-means centre within 3 standard errors of the cluster mean
    nearest = jnp.min(jnp.linalg.norm(Z[None] - centres[:, None], axis=-1), axis=1)
    assert bool(jnp.all(nearest < 3 * 0.1 * np.sqrt(2 / 30) + 0.05))


def test_too_many_inducing_points_is_a_clear_error():
    with pytest.raises(ValueError, match="num_inducing must be between 1"):
        kmeans_inducing(jax.random.key(0), jnp.ones((3, 1)), 5)
