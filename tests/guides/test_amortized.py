"""Amortised guides on the linear-Gaussian latent model, whose per-datum posterior is closed form.

Model: z_i ~ N(0, I_2), x_i | z_i ~ N(W z_i + b, s^2 I_3). Posterior: N(mu_i, Sigma) with
Sigma = (I + W^T W / s^2)^-1, mu_i = Sigma W^T (x_i - b) / s^2; evidence x_i ~ N(b, W W^T + s^2 I).
Both are affine in x_i, so a linear encoder can represent them exactly.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro import handlers
from numpyro.infer import (
    SVI,
    Predictive,
    RenyiELBO,
    Trace_ELBO,
    TraceMeanField_ELBO,
)
from numpyro.infer.autoguide import AutoGuideList, AutoNormal

from numpyro_ext.guides.amortized import (
    AmortizedMultivariateNormal,
    AmortizedNormal,
    DiagonalNormalFamily,
    FullRankNormalFamily,
)

W = np.array([[1.0, 0.8], [0.6, 1.0], [0.2, -0.3]])
B = np.array([0.1, -0.2, 0.3])
S = 0.5
N = 20


def model(x, subsample_size=None):
    with numpyro.plate("data", x.shape[0], subsample_size=subsample_size) as idx:
        z = numpyro.sample("z", dist.Normal(0, 1).expand([2]).to_event(1))
        numpyro.sample("x", dist.Normal(z @ W.T + B, S).to_event(1), obs=x[idx])


def linear(params, x):
    return x @ params["w"] + params["b"]


def make_guide(cls, key=0, scale=0.0, **kwargs):
    width = (DiagonalNormalFamily if cls is AmortizedNormal else FullRankNormalFamily)()
    width = width.output_size(2)
    k1, k2 = jax.random.split(jax.random.key(key))
    params = {
        "w": scale * jax.random.normal(k1, (3, width)),
        "b": scale * jax.random.normal(k2, (width,)),
    }
    return cls(model, linear, plate="data", inputs="x", encoder_params=params, **kwargs)


def data(n=N, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(n, 3)) * 1.5)


def exact_posterior(x):
    precision = np.eye(2) + W.T @ W / S**2
    cov = np.linalg.inv(precision)
    mean = (np.asarray(x) - B) @ W @ cov / S**2
    return mean, cov, precision


def log_evidence(x):
    marginal = dist.MultivariateNormal(jnp.asarray(B), jnp.asarray(W @ W.T + S**2 * np.eye(3)))
    return marginal.log_prob(x).sum()


def closed_form_elbo(mean, cov, x):
    """E_q[log p(x, z)] + H[q] for q = N(mean_i, cov_i), exact for this model."""
    resid = x - mean @ W.T - B
    trace_wsw = jnp.einsum("ij,njk,ik->n", W, cov, W)
    loglik = -1.5 * jnp.log(2 * jnp.pi * S**2) - ((resid**2).sum(-1) + trace_wsw) / (2 * S**2)
    logprior = -jnp.log(2 * jnp.pi) - ((mean**2).sum(-1) + jnp.trace(cov, axis1=1, axis2=2)) / 2
    entropy = jnp.log(2 * jnp.pi * jnp.e) + 0.5 * jnp.linalg.slogdet(cov)[1]
    return (loglik + logprior + entropy).sum()


def guide_moments(guide, params, x):
    q = guide.get_posterior(params, x)
    cov = q.covariance_matrix if isinstance(q, dist.MultivariateNormal) else None
    if cov is None:
        cov = jax.vmap(jnp.diag)(q.variance)
    return q.mean, cov


def init_params(guide, x):
    tr = handlers.trace(handlers.seed(guide, 0)).get_trace(x)
    return {k: v["value"] for k, v in tr.items() if v["type"] == "param"}


def fit_closed_form(guide, x, steps=100):
    """Maximise the closed-form ELBO over the guide's own parametrisation with L-BFGS."""
    params = init_params(guide, x)

    def loss(p):
        return -closed_form_elbo(*guide_moments(guide, p, x), x)

    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(loss)

    def step(carry, _):
        p, state = carry
        value, grad = value_and_grad(p, state=state)
        updates, state = opt.update(grad, state, p, value=value, grad=grad, value_fn=loss)
        return (optax.apply_updates(p, updates), state), value

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
    return params


def test_full_rank_linear_encoder_reaches_exact_posterior_and_evidence(x64):
    x, x_new = data(), data(7, seed=1)
    guide = make_guide(AmortizedMultivariateNormal)
    params = fit_closed_form(guide, x)
    mean, cov = guide_moments(guide, params, x_new)  # data never seen in training
    exact_mean, exact_cov, _ = exact_posterior(x_new)
    np.testing.assert_allclose(mean, exact_mean, atol=1e-6)
    np.testing.assert_allclose(cov, np.broadcast_to(exact_cov, cov.shape), atol=1e-6)
    # At the exact posterior log p(x, z) - log q(z) = log p(x) for every z, so each single-draw
    # Trace_ELBO estimate through the guide's sampling path equals the evidence.
    for seed in range(3):
        loss = Trace_ELBO().loss(jax.random.key(seed), params, model, guide, x)
        np.testing.assert_allclose(-loss, log_evidence(x), rtol=1e-8)


@functools.cache
def diagonal_fit():
    x = data()
    guide = make_guide(AmortizedNormal)
    return guide, fit_closed_form(guide, x), x


def test_diagonal_linear_encoder_reaches_exact_mean_and_best_diagonal(x64):
    guide, params, x = diagonal_fit()
    mean, cov = guide_moments(guide, params, x)
    exact_mean, _, precision = exact_posterior(x)
    np.testing.assert_allclose(mean, exact_mean, atol=1e-6)
    best_diag = np.diag(1 / np.diag(precision))  # argmin KL(q || p) over diagonal Gaussians
    np.testing.assert_allclose(cov, np.broadcast_to(best_diag, cov.shape), atol=1e-6)
    gap = 0.5 * N * (np.log(np.diag(precision)).sum() - np.linalg.slogdet(precision)[1])
    expected_elbo = log_evidence(x) - gap
    np.testing.assert_allclose(closed_form_elbo(mean, cov, x), expected_elbo, rtol=1e-8)
    draws = _losses(Trace_ELBO(), guide, params, x, num=2000)
    # Trace_ELBO is unbiased for the ELBO: tolerance 4 Monte Carlo standard errors.
    se = draws.std() / np.sqrt(draws.size)
    assert abs(-draws.mean() - expected_elbo) < 4 * se


def _losses(elbo, guide, params, x, num, **kwargs):
    def one(key):
        return elbo.loss(key, params, model, guide, x, **kwargs)

    return np.asarray(jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(7), num)))


@pytest.mark.parametrize("cls", [AmortizedNormal, AmortizedMultivariateNormal])
def test_subsampled_elbo_is_unbiased_for_full_data_elbo(x64, cls):
    x = data()
    guide = make_guide(cls, scale=0.3)
    # The guide takes the plate's subsample size from its first call (as NumPyro autoguides do).
    params = handlers.trace(handlers.seed(guide, 0)).get_trace(x, subsample_size=5)
    params = {k: v["value"] for k, v in params.items() if v["type"] == "param"}
    full = closed_form_elbo(*guide_moments(guide, params, x), x)
    draws = -_losses(Trace_ELBO(), guide, params, x, num=1000, subsample_size=5)
    # The N/B-scaled minibatch estimate is unbiased: tolerance 4 Monte Carlo standard errors.
    se = draws.std() / np.sqrt(draws.size)
    assert abs(draws.mean() - full) < 4 * se
    tr = handlers.trace(handlers.seed(guide, 1)).get_trace(x, subsample_size=5)
    assert tr["z"]["value"].shape == (5, 2)  # the estimate really is subsampled


def test_subsampled_guide_encodes_only_the_minibatch():
    seen = []

    def spy(params, x):
        seen.append(x.shape[0])
        return linear(params, x)

    params = {"w": jnp.zeros((3, 4)), "b": jnp.zeros(4)}
    guide = AmortizedNormal(model, spy, plate="data", inputs="x", encoder_params=params)
    x = data()
    SVI(model, guide, optax.adam(0.01), Trace_ELBO()).init(jax.random.key(0), x, subsample_size=4)
    seen.clear()
    tr = handlers.trace(handlers.seed(guide, 1)).get_trace(x, subsample_size=4)
    assert seen == [4]
    assert tr["z"]["value"].shape == (4, 2)
    assert tr["data"]["args"] == (N, 4)
    model_tr = handlers.trace(handlers.replay(handlers.seed(model, 2), tr)).get_trace(x, 4)
    np.testing.assert_array_equal(model_tr["data"]["value"], tr["data"]["value"])


def test_importance_weighted_bound_exceeds_elbo_and_grows_with_particles(x64):
    guide, params, x = diagonal_fit()
    elbo = closed_form_elbo(*guide_moments(guide, params, x), x)
    bounds = {}
    for k in (8, 64):
        draws = -_losses(RenyiELBO(alpha=0, num_particles=k), guide, params, x, num=200)
        bounds[k] = (draws.mean(), draws.std() / np.sqrt(draws.size))
    # Comparisons at 4 (combined) Monte Carlo standard errors; the ELBO is in closed form.
    assert bounds[8][0] - elbo > 4 * bounds[8][1]
    assert bounds[64][0] - bounds[8][0] > 4 * np.hypot(bounds[8][1], bounds[64][1])
    assert bounds[64][0] < log_evidence(x) + 4 * bounds[64][1]


def prior_model(x):
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("z", dist.Normal(0, 1).expand([2]).to_event(1))


def test_mean_field_elbo_uses_analytic_kl(x64):
    x = data()
    params = {"w": 0.3 * jnp.ones((3, 4)), "b": jnp.zeros(4)}
    guide = AmortizedNormal(prior_model, linear, plate="data", inputs="x", encoder_params=params)
    params = init_params(guide, x)
    q = guide.get_posterior(params, x)
    kl = dist.kl_divergence(q, dist.Normal(jnp.zeros(2), 1.0).to_event(1)).sum()
    # With no likelihood the mean-field ELBO is -KL, exactly and for every seed when the KL is
    # analytic; the Monte Carlo Trace_ELBO only matches it on average.
    for seed in range(3):
        loss = TraceMeanField_ELBO().loss(jax.random.key(seed), params, prior_model, guide, x)
        np.testing.assert_allclose(loss, kl, rtol=1e-10)
    kl = float(kl)
    assert Trace_ELBO().loss(jax.random.key(0), params, prior_model, guide, x) != pytest.approx(
        kl, rel=1e-6
    )


def test_several_particles_average_the_elbo(x64):
    x = data()
    guide = make_guide(AmortizedMultivariateNormal, scale=0.3)
    params = init_params(guide, x)
    one = _losses(Trace_ELBO(), guide, params, x, num=400)
    many = _losses(Trace_ELBO(num_particles=16), guide, params, x, num=400)
    # Variance of a 16-particle average is 1/16 of one draw's: allow a factor 2 either way.
    ratio = many.var() / (one.var() / 16)
    assert 0.5 < ratio < 2


def mixed_model(x):
    shift = numpyro.sample("shift", dist.Normal(0, 1).expand([3]).to_event(1))
    with numpyro.plate("data", x.shape[0]):
        z = numpyro.sample("z", dist.Normal(0, 1).expand([2]).to_event(1))
        numpyro.sample("x", dist.Normal(z @ W.T + shift, S).to_event(1), obs=x)


def test_autoguide_list_handles_global_and_local_latents(x64):
    x = data(100, seed=3) + B
    guide = AutoGuideList(mixed_model)
    guide.append(AutoNormal(handlers.block(mixed_model, hide=["z"]), init_scale=0.05))
    params = {"w": jnp.zeros((3, 5)), "b": jnp.zeros(5)}
    local = handlers.block(mixed_model, hide=["shift"])
    guide.append(
        AmortizedMultivariateNormal(local, linear, plate="data", inputs="x", encoder_params=params)
    )
    schedule = optax.exponential_decay(0.05, 1500, 0.02)
    svi = SVI(mixed_model, guide, optax.adam(schedule), Trace_ELBO())
    result = svi.run(jax.random.key(0), 1500, x, progress_bar=False)
    # Exact posterior of the global shift: x_i ~ N(shift, C) marginally, shift ~ N(0, I).
    c_inv = np.linalg.inv(W @ W.T + S**2 * np.eye(3))
    post_cov = np.linalg.inv(np.eye(3) + len(x) * c_inv)
    post_mean = post_cov @ c_inv @ np.asarray(x).sum(0)
    loc = result.params["shift_auto_loc"]
    # The block mean-field optimum keeps exact means; SVI noise is well under a posterior sd.
    assert np.all(np.abs(loc - post_mean) < 0.5 * np.sqrt(np.diag(post_cov)))
    draws = guide.sample_posterior(jax.random.key(1), result.params, x[:5], sample_shape=(10,))
    assert draws["shift"].shape == (10, 3) and draws["z"].shape == (10, 5, 2)


def constrained_model(x):
    with numpyro.plate("data", x.shape[0]):
        rate = numpyro.sample("rate", dist.Gamma(2.0, 1.0))
        mix = numpyro.sample("mix", dist.Dirichlet(jnp.ones(3)))
        numpyro.sample("x", dist.Normal(rate[..., None] * mix, 1.0).to_event(1), obs=x)


@pytest.mark.parametrize("cls", [AmortizedNormal, AmortizedMultivariateNormal])
def test_constrained_local_latents_live_in_their_support(x64, cls):
    width = (DiagonalNormalFamily if cls is AmortizedNormal else FullRankNormalFamily)()
    width = width.output_size(3)  # rate (1) + simplex of 3 (2 unconstrained)
    params = {"w": 0.3 * jnp.ones((3, width)), "b": jnp.zeros(width)}
    guide = cls(constrained_model, linear, plate="data", inputs="x", encoder_params=params)
    x = data(6)
    tr = handlers.trace(handlers.seed(guide, 0)).get_trace(x)
    rate, mix = tr["rate"]["value"], tr["mix"]["value"]
    assert rate.shape == (6,) and jnp.all(rate > 0)
    assert mix.shape == (6, 3) and jnp.all(mix > 0)
    np.testing.assert_allclose(mix.sum(-1), 1.0, rtol=1e-12)
    # Guide density = unconstrained density minus the log-Jacobian of biject_to.
    q = guide.get_posterior(init_params(guide, x), x)
    t_rate = dist.biject_to(dist.constraints.positive)
    t_mix = dist.biject_to(dist.constraints.simplex)
    u = jnp.concatenate([t_rate.inv(rate)[:, None], t_mix.inv(mix)], -1)
    expected = (
        q.log_prob(u)
        - t_rate.log_abs_det_jacobian(u[:, 0], rate)
        - t_mix.log_abs_det_jacobian(u[:, 1:], mix)
    )
    total = sum(
        site["fn"].log_prob(site["value"]) for site in tr.values() if site["type"] == "sample"
    )
    np.testing.assert_allclose(total, expected, rtol=1e-10)


def vae_model(x):
    with numpyro.plate("data", x.shape[0]):
        z = numpyro.sample("z", dist.Normal(0, 1).expand([2]).to_event(1))
        numpyro.sample("x", dist.Normal(z @ W.T + B, S).to_event(1), obs=x)


def test_nnx_encoder_trains_and_encodes_new_data():
    nnx = pytest.importorskip("flax.nnx", reason="Flax NNX encoders need the [nn] extra")

    class Encoder(nnx.Module):
        def __init__(self, rngs):
            self.hidden = nnx.Linear(3, 16, rngs=rngs)
            self.out = nnx.Linear(16, 4, rngs=rngs)

        def __call__(self, x):
            return self.out(nnx.tanh(self.hidden(x)))

    guide = AmortizedNormal(vae_model, Encoder(nnx.Rngs(0)), plate="data", inputs="x")
    _check_trains(guide)


def test_equinox_encoder_trains_and_encodes_new_data():
    eqx = pytest.importorskip("equinox", reason="Equinox encoders need the [nn] extra")

    mlp = eqx.nn.MLP(3, 5, 16, 1, activation=jax.nn.tanh, key=jax.random.key(0))
    guide = AmortizedMultivariateNormal(vae_model, mlp, plate="data", inputs="x")
    _check_trains(guide)


def _check_trains(guide):
    x = data(64)
    svi = SVI(vae_model, guide, optax.adam(0.01), Trace_ELBO())
    result = svi.run(jax.random.key(0), 150, x, progress_bar=False)
    assert "amortized_encoder$params" in result.params
    assert result.losses[-20:].mean() < result.losses[:20].mean()
    draws = guide.sample_posterior(jax.random.key(1), result.params, data(3, 9), sample_shape=(8,))
    assert draws["z"].shape == (8, 3, 2)
    pred = Predictive(vae_model, guide=guide, params=result.params, num_samples=4)
    assert pred(jax.random.key(2), data(5, 9))["x"].shape == (4, 5, 3)


def test_inputs_fn_and_both_precisions(dtype):
    params = {"w": jnp.zeros((3, 4), dtype), "b": jnp.zeros(4, dtype)}
    guide = AmortizedNormal(
        vae_model, linear, plate="data", inputs=lambda x: x * 2.0, encoder_params=params
    )
    x = data(10).astype(dtype)
    result = SVI(vae_model, guide, optax.adam(0.05), Trace_ELBO()).run(
        jax.random.key(0), 200, x, progress_bar=False
    )
    assert np.isfinite(result.losses[-1])
    draws = guide.sample_posterior(jax.random.key(1), result.params, x)
    assert draws["z"].dtype == dtype and draws["z"].shape == (10, 2)
    assert guide.median(result.params, x)["z"].dtype == dtype


def test_bad_input_raises_clear_errors():
    params = {"w": jnp.zeros((3, 4)), "b": jnp.zeros(4)}
    with pytest.raises(ValueError, match="not an argument of the model"):
        AmortizedNormal(vae_model, linear, plate="data", inputs="y", encoder_params=params)
    guide = AmortizedNormal(mixed_model, linear, plate="data", inputs="x", encoder_params=params)
    with pytest.raises(ValueError, match="'shift' is outside plate 'data'"):
        handlers.seed(guide, 0)(data(4))
    guide = AmortizedMultivariateNormal(
        vae_model, linear, plate="data", inputs="x", encoder_params=params
    )
    with pytest.raises(ValueError, match=r"shape \(batch, 5\).*got \(4, 4\)"):
        handlers.seed(guide, 0)(data(4))
    guide = AmortizedNormal(vae_model, linear, plate="data", inputs="x")
    with pytest.raises(ValueError, match="encoder_params"):
        handlers.seed(guide, 0)(data(4))
    guide = AmortizedNormal(vae_model, linear, plate="rows", inputs="x", encoder_params=params)
    with pytest.raises(ValueError, match="no plate 'rows'"):
        handlers.seed(guide, 0)(data(4))
    with pytest.raises(ValueError, match="not been initialised"):
        guide.sample_posterior(jax.random.key(0), {}, data(4))


def test_model_without_local_latents_is_refused_clearly():
    params = {"w": jnp.zeros((3, 4)), "b": jnp.zeros(4)}

    def observed_only(x):
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("x", dist.Normal(0, 1).expand([3]).to_event(1), obs=x)

    guide = AmortizedNormal(observed_only, linear, plate="data", inputs="x", encoder_params=params)
    with pytest.raises(ValueError, match="no latent site in plate 'data'"):
        handlers.seed(guide, 0)(data(4))


@pytest.mark.parametrize("cls", [AmortizedNormal, AmortizedMultivariateNormal])
def test_held_out_elbo_follows_the_model_plate_whatever_the_data_size(x64, cls):
    """The training subsample size B must not make held-out data of size B look subsampled."""
    batch = 5
    guide = make_guide(cls, scale=0.3)
    tr = handlers.trace(handlers.seed(guide, 0)).get_trace(data(), subsample_size=batch)
    params = {k: v["value"] for k, v in tr.items() if v["type"] == "param"}
    for n in (batch - 1, batch, batch + 1):
        x = data(n, seed=11)
        exact = closed_form_elbo(*guide_moments(guide, params, x), x) / n
        draws = -_losses(Trace_ELBO(), guide, params, x, num=400) / n
        # Held-out ELBO per datum against its closed form: 4 Monte Carlo standard errors.
        assert abs(draws.mean() - exact) < 4 * draws.std() / np.sqrt(draws.size), n


def test_minibatch_given_by_the_caller_is_encoded_as_given(x64):
    def batch_model(x_batch, num_data):
        with numpyro.plate("data", num_data, subsample_size=x_batch.shape[0]):
            z = numpyro.sample("z", dist.Normal(0, 1).expand([2]).to_event(1))
            numpyro.sample("x", dist.Normal(z @ W.T + B, S).to_event(1), obs=x_batch)

    params = {"w": 0.3 * jnp.ones((3, 4)), "b": jnp.zeros(4)}
    guide = AmortizedNormal(
        batch_model, linear, plate="data", inputs="x_batch", encoder_params=params
    )
    x = data(6)
    tr = handlers.trace(handlers.seed(guide, 0)).get_trace(x, 100)
    assert tr["data"]["args"] == (100, 6)
    expected = guide.get_posterior(init_params_of(tr), x, 100).base_dist.loc
    np.testing.assert_allclose(tr["z"]["fn"].base_dist.loc, expected)


def init_params_of(tr):
    return {k: v["value"] for k, v in tr.items() if v["type"] == "param"}


def test_inputs_whose_size_differs_from_the_plate_raise_naming_plate_and_argument():
    def two_arg_model(x, y):
        with numpyro.plate("data", y.shape[0]):
            z = numpyro.sample("z", dist.Normal(0, 1).expand([2]).to_event(1))
            numpyro.sample("y", dist.Normal(z.sum(-1), 1.0), obs=y)

    params = {"w": jnp.zeros((3, 4)), "b": jnp.zeros(4)}
    guide = AmortizedNormal(two_arg_model, linear, plate="data", inputs="x", encoder_params=params)
    with pytest.raises(
        ValueError, match=r"inputs 'x' have leading size 1 .* plate 'data' has size 200"
    ):
        handlers.seed(guide, 0)(data(1), jnp.zeros(200))


def test_a_minibatch_plate_larger_than_the_inputs_is_refused_naming_the_plate():
    # the model's own x[idx] would clamp past the end of x; the guide indexes x with the same
    # indices, so its first trace compares the plate's size with the inputs' leading size
    def minibatch_model(x, size):
        with numpyro.plate("data", size, subsample_size=10) as idx:
            z = numpyro.sample("z", dist.Normal(0, 1).expand([2]).to_event(1))
            numpyro.sample("x", dist.Normal(z @ W.T, S).to_event(1), obs=x[idx])

    params = {"w": jnp.zeros((3, 4)), "b": jnp.zeros(4)}
    guide = AmortizedNormal(
        minibatch_model, linear, plate="data", inputs="x", encoder_params=params
    )
    handlers.seed(guide, 0)(data(50), 50)
    guide = AmortizedNormal(
        minibatch_model, linear, plate="data", inputs="x", encoder_params=params
    )
    with pytest.raises(
        ValueError,
        match=r"inputs 'x' have leading size 50 but the model's plate 'data' has size 60 \(all",
    ):
        handlers.seed(guide, 0)(data(50), 60)


def deterministic_mixed_model(x):
    shift = numpyro.sample("shift", dist.Normal(0, 1).expand([3]).to_event(1))
    with numpyro.plate("data", x.shape[0]):
        z = numpyro.sample("z", dist.Normal(0, 1).expand([2]).to_event(1))
        numpyro.deterministic("norm", (z**2).sum(-1))
        numpyro.sample("x", dist.Normal(z @ W.T + shift, S).to_event(1), obs=x)


@pytest.mark.parametrize("cls", [AmortizedNormal, AmortizedMultivariateNormal])
def test_autoguide_list_median_and_quantiles_need_no_data(x64, cls):
    x = data(7)
    guide = AutoGuideList(deterministic_mixed_model)
    guide.append(
        AutoNormal(handlers.block(deterministic_mixed_model, hide=["z", "norm"]), init_scale=0.2)
    )
    width = (DiagonalNormalFamily if cls is AmortizedNormal else FullRankNormalFamily)()
    width = width.output_size(2)
    local = handlers.block(deterministic_mixed_model, hide=["shift"])
    params = {"w": 0.3 * jnp.ones((3, width)), "b": 0.1 * jnp.ones(width)}
    guide.append(cls(local, linear, plate="data", inputs="x", encoder_params=params))
    svi = SVI(deterministic_mixed_model, guide, optax.adam(0.01), Trace_ELBO())
    params = svi.get_params(svi.init(jax.random.key(0), x))
    median = guide.median(params)
    assert median["shift"].shape == (3,) and median["z"].shape == (7, 2)
    probs = jnp.array([0.1, 0.5, 0.9])
    quantiles = guide.quantiles(params, probs)
    assert quantiles["z"].shape == (3, 7, 2)
    np.testing.assert_allclose(quantiles["z"][1], median["z"], rtol=1e-10)
    # Marginal Gaussian quantiles of the encoder's output at the training data.
    q = guide[1].get_posterior(params)
    sd = (
        jnp.sqrt(q.variance)
        if cls is AmortizedNormal
        else jnp.sqrt(jnp.diagonal(q.covariance_matrix, 0, -2, -1))
    )
    expected = q.mean + sd * jax.scipy.special.ndtri(probs)[:, None, None]
    np.testing.assert_allclose(quantiles["z"], expected, rtol=1e-10)
    # New data: the amortised part takes the model's arguments.
    assert guide[1].median(params, data(4, seed=5))["z"].shape == (4, 2)
    assert guide[1].quantiles(params, [0.5], data(4, seed=5))["z"].shape == (1, 4, 2)
