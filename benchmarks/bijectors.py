"""Spline-coupling flows: numpyro_ext against flowjax and distrax, same architecture, same run.

Architecture for all three: 4 rational-quadratic spline couplings on a 2-D event (8 bins on
[-4, 4], identity tails), alternating which coordinate is transformed, conditioner MLP with
two hidden layers of 32 ReLU units, standard normal base, float32. (flowjax also trains the two
boundary derivatives of each spline, distrax fixes them to 1 as we do.) numpyro_ext and flowjax
stack the layers in a ``lax.scan``; distrax chains them in Python, i.e. unrolled; numpyro_ext is
timed with its default (``Scan`` unrolls stacks of up to 8 layers, so these 4 are unrolled) and
with the loop kept rolled (``unroll=1``). Measured: forward+log-det and inverse throughput on a
batch of 10,000 points; a maximum-likelihood training run (the same Adam, batch 256, steps and
batches for all) on standardised banana samples: compile time (first chunk minus a chunk),
time per step, final held-out log-likelihood. Libraries are timed in interleaved rounds so that
load drifting on a shared machine hits them alike; "vs fastest peer" is the row's time over the
faster of flowjax and distrax (below 1 = faster than both).
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


def ours(key, unroll=None):
    def layer(k):
        net = MLP.init(k, 1, (WIDTH,) * DEPTH, 3 * BINS - 1, activation=jax.nn.relu)
        coupling = SplineCoupling(net, split=1, num_bins=BINS, boundary=BOUND)
        return Chain([Permute.reverse(DIM), coupling])

    return Scan.stack([layer(k) for k in jax.random.split(key, LAYERS)], unroll=unroll)


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


OURS, UNROLLED = "numpyro_ext (default)", "numpyro_ext (unroll=1, rolled scan)"
PEERS = ("flowjax", "distrax")


def vs_fastest_peer(times, name):
    return times[name] / min(times[peer] for peer in PEERS)


def throughput_table(key, x):
    flow, fj_bij = ours(key), paramax.unwrap(flowjax_flow(key)).bijection
    runs = {
        OURS: (
            jax.jit(lambda f, v: f.forward_and_log_det(v)),
            jax.jit(lambda f, v: f.inverse_and_log_det(v)),
            flow,
        ),
        UNROLLED: (
            jax.jit(lambda f, v: f.forward_and_log_det(v)),
            jax.jit(lambda f, v: f.inverse_and_log_det(v)),
            ours(key, unroll=1),
        ),
        "flowjax": (
            eqx.filter_jit(lambda b, v: jax.vmap(b.transform_and_log_det)(v)),
            eqx.filter_jit(lambda b, v: jax.vmap(b.inverse_and_log_det)(v)),
            fj_bij,
        ),
        "distrax": (
            jax.jit(lambda p, v: distrax_flow(p).forward_and_log_det(v)),
            jax.jit(lambda p, v: distrax_flow(p).inverse_and_log_det(v)),
            distrax_params(key),
        ),
    }
    first, times = {}, {name: ([], []) for name in runs}
    for round_ in range(3):  # interleaved rounds: drifting load hits every library alike
        for name, (fwd, inv, obj) in runs.items():
            tf = time_call(lambda fwd=fwd, obj=obj: fwd(obj, x), repeats=5)
            ti = time_call(lambda inv=inv, obj=obj: inv(obj, x), repeats=5)
            if round_ == 0:
                first[name] = tf.first - tf.median
            times[name][0].extend(tf.times)
            times[name][1].extend(ti.times)
    fwd_ms = {name: 1e3 * float(np.median(t[0])) for name, t in times.items()}
    inv_ms = {name: 1e3 * float(np.median(t[1])) for name, t in times.items()}
    table = Table(
        "Spline-coupling flow throughput, 10,000 points (ms, median of 15 in 3 interleaved "
        "rounds)",
        [
            "library",
            "forward+log-det",
            "inverse+log-det",
            "compile fwd (s)",
            "fwd vs fastest peer",
            "inv vs fastest peer",
        ],
    )
    for name in runs:
        table.add(
            name,
            fwd_ms[name],
            inv_ms[name],
            first[name],
            vs_fastest_peer(fwd_ms, name),
            vs_fastest_peer(inv_ms, name),
        )
    return table


def training_table(key):
    train, test, exact = data()
    fj = flowjax_flow(key)
    # the same fixed N(0, I) base as the others (flowjax trains the base loc/scale by default)
    fj = eqx.tree_at(lambda f: f.base_dist, fj, replace_fn=paramax.non_trainable)
    fj_params, fj_static = eqx.partition(
        fj, eqx.is_inexact_array, is_leaf=lambda leaf: isinstance(leaf, paramax.NonTrainable)
    )
    dx_params = distrax_params(key)
    setups = {
        OURS: trainer(ours_log_prob, ours(key), train),
        UNROLLED: trainer(ours_log_prob, ours(key, unroll=1), train),
        "flowjax": trainer(flowjax_log_prob, fj_params, train, fj_static),
        "distrax": trainer(distrax_log_prob, dx_params, train),
    }
    evaluate = {  # per held-out point
        OURS: lambda p: ours_log_prob(p, test),
        UNROLLED: lambda p: ours_log_prob(p, test),
        "flowjax": lambda p: flowjax_log_prob(p, fj_static, test),
        "distrax": lambda p: distrax_log_prob(p, test),
    }
    keys = jax.random.split(jax.random.key(7), STEPS // CHUNK)  # the same batches for all
    states, compile_s, chunk_s = {}, {}, {name: [] for name in setups}
    for name, (chunk, state) in setups.items():
        start = time.perf_counter()
        states[name] = jax.block_until_ready(chunk(state, keys[0]))
        compile_s[name] = time.perf_counter() - start
    for k in keys[1:]:  # interleaved: each chunk of steps is timed for every library in turn
        for name, (chunk, _) in setups.items():
            start = time.perf_counter()
            states[name] = jax.block_until_ready(chunk(states[name], k))
            chunk_s[name].append(time.perf_counter() - start)
    ms = {name: 1e3 * float(np.median(t)) / CHUNK for name, t in chunk_s.items()}
    table = Table(
        f"Training {STEPS} Adam steps (batch {BATCH}) on standardised banana samples; "
        f"exact held-out log-likelihood {exact:.3f}",
        [
            "library",
            "compile (s)",
            "ms / step",
            "held-out log-lik",
            "s.e.",
            "vs fastest peer",
        ],
    )
    for name in setups:
        compile_only = compile_s[name] - 1e-3 * ms[name] * CHUNK
        loglik = np.asarray(evaluate[name](states[name][0]))
        se = float(loglik.std() / np.sqrt(loglik.size))
        table.add(
            name, compile_only, ms[name], float(loglik.mean()), se, vs_fastest_peer(ms, name)
        )
    return table


def main():
    key = jax.random.key(0)
    x = jax.random.normal(jax.random.key(1), (10_000, DIM))
    throughput_table(key, x).print()
    training_table(key).print()
    print(environment())


if __name__ == "__main__":
    main()
