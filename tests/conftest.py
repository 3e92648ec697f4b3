"""Shared fixtures and the hypothesis profiles (``HYPOTHESIS_PROFILE=ci`` in ``make test``)."""

import os

# XLA:CPU's multi-threaded Eigen pool can deadlock intermittently on vmapped programs (every
# thread parked, the caller waiting forever); the suite runs one process per core anyway, so
# single-threaded Eigen costs little. Set before the CPU backend is created.
_NO_EIGEN_THREADS = "--xla_cpu_multi_thread_eigen=false"
if _NO_EIGEN_THREADS not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_NO_EIGEN_THREADS}".strip()

import jax  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "ci",
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=10, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture
def x64():
    """Run a test in float64: exactness checks against closed forms need the precision."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    """Parametrise a test over both precisions (float64 switched on for its duration)."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", request.param == "float64")
    yield jax.numpy.dtype(request.param)
    jax.config.update("jax_enable_x64", previous)
