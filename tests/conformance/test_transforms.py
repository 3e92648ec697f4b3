"""Every transform numpyro_ext ships, checked against NumPyro's Transform protocol.

One line per transform in ``CASES``: a factory, the event shape it acts on, and (optionally) a
factory with batched parameters. Each case is checked for: domain and codomain constraints on
samples, bijectivity, the log-det against ``jacfwd``, ``sign`` (where defined) against the
Jacobian's diagonal, the pytree round trip and equality through ``jit``, batched parameters,
and ``TransformedDistribution`` (``log_prob``, ``sample``, ``cdf``/``icdf`` where ``sign`` is
defined) with ``biject_to`` of its support. Adding a transform is adding a line.

Tolerances (float32): round trips and log-dets of these small, well-conditioned maps agree to a
few hundred ulps (``2e-4`` absolute on values of order one, relative for log-dets).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from numpyro.distributions import constraints
from numpyro.distributions.transforms import ExpTransform, biject_to

import numpyro_ext.transforms as T

TOL = 2e-4
KEY = jax.random.key(0)


def _perturbed(tree, seed=0, scale=0.2):
    """Random non-zero values in every array leaf (fresh layers start at the identity)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda a: jnp.asarray(a + scale * rng.normal(size=jnp.shape(a)), jnp.result_type(a)),
        tree,
    )


def _exp():
    return T.Inline(
        jnp.exp,
        jnp.log,
        inverse_log_det_jacobian_fn=lambda y: -jnp.log(y),
        codomain=constraints.positive,
        sign=1,
    )


def _spline(batch=()):
    k = 5
    rng = np.random.default_rng(1)
    return T.RationalQuadraticSpline(
        *(jnp.asarray(rng.normal(size=(*batch, n)), jnp.float32) for n in (k, k, k - 1))
    )


def _stacked(dim=3, layers=2):
    def layer(key, seed):
        coupling = _perturbed(T.SplineCoupling.init(key, dim, (8,), num_bins=4), seed, 0.1)
        return T.Chain([coupling, T.Permute.reverse(dim)])

    return T.Scan.stack([layer(k, i) for i, k in enumerate(jax.random.split(KEY, layers))])


class Case(NamedTuple):
    make: object
    event_shape: tuple
    batched: object = None  # factory with parameters of batch shape (3,)


CASES = {
    "shift": Case(lambda: T.Shift(0.5), (), lambda: T.Shift(jnp.array([1.0, 2.0, -1.0]))),
    "scale": Case(lambda: T.Scale(-2.0), (), lambda: T.Scale(jnp.array([2.0, -1.0, 0.5]))),
    "affine": Case(lambda: T.Affine(0.3, 2.0), (), lambda: T.Affine(jnp.arange(3.0), 2.0)),
    "inline_exp": Case(_exp, ()),
    "chain": Case(lambda: T.Chain([T.Shift(1.0), T.Scale(-2.0)]), ()),
    "chain_exp": Case(lambda: T.Chain([T.Shift(1.0), ExpTransform()]), ()),
    "invert": Case(lambda: T.Invert(T.Affine(1.0, 3.0)), ()),
    "invert_exp": Case(lambda: T.Invert(_exp()), ()),
    "banana": Case(lambda: T.Banana(), (2,), lambda: T.Banana(jnp.array([0.5, 1.0, 2.0]))),
    "chain_banana": Case(
        lambda: T.Chain([T.Banana(), T.Shift(1.0)]),
        (2,),
        lambda: T.Chain([T.Banana(jnp.array([0.5, 1.0, 2.0])), T.Shift(1.0)]),
    ),
    "spline": Case(_spline, (), lambda: _spline((3,))),
    "affine_coupling": Case(lambda: _perturbed(T.AffineCoupling.init(KEY, 4, (8,))), (4,)),
    "spline_coupling": Case(
        lambda: _perturbed(T.SplineCoupling.init(KEY, 4, (8,), num_bins=4), 1, 0.1), (4,)
    ),
    "spline_coupling_affine": Case(
        lambda: _perturbed(T.SplineCoupling.init(KEY, 3, (8,), num_bins=4, affine=True), 2), (3,)
    ),
    "maf_affine": Case(lambda: _perturbed(T.MaskedAutoregressive.init(KEY, 3, (8,))), (3,)),
    "maf_spline": Case(
        lambda: _perturbed(
            T.MaskedAutoregressive.init(KEY, 3, (8,), transform="spline", num_bins=4), 3, 0.1
        ),
        (3,),
    ),
    "planar": Case(lambda: T.Planar.init(KEY, 3, scale=0.5), (3,)),
    "radial": Case(lambda: T.Radial(jnp.array([0.2, -0.1]), 0.3, 0.5), (2,)),
    "householder": Case(lambda: T.Householder.init(KEY, 3), (3,)),
    "sylvester": Case(lambda: T.Sylvester.init(KEY, 3), (3,)),
    "permute": Case(lambda: T.Permute([2, 0, 1]), (3,)),
    "scan": Case(_stacked, (3,)),
    "neural_spline_flow": Case(
        lambda: _perturbed(T.neural_spline_flow(KEY, 3, num_layers=2, hidden=(8,)), 4, 0.1), (3,)
    ),
    "masked_autoregressive_flow": Case(
        lambda: _perturbed(T.masked_autoregressive_flow(KEY, 3, num_layers=2, hidden=(8,)), 5),
        (3,),
    ),
    "conditioned_coupling": Case(
        lambda: _perturbed(T.AffineCoupling.init(KEY, 3, (8,), context_dim=2), 6).conditioned(
            jnp.array([0.5, -1.0])
        ),
        (3,),
    ),
    "conditioned_flow": Case(
        lambda: _perturbed(
            T.neural_spline_flow(KEY, 3, 2, (8,), context_dim=2), 7, 0.1
        ).conditioned(jnp.array([0.5, -1.0])),
        (3,),
    ),
}
IDS = list(CASES)
BATCHED = [name for name, case in CASES.items() if case.batched is not None]


def _sign(transform):
    try:
        return transform.sign
    except NotImplementedError:
        return None


def _samples(transform, event_shape, n=5, seed=0):
    """Points of the domain: ``biject_to(domain)`` of standard normal draws."""
    raw = jax.random.normal(jax.random.key(seed), (n, *event_shape))
    return biject_to(transform.domain)(raw)


@pytest.mark.parametrize("name", IDS)
def test_bijective_on_domain_with_log_det_of_the_jacobian(name):
    case = CASES[name]
    t = case.make()
    x = _samples(t, case.event_shape)

    @jax.jit
    def run(t, x):
        y = t(x)
        nd = len(case.event_shape)
        flat = jax.vmap(jax.jacfwd(lambda v: t(v).reshape(-1)))(x).reshape(
            x.shape[0], -1, 1 if nd == 0 else x[0].size
        )
        return y, t.inv(y), t.log_abs_det_jacobian(x, y), flat

    y, x_back, log_det, jac = run(t, x)
    assert y.shape == t.forward_shape(x.shape) and x_back.shape == t.inverse_shape(y.shape)
    assert bool(jnp.all(t.domain(x))) and bool(jnp.all(t.codomain(y)))
    np.testing.assert_allclose(x_back, x, atol=TOL, rtol=TOL)
    assert log_det.shape == x.shape[: x.ndim - t.domain.event_dim]
    expected = jnp.linalg.slogdet(jac)[1]
    np.testing.assert_allclose(log_det, expected, atol=TOL * (1 + np.abs(expected).max()))
    sign = _sign(t)
    if sign is not None:
        np.testing.assert_array_equal(jnp.sign(jnp.diagonal(jac, axis1=-2, axis2=-1)), sign)


@pytest.mark.parametrize("name", IDS)
def test_pytree_round_trip_and_equality_through_jit(name):
    t = CASES[name].make()
    leaves, treedef = jax.tree.flatten(t)
    assert jax.tree.unflatten(treedef, leaves) == t
    through = jax.jit(lambda b: b)(t)
    assert type(through) is type(t) and through == t
    assert bool(jax.jit(lambda a, b: a.eq(b))(t, through))
    if leaves:
        assert jax.tree.map(lambda a: a + 1, t) != t


@pytest.mark.parametrize("name", BATCHED)
def test_batched_parameters_give_batched_values_and_log_dets(name):
    case = CASES[name]
    t = case.batched()
    x = _samples(t, case.event_shape, n=1)[0]
    y = t(x)
    batch = y.shape[: y.ndim - len(case.event_shape)]
    assert batch == (3,) and y.shape == t.forward_shape(x.shape)
    assert t.log_abs_det_jacobian(x, y).shape == batch
    np.testing.assert_allclose(t.inv(y), jnp.broadcast_to(x, y.shape), atol=TOL, rtol=TOL)


@pytest.mark.parametrize("name", IDS)
def test_transformed_distribution(name):
    case = CASES[name]
    t = case.make()
    nd = len(case.event_shape)
    base = dist.Normal(jnp.zeros(case.event_shape), 1.0)
    if t.domain.event_dim == 0 and t.domain is not constraints.real:
        base = dist.TransformedDistribution(base, biject_to(t.domain))
    base = base.to_event(nd)

    @jax.jit
    def run(t):
        d = dist.TransformedDistribution(base, t)
        y = d.sample(jax.random.key(1), (4,))
        x = t.inv(y)
        expected = base.log_prob(x) - jnp.sum(
            jnp.reshape(t.log_abs_det_jacobian(x, y), (4, -1)), -1
        )
        inside = d.support(y)
        reached = d.support(biject_to(d.support)(jax.random.normal(KEY, y.shape)))
        return y, d.log_prob(y), expected, inside, reached

    y, log_prob, expected, inside, reached = run(t)
    assert y.shape == (4, *case.event_shape)
    assert bool(jnp.all(inside))
    np.testing.assert_allclose(log_prob, expected, atol=TOL, rtol=TOL)
    assert bool(jnp.all(reached)), "biject_to(support) leaves the support"
    if _sign(t) is not None and not case.event_shape:
        d = dist.TransformedDistribution(base, t)
        q = jnp.array([0.2, 0.5, 0.7])
        np.testing.assert_allclose(d.cdf(d.icdf(q)), q, atol=TOL)
