"""AVB training step: ``SVI(ImplicitGuide, AdversarialELBO)`` against a hand-written JAX loop.

Both sides train the same networks on the same banana posterior (theta ~ N(0, I_2),
y ~ N(theta_2 + theta_1^2, 0.3^2), y = 1): the generator ``loc + skip * eps + MLP(eps)`` and
the MLP critic (ELU, ``hidden`` units per layer), adaptive contrast with ``M`` draws for the
moments, ``M`` critic positives and ``M`` Gaussian negatives, one particle, and two Adam
optimisers (guide and critic) applied simultaneously. The hand-written side is what a
competent JAX user would write: one jitted step over a params pytree, the log joint written
out by hand. The initial parameters of both are the same arrays. Each row times one jitted
step after compilation (the first call, compilation included, is reported separately).
"""

import argparse

import jax
import numpyro
import numpyro.distributions as dist
import optax
from harness import Table, environment, time_call
from jax.scipy.stats import norm
from numpyro.infer import SVI

from numpyro_ext.guides import ImplicitGuide
from numpyro_ext.infer import AdversarialELBO, adversarial_optimizer


def banana(y=1.0):
    t1 = numpyro.sample("t1", dist.Normal(0.0, 1.0))
    t2 = numpyro.sample("t2", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Normal(t2 + t1**2, 0.3), obs=y)


def mlp(layers, x):
    for layer in layers[:-1]:
        x = jax.nn.elu(x @ layer["w"] + layer["b"])
    return x @ layers[-1]["w"] + layers[-1]["b"]


def hand_written_step(noise_dim: int, num_draws: int):
    guide_opt, critic_opt = optax.adam(1e-3), optax.adam(3e-3)

    def generate(g, eps):
        return g["loc"] + g["skip"] * eps[..., -2:] + mlp(g["net"], eps)

    def critic(c, u):
        return mlp(c, u)[..., 0]

    def log_joint(u):
        return norm.logpdf(u[0]) + norm.logpdf(u[1]) + norm.logpdf(1.0, u[1] + u[0] ** 2, 0.3)

    def loss(params, key):
        g, c = params
        k1, k2, k3, k4 = jax.random.split(key, 4)
        u = generate(g, jax.random.normal(k1, (noise_dim,)))
        held = jax.lax.stop_gradient(generate(g, jax.random.normal(k2, (num_draws, noise_dim))))
        pos = jax.lax.stop_gradient(generate(g, jax.random.normal(k3, (num_draws, noise_dim))))
        mu, sd = held.mean(0), held.std(0, ddof=1)
        t = critic(jax.lax.stop_gradient(c), (u - mu) / sd)
        primal = t + norm.logpdf(u, mu, sd).sum() - log_joint(u)
        neg = jax.random.normal(k4, pos.shape)
        disc = 0.5 * (
            jax.nn.softplus(-critic(c, (pos - mu) / sd)).mean()
            + jax.nn.softplus(critic(c, neg)).mean()
        )
        return primal + disc - jax.lax.stop_gradient(disc)

    @jax.jit
    def step(state, key):
        (g, c), (sg, sc) = state
        value, (dg, dc) = jax.value_and_grad(loss)((g, c), key)
        ug, sg = guide_opt.update(dg, sg, g)
        uc, sc = critic_opt.update(dc, sc, c)
        return ((optax.apply_updates(g, ug), optax.apply_updates(c, uc)), (sg, sc)), value

    def init(g, c):
        return (g, c), (guide_opt.init(g), critic_opt.init(c))

    return init, step


def main(hidden: int, num_draws: int, repeats: int) -> None:
    noise_dim = 4
    guide = ImplicitGuide(banana, hidden=(hidden, hidden), noise_dim=noise_dim)
    svi = SVI(banana, guide, adversarial_optimizer(), AdversarialELBO(num_critic_draws=num_draws))
    state = svi.init(jax.random.key(0))
    params = svi.get_params(state)
    update = jax.jit(svi.update)
    g = {
        "loc": params["implicit_loc"],
        "skip": params["implicit_generator$params"]["skip"],
        "net": params["implicit_generator$params"]["net"],
    }
    init, step = hand_written_step(noise_dim, num_draws)
    hand_state = init(g, params["implicit_critic$params"])
    key = jax.random.key(1)

    def ours():
        return update(state)

    def anchor():
        return step(hand_state, key)

    table = Table(
        f"AVB step, banana posterior (D=2, noise={noise_dim}, MLP {hidden}x2, "
        f"{num_draws} critic draws, adaptive contrast)",
        [
            "implementation",
            "first call incl. compile (s)",
            "median step (ms)",
            "ratio ours/anchor",
        ],
    )
    t_ours, t_anchor = [], []
    for _ in range(3):  # interleaved, so the ratio sees the same load
        t_anchor.append(time_call(anchor, repeats=repeats))
        t_ours.append(time_call(ours, repeats=repeats))
    a = sorted(t.median for t in t_anchor)[1]
    o = sorted(t.median for t in t_ours)[1]
    table.add("hand-written JAX loop", t_anchor[0].first, 1e3 * a, 1.0)
    table.add("SVI + ImplicitGuide + AdversarialELBO", t_ours[0].first, 1e3 * o, o / a)
    table.print()
    print(environment())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--draws", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    main(args.hidden, args.draws, args.repeats)
