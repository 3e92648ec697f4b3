"""AVB training step: ``SVI(ImplicitGuide, AdversarialELBO)`` against a hand-written JAX loop,
and the digits VAE's held-out log-likelihood, implicit encoder against ``AmortizedNormal``.

Step time. Both sides train the same networks on the same banana posterior
(theta ~ N(0, I_2), y ~ N(theta_2 + theta_1^2, 0.3^2), y = 1): the generator
``loc + skip * eps + MLP(eps)`` and the MLP critic (ELU, ``hidden`` units per layer), adaptive
contrast against N(mu, Sigma) fitted to ``M`` draws (sample covariance shrunk towards its
diagonal by D / (D + M), Cholesky whitening), ``M`` critic positives and ``M`` Gaussian
negatives, one particle, two Adam optimisers (guide and critic) applied simultaneously, and a
PRNG key carried in the state and split every step. The hand-written side is what a competent
JAX user would write: one jitted step over a params pytree, the log joint written out by hand.
The initial parameters of both are the same arrays. The first call (compilation included) is
reported apart; then single calls of the two jitted steps alternate, ``--pairs`` times.

Digits VAE. The model and the two encoders of ``examples/adversarial_vae_digits.py`` (same
decoder, same initialisation), trained ``--vae-steps`` steps on minibatches of 128; the
held-out log-likelihood of both is estimated the same way, by importance sampling with a
Gaussian proposal fitted to 256 draws of q(z | x_i) per test digit (an implicit q has no
density), K = 1000 proposal draws. Standard errors are over test digits; the paired difference
(same digits) has a much smaller one.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
import optax
from harness import Table, environment, time_call
from jax.scipy.linalg import solve_triangular
from jax.scipy.stats import norm
from numpyro.infer import SVI

from numpyro_ext.guides import ImplicitGuide
from numpyro_ext.infer import AdversarialELBO, adversarial_optimizer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))


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
    tiny = jnp.finfo(jnp.float32).tiny ** 0.25

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
        # the adaptive reference N(mu, Sigma): sample covariance shrunk towards its diagonal
        mu = held.mean(0)
        centred = held - mu
        cov = centred.T @ centred / (num_draws - 1)
        lam = 2 / (2 + num_draws)
        cov = (1 - lam) * cov + jnp.diag(lam * jnp.diag(cov) + tiny**2)
        chol = jnp.linalg.cholesky(cov)

        def whiten(v):
            return solve_triangular(chol, (v - mu).T, lower=True).T

        w = whiten(u)
        log_r = -0.5 * w @ w - jnp.log(jnp.diag(chol)).sum() - jnp.log(2 * jnp.pi)
        primal = critic(jax.lax.stop_gradient(c), w) + log_r - log_joint(u)
        neg = jax.random.normal(k4, pos.shape)
        disc = 0.5 * (
            jax.nn.softplus(-critic(c, whiten(pos))).mean()
            + jax.nn.softplus(critic(c, neg)).mean()
        )
        return primal + disc - jax.lax.stop_gradient(disc)

    @jax.jit
    def step(state):
        (g, c), (sg, sc), key = state
        key, sub = jax.random.split(key)  # a training loop draws fresh noise every step
        value, (dg, dc) = jax.value_and_grad(loss)((g, c), sub)
        ug, sg = guide_opt.update(dg, sg, g)
        uc, sc = critic_opt.update(dc, sc, c)
        new = (optax.apply_updates(g, ug), optax.apply_updates(c, uc)), (sg, sc), key
        return new, value

    def init(g, c, key):
        return (g, c), (guide_opt.init(g), critic_opt.init(c)), key

    return init, step


def main(hidden: int, num_draws: int, pairs: int) -> None:
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
    hand_state = init(g, params["implicit_critic$params"], jax.random.key(1))

    def ours():
        return update(state)

    def anchor():
        return step(hand_state)

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
    first_anchor = time_call(anchor, repeats=1).first
    first_ours = time_call(ours, repeats=1).first
    # closely interleaved single calls (alternating which goes first), so that both see the
    # same load; the ratio of medians and the median of the paired ratios are reported
    t_ours, t_anchor = [], []
    for i in range(pairs):
        for which in ("anchor", "ours") if i % 2 == 0 else ("ours", "anchor"):
            fn, times = (anchor, t_anchor) if which == "anchor" else (ours, t_ours)
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times.append(time.perf_counter() - start)
    a, o = statistics.median(t_anchor), statistics.median(t_ours)
    paired = sorted(x / y for x, y in zip(t_ours, t_anchor, strict=True))
    q1, q3 = paired[len(paired) // 4], paired[3 * len(paired) // 4]
    table.add("hand-written JAX loop", first_anchor, 1e3 * a, 1.0)
    table.add("SVI + ImplicitGuide + AdversarialELBO", first_ours, 1e3 * o, o / a)
    table.print()
    print(
        f"{pairs} interleaved pairs; paired ratio median {statistics.median(paired):.3f} "
        f"(quartiles {q1:.3f}, {q3:.3f})"
    )
    print(environment())


def vae_table(steps: int) -> None:
    """Held-out log-likelihood of the digits VAE, implicit encoder against AmortizedNormal."""
    from adversarial_vae_digits import fit, per_digit_log_likelihood

    from numpyro_ext.demo.sections.amortized import load_binary_digits

    x_train, x_test, _, _ = load_binary_digits()
    lls, ess, secs = {}, {}, {}
    for kind in ("AmortizedNormal", "AmortizedImplicit"):
        start = time.perf_counter()
        model, guide, params = fit(kind, steps, x_train)
        secs[kind] = time.perf_counter() - start
        lls[kind], ess[kind] = per_digit_log_likelihood(
            model, guide, params, x_test, jax.random.key(1)
        )
    n = x_test.shape[0]
    table = Table(
        f"Digits VAE, held-out log p(x) per digit (2-D latent, {steps} steps of 128, "
        f"n_test = {n}; importance sampling, K = 1000, Gaussian proposal fitted to 256 "
        "draws of q per digit)",
        ["encoder", "log p(x) (nats)", "s.e. over digits", "median IS ESS", "train (s)"],
    )
    for kind, ll in lls.items():
        se = float(ll.std(ddof=1)) / n**0.5
        table.add(kind, float(ll.mean()), se, float(jnp.median(ess[kind])), secs[kind])
    diff = lls["AmortizedImplicit"] - lls["AmortizedNormal"]
    table.add(
        "difference (implicit - normal), paired",
        float(diff.mean()),
        float(diff.std(ddof=1)) / n**0.5,
        "",
        "",
    )
    table.print()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--draws", type=int, default=32)
    parser.add_argument("--pairs", type=int, default=500)
    parser.add_argument(
        "--vae-steps", type=int, default=1000, help="digits VAE training steps (0 to skip)"
    )
    args = parser.parse_args()
    main(args.hidden, args.draws, args.pairs)
    if args.vae_steps:
        vae_table(args.vae_steps)
