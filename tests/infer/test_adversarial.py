"""AdversarialELBO: exact gradients with the true log-ratio, and a conjugate model (float64)."""

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro.infer import SVI, Trace_ELBO

from numpyro_ext.guides import ImplicitGuide
from numpyro_ext.infer import AdversarialELBO, adversarial_optimizer, is_critic_param

# float64: the gradient identity is checked to a few Monte Carlo standard errors
pytestmark = pytest.mark.usefixtures("x64")


def data():
    X = jax.random.normal(jax.random.key(3), (20, 2))
    y = X @ jnp.array([1.0, -0.5]) + 0.5 * jax.random.normal(jax.random.key(4), (20,))
    return X, y


def model(X, y):
    b = numpyro.sample("b", dist.Normal(0, 1).expand([2]).to_event(1))
    numpyro.sample("y", dist.Normal(X @ b, 0.5).to_event(1), obs=y)


def exact_posterior(X, y):
    cov = jnp.linalg.inv(jnp.eye(2) + X.T @ X / 0.25)
    return cov @ X.T @ y / 0.25, cov


def linear_generator(p, eps):
    return eps @ p["L"].T


def true_prior_ratio(p, u):
    # log q(u) - log p(u) for q = N(loc, L L^T), p = N(0, I)
    q = dist.MultivariateNormal(p["loc"], scale_tril=p["L"])
    return q.log_prob(u) - dist.Normal(0, 1).log_prob(u).sum(-1)


def analytic_neg_elbo(loc, L, X, y):
    # -ELBO of q = N(loc, L L^T) in closed form
    S = L @ L.T
    entropy = 0.5 * jnp.linalg.slogdet(2 * jnp.pi * jnp.e * S)[1]
    prior = -jnp.log(2 * jnp.pi) - 0.5 * (loc @ loc + jnp.trace(S))
    resid = y - X @ loc
    lik = (
        -0.5 * len(y) * jnp.log(2 * jnp.pi * 0.25)
        - 0.5 * (resid @ resid + jnp.trace(X @ S @ X.T)) / 0.25
    )
    return -(entropy + prior + lik)


def switched_prior_ratio(p, u):
    # the true ratio times a switch: on = 1 is the optimal critic, on = 0 a blind one (T = 0);
    # one compiled gradient serves both
    return p["on"] * true_prior_ratio(p, u)


def test_primal_gradient_with_true_ratio_is_the_elbo_gradient():
    X, y = data()
    loc = jnp.array([0.3, -0.2])
    L = jnp.array([[0.4, 0.0], [0.1, 0.3]])
    critic = {"loc": loc, "L": L, "on": jnp.array(1.0)}
    guide = ImplicitGuide(
        model,
        linear_generator,
        switched_prior_ratio,
        noise_dim=2,
        generator_params={"L": L},
        critic_params=critic,
    )
    params = {
        "implicit_loc": loc,
        "implicit_generator$params": {"L": L},
        "implicit_critic$params": critic,
    }
    elbo = AdversarialELBO(adaptive_contrast=False, num_critic_draws=2)
    with numpyro.handlers.seed(rng_seed=0):
        guide(X, y)  # set up the prototype

    @jax.jit
    def values_and_grads(params, keys):
        def one(key):
            return jax.value_and_grad(lambda p: elbo.loss(key, p, model, guide, X, y))(params)

        return jax.vmap(one)(keys)

    keys = jax.random.split(jax.random.key(0), 400)
    values, grads = values_and_grads(params, keys)
    g_loc, g_L = jax.grad(analytic_neg_elbo, argnums=(0, 1))(loc, L, X, y)
    for mc, exact in (
        (grads["implicit_loc"], g_loc),
        (grads["implicit_generator$params"]["L"], jnp.tril(g_L)),
    ):
        mean, se = mc.mean(0), mc.std(0) / jnp.sqrt(mc.shape[0])
        # tolerance: 4 Monte Carlo standard errors (plus round-off where the SE is ~0)
        assert jnp.all(jnp.abs(mean - exact) <= 4 * se + 1e-8), (mean, exact, se)
    # the value is the -ELBO estimate: unbiased for the closed form
    exact = analytic_neg_elbo(loc, L, X, y)
    assert abs(values.mean() - exact) < 4 * values.std() / jnp.sqrt(values.shape[0])
    # negative control: a critic blind to q (T = 0) gives a different generator gradient
    blind = {**params, "implicit_critic$params": {**critic, "on": jnp.array(0.0)}}
    _, g0 = values_and_grads(blind, keys)
    diff = g0["implicit_generator$params"]["L"].mean(0) - jnp.tril(g_L)
    assert jnp.max(jnp.abs(diff)) > 1.0
    # the critic's parameters receive only the discriminator's gradient
    assert jnp.all(jnp.isfinite(grads["implicit_critic$params"]["loc"]))


def test_critic_gradient_is_the_discriminator_gradient():
    X, y = data()
    guide = ImplicitGuide(model, hidden=(8,))
    svi = SVI(model, guide, adversarial_optimizer(), AdversarialELBO())
    params = svi.get_params(svi.init(jax.random.key(0), X, y))
    elbo = AdversarialELBO()
    key = jax.random.key(5)

    @jax.jit  # one compiled program for the three gradients
    def gradients(p):
        return (
            jax.grad(lambda p: elbo.loss(key, p, model, guide, X, y))(p),
            jax.grad(lambda p: elbo.components(key, p, model, guide, X, y)["critic"])(p),
            jax.grad(lambda p: elbo.components(key, p, model, guide, X, y)["primal"])(p),
        )

    g_total, g_critic, g_primal = gradients(params)
    for name in params:
        want = g_critic[name] if is_critic_param(name) else g_primal[name]
        other = g_primal[name] if is_critic_param(name) else g_critic[name]
        assert jax.tree.all(jax.tree.map(jnp.allclose, g_total[name], want))
        assert all(jnp.all(leaf == 0) for leaf in jax.tree.leaves(other))


def moments_match(draws, mean, cov):
    """Whether draws match N(mean, cov) to the issue's bars, widened by 4 Monte Carlo SEs.

    In units of the exact posterior sds: means within 0.1, every covariance entry of the
    standardised draws within its bar (diagonal: sds within 10 %, i.e. variance ratio in
    [0.81, 1.21]; off-diagonal: within 0.1 of the exact correlation). The MC standard errors
    are those of the sample moments of ``n`` Gaussian draws: sqrt(C_ii / n) for a mean,
    sqrt((C_ii C_jj + C_ij^2) / n) for a covariance entry."""
    n = draws.shape[0]
    sd = jnp.sqrt(jnp.diag(cov))
    scale = jnp.outer(sd, sd)
    corr = cov / scale
    m = (draws.mean(0) - mean) / sd
    c = jnp.cov(draws.T) / scale
    se_m = jnp.sqrt(jnp.diag(c) / n)
    se_c = jnp.sqrt((jnp.outer(jnp.diag(c), jnp.diag(c)) + c**2) / n)
    eye = jnp.eye(cov.shape[0], dtype=bool)
    mean_ok = jnp.all(jnp.abs(m) < 0.1 + 4 * se_m)
    var_ok = jnp.all(((c > 0.81 - 4 * se_c) & (c < 1.21 + 4 * se_c)) | ~eye)
    cov_ok = jnp.all((jnp.abs(c - corr) < 0.1 + 4 * se_c) | eye)
    return bool(mean_ok), bool(var_ok), bool(cov_ok), (m, c, corr)


def test_moment_check_rejects_wrong_gaussians():
    # negative controls for the conjugate test's check: each bar can fail
    X, y = data()
    mean, cov = exact_posterior(X, y)
    sd = jnp.sqrt(jnp.diag(cov))
    n, key = 20_000, jax.random.key(9)

    def draws(m, c):
        return jax.random.multivariate_normal(key, m, c, (n,))

    assert moments_match(draws(mean, cov), mean, cov)[:3] == (True, True, True)
    assert not moments_match(draws(mean + 0.15 * sd, cov), mean, cov)[0]
    assert not moments_match(draws(mean, 1.15**2 * cov), mean, cov)[1]
    # the exact marginals with correlation 0.25 (the diagonal adaptive contrast's result)
    wrong = jnp.array([[1.0, 0.25], [0.25, 1.0]]) * jnp.outer(sd, sd)
    assert not moments_match(draws(mean, wrong), mean, cov)[2]


@pytest.mark.slow
def test_trained_guide_matches_conjugate_posterior():
    # the full-covariance adaptive contrast (the default for a global latent): T* = 0 for a
    # Gaussian q, and log r carries the exact Gaussian entropy gradient, correlations included
    X, y = data()
    mean, cov = exact_posterior(X, y)
    guide = ImplicitGuide(model, hidden=(16,))
    steps = 1500
    opt = adversarial_optimizer(optax.adam(optax.exponential_decay(1e-2, steps, 0.05)))
    svi = SVI(model, guide, opt, AdversarialELBO(num_particles=4, num_critic_draws=64))
    result = svi.run(jax.random.key(0), steps, X, y, progress_bar=False)
    draws = guide.sample_posterior(jax.random.key(1), result.params, sample_shape=(20_000,))["b"]
    mean_ok, var_ok, cov_ok, detail = moments_match(draws, mean, cov)
    assert mean_ok and var_ok and cov_ok, detail


def test_trace_elbo_refuses_implicit_guide():
    X, y = data()
    guide = ImplicitGuide(model, hidden=(4,))
    svi = SVI(model, guide, optax.adam(1e-3), Trace_ELBO())
    with pytest.raises(NotImplementedError, match="AdversarialELBO"):
        svi.init(jax.random.key(0), X, y)
        svi.update(svi.init(jax.random.key(0), X, y), X, y)


def test_explicit_guide_is_refused():
    X, y = data()
    guide = numpyro.infer.autoguide.AutoNormal(model)
    svi = SVI(model, guide, optax.adam(1e-3), AdversarialELBO())
    state = svi.init(jax.random.key(0), X, y)
    with pytest.raises(ValueError, match="no implicit latent"):
        svi.update(state, X, y)
