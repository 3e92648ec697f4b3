"""Shared fixtures and the hypothesis profiles (``HYPOTHESIS_PROFILE=ci`` in ``make test``)."""

import os

import jax
import pytest
from hypothesis import HealthCheck, settings

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
