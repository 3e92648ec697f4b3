import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from hypothesis import given

from numpyro_ext.transforms import Banana, banana_distribution
from tests.transforms.conftest import PROPERTY, SEED


@PROPERTY
@given(seed=SEED)
def test_banana_satisfies_bijector_contract(check_bijector, normal, dtype, seed):
    draw = normal(seed)
    bijector = Banana(np.exp(0.5 * draw()), draw())
    _, log_det = check_bijector(bijector, draw(2, 3, 3), dtype)
    np.testing.assert_array_equal(log_det, 0.0)


def test_banana_matches_the_closed_form_map():
    x = jnp.array([[1.5, 0.5, 2.0], [-1.0, 2.0, 0.0]])
    y = Banana().forward(x)
    np.testing.assert_allclose(y, [[1.5, 0.5 - 2.25 - 1, 2.0], [-1.0, 0.0, 0.0]])


def test_banana_density_is_the_base_density_at_the_inverse(x64):
    y = np.array([[0.3, -1.2], [1.0, 2.0]])
    x = np.stack([y[:, 0], y[:, 1] + y[:, 0] ** 2 + 1], -1)
    base = scipy.stats.multivariate_normal(np.zeros(2), [[1.0, 0.95], [0.95, 1.0]])
    log_prob = jax.jit(banana_distribution().log_prob)(jnp.asarray(y))
    np.testing.assert_allclose(log_prob, base.logpdf(x), rtol=1e-12)


def test_banana_density_integrates_to_one_on_a_grid(x64):
    # Riemann sum on [-6, 6] x [-40, 6]; the mass outside is below 1e-8 (|x1| > 6 sigma and
    # x2 - x1^2 - 1 < -40 needs |x1| > 6 or x2 < -34 sigma), so the sum is 1 to quadrature error.
    grid1, grid2 = jnp.linspace(-6, 6, 601), jnp.linspace(-40, 6, 2301)
    y = jnp.stack(jnp.meshgrid(grid1, grid2, indexing="ij"), -1)
    density = jax.jit(lambda v: jnp.exp(banana_distribution().log_prob(v)))(y)
    mass = jnp.sum(density) * (grid1[1] - grid1[0]) * (grid2[1] - grid2[0])
    assert abs(float(mass) - 1.0) < 1e-4


def test_banana_samples_have_the_closed_form_moments(x64):
    # y1 = x1, y2 = x2 - x1^2 - 1: E y2 = -2, Var y2 = Var x2 + Var x1^2 = 1 + 2 = 3,
    # Cov(y1, y2) = rho. Tolerances are 5 Monte Carlo standard errors.
    n = 100_000
    y = jax.jit(lambda k: banana_distribution().sample(k, (n,)))(jax.random.key(0))
    mean = y.mean(0)
    se_mean = jnp.sqrt(jnp.array([1.0, 3.0]) / n)
    assert bool(jnp.all(jnp.abs(mean - jnp.array([0.0, -2.0])) < 5 * se_mean))
    cov = jnp.mean((y[:, 0] - mean[0]) * (y[:, 1] - mean[1]))
    se_cov = jnp.std((y[:, 0] - mean[0]) * (y[:, 1] - mean[1])) / jnp.sqrt(n)
    assert abs(float(cov) - 0.95) < 5 * float(se_cov)
    var2 = jnp.var(y[:, 1])
    se_var2 = jnp.std((y[:, 1] - mean[1]) ** 2) / jnp.sqrt(n)
    assert abs(float(var2) - 3.0) < 5 * float(se_var2)


def test_banana_rejects_one_dimensional_events():
    with pytest.raises(ValueError, match="event size must be >= 2"):
        Banana().forward(jnp.ones(1))
