"""Checkpoint and resume: a run saved, its process ended, and a new process continuing it
draws exactly (bit for bit) what the uninterrupted run draws, for SVI, NUTS and the
Pólya-gamma Gibbs kernels."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoNormal

from numpyro_ext.infer import load_checkpoint, restore_svi, save_checkpoint

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import sys
    import jax, jax.numpy as jnp, numpy as np, numpyro, numpyro.distributions as dist, optax
    from numpyro.infer import MCMC, NUTS, SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoNormal
    from numpyro_ext.infer import (CollapsedPolyaGammaGibbs, PolyaGammaGibbs, load_checkpoint,
                                   restore_svi, save_checkpoint)

    phase, out = sys.argv[1], sys.argv[2]
    rs = np.random.RandomState(0)
    X = rs.normal(size=(30, 2))
    y = (X @ np.array([1.0, -1.0]) + rs.normal(size=30) > 0).astype(np.float32)

    def logistic(X, y):
        beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        with numpyro.plate("data", X.shape[0]):
            numpyro.sample("y", dist.Bernoulli(logits=X @ beta), obs=y)

    def hierarchical(X, y):
        tau = numpyro.sample("tau", dist.HalfNormal(1.0))
        beta = numpyro.sample("beta", dist.Normal(0.0, tau).expand([2]).to_event(1))
        with numpyro.plate("data", X.shape[0]):
            numpyro.sample("y", dist.Bernoulli(logits=X @ beta), obs=y)

    kernels = {
        "nuts": lambda: NUTS(logistic),
        "pg_gibbs": lambda: PolyaGammaGibbs(logistic),
        "collapsed": lambda: CollapsedPolyaGammaGibbs(hierarchical),
    }
    W, N = 20, 15
    svi = SVI(logistic, AutoNormal(logistic), optax.adam(0.05), Trace_ELBO())
    results = {}
    if phase == "first":
        full = svi.run(jax.random.key(0), 60, X, y, progress_bar=False)
        half = svi.run(jax.random.key(0), 30, X, y, progress_bar=False)
        save_checkpoint(f"{out}/svi.ckpt", half.state)
        results["svi_full"] = np.asarray(full.losses[30:])
        for name, kernel in kernels.items():
            mcmc = MCMC(kernel(), num_warmup=W, num_samples=2 * N, progress_bar=False)
            mcmc.run(jax.random.key(1), X, y)
            results[name + "_full"] = np.asarray(mcmc.get_samples()["beta"][N:])
            mcmc = MCMC(kernel(), num_warmup=W, num_samples=N, progress_bar=False)
            mcmc.run(jax.random.key(1), X, y)
            save_checkpoint(f"{out}/{name}.ckpt", mcmc.last_state)
    else:
        state = restore_svi(svi, f"{out}/svi.ckpt", X, y)
        rest = svi.run(jax.random.key(99), 30, X, y, progress_bar=False, init_state=state)
        results["svi_resumed"] = np.asarray(rest.losses)
        for name, kernel in kernels.items():
            mcmc = MCMC(kernel(), num_warmup=W, num_samples=N, progress_bar=False)
            mcmc.post_warmup_state = load_checkpoint(f"{out}/{name}.ckpt")
            mcmc.run(mcmc.post_warmup_state.rng_key, X, y)
            results[name + "_resumed"] = np.asarray(mcmc.get_samples()["beta"])
        mcmc.run(jax.random.key(12345), X, y)  # negative control: not the saved key
        results["other_key"] = np.asarray(mcmc.get_samples()["beta"])
    np.savez(f"{out}/{phase}.npz", **results)
    """
)


def _run(phase, tmp_path):
    # NumPyro sums the ELBO's site terms in the order of a Python set, so the last bit of a
    # loss depends on string hashing: both processes use the same PYTHONHASHSEED.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "0"}
    # Compilation is most of the time here. Both processes share a persistent compilation cache
    # that keeps every program, however small, so the second loads what the first compiled
    # (eager ops, the model's initialisation, the SVI loop of the half run) instead of
    # compiling it again. An entry is keyed by its HLO, so a hit runs the same program; the
    # checkpoint is still the only state the second process gets from the first.
    env |= {
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax-cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
    }
    script = tmp_path / "resume.py"
    script.write_text(SCRIPT)
    subprocess.run([sys.executable, str(script), phase, str(tmp_path)], check=True, env=env,
                   timeout=900)  # fmt: skip


def test_runs_resumed_in_a_new_process_match_the_uninterrupted_run_bit_for_bit(tmp_path):
    _run("first", tmp_path)  # process 1: the uninterrupted run, and a half run saved
    _run("resume", tmp_path)  # process 2: loads the checkpoints and continues
    first, resumed = np.load(tmp_path / "first.npz"), np.load(tmp_path / "resume.npz")
    for name in ("svi", "nuts", "pg_gibbs", "collapsed"):
        full, rest = first[name + "_full"], resumed[name + "_resumed"]
        assert full.shape == rest.shape, name
        np.testing.assert_array_equal(rest, full, err_msg=name)
    # Negative control: continuing from the saved state with another key gives other draws,
    # so the equality above is not vacuous.
    assert not np.array_equal(resumed["other_key"], first["collapsed_full"])


def _model(x):
    mu = numpyro.sample("mu", dist.Normal(0, 1))
    with numpyro.plate("d", x.shape[0]):
        numpyro.sample("x", dist.Normal(mu, 1), obs=x)


def test_a_fresh_svi_needs_restore_and_restore_checks_the_structure(tmp_path):
    x = jnp.linspace(-1, 1, 8)
    svi = SVI(_model, AutoNormal(_model), optax.adam(0.1), Trace_ELBO())
    state = svi.run(jax.random.key(0), 5, x, progress_bar=False).state
    save_checkpoint(tmp_path / "s.ckpt", state)
    fresh = SVI(_model, AutoNormal(_model), optax.adam(0.1), Trace_ELBO())
    with pytest.raises(TypeError, match="'NoneType' object is not callable"):
        fresh.run(jax.random.key(0), 2, x, progress_bar=False, init_state=state)  # the trap
    restored = restore_svi(fresh, tmp_path / "s.ckpt", x)
    assert fresh.run(jax.random.key(0), 2, x, progress_bar=False, init_state=restored)
    other = SVI(_model, AutoNormal(_model), optax.sgd(0.1), Trace_ELBO())
    with pytest.raises(ValueError, match="does not match this SVI object"):
        restore_svi(other, tmp_path / "s.ckpt", x)


def test_checkpoints_keep_typed_keys_and_dtypes_and_refuse_foreign_files(tmp_path):
    state = {"key": jax.random.key(7), "raw": jax.random.PRNGKey(7), "n": jnp.arange(3)}
    save_checkpoint(tmp_path / "a.ckpt", state)
    back = load_checkpoint(tmp_path / "a.ckpt")
    assert jnp.issubdtype(back["key"].dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(
        jax.random.key_data(back["key"]), jax.random.key_data(state["key"])
    )
    np.testing.assert_array_equal(back["raw"], state["raw"])
    assert back["n"].dtype == state["n"].dtype
    (tmp_path / "b.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(Exception):  # noqa: B017 (unpickling garbage raises UnpicklingError)
        load_checkpoint(tmp_path / "b.ckpt")
    import pickle

    (tmp_path / "c.ckpt").write_bytes(pickle.dumps({"something": 1}))
    with pytest.raises(ValueError, match="is not a numpyro_ext checkpoint"):
        load_checkpoint(tmp_path / "c.ckpt")
