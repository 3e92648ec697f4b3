"""Spline-coupling flows: numpyro_ext against flowjax and distrax, same architecture, same run.

Architecture for all three: 4 rational-quadratic spline couplings on a 2-D event (8 bins on
[-4, 4], identity tails), alternating which coordinate is transformed, conditioner MLP with
two hidden layers of 32 ReLU units, standard normal base. Measured: forward+log-det and
inverse throughput on a batch of 10,000 points; a maximum-likelihood training run (Adam,
batch 256) on standardised banana samples: compile time, time per step, final held-out
log-likelihood. Ratios are ours / peer (below 1 = we are faster).
"""

from __future__ import annotations

import time

import distrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import paramax
from flowjax.bijections import RationalQuadraticSpline as FjSpline
from flowjax.distributions import Normal as FjNormal
from flowjax.flows import coupling_flow
from harness import Table, environment, time_call

from numpyro_ext.transforms import (
    MLP,
    Chain,
    Permute,
    Scan,
    SplineCoupling,
    banana_distribution,
)

BINS, BOUND, WIDTH, DEPTH, LAYERS, DIM = 8, 4.0, 32, 2, 4, 2
STEPS, CHUNK, BATCH, LR = 2000, 100, 256, 1e-3


def ours(key):
    def layer(k):
        net = MLP.init(k, 1, (WIDTH,) * DEPTH, 3 * BINS - 1, activation=jax.nn.relu)
        coupling = SplineCoupling(net, split=1, num_bins=BINS, boundary=BOUND)
        return Chain([Permute.reverse(DIM), coupling])

    return Scan.stack([layer(k) for k in jax.random.split(key, LAYERS)])


def ours_log_prob(flow, x):
    z, ild = flow.inverse_and_log_det(x)
    return jnp.sum(jax.scipy.stats.norm.logpdf(z), -1) + ild


def flowjax_flow(key):
    return coupling_flow(
        key,
        base_dist=FjNormal(jnp.zeros(DIM)),
        transformer=FjSpline(knots=BINS - 1, interval=BOUND),
        flow_layers=LAYERS,
        nn_width=WIDTH,
        nn_depth=DEPTH,
    )


def distrax_params(key):
    return [
        MLP.init(k, 1, (WIDTH,) * DEPTH, 3 * BINS + 1, activation=jax.nn.relu)
        for k in jax.random.split(key, LAYERS)
    ]


def distrax_flow(params):
    def spline(p):
        return distrax.RationalQuadraticSpline(
            p, range_min=-BOUND, range_max=BOUND, boundary_slopes="identity"
        )

    layers = [
        distrax.SplitCoupling(
            split_index=1,
            event_ndims=1,
            conditioner=lambda x, net=net: net(x)[..., None, :],
            bijector=spline,
            swap=i % 2 == 1,
        )
        for i, net in enumerate(params)
    ]
    return distrax.Chain(layers[::-1])


def distrax_log_prob(params, x):
    z, ild = distrax_flow(params).inverse_and_log_det(x)
    return jnp.sum(jax.scipy.stats.norm.logpdf(z), -1) + ild


def flowjax_log_prob(params, static, x):
    return paramax.unwrap(eqx.combine(params, static)).log_prob(x)


def data():
    y = np.asarray(banana_distribution().sample(jax.random.key(42), (60_000,)))
    mean, std = y[:50_000].mean(0), y[:50_000].std(0)
    standard = (y - mean) / std
    # exact held-out log density of the standardised data, for reference
    exact = banana_distribution().log_prob(jnp.asarray(y[50_000:])) + np.log(std).sum()
    return jnp.asarray(standard[:50_000]), jnp.asarray(standard[50_000:]), float(exact.mean())


def trainer(log_prob, params, train, static=None):
    opt = optax.adam(LR)

    def loss(p, batch):
        args = (p, static, batch) if static is not None else (p, batch)
        return -jnp.mean(log_prob(*args))

    @jax.jit
    def chunk(state, key):
        def step(carry, k):
            p, s = carry
            idx = jax.random.randint(k, (BATCH,), 0, train.shape[0])
            g = jax.grad(loss)(p, train[idx])
            updates, s = opt.update(g, s, p)
            return (optax.apply_updates(p, updates), s), None

        return jax.lax.scan(step, state, jax.random.split(key, CHUNK))[0]

    return chunk, (params, opt.init(params))


def main():
    key = jax.random.key(0)
    x = jax.random.normal(jax.random.key(1), (10_000, DIM))
    flow, fj, dx_params = ours(key), flowjax_flow(key), distrax_params(key)
    fj_bij = paramax.unwrap(fj).bijection
    runs = {
        "numpyro_ext": (
            jax.jit(lambda f, v: f.forward_and_log_det(v)),
            jax.jit(lambda f, v: f.inverse_and_log_det(v)),
            flow,
        ),
        "flowjax": (
            eqx.filter_jit(lambda b, v: jax.vmap(b.transform_and_log_det)(v)),
            eqx.filter_jit(lambda b, v: jax.vmap(b.inverse_and_log_det)(v)),
            fj_bij,
        ),
        "distrax": (
            jax.jit(lambda p, v: distrax_flow(p).forward_and_log_det(v)),
            jax.jit(lambda p, v: distrax_flow(p).inverse_and_log_det(v)),
            dx_params,
        ),
    }
    throughput = Table(
        "Spline-coupling flow throughput, 10,000 points (ms, median of 7)",
        [
            "library",
            "forward+log-det",
            "inverse+log-det",
            "compile fwd (s)",
            "ratio fwd",
            "ratio inv",
        ],
    )
    timings = {}
    for name, (fwd, inv, obj) in runs.items():
        timings[name] = (
            time_call(lambda fwd=fwd, obj=obj: fwd(obj, x)),
            time_call(lambda inv=inv, obj=obj: inv(obj, x)),
        )
    for name, (tf, ti) in timings.items():
        ratio_f = timings["numpyro_ext"][0].median / tf.median
        ratio_i = timings["numpyro_ext"][1].median / ti.median
        throughput.add(
            name, 1e3 * tf.median, 1e3 * ti.median, tf.first - tf.median, ratio_f, ratio_i
        )
    throughput.print()

    train, test, exact = data()
    # the same fixed N(0, I) base as the others (flowjax trains the base loc/scale by default)
    fj = eqx.tree_at(lambda f: f.base_dist, fj, replace_fn=paramax.non_trainable)
    fj_params, fj_static = eqx.partition(
        fj, eqx.is_inexact_array, is_leaf=lambda leaf: isinstance(leaf, paramax.NonTrainable)
    )
    setups = {
        "numpyro_ext": trainer(ours_log_prob, flow, train),
        "flowjax": trainer(flowjax_log_prob, fj_params, train, fj_static),
        "distrax": trainer(distrax_log_prob, dx_params, train),
    }
    evaluate = {
        "numpyro_ext": lambda p: ours_log_prob(p, test).mean(),
        "flowjax": lambda p: flowjax_log_prob(p, fj_static, test).mean(),
        "distrax": lambda p: distrax_log_prob(p, test).mean(),
    }
    table = Table(
        f"Training {STEPS} Adam steps (batch {BATCH}) on standardised banana samples; "
        f"exact held-out log-likelihood {exact:.3f}",
        ["library", "compile (s)", "ms / step", "held-out log-lik", "ratio ms/step"],
    )
    results = {}
    for name, (chunk, state) in setups.items():
        keys = jax.random.split(jax.random.key(7), STEPS // CHUNK)
        start = time.perf_counter()
        state = jax.block_until_ready(chunk(state, keys[0]))
        first = time.perf_counter() - start
        times = []
        for k in keys[1:]:
            start = time.perf_counter()
            state = jax.block_until_ready(chunk(state, k))
            times.append(time.perf_counter() - start)
        per_chunk = float(np.median(times))
        results[name] = (
            first - per_chunk,
            1e3 * per_chunk / CHUNK,
            float(evaluate[name](state[0])),
        )
    for name, (compile_s, ms, ll) in results.items():
        table.add(name, compile_s, ms, ll, results["numpyro_ext"][1] / ms)
    table.print()
    print(environment())


if __name__ == "__main__":
    main()
