"""Run NumPyro's own transform tests with numpyro_ext's transforms added to their
parametrisations.

NumPyro's ``test/test_transforms.py`` checks every transform it ships through four
parametrised tests: ``test_parametrized_transform_pytree`` and ``test_parametrized_transform_eq``
(entries of its ``TRANSFORMS`` dict: a constructor, jittable arguments, static keyword
arguments), ``test_bijective_transforms`` (an instance and an input shape: round trip, shapes,
log-det against ``jacfwd``, ``sign`` against the Jacobian's diagonal) and
``test_compose_domain_codomain``. This script imports that module from a NumPyro checkout,
appends one entry per numpyro_ext transform to each parametrisation (nothing of NumPyro's is
copied into this repository) and runs pytest on the tests whose ids carry ``numpyro_ext``.

Usage (from the repository root; NumPyro's tests at the installed version)::

    git -C <numpyro mirror> archive <tag matching numpyro.__version__> test \\
        | tar -x -C /tmp/numpyro-src
    PYTHONPATH=$PWD .venv/bin/python scripts/run_numpyro_transform_tests.py \\
        /tmp/numpyro-src/test [extra pytest arguments]

If the checkout has no tag for the installed version, use the newest commit whose
``numpyro/distributions/transforms.py`` matches the installed module's protocol (the four tests
above only use ``Transform``'s public interface).

NumPyro's ``conftest.py`` is not loaded (``--noconftest``): it asserts that no JAX array is
alive before the first test, which the added entries are; its other settings (CPU platform, a
fixed seed per test) are reproduced here. NumPyro's warning filters are applied.
"""

from __future__ import annotations

import inspect
import sys
from functools import partial
from pathlib import Path

import jax
import numpy as np
import pytest

jax.config.update("jax_platform_name", "cpu")

NUMPYRO_FILTERWARNINGS = [
    "error",
    "ignore:.*Attempting to hash a tracer:FutureWarning",
    "ignore:numpy.ufunc size changed,:RuntimeWarning",
    "ignore:Using a non-tuple sequence:FutureWarning",
    "once::DeprecationWarning",
    # NumPyro's module is imported before pytest starts, so it cannot be assertion-rewritten
    "ignore::pytest.PytestAssertRewriteWarning",
]


def _exp_inline():
    import jax.numpy as jnp
    from numpyro.distributions import constraints

    from numpyro_ext.transforms import Inline

    options = dict(inverse_log_det_jacobian_fn=lambda y: -jnp.log(y))
    if "codomain" in inspect.signature(Inline).parameters:
        options.update(codomain=constraints.positive, sign=1)
    return partial(Inline, jnp.exp, jnp.log, **options)


def _stacked_layer(key, dim):
    from numpyro_ext.transforms import Chain, Permute, SplineCoupling

    return Chain([SplineCoupling.init(key, dim, (8,), num_bins=4), Permute.reverse(dim)])


def _perturbed(tree, seed=0, scale=0.3):
    """Random non-zero values in every array leaf (fresh layers start at the identity)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda a: np.asarray(a) + scale * rng.normal(size=np.shape(a)), tree)


def registrations():
    """``(name, pytree entry, bijective entry)`` per transform (None: does not apply)."""
    from numpyro.distributions.transforms import ExpTransform

    import numpyro_ext.transforms as T

    key = jax.random.key(0)
    two = np.array([0.5, -1.5])
    k = 4
    spline_params = (
        np.linspace(-1, 1, 2 * k).reshape(2, k),
        np.linspace(1, -1, 2 * k).reshape(2, k),
        np.linspace(-0.5, 0.5, 2 * (k - 1)).reshape(2, k - 1),
    )
    mlp = _perturbed(T.MLP.init(key, 2, (8,), 4))
    spline_mlp = _perturbed(T.MLP.init(key, 2, (8,), 2 * (3 * k - 1)), scale=0.1)
    made = _perturbed(T.MADE.init(key, 3, (8,), 2), scale=0.1)
    layers = [
        _perturbed(_stacked_layer(kk, 4), i, 0.1) for i, kk in enumerate(jax.random.split(key, 3))
    ]
    stacked = jax.tree.map(lambda *a: np.stack(a), *layers)
    exp_inline = _exp_inline()
    return [
        ("shift", (T.Shift, (two,), {}), (T.Shift(0.5), ())),
        ("scale", (T.Scale, (two,), {}), (T.Scale(-1.5), ())),
        ("affine", (T.Affine, (two, np.array([2.0, -0.5])), {}), (T.Affine(0.3, -2.0), ())),
        ("inline_exp", (exp_inline, (), {}), (exp_inline(), ())),
        (
            "chain",
            (T.Chain, ([T.Shift(two), T.Scale(np.array([2.0, 3.0]))],), {}),
            (T.Chain([T.Shift(1.0), T.Scale(-2.0)]), ()),
        ),
        ("chain_exp", None, (T.Chain([ExpTransform(), T.Shift(1.0)]), ())),
        ("invert", (T.Invert, (T.Scale(two),), {}), (T.Invert(T.Affine(1.0, 3.0)), ())),
        ("invert_exp", None, (T.Invert(exp_inline()), ())),
        ("banana", (T.Banana, (np.array(1.0), np.array(1.0)), {}), (T.Banana(0.7, 0.2), (2,))),
        (
            "rational_quadratic_spline",
            (T.RationalQuadraticSpline, spline_params, {}),
            (T.RationalQuadraticSpline(*(p[0] for p in spline_params)), ()),
        ),
        (
            "affine_coupling",
            (partial(T.AffineCoupling, split=2), (mlp,), {}),
            (T.AffineCoupling(mlp, split=2), (4,)),
        ),
        (
            "spline_coupling",
            (partial(T.SplineCoupling, split=2, num_bins=k), (spline_mlp,), {}),
            (T.SplineCoupling(spline_mlp, split=2, num_bins=k), (4,)),
        ),
        (
            "masked_autoregressive",
            (T.MaskedAutoregressive, (made,), {}),
            (T.MaskedAutoregressive(made), (3,)),
        ),
        (
            "planar",
            (T.Planar, (np.array([0.3, -0.2]), np.array([0.5, 0.4]), np.array(0.1)), {}),
            (T.Planar(np.array([0.3, -0.2]), np.array([0.5, 0.4]), 0.1), (2,)),
        ),
        (
            "radial",
            (T.Radial, (np.array([0.2, -0.1]), np.array(0.3), np.array(0.5)), {}),
            (T.Radial(np.array([0.2, -0.1]), 0.3, 0.5), (2,)),
        ),
        (
            "householder",
            (T.Householder, (np.array([[1.0, 2.0], [0.5, -1.0]]),), {}),
            (T.Householder(np.array([[1.0, 2.0], [0.5, -1.0]])), (2,)),
        ),
        (
            "sylvester",
            (
                T.Sylvester,
                tuple(np.asarray(a) for a in T.Sylvester.init(key, 3).tree_flatten()[0]),
                {},
            ),
            (T.Sylvester.init(key, 3), (3,)),
        ),
        ("permute", (T.Permute, (), dict(permutation=(2, 0, 1))), (T.Permute([2, 0, 1]), (3,))),
        ("scan", (T.Scan, (stacked,), {}), (T.Scan(stacked), (4,))),
        (
            "neural_spline_flow",
            None,
            (_perturbed(T.neural_spline_flow(key, 3, num_layers=2, hidden=(8,)), 1, 0.1), (3,)),
        ),
        (
            "masked_autoregressive_flow",
            None,
            (
                _perturbed(
                    T.masked_autoregressive_flow(key, 3, num_layers=2, hidden=(8,)), 2, 0.1
                ),
                (3,),
            ),
        ),
        (
            "conditioned_spline_coupling",
            None,
            (
                _perturbed(
                    T.SplineCoupling.init(key, 4, (8,), num_bins=k, context_dim=2), 3, 0.1
                ).conditioned(np.array([0.3, -0.7])),
                (4,),
            ),
        ),
    ]


def extend(module) -> int:
    """Append numpyro_ext's entries to the module's parametrisations; return how many."""
    count = 0
    marks = {
        name: getattr(module, name).pytestmark
        for name in ("test_bijective_transforms", "test_compose_domain_codomain")
    }
    bijective = next(m for m in marks["test_bijective_transforms"] if m.name == "parametrize")
    compose = next(m for m in marks["test_compose_domain_codomain"] if m.name == "parametrize")
    for name, pytree_entry, bijective_entry in registrations():
        if pytree_entry is not None:
            module.TRANSFORMS[f"numpyro_ext_{name}"] = module.T(*pytree_entry)
            count += 2
        if bijective_entry is not None:
            bijective.args[1].append(pytest.param(*bijective_entry, id=f"numpyro_ext_{name}"))
            compose.args[1].append(pytest.param(bijective_entry[0], id=f"numpyro_ext_{name}"))
            count += 2
    return count


class _SeedPerTest:
    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item):
        from numpyro.util import set_rng_seed

        set_rng_seed(0)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    test_dir = Path(argv[0]).resolve()
    sys.path.insert(0, str(test_dir))
    import test_transforms  # NumPyro's module, imported once; pytest reuses it

    count = extend(test_transforms)
    print(f"added {count} numpyro_ext cases to NumPyro's {test_transforms.__file__}")
    args = [str(test_dir / "test_transforms.py"), "--noconftest", "-p", "no:cacheprovider"]
    args += ["-k", "numpyro_ext", f"--rootdir={test_dir}"]
    for spec in NUMPYRO_FILTERWARNINGS:
        args += ["-W", spec]
    return pytest.main(args + argv[1:], plugins=[_SeedPerTest()])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
