"""Fixtures shared by the Pólya-gamma kernel tests."""

import jax
import pytest
from numpyro.infer import MCMC, NUTS

from numpyro_ext.demo.sections.hierarchical import hierarchical_data, hierarchical_model

# The tests that compare with the reference below: under ``pytest -n 2 --dist loadgroup`` (make
# test) they run on one worker, which computes the reference once.
SHARES_HIERARCHICAL_REFERENCE = pytest.mark.xdist_group("hierarchical_reference")


@pytest.fixture(scope="session")
def hierarchical():
    """The hierarchical example's model on 8 groups of 8 points, and a long NUTS run on it.

    Session-scoped: the composite, HMCGibbs and collapsed kernels of two test modules are all
    compared with this one reference, so a process computes it once (tests that use it carry
    ``SHARES_HIERARCHICAL_REFERENCE``).
    """
    model = hierarchical_model()
    args = hierarchical_data(seed=1, per_group=8)
    mcmc = MCMC(NUTS(model), num_warmup=300, num_samples=4000, progress_bar=False)
    mcmc.run(jax.random.key(2), *args)
    return model, args, mcmc.get_samples(group_by_chain=True)
