"""Scale-out on JAX's runtime: sharded SVI steps and chains equal their single-device runs.

Every multi-device check runs in a subprocess that sets ``JAX_NUM_CPU_DEVICES=4`` before JAX
starts (the device count is fixed when the CPU backend is created); each subprocess runs a group
of checks (tests/scaling/svi_programs.py, chains_programs.py) so JAX starts once per group, and
prints the numbers these tests compare; the tests that read one group's numbers share an
``xdist_group``, so under ``pytest -n 2 --dist loadgroup`` (make test) one worker starts that
subprocess, once. Everything is float64, so "to rounding" means agreement within a few ulps of
the reduction over the batch, which XLA splits into per-device partial sums when the batch is
sharded.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from numpyro_ext.infer import chain_keys, data_mesh, local_rows, replicate, shard_batch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ROUNDING = 1e-12  # relative: float64 sums of a few dozen terms reordered across devices


def _run(script: Path, devices: int = 4) -> dict:
    env = dict(os.environ, JAX_NUM_CPU_DEVICES=str(devices), JAX_PLATFORMS="cpu")
    # tests/conftest.py has set --xla_cpu_multi_thread_eigen=false in XLA_FLAGS, inherited here:
    # without it an all-reduce of simulated devices can stall when they outnumber the cores
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-4000:]
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


# Unmarked, the tests of a group would be spread over both workers and each worker would start
# the group's subprocess (most of a minute of compilation) for its share of them.
READS_SVI_PROGRAMS = pytest.mark.xdist_group("scaling_svi_programs")
READS_CHAINS_PROGRAMS = pytest.mark.xdist_group("scaling_chains_programs")


@pytest.fixture(scope="module")
def svi():
    return _run(HERE / "svi_programs.py")


@pytest.fixture(scope="module")
def chains():
    return _run(HERE / "chains_programs.py")


GUIDES = ["AmortizedNormal", "AmortizedFlow", "SparseGP", "SOLVEGP", "ODVGP", "AutoFlow"]


@READS_SVI_PROGRAMS
@pytest.mark.parametrize("guide", GUIDES)
def test_sharded_svi_step_equals_single_device_step(svi, guide):
    r = svi[guide]
    assert svi["devices"] == 4 and r["batch_shards"] == 4
    assert abs(r["loss_many"] - r["loss_one"]) <= ROUNDING * abs(r["loss_one"])
    # the update moved the parameters (by lr * gradient) and both moves agree to rounding
    assert r["param_step_size"] > 1e-6
    assert r["param_max_abs_diff"] <= 1e-9 * r["param_step_size"]


@READS_SVI_PROGRAMS
@pytest.mark.parametrize("guide", GUIDES)
def test_sharded_svi_keeps_parameters_replicated_and_compiles_once(svi, guide):
    assert svi[guide]["replicated"]
    assert svi[guide]["compiles"] == 1  # two sharded steps, one XLA compilation


@READS_SVI_PROGRAMS
def test_plate_scaling_is_exact_under_sharding(svi):
    """-N/B sum log p(x_i) in closed form; the unscaled plate (negative control) is off by N/B."""
    s = svi["scaling"]
    assert abs(s["scaled"] - s["exact"]) <= ROUNDING * abs(s["exact"])
    assert abs(s["unscaled"] - s["exact"]) > 0.5 * abs(s["exact"])
    assert s["scaled"] / s["unscaled"] == pytest.approx(1000 / 8, rel=ROUNDING)


@READS_SVI_PROGRAMS
def test_host_and_device_batches_are_split_alike(svi):
    """NumPy rows (placed by a jitted identity) and device rows (jax.device_put) alike."""
    for kind in ("host", "device"):
        assert svi["placement"][kind] == {
            "spec": "P('data',)",
            "shards": 4,
            "rows_per_shard": [2],
            "equal": True,
        }


@READS_SVI_PROGRAMS
def test_a_batch_the_devices_cannot_split_is_refused_by_name(svi):
    assert svi["refused"] == (
        "shard_batch: ['x'] has shape (6, 2); its leading axis must be a multiple of the "
        "4 local devices on mesh axis 'data'"
    )


@READS_CHAINS_PROGRAMS
@pytest.mark.parametrize("kernel", ["PolyaGammaGibbs", "CollapsedPolyaGammaGibbs", "NUTS"])
def test_sharded_chains_give_the_draws_of_unsharded_chains(chains, kernel):
    r = chains[kernel]
    assert r["devices_holding_draws"] == 4 and r["chains_per_device"] == 2
    assert r["draw_sd"] > 0.1  # the draws vary, so equality is not trivial
    assert r["max_abs_diff"] <= ROUNDING * 10
    assert r["permuted_chains_diff"] > 0.1  # the comparison sees a chain mix-up


def _example():
    path = ROOT / "examples" / "scaling_multiprocess.py"
    spec = importlib.util.spec_from_file_location("scaling_multiprocess", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_two_processes_under_jax_distributed_give_the_single_process_result(x64):
    example = _example()
    result = example.launch(processes=2, devices=2, steps=3)
    assert result["devices"] == 4 and result["local_devices"] == 2
    svi = example.svi_program(data_mesh(), steps=3)  # one process, one device
    np.testing.assert_allclose(result["svi"]["losses"], svi["losses"], rtol=ROUNDING)
    for a, b in zip(
        jax.tree.leaves(result["svi"]["params"]), jax.tree.leaves(svi["params"]), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    draws = example.chains_program(data_mesh(axis="chains"))
    np.testing.assert_allclose(result["chains"]["beta"], draws["beta"], rtol=ROUNDING, atol=0)


# --- one device, in process: the helpers' contracts and their errors ---------------------------


def test_shard_batch_refuses_a_leading_axis_the_devices_cannot_split():
    with pytest.raises(ValueError, match=r"\['x'\] has shape \(\); its leading axis"):
        shard_batch({"x": np.float64(1.0)}, data_mesh())


def test_one_device_returns_host_rows_as_they_are_and_places_device_rows():
    mesh = data_mesh(1)
    rows = np.ones((4, 2))
    assert shard_batch({"x": rows}, mesh)["x"] is rows  # the jitted step places them
    placed = shard_batch({"x": jax.numpy.asarray(rows)}, mesh)["x"]
    assert isinstance(placed.sharding, jax.sharding.NamedSharding)
    assert placed.sharding.spec == jax.sharding.PartitionSpec("data")


def test_data_mesh_refuses_more_devices_than_jax_sees():
    with pytest.raises(ValueError, match="n_devices must be an integer in"):
        data_mesh(jax.device_count() + 1)
    with pytest.raises(ValueError, match="mesh has axes"):
        shard_batch(np.zeros(4), data_mesh(), axis="chains")


def test_single_process_helpers_place_rows_and_replicate():
    mesh = data_mesh(axis="chains")
    assert local_rows(12, mesh) == slice(0, 12)
    keys = chain_keys(jax.random.key(0), 4, mesh)
    np.testing.assert_array_equal(
        jax.random.key_data(keys), jax.random.key_data(jax.random.split(jax.random.key(0), 4))
    )
    tree = replicate({"a": np.arange(3.0)}, mesh)
    assert tree["a"].sharding.is_fully_replicated
