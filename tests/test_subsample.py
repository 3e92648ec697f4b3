"""check_subsample: a subsampled plate larger than the data it indexes is refused by name."""

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoNormal

from numpyro_ext.subsample import check_subsample

X = jnp.linspace(-1.0, 1.0, 100).reshape(50, 2)
Y = (X[:, 0] > 0).astype(jnp.float32)


def logistic(X, y, size):
    beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    with numpyro.plate("data", size, subsample_size=10) as idx:
        numpyro.sample("y", dist.Bernoulli(logits=X[idx] @ beta), obs=y[idx])


def test_an_oversized_minibatch_plate_trains_silently_without_the_check():
    # The failure the check exists for: JAX clamps the gather, SVI runs and reports a finite
    # loss on a model that indexes past the end of X and y.
    svi = SVI(logistic, AutoNormal(logistic), optax.adam(1e-2), Trace_ELBO())
    result = svi.run(jax.random.key(0), 20, X, Y, 60, progress_bar=False)
    assert jnp.all(jnp.isfinite(result.losses))


def test_check_subsample_accepts_a_plate_of_the_data_length():
    assert check_subsample(logistic, X, Y, 50) == {"data": (50, 10)}


def test_check_subsample_names_the_plate_one_index_past_the_data():
    # size 51: a random minibatch of 10 misses index 50 four times in five; the check does not
    with pytest.raises(IndexError, match=r"plate 'data' \(size 51, subsample_size 10\)") as e:
        check_subsample(logistic, X, Y, 51)
    assert "shape (50, 2)" in str(e.value) and "index 50" in str(e.value)


def test_check_subsample_names_the_plate_that_overruns_among_two():
    def model(a, b):
        with numpyro.plate("rows", 8, subsample_size=2, dim=-2) as i:
            with numpyro.plate("cols", 12, subsample_size=3) as j:
                numpyro.sample("z", dist.Normal(a[i][:, None] + b[j], 1.0))

    assert check_subsample(model, jnp.zeros(8), jnp.zeros(12)) == {"rows": (8, 2), "cols": (12, 3)}
    with pytest.raises(IndexError, match="plate 'cols'"):
        check_subsample(model, jnp.zeros(8), jnp.zeros(11))
    with pytest.raises(IndexError, match="plate 'rows'"):
        check_subsample(model, jnp.zeros(7), jnp.zeros(12))


def test_check_subsample_reports_out_of_range_indexing_outside_plates():
    def model(y):
        numpyro.sample("y", dist.Normal(0.0, 1.0), obs=y[jnp.arange(3) + 5])

    with pytest.raises(IndexError, match="even with every plate at its first indices"):
        check_subsample(model, jnp.zeros(6))
    assert check_subsample(model, jnp.zeros(8)) == {}
