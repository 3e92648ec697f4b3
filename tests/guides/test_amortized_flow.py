"""The conditional-flow amortised guide on the linear-Gaussian latent model.

Model as in test_amortized.py: z_i ~ N(0, I_2), x_i | z_i ~ N(W z_i + b, s^2 I_3), whose log
evidence is closed form. Any guide's ELBO is at most the log evidence, so a guide whose density
were mis-normalised (a wrong log-Jacobian) would show up as an ELBO above it.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro import handlers
from numpyro.infer import SVI, Trace_ELBO

from numpyro_ext.guides.amortized import AmortizedFlow, ConditionalFlowFamily
from tests.guides.test_amortized import N, constrained_model, data, linear, log_evidence, model


def make_flow_guide(model_fn=model, context_dim=8):
    params = {"w": jnp.zeros((3, context_dim)), "b": jnp.zeros(context_dim)}
    return AmortizedFlow(
        model_fn, linear, plate="data", inputs="x", context_dim=context_dim, encoder_params=params
    )


def test_flow_guide_elbo_approaches_but_never_exceeds_the_evidence():
    x = data()
    guide = make_flow_guide()
    schedule = optax.exponential_decay(1e-2, 1000, 0.1)
    svi = SVI(model, guide, optax.adam(schedule), Trace_ELBO(num_particles=2))
    result = svi.run(jax.random.key(0), 1000, x, progress_bar=False)
    assert "amortized_flow$params" in result.params
    losses = jax.vmap(lambda k: Trace_ELBO().loss(k, result.params, model, guide, x))(
        jax.random.split(jax.random.key(1), 500)
    )
    elbo, se = -losses.mean(), losses.std() / np.sqrt(losses.size)
    # ELBO <= log evidence up to 4 Monte Carlo standard errors; the trained flow closes the gap
    # to under 1 nat over 20 data (it starts ~30 nats below).
    assert elbo < log_evidence(x) + 4 * se
    assert elbo > log_evidence(x) - 1.0
    draws = guide.sample_posterior(jax.random.key(2), result.params, data(3, 9), sample_shape=(5,))
    assert draws["z"].shape == (5, 3, 2)
    assert guide.median(result.params, data(3, 9))["z"].shape == (3, 2)


def test_flow_guide_density_includes_flow_and_support_jacobians(x64):
    guide = make_flow_guide(constrained_model)
    x = data(4)
    tr = handlers.trace(handlers.seed(guide, 0)).get_trace(x)
    params = {k: v["value"] for k, v in tr.items() if v["type"] == "param"}
    q = guide.get_posterior(params, x)
    rate, mix = tr["rate"]["value"], tr["mix"]["value"]
    t_rate = dist.biject_to(dist.constraints.positive)
    t_mix = dist.biject_to(dist.constraints.simplex)
    u = jnp.concatenate([t_rate.inv(rate)[:, None], t_mix.inv(mix)], -1)
    expected = (
        q.log_prob(u)
        - t_rate.log_abs_det_jacobian(u[:, 0], rate)
        - t_mix.log_abs_det_jacobian(u[:, 1:], mix)
    )
    total = sum(s["fn"].log_prob(s["value"]) for s in tr.values() if s["type"] == "sample")
    np.testing.assert_allclose(total, expected, rtol=1e-8)


def _init_params(guide, *args, **kwargs):
    tr = handlers.trace(handlers.seed(guide, 0)).get_trace(*args, **kwargs)
    return {k: v["value"] for k, v in tr.items() if v["type"] == "param"}


def _perturbed(tree, scale, seed):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(
        treedef,
        [
            leaf + scale * jax.random.normal(k, leaf.shape, leaf.dtype)
            for k, leaf in zip(keys, leaves, strict=True)
        ],
    )


def _elbo_draws(guide, params, x, num, seed, **kwargs):
    def one(key):
        return -Trace_ELBO().loss(key, params, model, guide, x, **kwargs)

    return np.asarray(jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(seed), num)))


def test_subsampled_flow_elbo_is_unbiased_for_full_data_elbo():
    x = data()

    def create_plates(x, subsample_size=None):
        return numpyro.plate("data", x.shape[0], subsample_size=subsample_size)

    # create_plates lets one guide serve the minibatch and the full-data ELBO alike.
    guide = AmortizedFlow(
        model,
        linear,
        plate="data",
        inputs="x",
        context_dim=8,
        encoder_params={"w": jnp.zeros((3, 8)), "b": jnp.zeros(8)},
        create_plates=create_plates,
    )
    params = _init_params(guide, x)
    # Away from the identity-flow initialisation, so that q(z_i | x_i) really depends on x_i.
    params = {
        "amortized_encoder$params": _perturbed(params["amortized_encoder$params"], 1.0, 1),
        "amortized_flow$params": _perturbed(params["amortized_flow$params"], 0.1, 2),
    }
    sub = _elbo_draws(guide, params, x, 4000, seed=3, subsample_size=5)
    whole = _elbo_draws(guide, params, x, 4000, seed=4)
    # Both are unbiased Monte Carlo estimates; tolerance: 4 standard errors of the difference of
    # the two means. (Encoding the first B rows instead of the minibatch's shifts the minibatch
    # mean by ~40 nats here, ~20 standard errors.)
    se = np.sqrt(sub.var() / sub.size + whole.var() / whole.size)
    assert abs(sub.mean() - whole.mean()) < 4 * se
    tr = handlers.trace(handlers.seed(guide, 5)).get_trace(x, subsample_size=5)
    assert tr["z"]["value"].shape == (5, 2)  # the estimate really is subsampled
    assert tr["data"]["args"] == (N, 5)


def test_flow_family_rejects_bad_sizes():
    with pytest.raises(ValueError, match="context_dim must be >= 1"):
        ConditionalFlowFamily(0)
    with pytest.raises(ValueError, match=">= 2 latent dimensions"):
        handlers.seed(ConditionalFlowFamily(3), 0)(jnp.zeros((2, 3)), 1)
